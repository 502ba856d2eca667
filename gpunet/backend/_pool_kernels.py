"""The pooling kernels (``kernels/pool.cu`` on a device, ``kernels/host.cpp`` on the
CPU) behind the ``max_pool2d``/``avg_pool2d`` ops of ``FusedOps`` and ``NumpyOps``.

Both take the reference's ``saved`` tuples (``_pool_ops.PoolOps``): max pooling
saves the int32 index ``k = i * kw + j`` of each window's maximum within its
window, average pooling ``None`` for the divisors (the kernels count them), so a
forward and a backward from different paths still pair up. An input the kernels do
not take (dtype, a non-ndarray) gets the reference's answer.

Example:
    >>> from gpunet.backend import _pool_kernels
    >>> _pool_kernels.geometry((2, 5, 5, 3), (2, 2), (2, 2), "valid")
    (2, 2, (0, -1, 0, -1))
"""

from __future__ import annotations

from typing import Any

import numpy

from gpunet.backend import _kernels
from gpunet.backend._pool_ops import pool_geometry

Array = Any
_i64 = numpy.int64


def geometry(
    shape: Any, pool: Any, strides: Any, padding: Any
) -> tuple[int, int, tuple[int, int, int, int]]:
    """``(out_h, out_w, (top, bottom, left, right))`` of NHWC ``shape``; ``padding`` is
    Keras' "valid"/"same" or explicit ``(top, bottom, left, right)`` (PyTorch's
    symmetric ``padding=p`` is ``(p, p, p, p)``; rows past the last window stay unread)."""
    H, W = int(shape[1]), int(shape[2])
    if isinstance(padding, str):
        return pool_geometry(H, W, pool, strides, padding)
    top, bottom, left, right = (int(p) for p in padding)
    oh = (H + top + bottom - pool[0]) // strides[0] + 1
    ow = (W + left + right - pool[1]) // strides[1] + 1
    return oh, ow, (top, bottom, left, right)


def _sizes(shape: Any, oh: int, ow: int, pool: Any, strides: Any, pads: Any) -> tuple[int, ...]:
    """The kernels' 12 sizes: B, H, W, C, OH, OW, KH, KW, SH, SW, PT, PL."""
    B, H, W, C = (int(n) for n in shape)
    return (B, H, W, C, oh, ow, *pool, *strides, pads[0], pads[2])


def unpack(saved: Any, dY: Any) -> tuple[Any, tuple[int, ...], tuple[int, ...]]:
    """``(first item, input shape, kernel sizes)`` of a reference ``saved`` tuple."""
    first, padded, pads, pool, strides = saved
    B, Hp, Wp, C = padded
    shape = (B, Hp - pads[0] - pads[1], Wp - pads[2] - pads[3], C)
    if dY.ndim != 4 or (dY.shape[0], dY.shape[3]) != (B, C):  # the kernels trust the sizes
        raise ValueError(f"dY: expected (batch {B}, ..., channels {C}), got {tuple(dY.shape)}")
    return first, shape, _sizes(shape, int(dY.shape[1]), int(dY.shape[2]), pool, strides, pads)


def _saved(first: Any, shape: Any, pads: Any, pool: Any, strides: Any) -> tuple[Any, ...]:
    B, H, W, C = shape
    padded = (B, H + pads[0] + pads[1], W + pads[2] + pads[3], C)
    return first, padded, tuple(pads), tuple(pool), tuple(strides)


# -- CUDA launchers (through _kernels.runner(): the GPU, or the host build in the tests) -----
def _launch(name: str, dtype: str, n: int, args: tuple[Any, ...]) -> None:
    _kernels._launch("pool.cu", f"gpunet_{name}<{_kernels.CTYPE[dtype]}>", n, _kernels.BLOCK,
                     args)  # fmt: skip


def cuda_max_pool2d(X: Array, pool: Any, strides: Any, padding: Any) -> tuple[Array, Any]:
    """``(Y, saved)`` of NHWC max pooling, one launch; ``saved[0]`` the int32 argmax."""
    _kernels._check("X", X, X.dtype.name)
    oh, ow, pads = geometry(X.shape, pool, strides, padding)
    xp = _kernels.runner().xp
    Y = xp.empty((X.shape[0], oh, ow, X.shape[3]), dtype=X.dtype)
    A = xp.empty(Y.shape, dtype=numpy.int32)
    sizes = _sizes(X.shape, oh, ow, pool, strides, pads)
    _launch("max_pool2d", X.dtype.name, Y.size, (Y, A, X, *map(_i64, sizes)))
    return Y, _saved(A, X.shape, pads, pool, strides)


def cuda_backprop_max_pool2d(dY: Array, saved: Any) -> Array:
    A, shape, sizes = unpack(saved, dY)
    _kernels._check("dY", dY, dY.dtype.name)
    _kernels._check("argmax", A, "int32", tuple(dY.shape))
    dX = _kernels.runner().xp.empty(shape, dtype=dY.dtype)
    _launch("backprop_max_pool2d", dY.dtype.name, dX.size, (dX, dY, A, *map(_i64, sizes)))
    return dX


def cuda_avg_pool2d(
    X: Array, pool: Any, strides: Any, padding: Any, include_pad: bool = False
) -> tuple[Array, Any]:
    """``(Y, saved)`` of NHWC average pooling over the cells inside the input (Keras,
    PyTorch's ``count_include_pad=False``), or over the whole window (``include_pad``)."""
    _kernels._check("X", X, X.dtype.name)
    oh, ow, pads = geometry(X.shape, pool, strides, padding)
    Y = _kernels.runner().xp.empty((X.shape[0], oh, ow, X.shape[3]), dtype=X.dtype)
    sizes = _sizes(X.shape, oh, ow, pool, strides, pads)
    incl = numpy.int32(include_pad)
    _launch("avg_pool2d", X.dtype.name, Y.size, (Y, X, *map(_i64, sizes), incl))
    return Y, _saved(None, X.shape, pads, pool, strides)


def cuda_backprop_avg_pool2d(dY: Array, saved: Any, include_pad: bool = False) -> Array:
    _, shape, sizes = unpack(saved, dY)
    _kernels._check("dY", dY, dY.dtype.name)
    dX = _kernels.runner().xp.empty(shape, dtype=dY.dtype)
    _launch("backprop_avg_pool2d", dY.dtype.name, dX.size,
            (dX, dY, *map(_i64, sizes), numpy.int32(include_pad)))  # fmt: skip
    return dX


# -- the host build (NumpyOps) ------------------------------------------------------------
_SUFFIX = {numpy.dtype("float32"): "f32", numpy.dtype("float64"): "f64"}


def host_suffix(host: Any, X: Any) -> str | None:
    """``"f32"``/``"f64"`` when the host kernels take ``X`` (a 4-D float ndarray)."""
    if host is None or type(X) is not numpy.ndarray or X.ndim != 4:
        return None
    return _SUFFIX.get(X.dtype)


def host_max_pool2d(
    host: Any, sfx: str, X: Array, pool: Any, strides: Any, padding: Any
) -> tuple[Array, Any]:
    X = numpy.ascontiguousarray(X)
    oh, ow, pads = geometry(X.shape, pool, strides, padding)
    Y = numpy.empty((X.shape[0], oh, ow, X.shape[3]), dtype=X.dtype)
    A = numpy.empty(Y.shape, dtype=numpy.int32)
    sizes = _sizes(X.shape, oh, ow, pool, strides, pads)
    host.max_pool2d[sfx](Y.ctypes.data, A.ctypes.data, X.ctypes.data, *sizes)
    return Y, _saved(A, X.shape, pads, pool, strides)


def host_backprop_max_pool2d(host: Any, sfx: str, dY: Array, saved: Any) -> Array:
    A, shape, sizes = unpack(saved, dY)
    dY = numpy.ascontiguousarray(dY)
    A = numpy.ascontiguousarray(A, dtype=numpy.int32)
    dX = numpy.empty(shape, dtype=dY.dtype)
    host.backprop_max_pool2d[sfx](dX.ctypes.data, dY.ctypes.data, A.ctypes.data, *sizes)
    return dX


def host_avg_pool2d(
    host: Any, sfx: str, X: Array, pool: Any, strides: Any, padding: Any, include_pad: bool = False
) -> tuple[Array, Any]:
    X = numpy.ascontiguousarray(X)
    oh, ow, pads = geometry(X.shape, pool, strides, padding)
    Y = numpy.empty((X.shape[0], oh, ow, X.shape[3]), dtype=X.dtype)
    sizes = _sizes(X.shape, oh, ow, pool, strides, pads)
    host.avg_pool2d[sfx](Y.ctypes.data, X.ctypes.data, *sizes, int(include_pad))
    return Y, _saved(None, X.shape, pads, pool, strides)


def host_backprop_avg_pool2d(
    host: Any, sfx: str, dY: Array, saved: Any, include_pad: bool = False
) -> Array:
    _, shape, sizes = unpack(saved, dY)
    dY = numpy.ascontiguousarray(dY)
    dX = numpy.empty(shape, dtype=dY.dtype)
    host.backprop_avg_pool2d[sfx](dX.ctypes.data, dY.ctypes.data, *sizes, int(include_pad))
    return dX
