"""2-D convolution, channels last (NHWC), by im2col and one GEMM per group.

The columns are the per-tap strided copies of the padded input, stacked on a tap
axis (Chainer's im2col); ``Y = cols @ W`` per group. The backprop recomputes the
columns chunk by chunk (nothing batch-sized is kept), takes ``dW`` as one GEMM from
them, and scatters ``dcols = dY @ W.T`` back as the sum of per-tap strided slices
(col2im). Everything is array-API vocabulary; the scatter writes through basic
(slice) ``__setitem__``, which the standard allows, so it runs on the strict device.
Kernels are laid out as Keras': ``(kh, kw, in_channels / groups, filters)``.
"""

from __future__ import annotations

import math
from typing import Any

Array = Any
Pads = tuple[tuple[int, int], tuple[int, int]]
MAX_COL_BYTES = 64 * 2**20  # the column buffer of one chunk of the batch stays under this


def conv_pads(
    size: tuple[int, int],
    kernel: tuple[int, int],
    strides: tuple[int, int],
    dilation: tuple[int, int],
    padding: Any,
) -> Pads:
    """Explicit ``((top, bottom), (left, right))`` pads for ``"valid"``, ``"same"``
    (Keras/TensorFlow: the odd one more at the bottom/right) or given pairs.

    Example:
        >>> from gpunet.backend._conv_ops import conv_pads
        >>> conv_pads((5, 6), (3, 4), (2, 2), (1, 1), "same")
        ((1, 1), (1, 1))
    """
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding != "same":
        (a, b), (c, d) = padding
        return ((int(a), int(b)), (int(c), int(d)))
    pads = []
    for n, k, s, d in zip(size, kernel, strides, dilation, strict=True):
        total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
        pads.append((total // 2, total - total // 2))
    return (pads[0], pads[1])


def conv_out_size(n: int, k: int, s: int, d: int, pad: int) -> int:
    """Output length of one axis: ``floor((n + pad - (k-1)*d - 1) / s) + 1``."""
    return (n + pad - (k - 1) * d - 1) // s + 1


class ConvOps:
    xp: Any
    device_kw: dict[str, Any]
    activation: Any  # ActivationOps' (Ops mixes both in)
    backprop_activation: Any
    matmul: Any  # AmpOps' (a mixed policy's GEMMs in low precision on a device)

    def conv2d(
        self,
        X: Array,
        W: Array,
        b: Array | None,
        *,
        strides: tuple[int, int] = (1, 1),
        padding: Any = "valid",
        dilation: tuple[int, int] = (1, 1),
        groups: int = 1,
        activation: str = "linear",
        act_kw: dict[str, Any] | None = None,
    ) -> tuple[Array, Any]:
        """``Y = activation(conv(X, W) + b)`` for ``X`` of shape (N, H, W, C) and ``W``
        of shape (kh, kw, C / groups, F); returns ``(Y, saved)`` for
        :meth:`backprop_conv2d` (``act_kw``: the activation's arguments, e.g. ``alpha``).

        Example:
            >>> import numpy as np
            >>> from gpunet.backend import get_ops
            >>> Y, _ = get_ops("cpu").conv2d(np.ones((1, 3, 3, 1)), np.ones((2, 2, 1, 1)), None)
            >>> Y[..., 0].tolist()
            [[[4.0, 4.0], [4.0, 4.0]]]
        """
        xp = self.xp
        N, H, Wd, C = X.shape
        kh, kw, _, F = W.shape
        pads = conv_pads((H, Wd), (kh, kw), strides, dilation, padding)
        Ho = conv_out_size(H, kh, strides[0], dilation[0], sum(pads[0]))
        Wo = conv_out_size(Wd, kw, strides[1], dilation[1], sum(pads[1]))
        geo = (strides, pads, dilation, groups, Ho, Wo)
        if kh == kw == 1 and strides == (1, 1) and pads == ((0, 0), (0, 0)) and groups == 1:
            Y = xp.reshape(
                self.matmul(xp.reshape(X, (-1, C)), xp.reshape(W, (C, F))), (N, H, Wd, F)
            )
        else:
            chunks = [
                self._conv_gemm(self._im2col(X[i:j, ...], (kh, kw), geo), W, groups)
                for i, j in self._chunks(X, kh * kw, Ho, Wo)
            ]
            Y = chunks[0] if len(chunks) == 1 else xp.concat(chunks, axis=0)
        if b is not None:
            Y = Y + b
        Z, kw = Y, act_kw or {}
        if activation != "linear":
            Y = self.activation(activation, Z, **kw)
        return Y, (X, W, geo, (activation, kw, Z, Y))

    def backprop_conv2d(
        self, dY: Array, saved: Any, *, need_dX: bool = True, need_db: bool = True
    ) -> tuple[Array | None, Array, Array | None]:
        """``(dX, dW, db)`` of :meth:`conv2d` (``dX`` None unless ``need_dX``); ``saved``
        may carry more than the reference keeps (a fast backend's columns)."""
        xp = self.xp
        X, W, geo, act = saved[:4]
        if act is not None and act[0] != "linear":
            dY = self.backprop_activation(act[0], dY, act[2], act[3], **act[1])
        strides, pads, _, groups, Ho, Wo = geo
        _, H, Wd, C = X.shape
        kh, kw, Cg, F = W.shape
        db = xp.sum(dY, axis=(0, 1, 2)) if need_db else None
        if kh == kw == 1 and strides == (1, 1) and pads == ((0, 0), (0, 0)) and groups == 1:
            X2, dY2, W2 = xp.reshape(X, (-1, C)), xp.reshape(dY, (-1, F)), xp.reshape(W, (C, F))
            dW = xp.reshape(self.matmul(xp.matrix_transpose(X2), dY2), W.shape)
            dX = xp.reshape(self.matmul(dY2, xp.matrix_transpose(W2)), X.shape) if need_dX else None
            return dX, dW, db
        K, Fg = kh * kw, F // groups
        Wg = [xp.reshape(W[..., g * Fg : (g + 1) * Fg], (K * Cg, Fg)) for g in range(groups)]
        dWg: list[Any] = [None] * groups
        dXs = []
        for i, j in self._chunks(X, K, Ho, Wo):
            cols = self._im2col(X[i:j, ...], (kh, kw), geo)  # (n, Ho, Wo, K, C)
            n = j - i
            dYc = xp.reshape(dY[i:j, ...], (n * Ho * Wo, F))
            dcols = []
            for g in range(groups):
                cg = xp.reshape(cols[..., g * Cg : (g + 1) * Cg], (n * Ho * Wo, K * Cg))
                dYg = dYc[:, g * Fg : (g + 1) * Fg]
                part = self.matmul(xp.matrix_transpose(cg), dYg)
                dWg[g] = part if dWg[g] is None else dWg[g] + part
                if need_dX:
                    dc = self.matmul(dYg, xp.matrix_transpose(Wg[g]))
                    dcols.append(xp.reshape(dc, (n, Ho, Wo, K, Cg)))
            if need_dX:
                dc = dcols[0] if groups == 1 else xp.concat(dcols, axis=-1)
                dXs.append(self._col2im(dc, (n, H, Wd, C), (kh, kw), geo))
        dW = xp.concat([xp.reshape(d, (kh, kw, Cg, Fg)) for d in dWg], axis=-1)
        dX = None
        if need_dX:
            dX = dXs[0] if len(dXs) == 1 else xp.concat(dXs, axis=0)
        return dX, dW, db

    def conv1d(self, X: Array, W: Array, b: Array | None, **kw: Any) -> tuple[Array, Any]:
        """Conv over (N, L, C) with ``W`` (k, C / groups, F): :meth:`conv2d` with H = 1;
        ``strides``/``dilation`` are ints, ``padding`` ``"valid"``, ``"same"`` or a pair;
        ``activation``/``act_kw`` as in :meth:`conv2d`."""
        xp = self.xp
        s, d, pad = kw.pop("strides", 1), kw.pop("dilation", 1), kw.pop("padding", "valid")
        pad2 = pad if isinstance(pad, str) else ((0, 0), tuple(pad))
        Y, saved = self.conv2d(
            xp.reshape(X, (X.shape[0], 1, *X.shape[1:])), xp.reshape(W, (1, *W.shape)), b,
            strides=(1, s), dilation=(1, d), padding=pad2, **kw,
        )  # fmt: skip
        return xp.reshape(Y, (Y.shape[0], *Y.shape[2:])), saved

    def backprop_conv1d(
        self, dY: Array, saved: Any, *, need_dX: bool = True, need_db: bool = True
    ) -> tuple[Array | None, Array, Array | None]:
        xp = self.xp
        dY4 = xp.reshape(dY, (dY.shape[0], 1, *dY.shape[1:]))
        dX, dW, db = self.backprop_conv2d(dY4, saved, need_dX=need_dX, need_db=need_db)
        if dX is not None:
            dX = xp.reshape(dX, (dX.shape[0], *dX.shape[2:]))
        return dX, xp.reshape(dW, dW.shape[1:]), db

    def conv2d_transpose(
        self,
        X: Array,
        W: Array,
        b: Array | None,
        out_size: tuple[int, int],
        pads: tuple[int, int],
        *,
        strides: tuple[int, int] = (1, 1),
        dilation: tuple[int, int] = (1, 1),
        groups: int = 1,
    ) -> tuple[Array, Any]:
        """The data gradient of :meth:`conv2d`: ``X`` (N, H, W, C) to ``Y`` (N, *out_size, F)
        with ``W`` (kh, kw, F / groups, C) (Keras' Conv2DTranspose layout); ``pads`` are the
        top/left rows the full transposed output loses (rows past it are zero).

        Example:
            >>> import numpy as np
            >>> from gpunet.backend import get_ops
            >>> Y, _ = get_ops("cpu").conv2d_transpose(
            ...     np.ones((1, 2, 2, 1)), np.ones((2, 2, 1, 1)), None, (3, 3), (0, 0))
            >>> Y[0, ..., 0].tolist()
            [[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]
        """
        xp = self.xp
        N, H, Wd, C = X.shape
        kh, kw, Fg, _ = W.shape
        full = [(n - 1) * s + (k - 1) * d + 1 for n, k, s, d in zip(
            (H, Wd), (kh, kw), strides, dilation, strict=True)]  # fmt: skip
        pp = tuple((p, max(f - p - o, 0)) for f, p, o in zip(full, pads, out_size, strict=True))
        geo = (strides, pp, dilation, groups, H, Wd)
        Cg, K = C // groups, kh * kw
        parts = []
        for g in range(groups):
            Wg = xp.reshape(W[..., g * Cg : (g + 1) * Cg], (K * Fg, Cg))
            Xg = xp.reshape(X[..., g * Cg : (g + 1) * Cg], (-1, Cg))
            parts.append(xp.reshape(self.matmul(Xg, xp.matrix_transpose(Wg)), (N, H, Wd, K, Fg)))
        dcols = parts[0] if groups == 1 else xp.concat(parts, axis=-1)
        Y = self._col2im(dcols, (N, *out_size, Fg * groups), (kh, kw), geo)
        if b is not None:
            Y = Y + b
        return Y, (X, W, geo)

    def backprop_conv2d_transpose(
        self, dY: Array, saved: Any, *, need_dX: bool = True, need_db: bool = True
    ) -> tuple[Array | None, Array, Array | None]:
        """``(dX, dW, db)`` of :meth:`conv2d_transpose`: ``dX`` is a conv2d of ``dY``."""
        X, W, geo = saved
        db = self.xp.sum(dY, axis=(0, 1, 2)) if need_db else None
        _, dW, _ = self.backprop_conv2d(X, (dY, W, geo, None), need_dX=False, need_db=False)
        dX = None
        if need_dX:
            dX = self._conv_gemm(self._im2col(dY, W.shape[:2], geo), W, geo[3])
        return dX, dW, db

    # -- helpers ---------------------------------------------------------------------
    def _chunks(self, X: Array, K: int, Ho: int, Wo: int) -> list[tuple[int, int]]:
        N, C = X.shape[0], X.shape[-1]
        per_sample = max(Ho * Wo * K * C * (self.xp.finfo(X.dtype).bits // 8), 1)
        step = max(1, MAX_COL_BYTES // per_sample)
        return [(i, min(i + step, N)) for i in range(0, max(N, 1), step)]  # N = 0: one

    def _pad(self, X: Array, pads: Pads) -> Array:
        (t, bo), (le, r) = pads
        if t == bo == le == r == 0:
            return X
        N, H, Wd, C = X.shape
        Xp = self.xp.zeros((N, H + t + bo, Wd + le + r, C), dtype=X.dtype, **self.device_kw)
        Xp[:, t : t + H, le : le + Wd, :] = X
        return Xp

    def _im2col(self, X: Array, k: tuple[int, int], geo: Any) -> Array:
        (sh, sw), pads, (dh, dw), _, Ho, Wo = geo
        Xp = self._pad(X, pads)
        taps = [
            Xp[
                :,
                i * dh : i * dh + (Ho - 1) * sh + 1 : sh,
                j * dw : j * dw + (Wo - 1) * sw + 1 : sw,
                :,
            ]
            for i in range(k[0])
            for j in range(k[1])
        ]
        return self.xp.stack(taps, axis=3)

    def _conv_gemm(self, cols: Array, W: Array, groups: int) -> Array:
        xp = self.xp
        n, Ho, Wo, K, _ = cols.shape
        Cg, F = W.shape[2:]
        Fg = F // groups
        out = []
        for g in range(groups):
            cg = cols if groups == 1 else cols[..., g * Cg : (g + 1) * Cg]
            Wg = W if groups == 1 else W[..., g * Fg : (g + 1) * Fg]
            out.append(self.matmul(xp.reshape(cg, (-1, K * Cg)), xp.reshape(Wg, (K * Cg, Fg))))
        Y = out[0] if groups == 1 else xp.concat(out, axis=-1)
        return xp.reshape(Y, (n, Ho, Wo, F))

    def _col2im(self, dcols: Array, shape: tuple[int, ...], k: tuple[int, int], geo: Any) -> Array:
        xp = self.xp
        (sh, sw), ((t, bo), (le, r)), (dh, dw), _, Ho, Wo = geo
        n, H, Wd, C = shape
        dXp = xp.zeros((n, H + t + bo, Wd + le + r, C), dtype=dcols.dtype, **self.device_kw)
        for i in range(k[0]):
            for j in range(k[1]):
                rows = slice(i * dh, i * dh + (Ho - 1) * sh + 1, sh)
                cols = slice(j * dw, j * dw + (Wo - 1) * sw + 1, sw)
                dXp[:, rows, cols, :] = dXp[:, rows, cols, :] + dcols[:, :, :, i * k[1] + j, :]
        return dXp[:, t : t + H, le : le + Wd, :]
