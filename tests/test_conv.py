"""Conv1D / Conv2D: the reference conv2d against PyTorch (forward and backward) and
Keras 3 (forward, the same kernel), the simulated device, the column-buffer chunking,
a small CNN on the digits, bad input and saving."""

from __future__ import annotations

import os

import numpy as np
import pytest

import gpunet as gn
from gpunet.backend import _conv_ops, get_ops
from gpunet.errors import InputValidationError, InvalidParameterError

RNG = np.random.default_rng(0)
OPS = get_ops("cpu")

# (input NHWC, kernel (kh, kw), filters, strides, padding, dilation, groups)
GRID = [
    ((2, 7, 6, 3), (3, 3), 4, (1, 1), "valid", (1, 1), 1),
    ((2, 7, 6, 3), (3, 3), 4, (2, 2), "valid", (1, 1), 1),
    ((2, 7, 6, 3), (3, 3), 4, (1, 1), "same", (1, 1), 1),
    ((2, 7, 6, 3), (3, 3), 4, (2, 2), "same", (1, 1), 1),
    ((2, 8, 6, 3), (2, 2), 4, (2, 2), "same", (1, 1), 1),  # even kernel, even size
    ((2, 7, 5, 3), (4, 2), 4, (3, 2), "same", (1, 1), 1),  # odd pads: more bottom/right
    ((2, 7, 5, 3), (2, 4), 3, (1, 1), "same", (1, 1), 1),
    ((2, 9, 8, 2), (3, 2), 4, (1, 1), "valid", (2, 3), 1),
    ((2, 9, 8, 2), (3, 3), 4, (1, 1), "same", (2, 2), 1),
    ((2, 6, 6, 4), (3, 3), 6, (1, 1), "same", (1, 1), 2),
    ((1, 6, 5, 6), (2, 3), 3, (2, 1), "valid", (1, 1), 3),
    ((3, 5, 4, 3), (1, 1), 5, (1, 1), "valid", (1, 1), 1),  # the plain GEMM
    ((3, 5, 4, 3), (1, 1), 5, (2, 2), "valid", (1, 1), 1),
]


def _torch_pads(size, k, s, d, padding):
    (t, b), (le, r) = _conv_ops.conv_pads(size, k, s, d, padding)
    return (le, r, t, b)  # F.pad order: last axis first


@pytest.mark.parametrize("shape,k,F,s,padding,d,g", GRID)
def test_conv2d_forward_and_backward_match_torch(shape, k, F, s, padding, d, g):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    X = RNG.normal(size=shape)
    W = RNG.normal(size=(*k, shape[-1] // g, F))
    b = RNG.normal(size=F)
    Y, saved = OPS.conv2d(X, W, b, strides=s, padding=padding, dilation=d, groups=g)
    dY = RNG.normal(size=Y.shape)
    dX, dW, db = OPS.backprop_conv2d(dY, saved, need_dX=True)

    Xt = torch.tensor(X).permute(0, 3, 1, 2).requires_grad_()
    Wt = torch.tensor(W).permute(3, 2, 0, 1).requires_grad_()
    bt = torch.tensor(b).requires_grad_()
    Xpad = torch.nn.functional.pad(Xt, _torch_pads(shape[1:3], k, s, d, padding))
    Yt = torch.nn.functional.conv2d(Xpad, Wt, bt, stride=s, dilation=d, groups=g)
    Yt.backward(torch.tensor(dY).permute(0, 3, 1, 2))
    np.testing.assert_allclose(Y, Yt.detach().permute(0, 2, 3, 1).numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dX, Xt.grad.permute(0, 2, 3, 1).numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dW, Wt.grad.permute(2, 3, 1, 0).numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-10, atol=1e-12)
    if padding == "same":
        assert Y.shape[1:3] == tuple(-(-n // st) for n, st in zip(shape[1:3], s, strict=True))


@pytest.mark.parametrize(
    "k,s,padding,d,g", [(3, 1, "valid", 1, 1), (4, 2, "same", 1, 1), (3, 1, "same", 2, 2)]
)
def test_conv1d_layer_matches_torch(k, s, padding, d, g):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    X = RNG.normal(size=(2, 9, 4))
    layer = gn.layers.Conv1D(
        4, k, strides=s, padding=padding, dilation_rate=d, groups=g, dtype="float64",
        bias_initializer="random_normal",
    )  # fmt: skip
    x = gn.tensor(X, requires_grad=True, dtype="float64")
    y = layer(x)
    dY = RNG.normal(size=y.shape)
    (y * gn.tensor(dY, dtype="float64")).sum().backward()
    W, b = layer.kernel.numpy(), layer.bias.numpy()
    assert W.shape == (k, 4 // g, 4)

    Xt = torch.tensor(X).permute(0, 2, 1).requires_grad_()
    Wt = torch.tensor(W).permute(2, 1, 0).requires_grad_()
    bt = torch.tensor(b).requires_grad_()
    pads = _conv_ops.conv_pads((1, 9), (1, k), (1, s), (1, d), padding)[1]
    Yt = torch.nn.functional.conv1d(
        torch.nn.functional.pad(Xt, pads), Wt, bt, stride=s, dilation=d, groups=g
    )
    Yt.backward(torch.tensor(dY).permute(0, 2, 1))
    np.testing.assert_allclose(y.numpy(), Yt.detach().permute(0, 2, 1).numpy(), rtol=1e-10)
    np.testing.assert_allclose(x.grad.numpy(), Xt.grad.permute(0, 2, 1).numpy(), rtol=1e-10)
    np.testing.assert_allclose(
        layer.kernel.grad.numpy(), Wt.grad.permute(2, 1, 0).numpy(), rtol=1e-10
    )
    np.testing.assert_allclose(layer.bias.grad.numpy(), bt.grad.numpy(), rtol=1e-10)


@pytest.mark.parametrize(
    "kw",
    [
        {"kernel_size": 3, "padding": "same"},
        {"kernel_size": (2, 3), "padding": "same", "strides": 2},
        {"kernel_size": 3, "padding": "valid", "strides": (2, 1)},
        {"kernel_size": 2, "padding": "valid", "dilation_rate": 2, "activation": "relu"},
        {"kernel_size": 3, "padding": "same", "groups": 2},
        {"kernel_size": 3, "padding": "same", "strides": 2, "data_format": "channels_first"},
    ],
)
def test_conv2d_forward_matches_keras(kw):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    first = kw.get("data_format") == "channels_first"
    X = RNG.normal(size=(2, 4, 7, 6) if first else (2, 7, 6, 4)).astype("float32")
    ours = gn.layers.Conv2D(4, bias_initializer="random_normal", **kw)
    Y = ours(X).numpy()
    theirs = keras.layers.Conv2D(4, **kw)
    theirs.build(X.shape)
    theirs.set_weights(ours.get_weights())
    expected = theirs(torch.tensor(X)).detach().numpy()
    assert Y.shape == expected.shape == ours.compute_output_shape(X.shape)
    np.testing.assert_allclose(Y, expected, rtol=1e-5, atol=1e-5)
    if not first:  # Keras' Conv1D too, as one row of a Conv2D
        k1 = kw["kernel_size"] if isinstance(kw["kernel_size"], int) else kw["kernel_size"][1]
        kw1 = {**kw, "kernel_size": k1, "strides": int(np.max(kw.get("strides", 1)))}
        c1, X1 = gn.layers.Conv1D(4, **kw1), X[:, 0]
        got = c1(X1).numpy()
        t1 = keras.layers.Conv1D(4, **kw1)
        t1.build(X1.shape)
        t1.set_weights(c1.get_weights())
        np.testing.assert_allclose(got, t1(torch.tensor(X1)).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_float32_on_the_simulated_device_equals_cpu():
    sim = get_ops("sim")
    X = RNG.normal(size=(2, 7, 6, 4)).astype("float32")
    W = RNG.normal(size=(3, 2, 2, 6)).astype("float32")
    b = RNG.normal(size=6).astype("float32")
    geo = {"strides": (2, 1), "padding": "same", "dilation": (1, 1), "groups": 2}
    Y, saved = OPS.conv2d(X, W, b, **geo)
    Ys, saved_s = sim.conv2d(sim.asarray(X), sim.asarray(W), sim.asarray(b), **geo)
    np.testing.assert_allclose(sim.to_numpy(Ys), Y, rtol=1e-5, atol=1e-5)
    dY = RNG.normal(size=Y.shape).astype("float32")
    ours = OPS.backprop_conv2d(dY, saved, need_dX=True)
    theirs = sim.backprop_conv2d(sim.asarray(dY), saved_s, need_dX=True)
    for a, c in zip(theirs, ours, strict=True):
        np.testing.assert_allclose(sim.to_numpy(a), c, rtol=1e-5, atol=1e-5)


def test_a_cnn_trains_on_the_simulated_device():
    gn.utils.set_random_seed(0)
    model = gn.Sequential(
        [gn.layers.Conv2D(2, 3, padding="same", input_shape=(5, 5, 1)), gn.layers.Flatten(),
         gn.layers.Dense(1)], device="sim",
    )  # fmt: skip
    model.compile("sgd", "mse")
    X = RNG.normal(size=(8, 5, 5, 1)).astype("float32")
    model.fit(X, X.sum(axis=(1, 2)), epochs=1, batch_size=4, verbose=0)
    assert model._step_plan is not None


def test_chunking_the_columns_gives_the_same_result(monkeypatch):
    X = RNG.normal(size=(7, 6, 5, 3))
    W = RNG.normal(size=(3, 3, 3, 4))
    geo = {"strides": (1, 2), "padding": "same", "dilation": (1, 1), "groups": 1}
    Y, saved = OPS.conv2d(X, W, None, **geo)
    full = OPS.backprop_conv2d(Y, saved, need_dX=True)
    assert len(OPS._chunks(X, 9, 6, 3)) == 1
    monkeypatch.setattr(_conv_ops, "MAX_COL_BYTES", 2 * 6 * 3 * 9 * 3 * 8)  # 2 samples
    assert len(OPS._chunks(X, 9, 6, 3)) == 4
    Yc, saved = OPS.conv2d(X, W, None, **geo)
    np.testing.assert_allclose(Yc, Y, rtol=1e-12)
    for a, c in zip(OPS.backprop_conv2d(Y, saved, need_dX=True), full, strict=True):
        if c is not None:
            np.testing.assert_allclose(a, c, rtol=1e-12)


def _digits_cnn(fast: bool) -> tuple[gn.Sequential, dict]:
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_digits()
    X, y = (d.images / 16.0).astype("float32")[..., None][:640], d.target[:640]
    gn.utils.set_random_seed(0)
    model = gn.Sequential([
        gn.layers.Conv2D(8, 3, activation="relu", input_shape=(8, 8, 1)),
        gn.layers.Flatten(), gn.layers.Dense(10, activation="softmax"),
    ])  # fmt: skip
    model.use_fastpath = fast
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(X, y, epochs=4, batch_size=32, verbose=0).history
    return model, history


def test_a_small_cnn_fits_digits_and_the_fast_step_is_bit_identical():
    fast, h_fast = _digits_cnn(True)
    graph, h_graph = _digits_cnn(False)
    assert fast._step_plan is not None and graph._step_plan is None
    assert h_fast["accuracy"][-1] > 0.8 and h_fast["loss"][-1] < h_fast["loss"][0]
    assert h_fast == h_graph
    for a, b in zip(fast.get_weights(), graph.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_save_and_load_round_trip(tmp_path):
    model = gn.Sequential([
        gn.layers.Conv2D(3, (2, 3), strides=(1, 2), padding="same", groups=1,
                         activation="tanh", input_shape=(6, 10, 2)),
        gn.layers.Conv2D(4, 3, dilation_rate=2, data_format="channels_last", use_bias=False),
        gn.layers.Flatten(), gn.layers.Dense(2),
    ])  # fmt: skip
    conv = model.layers[0]
    cfg = conv.get_config()
    assert set(cfg) == set(gn.layers.Conv2D.CONFIG) | {"name", "dtype", "trainable", "input_shape"}
    assert (
        cfg["kernel_size"] == [2, 3] and cfg["strides"] == [1, 2] and conv.name.startswith("conv2d")
    )
    X = RNG.normal(size=(3, 6, 10, 2)).astype("float32")
    model.save(tmp_path / "m.gpunet")
    again = gn.models.load_model(tmp_path / "m.gpunet")
    np.testing.assert_array_equal(again.predict(X, verbose=0), model.predict(X, verbose=0))
    assert again.layers[0].kernel_size == (2, 3) and again.layers[1].dilation_rate == (2, 2)


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"filters": 0, "kernel_size": 3}, "filters"),
        ({"filters": 4, "kernel_size": (3, 3, 3)}, "kernel_size"),
        ({"filters": 4, "kernel_size": 3, "strides": 2, "dilation_rate": 2}, "dilation_rate"),
        ({"filters": 3, "kernel_size": 3, "groups": 2}, "groups"),
        ({"filters": 4, "kernel_size": 3, "padding": "causal"}, "padding"),
        ({"filters": 4, "kernel_size": 3, "data_format": "nhwc"}, "data_format"),
    ],
)
def test_bad_arguments_raise(kw, match):
    with pytest.raises(InvalidParameterError, match=match):
        gn.layers.Conv2D(**kw)


def test_bad_inputs_name_the_layer_and_the_shapes():
    layer = gn.layers.Conv2D(4, 3, name="c")
    with pytest.raises(InputValidationError, match=r"'c'.*rank 4.*\(2, 5, 5\)"):
        layer(np.ones((2, 5, 5), "float32"))
    layer(np.ones((2, 5, 5, 3), "float32"))
    with pytest.raises(InputValidationError, match=r"'c'.*3 input channels, got 2"):
        layer(np.ones((2, 5, 5, 2), "float32"))
    with pytest.raises(InputValidationError, match=r"'c'.*larger than the input"):
        layer(np.ones((2, 2, 5, 3), "float32"))
    with pytest.raises(InvalidParameterError, match="groups"):
        gn.layers.Conv2D(4, 3, groups=2)(np.ones((1, 5, 5, 3), "float32"))
    with pytest.raises(InputValidationError, match=r"rank 3 \(batch, channels, length\)"):
        gn.layers.Conv1D(2, 3, data_format="channels_first")(np.ones((2, 5), "float32"))


@pytest.mark.parametrize(
    "cls,shape,kw,out",
    [
        ("Conv2D", (None, 7, 6, 3), {"kernel_size": 3, "strides": 2}, (None, 3, 2, 5)),
        ("Conv2D", (None, 7, 6, 3), {"kernel_size": 3, "strides": 2, "padding": "same"},
         (None, 4, 3, 5)),
        ("Conv2D", (None, 3, 7, 6), {"kernel_size": 2, "data_format": "channels_first",
                                     "dilation_rate": 3}, (None, 5, 4, 3)),
        ("Conv2D", (4, None, 6, 3), {"kernel_size": 3, "padding": "same"}, (4, None, 6, 5)),
        ("Conv1D", (None, 9, 2), {"kernel_size": 4, "strides": 3}, (None, 2, 5)),
        ("Conv1D", (None, 2, 9), {"kernel_size": 4, "padding": "same", "strides": 2,
                                  "data_format": "channels_first"}, (None, 5, 5)),
    ],
)  # fmt: skip
def test_compute_output_shape(cls, shape, kw, out):
    layer = getattr(gn.layers, cls)(5, **kw)
    assert layer.compute_output_shape(shape) == out
    if None not in shape[1:]:
        assert layer(np.ones((2, *shape[1:]), "float32")).shape == (2, *out[1:])


def test_a_custom_activation_runs_as_a_tensor_function():
    X = RNG.normal(size=(2, 5, 5, 3)).astype("float32")
    custom = gn.layers.Conv2D(4, 3, activation=lambda t: t * 2.0)
    Y = custom(X).numpy()
    assert not custom.runs_on_arrays
    plain = gn.layers.Conv2D(4, 3, input_shape=X.shape[1:])
    plain.set_weights(custom.get_weights())
    np.testing.assert_allclose(Y, 2.0 * plain(X).numpy(), rtol=1e-6)
    with pytest.raises(InvalidParameterError, match="custom activation"):
        custom.get_config()


def test_conv1d_save_and_load_round_trip(tmp_path):
    model = gn.Sequential([
        gn.layers.Conv1D(3, 4, strides=2, padding="same", data_format="channels_first",
                         input_shape=(2, 9)),
        gn.layers.Flatten(), gn.layers.Dense(1),
    ])  # fmt: skip
    X = RNG.normal(size=(3, 2, 9)).astype("float32")
    model.save(tmp_path / "m1.gpunet")
    again = gn.models.load_model(tmp_path / "m1.gpunet")
    np.testing.assert_array_equal(again.predict(X, verbose=0), model.predict(X, verbose=0))
    assert again.layers[0].strides == (2,) and again.layers[0].data_format == "channels_first"
