"""2-d products over the host pool (``NumpyOps._pool_gemm``): each thread's rows a
one-thread call of NumPy's own cblas, against NumPy's product, in every transpose
form, into ``out``, from threads at once; what it does not take goes to NumPy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from at_once import run_threads

from gpunet.backend import _blas_threads, _host
from gpunet.backend.numpy_ops import NumpyOps


@pytest.fixture
def ops(monkeypatch) -> Any:
    ops = NumpyOps()
    if ops.host is None or not ops.host.blas or not _blas_threads.available():
        pytest.skip(f"no host kernels over NumPy's BLAS: {_host.status()[1]}")
    if ops.host.threads < 2:
        pytest.skip("one CPU: the pool does not split")
    monkeypatch.setattr(NumpyOps, "pool_gemm_from", 1)
    return ops


def _operands(t1: bool, t2: bool, dtype: str, M: int = 301, K: int = 67, N: int = 45) -> Any:
    rng = np.random.default_rng(M + K + N)
    A = rng.standard_normal((K, M) if t1 else (M, K)).astype(dtype)
    B = rng.standard_normal((N, K) if t2 else (K, N)).astype(dtype)
    return A, B, (A.T if t1 else A) @ (B.T if t2 else B)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("t1,t2", [(False, False), (False, True), (True, False), (True, True)])
def test_products_over_the_pool_match_numpy(ops, t1, t2, dtype):
    A, B, want = _operands(t1, t2, dtype)
    calls = []
    table = ops.host.pool_gemm
    ops.host.pool_gemm = {k: (lambda *a, f=f: calls.append(a) or f(*a)) for k, f in table.items()}
    try:
        got = ops.gemm(A, B, trans1=t1, trans2=t2)
        out = np.full(want.shape, 7.0, dtype)
        assert ops.gemm(A, B, trans1=t1, trans2=t2, out=out) is out
    finally:
        ops.host.pool_gemm = table
    assert len(calls) == 2, "the pool ran both products"
    tol = 2e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    np.testing.assert_array_equal(out, got)


def test_what_the_pool_does_not_take_goes_to_numpy(ops):
    A, B, _ = _operands(False, False, "float32")
    cases = [
        (A[:, ::2], B[::2]),  # strided: not C-contiguous
        (A.astype("float64"), B),  # mixed dtypes
        (A[None], B[None]),  # batched
    ]
    for a, b in cases:
        np.testing.assert_allclose(ops.gemm(a, b), np.matmul(a, b), rtol=1e-5, atol=1e-5)
    out = np.empty((3, 3), "float32")  # an out of the wrong shape: the reference raises
    with pytest.raises(ValueError):
        ops.gemm(A, B, out=out)


def test_products_from_threads_at_once_equal_lone_ones(ops):
    inputs = [_operands(i % 2 == 1, i % 3 == 0, "float32", M=400 + i) for i in range(4)]
    alone = [ops.gemm(A, B, trans1=i % 2 == 1, trans2=i % 3 == 0)
             for i, (A, B, _) in enumerate(inputs)]  # fmt: skip

    def work(i: int) -> Any:
        A, B, _ = inputs[i]
        return [ops.gemm(A, B, trans1=i % 2 == 1, trans2=i % 3 == 0) for _ in range(20)][-1]

    results = run_threads([(work, (i,)) for i in range(4)])
    for i, want in enumerate(alone):
        np.testing.assert_array_equal(results[i], want)


def test_the_pool_spin_is_set_from_the_environment(monkeypatch):
    monkeypatch.setenv("GPUNET_POOL_SPIN_US", "25")
    assert _host.spin_us() == 25
    monkeypatch.setenv("GPUNET_POOL_SPIN_US", "junk")
    assert _host.spin_us() == _host.SPIN_US
