"""Pooling, padding and upsampling ops of the reference backend, channels-last
(``(batch, height, width, channels)``), written once against ``self.xp``.

A pool with stride equal to its size reads its windows by one reshape; any other
reads them as ``kh * kw`` strided slices. Max pooling keeps an int argmax over the
window axis, so the gradient of a window goes to its first maximum only (as in
PyTorch and Keras) even where several elements tie.
"""

from __future__ import annotations

import math
from typing import Any

Array = Any


def same_pads(size: int, k: int, s: int) -> tuple[int, int, int]:
    """``(out, before, after)`` of TensorFlow/Keras "same" padding along one axis."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2, total - total // 2


def pool_geometry(
    H: int, W: int, pool: tuple[int, int], strides: tuple[int, int], padding: str
) -> tuple[int, int, tuple[int, int, int, int]]:
    """``(out_h, out_w, (top, bottom, left, right))``; a negative bottom/right pad
    crops the rows and columns no window reads ("valid")."""
    (kh, kw), (sh, sw) = pool, strides
    if padding == "same":
        oh, top, bottom = same_pads(H, kh, sh)
        ow, left, right = same_pads(W, kw, sw)
    else:
        oh, ow = (H - kh) // sh + 1, (W - kw) // sw + 1
        top = left = 0
        bottom, right = (oh - 1) * sh + kh - H, (ow - 1) * sw + kw - W
    return oh, ow, (top, bottom, left, right)


class PoolOps:
    """Mixin of :class:`gpunet.backend.ops.Ops`: 2-D pooling (1-D is H = 1)."""

    xp: Any
    device_kw: dict[str, Any]

    def pad2d(self, X: Array, pads: tuple[int, int, int, int], value: float = 0.0) -> Array:
        """Pad (positive) or crop (negative) axes 1 and 2 of ``X`` by
        ``(top, bottom, left, right)``, filling with ``value``."""
        xp = self.xp
        top, bottom, left, right = pads
        H, W = X.shape[1], X.shape[2]
        X = X[:, max(-top, 0) : H - max(-bottom, 0), max(-left, 0) : W - max(-right, 0), :]
        for axis, before, after in ((1, top, bottom), (2, left, right)):
            if before <= 0 and after <= 0:
                continue
            shape = list(X.shape)
            parts = []
            if before > 0:
                shape[axis] = before
                parts.append(xp.full(tuple(shape), value, dtype=X.dtype, **self.device_kw))
            parts.append(X)
            if after > 0:
                shape[axis] = after
                parts.append(xp.full(tuple(shape), value, dtype=X.dtype, **self.device_kw))
            X = xp.concat(parts, axis=axis)
        return X

    def _windows(self, Xp: Array, oh: int, ow: int, pool: Any, strides: Any) -> Array:
        """``(B, oh, ow, C, kh * kw)``: the windows of the padded input."""
        xp = self.xp
        (kh, kw), (sh, sw) = pool, strides
        B, _, _, C = Xp.shape
        if (kh, kw) == (sh, sw):
            Z = xp.reshape(Xp, (B, oh, kh, ow, kw, C))
            return xp.reshape(xp.permute_dims(Z, (0, 1, 3, 5, 2, 4)), (B, oh, ow, C, kh * kw))
        parts = [
            Xp[:, i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw, :]
            for i in range(kh)
            for j in range(kw)
        ]
        return xp.stack(parts, axis=-1)

    def _unwindow(self, D: Array, shape: Any, pool: Any, strides: Any) -> Array:
        """The adjoint of :meth:`_windows`: sum window gradients ``D`` into ``shape``."""
        xp = self.xp
        (kh, kw), (sh, sw) = pool, strides
        B, oh, ow, C, _ = D.shape
        if (kh, kw) == (sh, sw):
            Z = xp.permute_dims(xp.reshape(D, (B, oh, ow, C, kh, kw)), (0, 1, 4, 2, 5, 3))
            return xp.reshape(Z, shape)
        dXp = xp.zeros(shape, dtype=D.dtype, **self.device_kw)
        for i in range(kh):
            for j in range(kw):
                sl = (
                    slice(None),
                    slice(i, i + (oh - 1) * sh + 1, sh),
                    slice(j, j + (ow - 1) * sw + 1, sw),
                    slice(None),
                )
                dXp[sl] = dXp[sl] + D[..., i * kw + j]  # overlapping windows accumulate
        return dXp

    def max_pool2d(
        self, X: Array, *, pool: tuple[int, int], strides: tuple[int, int], padding: str
    ) -> tuple[Array, Any]:
        """Max over ``pool`` windows of NHWC ``X``: ``(Y, saved)`` for the backprop.
        "same" pads with -inf, so padding never wins a window."""
        xp = self.xp
        H, W = X.shape[1], X.shape[2]
        oh, ow, pads = pool_geometry(H, W, pool, strides, padding)
        Xp = self.pad2d(X, pads, -math.inf)
        win = self._windows(Xp, oh, ow, pool, strides)
        arg = xp.astype(xp.argmax(win, axis=-1), xp.int32)
        Y = xp.max(win, axis=-1)
        return Y, (arg, tuple(Xp.shape), pads, pool, strides)

    def backprop_max_pool2d(self, dY: Array, saved: Any) -> Array:
        xp = self.xp
        arg, padded, pads, pool, strides = saved
        K = pool[0] * pool[1]
        hit = xp.arange(K, dtype=xp.int32, **self.device_kw) == arg[..., None]
        # one index per window: ties routed once; a select, not hit * dY, so an inf or
        # NaN dY reaches the argmax only (as in PyTorch), not 0 * inf = NaN elsewhere
        D = xp.where(hit, dY[..., None], xp.zeros_like(dY)[..., None])
        dXp = self._unwindow(D, padded, pool, strides)
        return self.pad2d(dXp, tuple(-p for p in pads))  # type: ignore[arg-type]

    def avg_pool2d(
        self, X: Array, *, pool: tuple[int, int], strides: tuple[int, int], padding: str
    ) -> tuple[Array, Any]:
        """Mean over ``pool`` windows of NHWC ``X``; with "same" padding each window
        averages over the elements inside the input only (Keras)."""
        xp = self.xp
        H, W = X.shape[1], X.shape[2]
        oh, ow, pads = pool_geometry(H, W, pool, strides, padding)
        Xp = self.pad2d(X, pads)
        S = xp.sum(self._windows(Xp, oh, ow, pool, strides), axis=-1)
        n = self._avg_counts(H, W, oh, ow, pads, pool, strides, X.dtype)
        return S / n, (n, tuple(Xp.shape), pads, pool, strides)

    def _avg_counts(
        self, H: int, W: int, oh: int, ow: int, pads: Any, pool: Any, strides: Any, dtype: Any
    ) -> Array:
        """The divisor of each window: its cells inside the input (only "same" pads)."""
        xp = self.xp
        if any(p > 0 for p in pads):
            ones = xp.ones((1, H, W, 1), dtype=dtype, **self.device_kw)
            return xp.sum(self._windows(self.pad2d(ones, pads), oh, ow, pool, strides), axis=-1)
        return xp.full((1, 1, 1, 1), float(pool[0] * pool[1]), dtype=dtype, **self.device_kw)

    def backprop_avg_pool2d(self, dY: Array, saved: Any) -> Array:
        xp = self.xp
        n, padded, pads, pool, strides = saved
        if n is None:  # saved by a kernel's forward, which computes the counts itself
            H, W = padded[1] - pads[0] - pads[1], padded[2] - pads[2] - pads[3]
            n = self._avg_counts(H, W, dY.shape[1], dY.shape[2], pads, pool, strides, dY.dtype)
        K = pool[0] * pool[1]
        D = xp.broadcast_to((dY / n)[..., None], (*dY.shape, K))
        dXp = self._unwindow(D, padded, pool, strides)
        return self.pad2d(dXp, tuple(-p for p in pads))  # type: ignore[arg-type]

    def global_max_pool(self, X: Array) -> tuple[Array, Any]:
        """Max over all axes but the batch and the last: ``(Y of (B, C), saved)``."""
        xp = self.xp
        shape = tuple(X.shape)
        Z = xp.reshape(X, (shape[0], math.prod(shape[1:-1]), shape[-1]))
        arg = xp.astype(xp.argmax(Z, axis=1), xp.int32)
        return xp.max(Z, axis=1), (arg, shape)

    def backprop_global_max_pool(self, dY: Array, saved: Any) -> Array:
        xp = self.xp
        arg, shape = saved
        n = math.prod(shape[1:-1])
        hit = xp.arange(n, dtype=xp.int32, **self.device_kw)[:, None] == arg[:, None, :]
        return xp.reshape(xp.astype(hit, dY.dtype) * dY[:, None, :], shape)

    def upsample2d(self, X: Array, size: tuple[int, int]) -> Array:
        """Nearest-neighbour upsampling of NHWC ``X``: each pixel repeated ``size``."""
        xp = self.xp
        B, H, W, C = X.shape
        sh, sw = size
        Z = xp.broadcast_to(xp.reshape(X, (B, H, 1, W, 1, C)), (B, H, sh, W, sw, C))
        return xp.reshape(Z, (B, H * sh, W * sw, C))

    def backprop_upsample2d(self, dY: Array, size: tuple[int, int]) -> Array:
        xp = self.xp
        B, Hs, Ws, C = dY.shape
        sh, sw = size
        Z = xp.reshape(dY, (B, Hs // sh, sh, Ws // sw, sw, C))
        return xp.sum(Z, axis=(2, 4))
