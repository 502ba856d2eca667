"""Dynamic loss scaling on the device: unscale + finiteness check over a flat gradient
buffer, and the scale update, both in place, so a training step reads nothing back.

State: ``scale`` (0-d float32), ``counter`` (0-d int32: clean steps since the scale last
changed), ``found`` (0-d int32: a non-finite gradient was seen since the last update),
``ok`` (0-d bool: the last step's gradients were finite; the optimizer kernels' guard).
The arithmetic is PyTorch's (``_amp_foreach_non_finite_check_and_unscale_``,
``_amp_update_scale_``), which Keras' ``LossScaleOptimizer`` shares with growth 2,
backoff 0.5: ``inv = float32(1 / float64(scale))``; the scale grows only to a finite value.
The fused form is ``kernels/amp.cu``.

Low-precision GEMMs. Inside a layer under a mixed policy (``mixed_precision.layer_pass``
sets :func:`gemm_dtype` for the thread), every GEMM of the layer, forward and backward,
goes through :meth:`AmpOps.matmul`. On a backend with ``lowp_gemm`` it runs in the
compute dtype: float32 operands rounded to it, the product accumulated in float32, the
output rounded to it once (what cuBLAS' ``cublasGemmEx`` with half inputs and outputs
and ``CUBLAS_COMPUTE_32F`` computes, which is how CuPy calls it for float16) and given
back widened to float32 for the elementwise work around it. The CPU has no half BLAS:
``NumpyOps`` leaves ``lowp_gemm`` off and computes in float32.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from gpunet.backend import _kernels

Array = Any


class _Gemm(threading.local):
    dtype: str | None = None  # the low-precision dtype of this thread's GEMMs


_GEMM = _Gemm()


@contextlib.contextmanager
def gemm_dtype(compute: str | None) -> Iterator[None]:
    """GEMMs of this thread run in ``compute`` ("float16", "bfloat16"; None: as given)
    on backends with ``lowp_gemm``, inside the block."""
    was, _GEMM.dtype = _GEMM.dtype, compute
    try:
        yield
    finally:
        _GEMM.dtype = was


class AmpOps:
    """Reference implementation, over ``xp``."""

    xp: Any
    name: str
    lowp_gemm = False  # GEMMs under gemm_dtype run in low precision (devices; not the CPU)

    def matmul(self, A: Array, B: Array) -> Array:
        """``A @ B`` (``xp.matmul``); in the thread's :func:`gemm_dtype` where this
        backend runs low-precision GEMMs."""
        if self.lowp_gemm and _GEMM.dtype is not None:
            return self.lowp_matmul(A, B, _GEMM.dtype)
        return self.xp.matmul(A, B)

    def lowp_matmul(self, A: Array, B: Array, compute: str) -> Array:
        """``A @ B`` as a ``compute`` GEMM with float32 accumulation computes it, as
        float32: operands and output rounded to ``compute`` (the reference, in float32
        arithmetic; the simulated device runs it)."""
        from gpunet.mixed_precision import rounded

        return rounded(self, self.xp.matmul(rounded(self, A, compute), rounded(self, B, compute)),
                       compute)  # fmt: skip

    def dtype(self, name: Any) -> Any:
        raise NotImplementedError  # pragma: no cover - Ops defines it

    def assign(self, dst: Array, src: Any) -> None:
        raise NotImplementedError  # pragma: no cover - Ops defines it

    def unscale_check(self, G: Array, scale: Array, found: Array) -> None:
        """``G *= 1/scale`` in place; ``found = 1`` if any element of ``G`` was not finite."""
        xp, f32 = self.xp, self.dtype("float32")
        wide = _float64_or_32(self)
        inv = xp.astype(1.0 / xp.astype(scale, wide), f32)
        bad = xp.logical_not(xp.all(xp.isfinite(G)))
        self.assign(found, xp.where(bad, xp.ones_like(found), found))
        if G.dtype == f32 or G.dtype == wide:
            self.assign(G, G * xp.astype(inv, G.dtype))
        else:  # half storage, float math
            self.assign(G, xp.astype(xp.astype(G, f32) * inv, G.dtype))

    def update_scale(self, scale: Array, counter: Array, found: Array, ok: Array | None, *,
                     growth: float, backoff: float, interval: int) -> None:  # fmt: skip
        """Halve (``backoff``) after a non-finite gradient, else grow (``growth``) after
        ``interval`` clean steps; resets ``found``, writes ``ok``, all in place."""
        xp = self.xp
        wide = _float64_or_32(self)
        bad = found != 0
        clean = counter + 1
        grow = xp.logical_and(xp.logical_not(bad), clean == interval)
        grown = xp.astype(xp.astype(scale, wide) * growth, scale.dtype)
        shrunk = xp.astype(xp.astype(scale, wide) * backoff, scale.dtype)
        take = xp.logical_and(grow, xp.isfinite(grown))
        new_scale = xp.where(bad, shrunk, xp.where(take, grown, scale))
        self.assign(counter, xp.where(xp.logical_or(bad, grow), xp.zeros_like(counter), clean))
        self.assign(scale, new_scale)
        if ok is not None:
            self.assign(ok, xp.logical_not(bad))
        self.assign(found, xp.zeros_like(found))


class FusedAmpOps(AmpOps):
    """The same through ``kernels/amp.cu`` (``CupyOps``; the tests run it on the host)."""

    def unscale_check(self, G: Array, scale: Array, found: Array) -> None:
        if _kernels.fast_dtype(G) is None or not _state_ok(scale, "float32", found, "int32"):
            return super().unscale_check(G, scale, found)
        unscale(G, scale, found)

    def update_scale(self, scale: Array, counter: Array, found: Array, ok: Array | None, *,
                     growth: float, backoff: float, interval: int) -> None:  # fmt: skip
        if not _state_ok(scale, "float32", counter, "int32", found, "int32") or (
            ok is not None and ok.dtype.name != "bool"
        ):
            return super().update_scale(scale, counter, found, ok, growth=growth,
                                        backoff=backoff, interval=interval)  # fmt: skip
        update_scale(scale, counter, found, ok, growth, backoff, interval)


def _float64_or_32(ops: Any) -> Any:
    """float64 where the device has it (the simulated one has not), else float32."""
    return ops.dtype("float32" if ops.name == "array_api_strict" else "float64")


def _state_ok(*pairs: Any) -> bool:
    arrays, names = pairs[::2], pairs[1::2]
    return all(
        getattr(a, "dtype", None) is not None and a.dtype.name == n and a.shape == ()
        for a, n in zip(arrays, names, strict=True)
    )


def unscale(G: Array, scale: Array, found: Array) -> None:
    """Launch ``gpunet_unscale`` over the flat buffer ``G`` (in place)."""
    dtype = G.dtype.name
    _kernels._check("G", G, dtype)
    _kernels._launch("amp.cu", f"gpunet_unscale<{_kernels.CTYPE[dtype]}>", G.size,
                     _kernels.BLOCK, (G, _kernels._i64(G.size), scale, found))  # fmt: skip


def update_scale(scale: Array, counter: Array, found: Array, ok: Array | None,
                 growth: float, backoff: float, interval: int) -> None:  # fmt: skip
    """Launch the one-thread ``gpunet_update_scale``."""
    _kernels.runner().launch("amp.cu", "gpunet_update_scale<float>", 1, 32,
                             (scale, counter, found, _kernels._NULL if ok is None else ok,
                              _kernels._f64(growth), _kernels._f64(backoff),
                              _kernels.numpy.int32(interval)))  # fmt: skip
