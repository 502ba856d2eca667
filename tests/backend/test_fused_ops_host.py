"""``CupyOps``' fused overrides (``FusedOps``) running over the host build of the
kernels: the Python side of the GPU backend (fast-path checks, fallbacks, in-place
optimizer updates) and a whole ``fit``, without a GPU.

``FusedOps`` knows no CuPy: its arrays come from the active runner's ``xp``, here
NumPy, so these tests exercise the exact code ``device="cuda"`` runs, minus CuPy.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn
from gpunet.backend.cupy_ops import FusedOps
from gpunet.backend.ops import Ops

REF = Ops()


def launched(host, prefix: str) -> int:
    return sum(name.startswith(prefix) for name, _, _ in host.launches)


@pytest.fixture
def fused(host) -> FusedOps:
    return FusedOps()


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "gelu", "swish", "linear"])
def test_dense_and_its_backprop_match_the_reference(host, fused, activation):
    rng = np.random.default_rng(0)
    X, W, b = rng.standard_normal((9, 5)), rng.standard_normal((5, 4)), rng.standard_normal(4)
    dY = rng.standard_normal((9, 4))
    Y0, Z0 = REF.dense(X, W, b, activation)
    Y, Z = fused.dense(X, W, b, activation)
    np.testing.assert_allclose(Y, Y0, rtol=1e-12, atol=1e-13)
    assert (Z is None) == (Z0 is None)
    grads0 = REF.backprop_dense(dY, X, W, Z0, Y0, activation)
    grads = fused.backprop_dense(dY, X, W, Z, Y, activation)
    for g, g0 in zip(grads, grads0, strict=True):
        np.testing.assert_allclose(g, g0, rtol=1e-12, atol=1e-13)
    assert launched(host, "gpunet_bias_act") == 1
    assert launched(host, "gpunet_backprop_act") == (activation != "linear")


def test_leaky_relu_alpha_and_approximate_gelu_reach_the_kernel(host, fused):
    X = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(fused.leaky_relu(X, alpha=0.1), REF.leaky_relu(X, alpha=0.1))
    np.testing.assert_allclose(
        fused.gelu(X, approximate=True), REF.gelu(X, approximate=True), rtol=1e-12, atol=1e-14
    )
    names = [n for n, _, _ in host.launches]
    assert names == [
        "gpunet_bias_act<double, gpunet::LeakyRelu>",
        "gpunet_bias_act<double, gpunet::GeluTanh>",
    ]


def test_off_the_fast_path_falls_back_to_the_reference(host, fused):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((6, 4))
    strided = X.T  # not C-contiguous
    np.testing.assert_array_equal(fused.relu(strided), REF.relu(strided))
    W32 = rng.standard_normal((4, 3)).astype("float32")  # float64 X: mixed dtypes
    np.testing.assert_array_equal(
        fused.dense(X, W32, None, "relu")[0], REF.dense(X, W32, None, "relu")[0]
    )
    ints = np.arange(-3, 3)
    np.testing.assert_array_equal(fused.relu(ints), REF.relu(ints))
    np.testing.assert_allclose(fused.elu(X), REF.elu(X))  # no kernel for elu
    # only the activation inside the generic dense (its GEMM output is float64) ran fused
    assert [n for n, _, _ in host.launches] == ["gpunet_bias_act<double, gpunet::Relu>"]


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_fused_losses_match_the_reference(host, fused, dtype):
    rng = np.random.default_rng(2)
    Z = (rng.standard_normal((11, 4)) * 4).astype(dtype)
    labels = rng.integers(0, 4, 11)
    T = np.eye(4, dtype=dtype)[labels]
    w = (rng.random(11) / 11).astype(dtype)
    tol = {"float16": 2e-3, "float32": 1e-5, "float64": 1e-12}[dtype]
    for scale in (1 / 11, w):
        cases = [
            ("sparse_softmax_cross_entropy", labels, labels),
            ("softmax_cross_entropy", T, T),
            ("sigmoid_cross_entropy", T, T),
        ]
        for op, target, ref_target in cases:
            L, dZ = getattr(fused, op)(Z, target, scale=scale, label_smoothing=0.1)
            ref_scale = scale if isinstance(scale, float) else scale.astype("float64")
            L0, dZ0 = getattr(REF, op)(
                Z.astype("float64"),
                ref_target if op.startswith("sparse") else ref_target.astype("float64"),
                scale=ref_scale,
                label_smoothing=0.1,
            )
            assert L.dtype == Z.dtype and dZ.dtype == Z.dtype
            np.testing.assert_allclose(L, L0, rtol=tol, atol=tol, err_msg=op)
            np.testing.assert_allclose(dZ, dZ0, rtol=tol, atol=tol, err_msg=op)
    assert launched(host, "gpunet_sparse_softmax_xent") == 2
    assert launched(host, "gpunet_sigmoid_bce") == 2


def test_optimizer_ops_update_in_place_and_return_the_same_arrays(host, fused):
    rng = np.random.default_rng(3)
    P, G, M = (rng.standard_normal(50).astype("float32") for _ in range(3))
    V = rng.random(50).astype("float32")
    expected = REF.adam(P, G, M, V, lr_t=0.01, beta1=0.9, beta2=0.99, eps=1e-7, decay=0.001)
    out = fused.adam(P, G, M, V, lr_t=0.01, beta1=0.9, beta2=0.99, eps=1e-7, decay=0.001)
    assert all(a is b for a, b in zip(out, (P, M, V), strict=True))
    for got, want in zip(out, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    Vel = rng.standard_normal(50).astype("float32")
    P0, V0 = REF.sgd(P, G, Vel, lr=0.1, momentum=0.9, nesterov=True)
    P1, V1 = fused.sgd(P, G, Vel, lr=0.1, momentum=0.9, nesterov=True)
    assert P1 is P and V1 is Vel
    np.testing.assert_allclose(P1, P0, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(V1, V0, rtol=1e-6, atol=1e-7)


def _fit(device, X, y, **compile_kw):
    gn.utils.set_random_seed(7)
    model = gn.Sequential(
        [
            gn.layers.Dense(16, activation="relu", input_shape=(X.shape[1],)),
            gn.layers.Dropout(0.2),
            gn.layers.Dense(8, activation="gelu"),
            gn.layers.Dense(3, activation="softmax"),
        ],
        device=device,
    )
    model.compile(**compile_kw)
    history = model.fit(X, y, epochs=3, batch_size=16, verbose=0)
    return history.history, model.get_weights(), model.predict(X[:5])


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_fit_through_the_fused_kernels_matches_the_reference_backend(host, optimizer):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((90, 6)).astype("float32")
    y = (X[:, 0] > 0).astype("int64") + (X[:, 1] > 0.5)
    opt = gn.optimizers.SGD(0.05, momentum=0.9) if optimizer == "sgd" else "adam"
    kw = {"optimizer": opt, "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}
    h_ref, w_ref, p_ref = _fit(Ops(), X, y, **kw)
    kw["optimizer"] = gn.optimizers.SGD(0.05, momentum=0.9) if optimizer == "sgd" else "adam"
    h, w, p = _fit(FusedOps(), X, y, **kw)
    np.testing.assert_allclose(h["loss"], h_ref["loss"], rtol=1e-5)
    assert h["accuracy"] == h_ref["accuracy"]
    for a, b in zip(w, w_ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(p, p_ref, rtol=1e-4, atol=1e-6)
    # every part of the step ran fused: forward, backward, loss and update
    for kernel in ("gpunet_bias_act", "gpunet_backprop_act", "gpunet_sparse_softmax_xent"):
        assert launched(host, kernel) > 0, kernel
    assert launched(host, f"gpunet_{optimizer}<float>") == 3 * 6  # 3 epochs x 6 batches
