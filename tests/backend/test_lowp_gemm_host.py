"""``FusedOps`` (CupyOps' overrides) over the host build: a mixed policy's GEMM reaches
``xp.matmul`` as float16 operands, which is what CuPy turns into ``cublasGemmEx`` with
half inputs and output and ``CUBLAS_COMPUTE_32F`` on a GPU. NumPy's float16 matmul, the
host stand-in, also sums in float32."""

from __future__ import annotations

import numpy as np

from gpunet.backend import _amp_ops
from gpunet.backend.cupy_ops import FusedOps


def _half(X):
    return X.astype(np.float16).astype(np.float32)


def test_the_fused_backend_hands_cupy_float16_operands(host):
    seen = []

    class Spy:
        def __getattr__(self, name):
            return getattr(np, name)

        def matmul(self, A, B):
            seen.append((A.dtype.name, B.dtype.name))
            return np.matmul(A, B)

    ops = FusedOps()
    ops.xp = Spy()
    rng = np.random.default_rng(2)
    X, W = rng.standard_normal((8, 16)).astype("float32"), rng.standard_normal((16, 4))
    W = W.astype("float32")
    with _amp_ops.gemm_dtype("float16"):
        Y = ops.gemm(X, W)
    assert seen == [("float16", "float16")] and Y.dtype == np.float32
    np.testing.assert_allclose(Y, _half(_half(X) @ _half(W)), rtol=1e-3)
    seen.clear()
    Y32 = ops.gemm(X, W)  # outside a mixed layer: float32 as given
    assert seen == [("float32", "float32")]
    np.testing.assert_allclose(Y32, X @ W, rtol=1e-6)


def test_bfloat16_arrays_get_a_clear_error_on_cuda():
    import pytest

    from gpunet.backend.cupy_ops import refuse_bfloat16
    from gpunet.errors import DeviceError

    ml = pytest.importorskip("ml_dtypes")
    for X, dtype in ((np.zeros(2, ml.bfloat16), None), ([1.0], "bfloat16")):
        with pytest.raises(DeviceError, match=r"asarray: bfloat16 .*'mixed_bfloat16' policy"):
            refuse_bfloat16("asarray", X, dtype)
    refuse_bfloat16("asarray", np.zeros(2, "float16"), "float32")  # the rest passes
