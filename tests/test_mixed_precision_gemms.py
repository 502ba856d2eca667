"""Under a mixed policy the GEMMs of dense, convolution, recurrent and attention layers,
forward and backward, run in the compute dtype on a device (CuPy: float16 matmuls, which
cuBLAS runs on tensor cores with float32 accumulation); the simulated device computes
what the GPU does (operands and output rounded to half, float32 accumulation); the CPU
keeps computing in float32."""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn
from gpunet import mixed_precision as mp
from gpunet.backend import _amp_ops
from gpunet.backend.ops import Ops
from gpunet.backend.strict_ops import StrictOps


@pytest.fixture(autouse=True)
def _reset_policy():
    yield
    mp.set_global_policy(None)


@pytest.fixture
def gemms(monkeypatch):
    """Every ``matmul`` a backend runs, as (the thread's GEMM dtype, the low-precision
    dtype it ran in or None)."""
    seen: list[tuple[str | None, str | None]] = []
    plain, low = Ops.matmul, Ops.lowp_matmul

    def matmul(self, A, B):
        seen.append((_amp_ops._GEMM.dtype, None))
        return plain(self, A, B)

    def lowp_matmul(self, A, B, compute):
        seen[-1] = (seen[-1][0], compute)
        return low(self, A, B, compute)

    monkeypatch.setattr(StrictOps, "matmul", matmul)
    monkeypatch.setattr(StrictOps, "lowp_matmul", lowp_matmul)
    return seen


def _models(device):
    conv = gn.Sequential([
        gn.layers.Conv2D(4, 3, activation="relu", input_shape=(6, 6, 1)),
        gn.layers.Flatten(),
        gn.layers.Dense(3, activation="softmax"),
    ], device=device)  # fmt: skip
    rnn = gn.Sequential([
        gn.layers.LSTM(5, input_shape=(4, 3)),
        gn.layers.Dense(3, activation="softmax"),
    ], device=device)  # fmt: skip
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 16)
    return [(conv, rng.standard_normal((16, 6, 6, 1)).astype("float32"), y),
            (rnn, rng.standard_normal((16, 4, 3)).astype("float32"), y)]  # fmt: skip


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_a_mixed_fit_on_the_simulated_device_runs_every_gemm_in_the_compute_dtype(gemms, policy):
    mp.set_global_policy(policy)
    compute = mp.DTypePolicy(policy).compute_dtype
    for model, X, y in _models("sim"):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        gemms.clear()
        model.fit(X, y, epochs=1, batch_size=8, verbose=0)
        # forward and backward GEMMs of every layer: conv (im2col GEMM, dW, dX), dense,
        # LSTM (input GEMM, one per step, their backward)
        assert len(gemms) >= 6, gemms
        assert set(gemms) == {(compute, compute)}, set(gemms)


def test_float32_on_the_simulated_device_and_mixed_on_the_cpu_stay_float32(gemms, monkeypatch):
    for model, X, y in _models("sim"):  # the float32 policy
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    assert gemms and set(gemms) == {(None, None)}
    low = []
    monkeypatch.setattr(Ops, "lowp_matmul", lambda self, *a: low.append(a))
    mp.set_global_policy("mixed_float16")
    for model, X, y in _models("cpu"):  # NumPy has no half BLAS: float32 math there
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    assert low == []


def _half(X):
    with np.errstate(over="ignore"):
        return X.astype(np.float16).astype(np.float32)


@pytest.mark.parametrize("compute", ["float16", "bfloat16"])
def test_the_simulated_gemm_is_cublas_half_gemm(compute):
    # cublasGemmEx with half operands and output, CUBLAS_COMPUTE_32F: the products and
    # their sum in float32, one rounding at the output
    ml = pytest.importorskip("ml_dtypes") if compute == "bfloat16" else None
    rnd = (lambda X: X.astype(ml.bfloat16).astype(np.float32)) if ml else _half
    rng = np.random.default_rng(1)
    A = (rng.standard_normal((9, 40)) * 3).astype("float32")
    B = rng.standard_normal((40, 7)).astype("float32")
    A[0, 0] = 1e5  # float16 overflows to inf, bfloat16 keeps it
    ops = StrictOps()
    got = ops.to_numpy(ops.lowp_matmul(ops.asarray(A), ops.asarray(B), compute))
    want = rnd(rnd(A) @ rnd(B))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    assert np.isinf(got[0]).all() == (compute == "float16")


def test_attention_gemms_forward_and_backward_run_low(gemms):
    ops = StrictOps()
    rng = np.random.default_rng(3)
    Q, K, V = (ops.asarray(rng.standard_normal((2, 5, 4)).astype("float32")) for _ in range(3))
    with _amp_ops.gemm_dtype("float16"):
        _, _, cache = ops.attention(Q, K, V, scale=0.5)
        ops.backprop_attention(ops.asarray(np.ones((2, 5, 4), "float32")), cache)
    # Q K^T and P V forward; dP, dV, dQ, dK backward
    assert gemms == [("float16", "float16")] * 6
