"""``kernels/*.cu`` built for the host by g++, driven by gpunet's own launchers,
against the NumPy reference ``Ops`` (the definition of "correct").

Sizes 0, 1, odd and larger than the (lowered) grid; edge values: +-inf, NaN,
+-1e4 logits, the ReLU kink, labels 0 and C-1 and outside [0, C). float16 runs
too: half storage, float math, compared with a float64 reference.
"""

from __future__ import annotations

import numpy as np
import pytest
from hostbuild import record_error

from gpunet.backend import _kernels
from gpunet.backend.ops import Ops

REF = Ops()
DTYPES = ["float16", "float32", "float64"]
TOL = {"float16": (2e-3, 2e-3), "float32": (2e-5, 2e-6), "float64": (1e-12, 1e-13),
       "bfloat16": (1.6e-2, 1.6e-2)}  # fmt: skip
try:  # NumPy's bfloat16 comes from ml_dtypes (optional): bfloat16 storage, float math
    import ml_dtypes  # noqa: F401

    DTYPES.append("bfloat16")
except ImportError:  # pragma: no cover - shown by test_bfloat16_kernels_run_on_the_host
    pass
EDGE = [0.0, -0.0, 1e-8, -1e-8, 0.5, -1.0, 3.0, -20.0, 20.0, 1e4, -1e4, np.inf, -np.inf, np.nan]
ACTS = [  # (reference name, kwargs, kernel functor)
    ("linear", {}, "Linear"), ("relu", {}, "Relu"), ("leaky_relu", {"alpha": 0.3}, "LeakyRelu"),
    ("sigmoid", {}, "Sigmoid"), ("tanh", {}, "Tanh"), ("gelu", {}, "Gelu"),
    ("gelu", {"approximate": True}, "GeluTanh"), ("swish", {}, "Swish"),
]  # fmt: skip
SIZES = [(0, 3), (1, 1), (7, 3), (8193, 4)]  # the last: 32772 elements, > 3 * 256 threads


def reference_dtype(dtype: str) -> str:
    return "float64"  # the reference in float64 is the yardstick for every dtype


def check(what: str, got: np.ndarray, expected: np.ndarray, dtype: str) -> None:
    assert got.dtype == np.dtype(dtype) and got.shape == expected.shape, what
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(got.astype("float64"), expected, rtol=rtol, atol=atol, err_msg=what)
    record_error(what, dtype, got, expected)


def data(shape, dtype, rng, edge=True):
    X = rng.standard_normal(shape) * 3
    if edge and X.size:
        flat = X.reshape(-1)
        flat[: min(len(EDGE), flat.size)] = EDGE[: flat.size]
    return X.astype(dtype)


@pytest.mark.parametrize("shape", SIZES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS, ids=lambda a: a[2])
def test_bias_activation_forward_matches_reference(host, act, dtype, shape):
    name, kw, functor = act
    rng = np.random.default_rng(0)
    Z, b = data(shape, dtype, rng), data(shape[1:], dtype, rng, edge=False)
    rd = reference_dtype(dtype)
    Zb = Z.astype(rd) + b.astype(rd)
    keep = functor in _kernels.NEEDS_X
    alpha = kw.get("alpha", 0.0)
    Y, Zs = _kernels.bias_act(Z.copy(), b, functor, alpha, keep_z=keep)
    with np.errstate(all="ignore"):
        check(f"bias_act {functor}", Y, REF.activation(name, Zb, **kw), dtype)
    if keep:
        check("bias_act Z + b", Zs, Zb, dtype)
    else:
        assert Zs is None
    Y2 = _kernels.activation(Z, functor, alpha)  # no bias, out of place
    with np.errstate(all="ignore"):
        check(f"activation {functor}", Y2, REF.activation(name, Z.astype(rd), **kw), dtype)


@pytest.mark.parametrize("shape", SIZES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS[1:], ids=lambda a: a[2])
def test_activation_backward_matches_reference(host, act, dtype, shape):
    name, kw, functor = act
    rng = np.random.default_rng(1)
    X, dY = data(shape, dtype, rng), data(shape, dtype, rng, edge=False)
    rd = reference_dtype(dtype)
    with np.errstate(all="ignore"):
        Y = REF.activation(name, X.astype(rd), **kw).astype(dtype)  # the saved output
        expected = REF.backprop_activation(name, dY.astype(rd), X.astype(rd), Y.astype(rd), **kw)
    dX = _kernels.backprop_act(dY, X, Y, functor, kw.get("alpha", 0.0))
    check(f"backprop_act {functor}", dX, expected, dtype)


def test_relu_kink_has_zero_gradient_and_nan_propagates(host):
    X = np.array([0.0, -0.0, 1e-30, -1e-30, np.nan, 2.0], dtype="float32")
    Y = _kernels.activation(X, "Relu", 0.0)
    assert Y.tolist()[:4] == [0.0, 0.0, 1e-30 if Y.dtype == np.float64 else Y[2], 0.0]
    assert np.isnan(Y[4]) and Y[5] == 2.0
    dX = _kernels.backprop_act(np.ones_like(X), X, Y, "Relu", 0.0)
    assert dX.tolist() == [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]


def softmax_case(B, C, dtype, rng):
    Z = data((B, C), dtype, rng, edge=False)
    labels = rng.integers(0, C, B)
    if B >= 6:
        Z[0] = np.where(np.arange(C) % 2, 1e4, -1e4)  # +-1e4 logits
        Z[1] = 1e4  # a flat row at 1e4
        Z[2, :] = -1e4
        labels[:4] = [0, C - 1, C - 1, 0]  # labels at both ends
    return Z, labels


@pytest.mark.parametrize("B,C", [(0, 5), (1, 1), (7, 3), (1029, 10)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_cross_entropy_matches_reference(host, B, C, dtype, smoothing, weighted):
    rng = np.random.default_rng(2)
    Z, labels = softmax_case(B, C, dtype, rng)
    rd = reference_dtype(dtype)
    scale = (rng.random(B) / max(B, 1)).astype(dtype) if weighted else 1.0 / max(B, 1)
    ref_scale = scale.astype(rd) if weighted else scale
    T = np.eye(C, dtype=dtype)[labels]
    L0, dZ0 = REF.softmax_cross_entropy(Z.astype(rd), T.astype(rd), scale=ref_scale,
                                        label_smoothing=smoothing)  # fmt: skip
    for lab_dtype in ("int32", "int64"):
        L, dZ = _kernels.sparse_softmax_xent(Z, labels.astype(lab_dtype), scale, smoothing)
        check(f"sparse_softmax_xent loss ({lab_dtype})", L, L0, dtype)
        check(f"sparse_softmax_xent dZ ({lab_dtype})", dZ, dZ0, dtype)
    L, dZ = _kernels.softmax_xent(Z, T, scale, smoothing)
    check("softmax_xent loss", L, L0, dtype)
    check("softmax_xent dZ", dZ, dZ0, dtype)
    if B > 3:
        assert np.all(np.isfinite(L)) and np.all(np.isfinite(dZ))  # stable at +-1e4


def test_softmax_cross_entropy_soft_targets_and_odd_rows(host):
    rng = np.random.default_rng(3)
    Z = rng.standard_normal((9, 4)) * 5
    Z[0, 1], Z[1, :] = -np.inf, np.nan
    T = rng.random((9, 4))
    T /= T.sum(1, keepdims=True)
    T[2] = 0.0  # an all-zero target row
    with np.errstate(all="ignore"):
        L0, dZ0 = REF.softmax_cross_entropy(Z, T, scale=0.5, label_smoothing=0.2)
    L, dZ = _kernels.softmax_xent(Z, T, 0.5, 0.2)
    check("softmax_xent soft targets loss", L, L0, "float64")
    check("softmax_xent soft targets dZ", dZ, dZ0, "float64")


def test_labels_outside_the_classes_read_nothing_and_match_the_onehot_reference(host):
    Z = np.random.default_rng(4).standard_normal((4, 3))
    labels = np.array([3, -1, 2, 100], dtype="int64")
    L0, dZ0 = REF.sparse_softmax_cross_entropy(Z, labels, scale=1.0, label_smoothing=0.1)
    L, dZ = _kernels.sparse_softmax_xent(Z, labels, 1.0, 0.1)
    check("sparse_softmax_xent bad labels loss", L, L0, "float64")
    check("sparse_softmax_xent bad labels dZ", dZ, dZ0, "float64")


@pytest.mark.parametrize("B,K", [(0, 1), (1, 1), (7, 3), (1029, 1)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_sigmoid_binary_cross_entropy_matches_reference(host, B, K, dtype, smoothing, weighted):
    rng = np.random.default_rng(5)
    Z = data((B, K), dtype, rng)
    T = rng.choice([0.0, 1.0, 0.3], size=(B, K)).astype(dtype)
    rd = reference_dtype(dtype)
    scale = (rng.random(B) / max(B, 1)).astype(dtype) if weighted else 1.0 / max(B, 1)
    with np.errstate(all="ignore"):
        L0, dZ0 = REF.sigmoid_cross_entropy(
            Z.astype(rd),
            T.astype(rd),
            scale=scale.astype(rd) if weighted else scale,
            label_smoothing=smoothing,
        )
    L, dZ = _kernels.sigmoid_bce(Z, T, scale, smoothing)
    check("sigmoid_bce loss", L, L0, dtype)
    check("sigmoid_bce dZ", dZ, dZ0, dtype)


@pytest.mark.parametrize("n", [0, 1, 7, 128 * 128 * 2 + 3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("decay", [0.0, 0.01])
def test_adam_updates_in_place_as_the_reference(host, n, dtype, decay):
    rng = np.random.default_rng(6)
    P, G, M = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    V = (rng.random(n) * 0.1).astype(dtype)
    rd = reference_dtype(dtype)
    kw = {"lr_t": 1e-3 * 0.3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7, "decay": decay}
    expected = REF.adam(P.astype(rd), G.astype(rd), M.astype(rd), V.astype(rd), **kw)
    _kernels.adam(P, G, M, V, **kw)
    for what, got, want in zip(("P", "M", "V"), (P, M, V), expected, strict=True):
        check(f"adam {what}", got, want, dtype)


@pytest.mark.parametrize("n", [0, 1, 7, 128 * 128 * 2 + 3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
@pytest.mark.parametrize("form", [{}, {"lr_in_buffer": False, "dampening": 0.0}])
def test_sgd_updates_in_place_as_the_reference(host, n, dtype, momentum, nesterov, form):
    # form: Keras' buffer (lr inside) or PyTorch's (raw gradients, lr at the step)
    rng = np.random.default_rng(7)
    P, G, Vel = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    rd = reference_dtype(dtype)
    kw = {"lr": 0.05, "momentum": momentum, "nesterov": nesterov, "decay": 0.001, **form}
    vel_ref = Vel.astype(rd) if momentum else None
    P0, V0 = REF.sgd(P.astype(rd), G.astype(rd), vel_ref, **kw)
    _kernels.sgd(P, G, Vel if momentum else None, **kw)
    check("sgd P", P, P0, dtype)
    if momentum:
        check("sgd velocity", Vel, V0, dtype)


def test_large_launches_use_the_capped_grid_and_stride(host):
    X = np.linspace(-5, 5, 128 * 128 * 2 + 3, dtype="float32")
    Y = _kernels.activation(X, "Sigmoid", 0.0)
    name, grid, block = host.launches[-1]
    assert name == "gpunet_bias_act<float, gpunet::Sigmoid>"
    assert (grid, block) == (3, _kernels.BLOCK) and grid * block < X.size  # ~43 turns each
    check("activation Sigmoid (strided)", Y, REF.sigmoid(X.astype("float64")), "float32")


def test_empty_inputs_launch_nothing(host):
    before = len(host.launches)
    Y = _kernels.activation(np.zeros((0, 4), "float32"), "Relu", 0.0)
    L, dZ = _kernels.sparse_softmax_xent(np.zeros((0, 4)), np.zeros(0, "int64"), 1.0, 0.0)
    assert Y.shape == (0, 4) and L.shape == (0,) and dZ.shape == (0, 4)
    assert len(host.launches) == before
