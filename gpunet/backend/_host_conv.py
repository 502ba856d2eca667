"""The convolution and pooling ops of ``NumpyOps`` over the host build of
``kernels/`` (conv.cuh's gather im2col/col2im, pool.cuh's windows, the dense
bias+activation kernels on the GEMM output), and the checks every host fast path
shares: which arrays a kernel may take, and an activation's kernel code.
Anything outside the fast path goes to the reference (``ConvOps``, ``PoolOps``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpunet.backend import _conv_fast, _host
from gpunet.backend import _pool_kernels as _pk
from gpunet.backend._activation_ops import NEEDS_X
from gpunet.backend.ops import Ops

Array = Any
_SUFFIX = {np.dtype("float32"): "f32", np.dtype("float64"): "f64"}


def _ptr(a: Any) -> int | None:
    return None if a is None or not isinstance(a, np.ndarray) else a.ctypes.data


def _fast(*arrays: Any) -> str | None:
    """The kernel suffix when every array is a C-contiguous f32/f64 ndarray of one dtype."""
    first = arrays[0]
    suffix = _SUFFIX.get(getattr(first, "dtype", None))  # type: ignore[arg-type]
    if suffix is None:
        return None
    for a in arrays:
        if a is not None and (
            type(a) is not np.ndarray or a.dtype != first.dtype or not a.flags.c_contiguous
        ):
            return None
    return suffix


def _act_code(activation: str, kw: dict[str, Any]) -> tuple[int, float] | None:
    """The host kernel's activation code and slope, or None (no kernel for it)."""
    if activation == "gelu" and kw.get("approximate"):
        return 6, 0.0
    code = _host.ACT_CODES.get(activation)
    if code is None or (set(kw) - {"alpha", "approximate"}):
        return None
    return code, float(kw.get("alpha", 0.2))


class HostConvOps(Ops):
    """Mixin of ``NumpyOps``: convolution and pooling in the host kernels."""

    host: Any

    # -- pooling: the host kernels of kernels/pool.cuh (_pool_kernels.py) ----------
    def max_pool2d(
        self, X: Array, *, pool: tuple[int, int], strides: tuple[int, int], padding: str
    ) -> tuple[Array, Any]:
        sfx = _pk.host_suffix(self.host, X)
        if sfx is None:
            return super().max_pool2d(X, pool=pool, strides=strides, padding=padding)
        return _pk.host_max_pool2d(self.host, sfx, X, pool, strides, padding)

    def backprop_max_pool2d(self, dY: Array, saved: Any) -> Array:
        sfx = _pk.host_suffix(self.host, dY)
        if sfx is None or type(saved[0]) is not np.ndarray:
            return super().backprop_max_pool2d(dY, saved)
        return _pk.host_backprop_max_pool2d(self.host, sfx, dY, saved)

    def avg_pool2d(
        self, X: Array, *, pool: tuple[int, int], strides: tuple[int, int], padding: str
    ) -> tuple[Array, Any]:
        sfx = _pk.host_suffix(self.host, X)
        if sfx is None:
            return super().avg_pool2d(X, pool=pool, strides=strides, padding=padding)
        return _pk.host_avg_pool2d(self.host, sfx, X, pool, strides, padding)

    def backprop_avg_pool2d(self, dY: Array, saved: Any) -> Array:
        sfx = _pk.host_suffix(self.host, dY)
        if sfx is None:
            return super().backprop_avg_pool2d(dY, saved)
        return _pk.host_backprop_avg_pool2d(self.host, sfx, dY, saved)

    # -- convolution: _conv_fast over the host kernels -------------------------------
    def conv2d(self, X: Array, W: Array, b: Array | None, **kw: Any) -> tuple[Array, Any]:
        if self.host is None or _fast(W, b) is None or X.dtype != W.dtype:
            return super().conv2d(X, W, b, **kw)
        return _conv_fast.conv2d(self, np.ascontiguousarray(X), W, b, **kw)

    def backprop_conv2d(
        self, dY: Array, saved: Any, *, need_dX: bool = True, need_db: bool = True
    ) -> tuple[Array | None, Array, Array | None]:
        X, W = saved[0], saved[1]
        if self.host is None or _fast(X, W) is None or dY.dtype != W.dtype:
            return super().backprop_conv2d(dY, saved, need_dX=need_dX, need_db=need_db)
        return _conv_fast.backprop_conv2d(self, dY, saved, need_dX=need_dX, need_db=need_db)

    def _im2col(self, X: Array, k: tuple[int, int], geo: Any) -> Array:
        suffix = None if self.host is None else _fast(X)
        if suffix is None:
            return super()._im2col(X, k, geo)
        (sh, sw), ((t, _), (le, _)), (dh, dw), _, Ho, Wo = geo
        n, H, Wd, C = X.shape
        cols = np.empty((n, Ho, Wo, k[0] * k[1], C), X.dtype)
        self.host.im2col[suffix](
            cols.ctypes.data, X.ctypes.data, n, H, Wd, C, Ho, Wo, *k, sh, sw, t, le, dh, dw
        )
        return cols

    def _col2im(self, dcols: Array, shape: tuple[int, ...], k: tuple[int, int], geo: Any) -> Array:
        suffix = None if self.host is None else _fast(dcols)
        if suffix is None:
            return super()._col2im(dcols, shape, k, geo)
        (sh, sw), ((t, _), (le, _)), (dh, dw), _, Ho, Wo = geo
        n, H, Wd, C = shape
        dX = np.empty(shape, dcols.dtype)
        self.host.col2im[suffix](
            dX.ctypes.data, dcols.ctypes.data, n, H, Wd, C, Ho, Wo, *k, sh, sw, t, le, dh, dw
        )
        return dX

    def bias_activation(
        self, Z: Array, b: Array | None, activation: str = "linear", **kw: Any
    ) -> tuple[Array, Array | None]:
        """One threaded pass over the GEMM output ``Z`` (M, F): the dense kernel's."""
        act = _act_code(activation, kw)
        ok = act is not None and self.host is not None and Z.ndim == 2
        suffix = _fast(Z, b) if ok else None
        if suffix is None or (activation == "linear" and b is None):
            return super().bias_activation(Z, b, activation, **kw)
        Zk = np.empty_like(Z) if activation in NEEDS_X else None
        self.host.bias_act[suffix](Z.ctypes.data, _ptr(Zk), _ptr(b), *Z.shape, *act)  # type: ignore[misc]
        return Z, Zk

    def backprop_bias_activation(
        self, dY: Array, Zb: Array | None, Y: Array, activation: str = "linear", *,
        need_db: bool = True, **kw: Any,
    ) -> tuple[Array, Array | None]:  # fmt: skip
        """The activation's gradient and the bias sum in one threaded pass."""
        if activation == "linear" and dY.ndim == 2:
            if not need_db:
                return dY, None
            if _fast(dY) is None:  # rows summed in order: one vectorized pass
                return dY, np.add.reduce(dY, axis=0)
            return dY, np.matmul(np.ones(dY.shape[0], dY.dtype), dY)  # GEMV: 2-3x faster
        act = _act_code(activation, kw)
        ok = act is not None and self.host is not None and dY.ndim == 2
        suffix = _fast(dY, Zb, Y) if ok else None
        if suffix is None or (activation in NEEDS_X and Zb is None):
            return super().backprop_bias_activation(dY, Zb, Y, activation, need_db=need_db, **kw)
        dZ = np.empty_like(dY)  # dY may be shared with another branch of the graph
        db = np.empty(dY.shape[1], dY.dtype) if need_db else None
        args = (_ptr(Zb), Y.ctypes.data, _ptr(db), *dY.shape, *act)  # type: ignore[misc]
        self.host.act_bwd[suffix](dZ.ctypes.data, dY.ctypes.data, *args)
        return dZ, db
