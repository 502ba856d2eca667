"""On a real GPU: every op of ``CupyOps`` against the NumPy reference, the kernels
at sizes of several grids, and whole fits against the CPU from the same seed.

They run wherever CuPy sees a GPU and show as SKIPPED elsewhere. TF32 must be off
(CuPy's default; ``CUPY_TF32=1`` rounds float32 GEMMs to 10-bit mantissas).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import gpunet as gn
from gpunet.backend import _compat, _kernels
from gpunet.backend._activation_ops import ACTIVATIONS
from gpunet.backend.ops import Ops
from gpunet.errors import OutOfMemoryError

HAS_GPU = _compat.gpu_count()[0] > 0
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not HAS_GPU, reason=f"needs CuPy + a CUDA GPU: {_compat.gpu_count()[1]}"),
    pytest.mark.skipif(os.environ.get("CUPY_TF32", "0") not in ("", "0"), reason="TF32 is on"),
]
REF = Ops()
TOL = {"float16": 3e-3, "float32": 2e-5, "float64": 1e-11}
BIG = 2 * _kernels.BLOCK * _kernels.MAX_BLOCKS + 3  # elements: > 2 full grids of threads
BIG_ROWS = 2 * _kernels.ROW_BLOCK * _kernels.MAX_BLOCKS + 7  # rows of the loss kernels


@pytest.fixture(scope="module")
def gpu():
    return gn.get_ops("cuda")


def close(gpu, got, expected, dtype, what=""):
    got = gpu.to_numpy(got)
    assert got.dtype == np.dtype(dtype), what
    tol = TOL[str(dtype)]
    np.testing.assert_allclose(got.astype("float64"), np.asarray(expected, "float64"),
                               rtol=tol, atol=tol, err_msg=what)  # fmt: skip


def act_kw(name):
    return {"leaky_relu": {"alpha": 0.3}, "elu": {"alpha": 1.5}}.get(name, {})


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_every_activation_and_its_backprop_matches_the_reference(gpu, name, dtype):
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((37, 11)) * 3).astype(dtype)
    dY = rng.standard_normal((37, 11)).astype(dtype)
    kw = act_kw(name)
    Y0 = REF.activation(name, X.astype("float64"), **kw)
    dX0 = REF.backprop_activation(name, dY.astype("float64"), X.astype("float64"), Y0, **kw)
    Y = gpu.activation(name, gpu.asarray(X), **kw)
    close(gpu, Y, Y0, dtype, name)
    dX = gpu.backprop_activation(name, gpu.asarray(dY), gpu.asarray(X), Y, **kw)
    close(gpu, dX, dX0, dtype, f"backprop_{name}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "activation", ["linear", "relu", "sigmoid", "tanh", "gelu", "swish", "elu"]
)
def test_dense_and_backprop_dense_match_the_reference(gpu, activation, dtype):
    rng = np.random.default_rng(1)
    shapes = ((64, 33), (33, 17), (17,), (64, 17))
    X, W, b, dY = (rng.standard_normal(s).astype(dtype) for s in shapes)
    Y0, Z0 = REF.dense(X, W, b, activation)
    Y, Z = gpu.dense(gpu.asarray(X), gpu.asarray(W), gpu.asarray(b), activation)
    close(gpu, Y, Y0, dtype, "dense")
    grads0 = REF.backprop_dense(dY, X, W, Z0, Y0, activation)
    grads = gpu.backprop_dense(gpu.asarray(dY), gpu.asarray(X), gpu.asarray(W), Z, Y, activation)
    for g, g0 in zip(grads, grads0, strict=True):
        close(gpu, g, g0, dtype, "backprop_dense")


LOSSES = [
    ("softmax_cross_entropy", "onehot", {"label_smoothing": 0.1}),
    ("sparse_softmax_cross_entropy", "labels", {"label_smoothing": 0.1}),
    ("sigmoid_cross_entropy", "binary", {"label_smoothing": 0.1}),
    ("binary_cross_entropy", "binary", {"epsilon": 1e-7}),
    ("categorical_cross_entropy", "onehot", {"epsilon": 1e-7}),
    ("mean_squared_error", "values", {}),
    ("mean_absolute_error", "values", {}),
    ("huber", "values", {"delta": 1.0}),
    ("poisson", "positive", {"epsilon": 1e-7}),
]


def _targets(kind, B, C, rng, dtype):
    labels = rng.integers(0, C, B)
    return {
        "onehot": np.eye(C, dtype=dtype)[labels],
        "labels": labels,
        "binary": rng.integers(0, 2, (B, C)).astype(dtype),
        "values": rng.standard_normal((B, C)).astype(dtype),
        "positive": rng.random((B, C)).astype(dtype),
    }[kind]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", LOSSES, ids=lambda c: c[0])
def test_every_loss_matches_the_reference(gpu, loss, dtype):
    op, kind, kw = loss
    rng = np.random.default_rng(2)
    B, C = 29, 5
    P = (rng.standard_normal((B, C)) * 4).astype(dtype)
    if op in ("binary_cross_entropy", "categorical_cross_entropy", "poisson"):
        P = (1 / (1 + np.exp(-P))).astype(dtype)  # probabilities / positive rates
    T = _targets(kind, B, C, rng, dtype)
    w = (rng.random(B) / B).astype(dtype)
    for scale, gscale in ((1.0 / B, 1.0 / B), (w, gpu.asarray(w))):
        T64 = T if kind == "labels" else T.astype("float64")
        s64 = scale if isinstance(scale, float) else scale.astype("float64")
        L0, d0 = getattr(REF, op)(P.astype("float64"), T64, scale=s64, **kw)
        L, d = getattr(gpu, op)(gpu.asarray(P), gpu.asarray(T), scale=gscale, **kw)
        close(gpu, L, L0, dtype, op)
        close(gpu, d, d0, dtype, op)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_optimizer_updates_match_the_reference(gpu, dtype):
    rng = np.random.default_rng(3)
    P, G, M = (rng.standard_normal(1001).astype(dtype) for _ in range(3))
    V = rng.random(1001).astype(dtype)
    kw = {"lr_t": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7, "decay": 1e-3}
    d = [gpu.asarray(a.copy()) for a in (P, G, M, V)]  # updated in place: keep the inputs
    out = gpu.adam(*d, **kw)
    assert all(a is b for a, b in zip(out, (d[0], d[2], d[3]), strict=True))  # in place
    f64 = [a.astype("float64") for a in (P, G, M, V)]  # the reference in exact-ish math
    for got, want in zip(out, REF.adam(*f64, **kw), strict=True):
        close(gpu, got, want, dtype, "adam")
    for momentum, nesterov in ((0.0, False), (0.9, False), (0.9, True)):
        dP, dG, dV = (gpu.asarray(a.copy()) for a in (P, G, M))
        P1, V1 = gpu.sgd(dP, dG, dV, lr=0.01, momentum=momentum, nesterov=nesterov, decay=1e-4)
        P0, V0 = REF.sgd(*f64[:3], lr=0.01, momentum=momentum, nesterov=nesterov, decay=1e-4)
        close(gpu, P1, P0, dtype, "sgd")
        close(gpu, V1, V0, dtype, "sgd velocity")
    for op, args, kw2 in (
        ("rmsprop", (P, G, V, M, None), {"lr": 1e-3, "rho": 0.9, "eps": 1e-7, "momentum": 0.9}),
        ("adagrad", (P, G, V), {"lr": 1e-2, "eps": 1e-7}),
    ):
        if dtype == "float16":
            continue
        got = getattr(gpu, op)(*(None if a is None else gpu.asarray(a.copy()) for a in args), **kw2)
        for g, w in zip(got, getattr(REF, op)(*args, **kw2), strict=True):
            if w is not None:
                close(gpu, g, w, dtype, op)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_normalization_ops_match_the_reference(gpu, dtype):
    rng = np.random.default_rng(4)
    X, dY = (rng.standard_normal((31, 6)).astype(dtype) for _ in range(2))
    g, b = rng.random(6).astype(dtype) + 0.5, rng.standard_normal(6).astype(dtype)
    for fwd, bwd in (("batchnorm", "backprop_batchnorm"), ("layernorm", "backprop_layernorm")):
        out0 = getattr(REF, fwd)(X, g, b, epsilon=1e-3)
        out = getattr(gpu, fwd)(gpu.asarray(X), gpu.asarray(g), gpu.asarray(b), epsilon=1e-3)
        for o, o0 in zip(out, out0, strict=True):
            close(gpu, o, o0, dtype, fwd)
        back0 = getattr(REF, bwd)(dY, out0[1], out0[2], g)
        back = getattr(gpu, bwd)(gpu.asarray(dY), out[1], out[2], gpu.asarray(g))
        for o, o0 in zip(back, back0, strict=True):
            close(gpu, o, o0, dtype, bwd)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_kernels_match_the_reference_over_several_grids(gpu, dtype):
    rng = np.random.default_rng(5)
    X = (rng.standard_normal(BIG) * 4).astype(dtype)
    X[:6] = [0.0, -0.0, 1e4, -1e4, np.inf, -np.inf]
    for functor, name in (("Relu", "relu"), ("Sigmoid", "sigmoid"), ("Swish", "swish")):
        Y = _kernels.activation(gpu.asarray(X), functor, 0.0)
        close(gpu, Y, REF.activation(name, X.astype("float64")), dtype, functor)
    Z = (rng.standard_normal((BIG_ROWS, 3)) * 5).astype(dtype)
    Z[0], Z[1] = [1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]
    labels = rng.integers(0, 3, BIG_ROWS)
    labels[:2] = [0, 2]
    L, dZ = _kernels.sparse_softmax_xent(gpu.asarray(Z), gpu.asarray(labels), 1.0 / BIG_ROWS, 0.1)
    L0, dZ0 = REF.sparse_softmax_cross_entropy(
        Z.astype("float64"), labels, scale=1.0 / BIG_ROWS, label_smoothing=0.1
    )
    close(gpu, L, L0, dtype, "softmax xent loss")
    close(gpu, dZ, dZ0, dtype, "softmax xent dZ")
    G0 = np.clip(np.nan_to_num(X, posinf=0.0, neginf=0.0), -100, 100)  # g^2 fits in half
    ones, zeros = np.ones(BIG, dtype), np.zeros(BIG, dtype)
    P, G, M, V = (gpu.asarray(a) for a in (ones, G0, zeros, zeros.copy()))
    kw = {"lr_t": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7, "decay": 0.0}
    _kernels.adam(P, G, M, V, **kw)
    ref = REF.adam(np.ones(BIG), G0.astype("float64"), np.zeros(BIG), np.zeros(BIG), **kw)
    close(gpu, P, ref[0], dtype, "adam over several grids")


def _model(device, X):
    gn.utils.set_random_seed(11)
    model = gn.Sequential(
        [
            gn.layers.Dense(64, activation="relu", input_shape=(X.shape[1],)),
            gn.layers.Dropout(0.1),
            gn.layers.Dense(32, activation="tanh"),
            gn.layers.Dense(4, activation="softmax"),
        ],
        device=device,
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_same_seed_gives_the_same_initial_weights_on_cpu_and_gpu():
    X = np.zeros((2, 12), "float32")
    for a, b in zip(_model("cpu", X).get_weights(), _model("cuda", X).get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_fit_on_the_gpu_matches_the_cpu_from_the_same_seed():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((512, 12)).astype("float32")
    y = (X[:, 0] > 0).astype("int64") * 2 + (X[:, 1] > 0)
    runs = {}
    for device in ("cpu", "cuda"):
        model = _model(device, X)
        model.layers[1].rate = 0.0  # dropout masks come from different generators
        hist = model.fit(X, y, epochs=4, batch_size=64, verbose=0, validation_split=0.2)
        runs[device] = (hist.history, model.get_weights(), model.predict(X[:16]))
    (h0, w0, p0), (h1, w1, p1) = runs["cpu"], runs["cuda"]
    np.testing.assert_allclose(h1["loss"], h0["loss"], rtol=1e-4)
    np.testing.assert_allclose(h1["val_loss"], h0["val_loss"], rtol=1e-4)
    for a, b in zip(w1, w0, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    assert isinstance(p1, np.ndarray)
    np.testing.assert_allclose(p1, p0, rtol=1e-3, atol=1e-5)


def test_the_batch_loop_reads_nothing_from_the_gpu():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((256, 12)).astype("float32")
    y = rng.integers(0, 4, 256)
    per_epoch = []
    for batch_size in (128, 8):  # 2 and 32 batches
        model = _model("cuda", X)
        ops = model.ops
        before = ops.host_syncs
        model.fit(X, y, epochs=2, batch_size=batch_size, verbose=0)
        per_epoch.append((ops.host_syncs - before) / 2)
    assert per_epoch[0] == per_epoch[1]


def test_dropout_on_the_gpu_repeats_with_the_seed():
    gpu = gn.get_ops("cuda")
    masks = []
    for _ in range(2):
        gn.utils.set_random_seed(3)
        masks.append(gpu.to_numpy(gpu.dropout_mask((1000,), 0.3, "float32")))
    np.testing.assert_array_equal(masks[0], masks[1])
    assert 0.6 < np.mean(masks[0] > 0) < 0.8


def test_model_to_moves_parameters_gradients_and_optimizer_state():
    rng = np.random.default_rng(8)
    X, y = rng.standard_normal((64, 12)).astype("float32"), rng.integers(0, 4, 64)
    model = _model("cpu", X)
    model.fit(X, y, epochs=1, batch_size=16, verbose=0)
    state = model.optimizer.state_arrays()
    model.to("cuda")
    assert {p.device for p in model.weights} == {"cuda:0"}
    for k, v in model.optimizer.state_arrays().items():
        np.testing.assert_array_equal(v, state[k])
    model.fit(X, y, epochs=1, batch_size=16, verbose=0)
    model.to("cpu")
    assert isinstance(model.predict(X[:2]), np.ndarray)


def test_out_of_memory_is_a_clear_error_and_leaves_the_pool_empty():
    cupy = _compat.cupy_or_none()
    pool = cupy.get_default_memory_pool()
    free, _ = cupy.cuda.runtime.memGetInfo()
    units = 1 << 16
    rows = int(free // (units * 4)) + 1024  # one batch of activations exceeds the device
    gn.utils.set_random_seed(0)
    model = gn.Sequential([gn.layers.Dense(units, input_shape=(1,)), gn.layers.Dense(1)],
                          device="cuda")  # fmt: skip
    model.compile(optimizer="sgd", loss="mse")
    X = np.ones((rows, 1), "float32")
    with pytest.raises(OutOfMemoryError, match="smaller batch_size"):
        model.fit(X, X, batch_size=rows, epochs=1, verbose=0)
    assert pool.free_bytes() == 0  # cached blocks were given back
    params = sum(p.data.nbytes for p in model.weights)
    assert pool.used_bytes() <= 4 * params + (1 << 20)  # weights, grads, state: no leftovers


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("geom", [((2, 2), (2, 2), "valid"), ((3, 3), (2, 2), "same")], ids=str)
def test_pool_kernels_match_the_reference_over_several_grids(gpu, dtype, geom):
    pool, strides, padding = geom
    rng = np.random.default_rng(6)
    X = np.round(rng.standard_normal((64, 130, 130, 8)) * 2).astype(dtype)  # ties; > 2 grids
    X[0, :3, :3, 0], X[1, 5, :3, 1] = -np.inf, np.nan
    for kind in ("max", "avg"):
        fwd, back = getattr(gpu, f"{kind}_pool2d"), getattr(gpu, f"backprop_{kind}_pool2d")
        Y0, s0 = getattr(REF, f"{kind}_pool2d")(X.astype("float64"), pool=pool,
                                                strides=strides, padding=padding)  # fmt: skip
        Y, s = fwd(gpu.asarray(X), pool=pool, strides=strides, padding=padding)
        assert Y.size > 2 * _kernels.BLOCK * _kernels.MAX_BLOCKS
        close(gpu, Y, Y0, dtype, f"{kind} Y")  # NaN where the reference has NaN
        if kind == "max":
            np.testing.assert_array_equal(gpu.to_numpy(s[0]), s0[0])
        dY = rng.standard_normal(Y0.shape).astype(dtype)
        dX0 = getattr(REF, f"backprop_{kind}_pool2d")(dY.astype("float64"), s0)
        close(gpu, back(gpu.asarray(dY), s), dX0, dtype, f"{kind} dX")


# -- convolution: kernels/conv.cu + cuBLAS -----------------------------------------------------
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_conv2d_and_its_backprop_match_the_reference_over_several_grids(gpu, dtype):
    # LeNet's second layer at batch 128: 4.4M column entries, > 2 grids of threads
    rng = np.random.default_rng(11)
    X = rng.standard_normal((128, 13, 13, 32)).astype(dtype)
    W = (rng.standard_normal((3, 3, 32, 64)) / 17).astype(dtype)
    b, dY = rng.standard_normal(64).astype(dtype), rng.standard_normal((128, 11, 11, 64))
    dY = dY.astype(dtype)
    f64 = [a.astype("float64") for a in (X, W, b, dY)]
    for kw in ({"activation": "relu"}, {"padding": "same", "strides": (2, 2), "groups": 2}):
        Y0, s0 = REF.conv2d(*f64[:3], **kw)
        Y, s = gpu.conv2d(*(gpu.asarray(a) for a in (X, W, b)), **kw)
        close(gpu, Y, Y0, dtype, f"conv2d {kw}")
        dY0 = rng.standard_normal(Y0.shape)
        grads0 = REF.backprop_conv2d(dY0, s0)
        grads = gpu.backprop_conv2d(gpu.asarray(dY0.astype(dtype)), s)
        for what, g, g0 in zip(("dX", "dW", "db"), grads, grads0, strict=True):
            scale = max(1.0, float(np.abs(g0).max()))  # sums of 15k products in float16
            close(gpu, g / scale, g0 / scale, dtype, f"backprop_conv2d {what} {kw}")


def test_a_convnet_fits_on_the_gpu_as_on_the_cpu():
    L = gn.layers
    rng = np.random.default_rng(12)
    X = rng.standard_normal((256, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, 256)
    runs = {}
    for device in ("cpu", "cuda"):
        gn.utils.set_random_seed(5)
        model = gn.Sequential(
            [L.Conv2D(32, 3, activation="relu", input_shape=(28, 28, 1)), L.MaxPooling2D(2),
             L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2), L.Flatten(),
             L.Dense(128, activation="relu"), L.Dense(10)],
            device=device,
        )  # fmt: skip
        model.compile(optimizer="adam",
                      loss=gn.losses.SparseCategoricalCrossentropy(from_logits=True))  # fmt: skip
        hist = model.fit(X, y, epochs=2, batch_size=128, verbose=0, shuffle=False)
        runs[device] = (hist.history["loss"], model.get_weights())
    (l0, w0), (l1, w1) = runs["cpu"], runs["cuda"]
    np.testing.assert_allclose(l1, l0, rtol=1e-4)
    for a, b in zip(w1, w0, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
