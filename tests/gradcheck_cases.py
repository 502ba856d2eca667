"""The cases of the float64 finite-difference gradient check, one per op, activation,
loss and layer configuration. Each case builds a function of some input tensors
(and, for layers, of their parameters) returning a tensor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import gpunet as gn
from gpunet import functional as F
from gpunet.backend._activation_ops import ACTIVATIONS

CHECKED: set[str] = set()  # names of the cases that passed, for the summary line


@dataclass
class Case:
    name: str
    inputs: list[np.ndarray]
    fn: Callable[..., Any]  # (*tensors) -> Tensor
    layer: Any = None  # its parameters are checked too
    reseed: bool = False  # re-seed the dropout stream before every evaluation
    kinks: list[float] = field(default_factory=list)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _away_from(x: np.ndarray, points: list[float], gap: float = 0.05) -> np.ndarray:
    for p in points:
        close = np.abs(x - p) < gap
        x = np.where(close, p + np.sign(x - p + 1e-12) * gap * 2, x)
    return x


def activation_cases() -> list[Case]:
    cases = []
    for name in [*ACTIVATIONS, "gelu_tanh", "leaky_relu_0.3", "elu_2"]:
        kw: dict[str, Any] = {}
        op = name
        if name == "gelu_tanh":
            op, kw = "gelu", {"approximate": True}
        elif name == "leaky_relu_0.3":
            op, kw = "leaky_relu", {"alpha": 0.3}
        elif name == "elu_2":
            op, kw = "elu", {"alpha": 2.0}
        X = _away_from(_rng(1).normal(0, 2, (3, 5)), [0.0])
        cases.append(
            Case(f"activation:{name}", [X], lambda x, op=op, kw=kw: F.activation(x, op, **kw))
        )
    return cases


def tensor_op_cases() -> list[Case]:
    r = _rng(2)
    A, B, v = r.normal(size=(3, 4)), r.normal(size=(3, 4)), r.normal(size=(4,))
    M = r.normal(size=(4, 2))
    pos = r.uniform(0.5, 2.0, size=(3, 4))
    return [
        Case("op:add_broadcast", [A, v], lambda a, b: a + b),
        Case("op:sub_scalar", [A], lambda a: 2.0 - a),
        Case("op:mul", [A, B], lambda a, b: a * b),
        Case("op:div", [A, pos], lambda a, b: a / b),
        Case("op:rdiv_scalar", [pos], lambda a: 3.0 / a),
        Case("op:neg", [A], lambda a: -a),
        Case("op:power", [pos], lambda a: a**1.7),
        Case("op:exp", [A], lambda a: a.exp()),
        Case("op:log", [pos], lambda a: a.log()),
        Case("op:matmul", [A, M], lambda a, m: a @ m),
        Case("op:sum_all", [A], lambda a: a.sum()),
        Case("op:sum_axis0", [A], lambda a: a.sum(axis=0)),
        Case("op:sum_keepdims", [A], lambda a: a.sum(axis=1, keepdims=True)),
        Case("op:mean", [A], lambda a: a.mean(axis=-1)),
        Case("op:reshape", [A], lambda a: a.reshape(2, 6)),
        Case("op:transpose", [A], lambda a: a.T),
        Case("op:getitem", [A], lambda a: a[1:, ::2]),
        Case("op:concat", [A, B], lambda a, b: F.concat([a, b], axis=0)),
        Case("op:dense_linear", [A, M], lambda a, m: F.dense(a, m, None, "linear")),
        Case("op:dropout", [A], lambda a: F.dropout(a, 0.4, True), reseed=True),
        Case("op:regularizer_l2", [A], lambda a: gn.regularizers.L2(0.3)(a)),
        Case("op:regularizer_l1", [_away_from(A, [0.0])], lambda a: gn.regularizers.L1(0.2)(a)),
    ]


def _loss_case(name: str, loss: Any, P: np.ndarray, T: Any, w: Any = None) -> Case:
    return Case(f"loss:{name}", [P], lambda p: loss(T, p, sample_weight=w))


def loss_cases() -> list[Case]:
    r = _rng(3)
    Z = r.normal(0, 3, (5, 4))
    probs = r.uniform(0.05, 0.95, (5, 3))
    T_bin = (r.uniform(size=(5, 3)) > 0.5).astype(np.float64)
    labels = np.array([0, 3, 1, 2, 3])
    onehot = np.eye(4)[labels]
    soft = r.dirichlet(np.ones(4), size=5)
    y_reg = r.normal(size=(5, 3))
    w = r.uniform(0.5, 2.0, size=5)
    L = gn.losses
    cases = [
        _loss_case("mse", L.MeanSquaredError(), y_reg + r.normal(size=(5, 3)), y_reg),
        _loss_case("mae", L.MeanAbsoluteError(), y_reg + r.choice([-1, 1], (5, 3)) * 0.5, y_reg),
        _loss_case("huber", L.Huber(delta=0.7), y_reg + r.normal(0, 1.5, (5, 3)), y_reg),
        _loss_case("poisson", L.Poisson(), probs * 3, np.abs(y_reg)),
        _loss_case("bce_probs", L.BinaryCrossentropy(), probs, T_bin),
        _loss_case("bce_logits", L.BinaryCrossentropy(from_logits=True), Z[:, :3], T_bin),
        _loss_case(
            "bce_logits_smooth",
            L.BinaryCrossentropy(from_logits=True, label_smoothing=0.2),
            Z[:, :3],
            T_bin,
        ),
        _loss_case("cce_probs", L.CategoricalCrossentropy(), soft * 0.9 + 0.02, onehot),
        _loss_case("cce_logits", L.CategoricalCrossentropy(from_logits=True), Z, soft),
        _loss_case(
            "cce_logits_smooth",
            L.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
            Z,
            onehot,
        ),
        _loss_case("scce_logits", L.SparseCategoricalCrossentropy(from_logits=True), Z, labels),
        _loss_case("scce_probs", L.SparseCategoricalCrossentropy(), soft * 0.9 + 0.02, labels),
        _loss_case(
            "scce_weighted", L.SparseCategoricalCrossentropy(from_logits=True), Z, labels, w
        ),
        _loss_case("mse_sum", L.MeanSquaredError(reduction="sum"), y_reg * 2, y_reg),
        _loss_case("mse_none", L.MeanSquaredError(reduction="none"), y_reg * 2, y_reg),
        _loss_case(
            "scce_none",
            L.SparseCategoricalCrossentropy(from_logits=True, reduction="none"),
            Z,
            labels,
        ),
    ]
    # fused paths: the loss sees a sigmoid/softmax output and differentiates its logits
    cases.append(
        Case(
            "loss:fused_sigmoid_bce",
            [Z[:, :3]],
            lambda z: L.BinaryCrossentropy()(T_bin, F.activation(z, "sigmoid")),
        )
    )
    cases.append(
        Case(
            "loss:fused_softmax_cce",
            [Z],
            lambda z: L.CategoricalCrossentropy()(soft, F.activation(z, "softmax")),
        )
    )
    cases.append(
        Case(
            "loss:fused_softmax_scce",
            [Z],
            lambda z: L.SparseCategoricalCrossentropy(label_smoothing=0.05)(
                labels, F.activation(z, "softmax")
            ),
        )
    )
    return cases


def _layer_case(
    name: str, layer: Any, inputs: list[np.ndarray], training: bool = True, reseed: bool = False
) -> Case:
    def fn(*xs: Any) -> Any:
        arg = list(xs) if len(xs) > 1 else xs[0]
        return layer(arg, training=training)

    return Case(f"layer:{name}", inputs, fn, layer=layer, reseed=reseed)


def _conv_cases(r: np.random.Generator) -> list[Case]:
    """Small inputs: the check perturbs every element of the input and the kernel."""
    L, f64 = gn.layers, {"dtype": "float64", "bias_initializer": "random_normal"}
    X4, X5 = r.normal(size=(2, 5, 5, 2)), r.normal(size=(1, 4, 6, 2))
    X1 = r.normal(size=(2, 7, 2))
    return [
        _layer_case("Conv2D(valid)", L.Conv2D(3, 3, **f64), [X4]),
        _layer_case(
            "Conv2D(same, strides 2)", L.Conv2D(2, 3, strides=2, padding="same", **f64), [X4]
        ),
        _layer_case("Conv2D(same, even kernel)", L.Conv2D(2, (2, 3), padding="same", **f64), [X5]),
        _layer_case("Conv2D(dilation 2)", L.Conv2D(2, 2, dilation_rate=2, **f64), [X4]),
        _layer_case("Conv2D(groups 2)", L.Conv2D(4, 3, groups=2, padding="same", **f64), [X4]),
        _layer_case("Conv2D(1x1)", L.Conv2D(3, 1, **f64), [X4]),
        _layer_case(
            "Conv2D(channels_first, tanh)",
            L.Conv2D(2, 3, data_format="channels_first", activation="tanh", **f64),
            [r.normal(size=(2, 2, 5, 4))],
        ),
        _layer_case("Conv2D(no bias)", L.Conv2D(2, 3, use_bias=False, dtype="float64"), [X5]),
        _layer_case(
            "Conv2D(l1l2)",
            L.Conv2D(2, 3, dtype="float64", kernel_regularizer=gn.regularizers.L1L2(0.0, 0.1)),
            [X5],
        ),
        _layer_case("Conv2DTranspose(valid)", L.Conv2DTranspose(2, 3, **f64), [X4[:1]]),
        _layer_case(
            "Conv2DTranspose(same, strides 2, output_padding 1, channels_first, tanh)",
            L.Conv2DTranspose(
                2,
                (3, 2),
                strides=2,
                padding="same",
                output_padding=1,
                data_format="channels_first",
                activation="tanh",
                **f64,
            ),
            [r.normal(size=(1, 2, 3, 4))],
        ),
        _layer_case(
            "Conv2DTranspose(dilation 2, no bias)",
            L.Conv2DTranspose(2, 2, dilation_rate=2, use_bias=False, dtype="float64"),
            [r.normal(size=(1, 3, 3, 2))],
        ),
        _layer_case("Conv1D(valid)", L.Conv1D(3, 3, **f64), [X1]),
        _layer_case(
            "Conv1D(same, strides 2)", L.Conv1D(2, 4, strides=2, padding="same", **f64), [X1]
        ),
        _layer_case(
            "Conv1D(dilation 2, groups 2, channels_first)",
            L.Conv1D(2, 2, dilation_rate=2, groups=2, data_format="channels_first", **f64),
            [r.normal(size=(1, 2, 6))],
        ),
    ]


def layer_cases() -> list[Case]:
    r = _rng(4)
    X = r.normal(size=(4, 3))
    X3 = r.normal(size=(2, 3, 3))
    L = gn.layers
    cases = []
    for act in (
        "linear",
        "relu",
        "tanh",
        "gelu",
        "swish",
        "sigmoid",
        "softmax",
        "elu",
        "selu",
        "softplus",
        "leaky_relu",
        "log_softmax",
    ):
        Xa = _away_from(X, [0.0]) if act in ("relu", "leaky_relu", "elu", "selu") else X
        cases.append(
            _layer_case(
                f"Dense({act})",
                L.Dense(4, activation=act, dtype="float64", bias_initializer="random_normal"),
                [Xa],
            )
        )
    cases += [
        _layer_case("Dense(no bias)", L.Dense(3, use_bias=False, dtype="float64"), [X]),
        _layer_case("Dense(3d input)", L.Dense(2, dtype="float64"), [X3]),
        _layer_case(
            "Dense(l1l2)",
            L.Dense(2, dtype="float64", kernel_regularizer=gn.regularizers.L1L2(0.0, 0.1)),
            [X],
        ),
        _layer_case("Activation(tanh)", L.Activation("tanh", dtype="float64"), [X]),
        _layer_case("Dropout(train)", L.Dropout(0.3, dtype="float64"), [X], reseed=True),
        _layer_case("Dropout(eval)", L.Dropout(0.3, dtype="float64"), [X], training=False),
        _layer_case("BatchNormalization(train)", L.BatchNormalization(dtype="float64"), [X]),
        _layer_case(
            "BatchNormalization(eval)", L.BatchNormalization(dtype="float64"), [X], training=False
        ),
        _layer_case("BatchNormalization(3d)", L.BatchNormalization(dtype="float64"), [X3]),
        _layer_case("LayerNormalization", L.LayerNormalization(dtype="float64"), [X]),
        _layer_case("Flatten", L.Flatten(dtype="float64"), [X3]),
        _layer_case("Add", L.Add(dtype="float64"), [X, r.normal(size=(4, 3))]),
        _layer_case("Concatenate", L.Concatenate(dtype="float64"), [X, r.normal(size=(4, 2))]),
        _layer_case("Softmax", L.Softmax(dtype="float64"), [X]),
        _layer_case("Softmax(axis=1 of 3d)", L.Softmax(axis=1, dtype="float64"), [X3]),
    ]
    cases += _spatial_layer_cases(r)
    cases += _conv_cases(r)
    X2, X3b = r.normal(size=(4, 3)), r.normal(size=(4, 3))
    for cls in ("Subtract", "Average", "Multiply", "Maximum", "Minimum"):
        inputs = [X, X2] if cls == "Subtract" else [X, X2, X3b]
        cases.append(_layer_case(cls, getattr(L, cls)(dtype="float64"), inputs))
    # the functional forms make the layer and call it (keras.layers.add([a, b]))
    for fn in ("add", "subtract", "average", "multiply", "maximum", "minimum", "concatenate"):
        cases.append(
            Case(
                f"layer:{fn}",
                [X, X2],
                lambda a, b, fn=fn: getattr(L, fn)([a, b], dtype="float64"),
            )
        )
    leaky = L.LeakyReLU(0.2, dtype="float64")
    cases.append(_layer_case("LeakyReLU", leaky, [_away_from(X, [0.0])]))
    # frozen (Keras 3): normalises with the moving statistics even while training
    frozen = L.BatchNormalization(dtype="float64", trainable=False)
    cases.append(_layer_case("BatchNormalization(frozen, train)", frozen, [X]))
    return cases


def _spatial_layer_cases(r: np.random.Generator) -> list[Case]:
    """Pooling and reshaping layers; max-pool inputs are distinct values spaced 0.1
    apart, so no finite-difference step crosses a tie."""
    L = gn.layers
    img = r.normal(size=(2, 5, 6, 3))
    spaced = (r.permutation(2 * 5 * 6 * 3) * 0.1).reshape(2, 5, 6, 3)
    seq = (r.permutation(2 * 7 * 3) * 0.1).reshape(2, 7, 3)
    f64: dict[str, Any] = {"dtype": "float64"}
    specs: list[tuple[str, Any, np.ndarray]] = [
        ("MaxPooling2D", L.MaxPooling2D(2, **f64), spaced),
        ("MaxPooling2D(3, strides 2, same)", L.MaxPooling2D(3, 2, "same", **f64), spaced),
        ("MaxPooling2D((2, 3), strides 1)", L.MaxPooling2D((2, 3), 1, **f64), spaced),
        (
            "MaxPooling2D(channels_first)",
            L.MaxPooling2D(2, data_format="channels_first", **f64),
            spaced,
        ),
        ("MaxPooling1D(3, strides 2, same)", L.MaxPooling1D(3, 2, "same", **f64), seq),
        ("AveragePooling2D", L.AveragePooling2D(2, **f64), img),
        ("AveragePooling2D(3, strides 2, same)", L.AveragePooling2D(3, 2, "same", **f64), img),
        ("AveragePooling1D(2, strides 1)", L.AveragePooling1D(2, 1, **f64), seq),
        ("GlobalAveragePooling2D", L.GlobalAveragePooling2D(**f64), img),
        ("GlobalAveragePooling1D(keepdims)", L.GlobalAveragePooling1D(keepdims=True, **f64), seq),
        ("GlobalMaxPooling2D", L.GlobalMaxPooling2D(**f64), spaced),
        ("GlobalMaxPooling1D", L.GlobalMaxPooling1D(**f64), seq),
        ("Reshape", L.Reshape((3, -1), **f64), img),
        ("UpSampling2D", L.UpSampling2D((2, 3), **f64), img),
        ("ZeroPadding2D", L.ZeroPadding2D(((1, 0), (2, 1)), **f64), img),
        ("Cropping2D", L.Cropping2D(((1, 2), (0, 3)), **f64), img),
        ("Cropping2D(channels_first)", L.Cropping2D(1, data_format="channels_first", **f64), img),
    ]
    cases = [_layer_case(name, layer, [x]) for name, layer, x in specs]
    cases.append(
        _layer_case("SpatialDropout2D(train)", L.SpatialDropout2D(0.5, **f64), [img], reseed=True)
    )
    return cases + _torch_norm_cases(r)


def _torch_norm_cases(r: np.random.Generator) -> list[Case]:
    """gn.nn's PyTorch-named norms: several normalized axes, without weights or bias,
    channels at axis 1."""
    nn, f64 = gn.nn, {"dtype": "float64"}
    ln = nn.LayerNorm((3, 4), **f64)
    for p in (ln.weight, ln.bias):
        p.data[...] = r.normal(size=p.shape)
    bn1 = nn.BatchNorm1d(3, **f64)
    bn1.weight.data[...] = r.normal(size=3)
    x = r.normal(size=(2, 3, 4))
    plain = nn.LayerNorm(4, elementwise_affine=False, **f64)
    return [
        _layer_case("nn.LayerNorm((3, 4))", ln, [x]),
        _layer_case("nn.LayerNorm(no affine)", plain, [x]),
        _layer_case("nn.LayerNorm(bias=False)", nn.LayerNorm(4, bias=False, **f64), [x]),
        _layer_case("nn.BatchNorm1d(N, C, L)", bn1, [x]),
        _layer_case("nn.BatchNorm1d(N, C)", nn.BatchNorm1d(4, **f64), [r.normal(size=(5, 4))]),
        _layer_case("nn.BatchNorm1d(eval)", nn.BatchNorm1d(3, **f64), [x], training=False),
    ]


def torch_surface_cases() -> list[Case]:
    """The PyTorch-style tensor methods, gn.* functions and nn.functional losses."""
    NF = gn.nn.functional
    r = _rng(5)
    A = r.normal(size=(3, 4))
    A_far = _away_from(A, [0.0, 0.5, -0.5])
    pos = r.uniform(0.5, 2.0, (3, 4))
    W, b = r.normal(size=(5, 4)), r.normal(size=(5,))
    labels = gn.tensor(np.array([0, 2, 1]))
    probs = r.uniform(0.05, 0.95, (3, 4))
    T = (r.random((3, 4)) > 0.5).astype("float64")
    mask = gn.tensor(A > 0)
    cases = [
        Case("torch:sin", [A], lambda a: a.sin()),
        Case("torch:cos", [A], lambda a: gn.cos(a)),
        Case("torch:abs", [A_far], lambda a: a.abs()),
        Case("torch:sqrt", [pos], lambda a: a.sqrt()),
        Case("torch:clamp", [A_far], lambda a: a.clamp(-0.5, 0.5)),
        Case("torch:where", [A, pos], lambda a, p: gn.where(mask, a, p)),
        Case("torch:max_dim", [A], lambda a: a.max(dim=1)[0]),
        Case("torch:min_dim_keepdim", [A], lambda a: a.min(0, keepdim=True).values),
        Case("torch:max_all", [A], lambda a: a.max()),
        Case("torch:permute", [r.normal(size=(2, 3, 4))], lambda a: a.permute(2, 0, 1)),
        Case("torch:t_unsqueeze_squeeze", [A], lambda a: a.t().unsqueeze(0).squeeze(0)),
        Case("torch:pow_tensor_exponent", [pos, A], lambda a, e: a.pow(e)),
        Case("torch:rpow", [A], lambda a: 2.0**a),
        Case("torch:index_int_arrays", [A], lambda a: a[[0, 2, 2], [1, 3, 3]]),
        Case("torch:index_range_tensor", [A], lambda a: a[range(3), labels]),
        Case("torch:index_bool", [A], lambda a: a[mask]),
        Case("torch:linear", [A, W, b], lambda x, w, c: NF.linear(x, w, c)),
        Case("torch:linear_3d", [r.normal(size=(2, 3, 4)), W], lambda x, w: NF.linear(x, w)),
        Case("torch:stack", [A, pos], lambda a, p: gn.stack([a, p], dim=1)),
        Case("torch:cat", [A, pos], lambda a, p: gn.cat([a, p], dim=0)),
        Case("torch:clone_flatten", [r.normal(size=(2, 3, 4))], lambda a: a.clone().flatten(1)),
        Case("torch:pad", [A], lambda a: NF.pad(a, (1, 2, 0, 1), value=0.5)),
        Case("torch:softmax_dim0", [A], lambda a: NF.softmax(a, dim=0)),
        Case("torch:nll_loss", [A], lambda a: NF.nll_loss(a, labels)),
        Case(
            "torch:cross_entropy_sum", [A], lambda a: NF.cross_entropy(a, labels, reduction="sum")
        ),
        Case(
            "torch:cross_entropy_weight_smoothing",
            [A],
            lambda a: NF.cross_entropy(
                a, labels, weight=gn.tensor(np.array([1.0, 2.0, 0.5, 1.0])), label_smoothing=0.1
            ),
        ),
        Case(
            "torch:cross_entropy_probs_none",
            [A],
            lambda a: NF.cross_entropy(a, gn.tensor(probs), reduction="none"),
        ),
        Case("torch:bce", [probs], lambda p: NF.binary_cross_entropy(p, gn.tensor(T))),
        Case(
            "torch:bce_logits_pos_weight",
            [A],
            lambda a: NF.binary_cross_entropy_with_logits(
                a, gn.tensor(T), pos_weight=gn.tensor(np.array([1.0, 2.0, 3.0, 0.5]))
            ),
        ),
        Case("torch:mse_none", [A, pos], lambda a, p: NF.mse_loss(a, p, reduction="none")),
        Case("torch:mse_mean", [A], lambda a: NF.mse_loss(a, gn.tensor(pos))),  # one node
        Case("torch:mse_sum", [A], lambda a: NF.mse_loss(a, gn.tensor(pos), reduction="sum")),
        Case(
            "torch:l1_sum",
            [A_far],
            lambda a: NF.l1_loss(a, gn.tensor(np.zeros((3, 4))), reduction="sum"),
        ),
        Case("torch:huber", [A_far * 2], lambda a: NF.huber_loss(a, gn.tensor(np.zeros((3, 4))))),
    ]
    lin = gn.nn.Linear(4, 5, dtype="float64")
    cases.append(Case("torch:nn.Linear", [A], lambda x: lin(x), layer=lin))
    cases.append(Case("torch:nn.Linear(activation=tanh)", [A],  # the block's fused pass
                      lambda x: lin(x, activation="tanh"), layer=lin))  # fmt: skip
    r, nn = _rng(9), gn.nn
    for name, mod, shape in [
        ("Conv2d(stride 2, padding 1, groups 2)",
         nn.Conv2d(4, 2, 3, stride=2, padding=1, groups=2, dtype="float64"), (1, 4, 5, 4)),
        ("Conv1d(padding same, dilation 2)",
         nn.Conv1d(2, 3, 3, padding="same", dilation=2, dtype="float64"), (2, 2, 6)),
        ("ConvTranspose2d(stride 2, padding 1, output_padding 1)",
         nn.ConvTranspose2d(2, 2, 3, stride=2, padding=1, output_padding=1, dtype="float64"),
         (1, 2, 3, 3)),
    ]:  # fmt: skip
        cases.append(
            Case(f"torch:nn.{name}", [r.normal(size=shape)], lambda x, m=mod: m(x), layer=mod)
        )
    return cases + _torch_more_cases()


def _torch_more_cases() -> list[Case]:
    """The recurrent cells over two steps (gradients through the state), and the
    functions and losses added with them."""
    r, nn, NF, f64 = _rng(10), gn.nn, gn.nn.functional, {"dtype": "float64"}
    x, h = r.normal(size=(2, 3)), r.normal(size=(2, 4))
    cases = []
    for name, cell in [("RNNCell(relu)", nn.RNNCell(3, 4, nonlinearity="relu", **f64)),
                       ("GRUCell", nn.GRUCell(3, 4, **f64))]:  # fmt: skip
        cases.append(Case(f"torch:nn.{name}", [x, h], lambda a, s, c=cell: c(a, c(a, s)),
                          layer=cell))  # fmt: skip
    lstm = nn.LSTMCell(3, 4, bias=False, **f64)
    cases.append(Case("torch:nn.LSTMCell(no bias)", [x, h, h + 1.0],
                      lambda a, s, c: sum(lstm(a, lstm(a, (s, c)))), layer=lstm))  # fmt: skip
    A, B = r.normal(size=(3, 4)), r.normal(size=(3, 4))
    P, Q = r.dirichlet(np.ones(4), 3), r.dirichlet(np.ones(4), 3)
    Q[0, 1] = 0.0  # a zero target: t log t is 0 there
    far = _away_from(A, [0.0, 0.5, -0.5], 0.05)
    x3, x4 = r.normal(size=(2, 3, 7)), r.normal(size=(2, 3, 2, 3))
    spaced = (r.permutation(2 * 3 * 7) * 0.1).reshape(2, 3, 7)  # no ties in a window
    drop = nn.Dropout2d(0.5)
    gnorm, inorm = nn.GroupNorm(3, 6, **f64), nn.InstanceNorm2d(3, affine=True, **f64)
    prelu = nn.PReLU(3, **f64)
    scale_e = r.normal(size=(2, 3, 3))
    signs = np.array([1.0, -1.0, -1.0])
    for p in (*gnorm.parameters(), *inorm.parameters(), *prelu.parameters()):
        p.data[...] = r.normal(size=p.shape)
    cases += [
        Case("torch:smooth_l1(beta 0.5)", [far], lambda a: NF.smooth_l1_loss(a, 0 * a, beta=0.5)),
        Case(
            "torch:kl_div(batchmean)",
            [np.log(P)],
            lambda a: NF.kl_div(a, gn.tensor(Q), reduction="batchmean"),
        ),
        Case(
            "torch:kl_div(log_target)",
            [np.log(P), np.log(Q + 0.1)],
            lambda a, t: NF.kl_div(a, t, reduction="sum", log_target=True),
        ),
        Case("torch:normalize", [A], lambda a: NF.normalize(a, dim=1)),
        Case("torch:cosine_similarity", [A, B], lambda a, b: NF.cosine_similarity(a, b)),
        Case("torch:maximum", [A, B], lambda a, b: gn.maximum(a, b)),
        Case("torch:nn.MaxPool1d(3, 2, 1)", [spaced], lambda a: nn.MaxPool1d(3, 2, 1)(a)),
        Case("torch:nn.AvgPool1d(3, 1, 1)", [x3], lambda a: nn.AvgPool1d(3, 1, 1)(a)),
        Case("torch:nn.AdaptiveAvgPool1d", [x3], lambda a: nn.AdaptiveAvgPool1d(1)(a)),
        Case(
            "torch:F.bilinear",
            [A, B[:, :3], r.normal(size=(2, 4, 3)), r.normal(size=2)],
            lambda a, b, w, c: NF.bilinear(a, b, w, c),
        ),
        Case("torch:nn.AdaptiveAvgPool2d((2, 4))", [x4], lambda a: nn.AdaptiveAvgPool2d((2, 4))(a)),
        Case("torch:nn.AdaptiveMaxPool1d(5)", [spaced], lambda a: nn.AdaptiveMaxPool1d(5)(a)),
        Case("torch:nn.Upsample(size)", [x4], lambda a: nn.Upsample(size=(4, 6))(a)),
        Case("torch:nn.Dropout2d(train)", [x4], lambda a: drop(a), reseed=True),
        Case(
            "torch:nn.GroupNorm(3, 6)", [r.normal(size=(2, 6, 3))], lambda a: gnorm(a), layer=gnorm
        ),
        Case("torch:nn.InstanceNorm2d(affine)", [x4], lambda a: inorm(a), layer=inorm),
        Case("torch:nn.PReLU(3)", [far[:2, :3]], lambda a: prelu(a), layer=prelu),
        Case("torch:nn.Mish", [A], lambda a: nn.Mish()(a)),
        Case("torch:nn.Hardtanh", [_away_from(A, [-1.0, 1.0])], lambda a: nn.Hardtanh()(a)),
        Case(
            "torch:nn.PixelShuffle(2)",
            [r.normal(size=(1, 4, 2, 3))],
            lambda a: nn.PixelShuffle(2)(a),
        ),
        Case("torch:nn.ReflectionPad2d", [x4], lambda a: nn.ReflectionPad2d((2, 1, 1, 0))(a)),
        Case("torch:nn.ReplicationPad1d", [x3], lambda a: nn.ReplicationPad1d((3, 1))(a)),
        Case(
            "torch:Categorical(logits).log_prob+entropy",
            [A],
            lambda a: (
                gn.distributions.Categorical(logits=a).log_prob(gn.tensor([1, 0, 3]))
                + gn.distributions.Categorical(logits=a).entropy()
            ),
        ),
        Case(
            "torch:Normal.log_prob+entropy",
            [A, np.abs(B) + 0.5],
            lambda m, s: (
                gn.distributions.Normal(m, s).log_prob(gn.tensor(B))
                + gn.distributions.Normal(m, s).entropy()
            ),
        ),
        Case("torch:minimum(broadcast)", [A, B[:1]], lambda a, b: gn.minimum(a, b)),
        Case(
            "torch:F.layer_norm(2 axes, weight, bias)",
            [x3[:, :2, :3], r.normal(size=(2, 3)), r.normal(size=(2, 3))],
            lambda a, w, b: NF.layer_norm(a, (2, 3), w, b),
        ),
        Case(
            "torch:F.batch_norm(training, weight, bias)",
            [x4, r.normal(size=3), r.normal(size=3)],
            lambda a, w, b: NF.batch_norm(a, None, None, w, b, training=True),
        ),
        Case("torch:F.pairwise_distance(p=3)", [A, B], lambda a, b: NF.pairwise_distance(a, b, 3)),
        Case(
            "torch:F.margin_ranking_loss",
            [A[:, 0], B[:, 0]],
            lambda a, b: NF.margin_ranking_loss(a, b, gn.tensor(signs), margin=0.1),
        ),
        Case(
            "torch:F.triplet_margin_loss(swap)",
            [A, B, 0.5 * A + 0.2 * B],
            lambda a, p, n: NF.triplet_margin_loss(a, p, n, 2.0, swap=True, reduction="none"),
        ),
        Case(
            "torch:F.cosine_embedding_loss",
            [A, B],
            lambda a, b: NF.cosine_embedding_loss(a, b, gn.tensor(signs), margin=-0.9),
        ),
        Case(
            "torch:F.embedding_bag(mean, max)",
            [r.normal(size=(6, 3))],
            lambda w: sum(
                NF.embedding_bag(gn.tensor([3, 1, 3, 0, 5]), w, gn.tensor([0, 2, 2]), mode=m)
                * gn.tensor(scale_e[0])
                for m in ("mean", "max")
            ),
        ),
        Case(
            "torch:F.conv2d(stride, groups, bias)",
            [r.normal(size=(1, 4, 5, 4)), r.normal(size=(2, 2, 3, 2)), r.normal(size=2)],
            lambda x, w, b: NF.conv2d(x, w, b, stride=(2, 1), padding=1, groups=2),
        ),
        Case(
            "torch:F.conv_transpose1d(stride, output_padding)",
            [r.normal(size=(1, 3, 4)), r.normal(size=(3, 2, 3))],
            lambda x, w: NF.conv_transpose1d(x, w, stride=2, padding=1, output_padding=1),
        ),
        Case(  # ids with repeats; the padding row's zero gradient is a rule, tested
            "torch:F.embedding(weight, padding_idx)",  # against torch, not a derivative
            [r.normal(size=(6, 3))],
            lambda w: (
                NF.embedding(gn.tensor([[3, 1, 3], [0, 5, 1]]), w, padding_idx=4)
                * gn.tensor(scale_e)
            ),
        ),
    ]
    return cases


def sequence_cases() -> list[Case]:
    """Embedding (ids fixed: the output is scaled by the checked input so the weight
    gradient depends on it), masks, TimeDistributed, and their PyTorch spellings."""
    r, L, f64 = _rng(12), gn.layers, {"dtype": "float64"}
    ids = np.array([[3, 1, 3, 0], [0, 5, 2, 2]])  # repeats: the segment sum adds them
    mask = ids != 0
    emb = L.Embedding(6, 3, embeddings_initializer="random_normal", **f64)
    emb_l2 = L.Embedding(6, 3, embeddings_regularizer="l2", mask_zero=True, **f64)
    nn_emb = gn.nn.Embedding(6, 3, padding_idx=4, dtype="float64")  # (4 never looked up:
    # its zero gradient is PyTorch's rule, not a derivative; test_sequence_layers checks it)
    pooled = L.GlobalAveragePooling1D(**f64)
    Xe = r.normal(size=(2, 4, 3))
    pattern = np.ones((2, 4, 3))
    pattern[0, 1], pattern[1, 3] = 0.0, 0.0  # whole steps at the mask value, whatever x is
    td_dense = L.TimeDistributed(L.Dense(2, **f64, bias_initializer="random_normal"), **f64)
    td_conv = L.TimeDistributed(L.Conv2D(2, 2, **f64), **f64)
    masking = L.Masking(**f64)
    bn = L.BatchNormalization(**f64)

    def masked_mean(x: Any) -> Any:
        y = emb_l2(ids)
        return pooled(y * x, mask=y._keras_mask)

    def regularized(x: Any) -> Any:
        y = emb_l2(ids) * x
        return y.sum() + sum(emb_l2.losses, y.sum() * 0)

    return [
        Case("layer:Embedding", [Xe], lambda x: emb(ids) * x, layer=emb),
        Case("layer:Embedding(l2, mask_zero)", [Xe], regularized, layer=emb_l2),
        Case("layer:GlobalAveragePooling1D(mask)", [Xe], masked_mean, layer=emb_l2),
        Case("layer:GlobalAveragePooling1D(mask given)", [Xe], lambda x: pooled(x, mask=mask)),
        Case("layer:Masking", [Xe], lambda x: masking(x * gn.tensor(pattern, dtype="float64"))),
        _layer_case("TimeDistributed(Dense)", td_dense, [r.normal(size=(2, 3, 4))]),
        _layer_case("TimeDistributed(Conv2D)", td_conv, [r.normal(size=(1, 2, 3, 3, 1))]),
        Case(
            "layer:BatchNormalization(mask)",
            [Xe * 2 + 1],
            lambda x: bn(x, training=True, mask=mask),
            layer=bn,
        ),
        Case("torch:nn.Embedding(padding_idx)", [Xe], lambda x: nn_emb(ids) * x, layer=nn_emb),
        Case(
            "torch:pad_sequence",
            [r.normal(size=(3, 2)), r.normal(size=(1, 2))],
            lambda a, b: gn.nn.utils.rnn.pad_sequence([a, b], padding_value=0.5),
        ),
    ]


def _blocked(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` with attention in blocks of 2 query rows (the long-sequence path)."""

    def run(*xs: Any) -> Any:
        ops = gn.backend.get_ops("cpu")
        saved = ops.attention_whole, ops.attention_chunk
        ops.attention_whole, ops.attention_chunk = 0, 2
        try:
            return fn(*xs)
        finally:
            ops.attention_whole, ops.attention_chunk = saved

    return run


def attention_cases() -> list[Case]:
    """Attention: masks, causal, cross-attention of other lengths, blocked rows, dropout."""
    r, L, NF = _rng(12), gn.layers, gn.nn.functional
    f64: dict[str, Any] = {"dtype": "float64", "bias_initializer": "random_normal"}
    q, v, k = r.normal(size=(2, 3, 4)), r.normal(size=(2, 5, 3)), r.normal(size=(2, 5, 2))
    x = r.normal(size=(2, 4, 4))
    amask = r.random((2, 3, 5)) > 0.3
    vmask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    cases = []
    mha = L.MultiHeadAttention(2, 2, **f64)
    cases.append(Case("layer:MultiHeadAttention(self)", [x], lambda a: mha(a, a), layer=mha))
    cross = L.MultiHeadAttention(2, 3, value_dim=2, output_shape=3, **f64)
    cases.append(_layer_case("MultiHeadAttention(cross, key, value_dim, output_shape)", cross,
                             [q, v, k]))  # fmt: skip
    causal = L.MultiHeadAttention(1, 3, **f64)
    cases.append(Case("layer:MultiHeadAttention(causal)", [x],
                      lambda a: causal(a, a, use_causal_mask=True), layer=causal))  # fmt: skip
    masked = L.MultiHeadAttention(2, 2, use_bias=False, dtype="float64")
    cases.append(Case("layer:MultiHeadAttention(attention_mask, value_mask)", [q, v],
                      lambda a, b: masked(a, b, attention_mask=amask, value_mask=vmask),
                      layer=masked))  # fmt: skip
    blocked = L.MultiHeadAttention(2, 2, **f64)
    cases.append(Case("layer:MultiHeadAttention(blocked rows, causal)", [x],
                      _blocked(lambda a: blocked(a, a, use_causal_mask=True)),
                      layer=blocked))  # fmt: skip
    drop = L.MultiHeadAttention(2, 2, dropout=0.3, **f64)
    cases.append(Case("layer:MultiHeadAttention(dropout, train)", [x],
                      lambda a: drop(a, a, training=True), layer=drop, reseed=True))  # fmt: skip
    pos = L.PositionEmbedding(6, dtype="float64")
    cases.append(Case("layer:PositionEmbedding", [x], lambda a: a * pos(a, start_index=1),
                      layer=pos))  # fmt: skip
    cases.append(_layer_case("SinePositionEncoding", L.SinePositionEncoding(dtype="float64"), [x]))
    Q, K, V = r.normal(size=(2, 2, 3, 4)), r.normal(size=(2, 2, 5, 4)), r.normal(size=(2, 2, 5, 3))
    bias = r.normal(size=(3, 5))
    cases += [
        Case("torch:sdpa", [Q, K, V], lambda a, b, c: NF.scaled_dot_product_attention(a, b, c)),
        Case("torch:sdpa(causal, blocked)", [Q, K, V], _blocked(
            lambda a, b, c: NF.scaled_dot_product_attention(a, b, c, is_causal=True))),
        Case("torch:sdpa(float mask, scale)", [Q, K, V],
             lambda a, b, c: NF.scaled_dot_product_attention(a, b, c, attn_mask=bias, scale=0.4)),
    ]  # fmt: skip
    nn = gn.nn
    tmha = nn.MultiheadAttention(4, 2, batch_first=True, dtype="float64")
    kpm = np.array([[0, 0, 0, 1], [0, 0, 0, 0]], bool)
    cases.append(Case("torch:nn.MultiheadAttention(key_padding_mask)", [x],
                      lambda a: tmha(a, a, a, key_padding_mask=kpm)[0], layer=tmha))  # fmt: skip
    enc = nn.TransformerEncoderLayer(4, 2, 6, 0.0, "gelu", norm_first=True, batch_first=True,
                                     dtype="float64")  # fmt: skip
    cases.append(Case("torch:nn.TransformerEncoderLayer(gelu, norm_first)", [x],
                      lambda a: enc(a), layer=enc))  # fmt: skip
    dec = nn.TransformerDecoderLayer(4, 2, 5, 0.0, batch_first=True, dtype="float64")
    tri = np.triu(np.ones((4, 4), bool), 1)
    cases.append(Case("torch:nn.TransformerDecoderLayer(causal)", [x, r.normal(size=(2, 3, 4))],
                      lambda a, m: dec(a, m, tgt_mask=tri), layer=dec))  # fmt: skip
    return cases


def multi_output_cases() -> list[Case]:
    """A functional model whose loss reads a layer's state outputs: an encoder LSTM's
    states are the decoder's ``initial_state`` (Keras' seq2seq), the decoder's output
    and final states are all outputs; the encoder's own output is unused."""
    f64 = {"dtype": "float64", "bias_initializer": "random_normal"}
    enc_in, dec_in = gn.Input((None, 3), dtype="float64"), gn.Input((None, 2), dtype="float64")
    _, h, c = gn.layers.LSTM(3, return_state=True, **f64)(enc_in)
    y, h2 = gn.layers.GRU(3, return_sequences=True, return_state=True, **f64)(
        dec_in, initial_state=[gn.layers.Add(dtype="float64")([h, c])]
    )
    model = gn.Model([enc_in, dec_in], [y, h2, c])  # c: an output and read by the decoder

    def fn(a: Any, b: Any) -> Any:
        outs = model([a, b])
        return F.concat([o.reshape(o.shape[0], -1) for o in outs], axis=1)

    r = _rng(21)
    return [Case("model:state outputs into initial_state", [r.normal(size=(2, 4, 3)),
                                                            r.normal(size=(2, 3, 2))], fn,
                 layer=model)]  # fmt: skip


def all_cases() -> list[Case]:
    from gradcheck_recurrent import recurrent_cases
    from gradcheck_simple import simple_layer_cases

    cases = (
        activation_cases() + tensor_op_cases() + loss_cases() + layer_cases()
        + torch_surface_cases() + sequence_cases() + recurrent_cases() + attention_cases()
        + simple_layer_cases() + multi_output_cases()
    )  # fmt: skip
    names = [c.name for c in cases]
    assert len(set(names)) == len(names), "two gradient-check cases share a name"
    return cases
