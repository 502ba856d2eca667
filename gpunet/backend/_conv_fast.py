"""The convolution of the backends with kernels (``NumpyOps`` over the host build,
``FusedOps``/``CupyOps`` over the CUDA kernels): the reference's algorithm
(``_conv_ops``: im2col, one GEMM per group, col2im), with the memory passes cut.

What differs from the reference, and why:

* im2col and col2im are one gather kernel each (``kernels/conv.cu*``), reading the
  padding as zeros: no padded copy of the input, no per-tap slices to stack or add.
* Bias and activation run in one pass over the GEMM output (``ops.bias_activation``,
  the dense layer's kernel: the output (N*Ho*Wo, F) is dense-shaped); the backward's
  activation gradient and bias sum are one pass too (``ops.backprop_bias_activation``).
* The forward's columns are kept for the backward when the batch is one chunk
  (``MAX_COL_BYTES``): the weight gradient then needs no second im2col. A batch of
  several chunks keeps nothing batch-sized and recomputes them chunk by chunk.
* A 1x1 convolution with stride 1 and no padding is a plain GEMM.

``ops`` supplies ``xp``, the kernels (``_im2col``, ``_col2im``) and the two fused
hooks, each of which may return None for "not on this input": the generic ``xp``
code then does that step.
"""

from __future__ import annotations

from typing import Any

from gpunet.backend._conv_ops import conv_out_size, conv_pads

Array = Any


def _pointwise(k: tuple[int, int], strides: Any, pads: Any, groups: int) -> bool:
    return k == (1, 1) and tuple(strides) == (1, 1) and pads == ((0, 0), (0, 0)) and groups == 1


def conv2d(
    ops: Any,
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
    """``ConvOps.conv2d`` over the kernels of ``ops``; ``X`` must be C-contiguous."""
    xp, kw = ops.xp, act_kw or {}
    N, H, Wd, C = X.shape
    kh, kw_, _, F = W.shape
    pads = conv_pads((H, Wd), (kh, kw_), strides, dilation, padding)
    Ho = conv_out_size(H, kh, strides[0], dilation[0], sum(pads[0]))
    Wo = conv_out_size(Wd, kw_, strides[1], dilation[1], sum(pads[1]))
    geo = (tuple(strides), pads, tuple(dilation), groups, Ho, Wo)
    M, cols = N * Ho * Wo, None
    if _pointwise((kh, kw_), strides, pads, groups):
        Z = ops.matmul(xp.reshape(X, (M, C)), xp.reshape(W, (C, F)))
    else:
        chunks = ops._chunks(X, kh * kw_, Ho, Wo)
        if len(chunks) == 1:
            cols = ops._im2col(X, (kh, kw_), geo)
            Z = xp.reshape(ops._conv_gemm(cols, W, groups), (M, F))
        else:
            Z = xp.empty((M, F), dtype=X.dtype)
            for i, j in chunks:
                part = ops._conv_gemm(ops._im2col(X[i:j, ...], (kh, kw_), geo), W, groups)
                Z[i * Ho * Wo : j * Ho * Wo, :] = xp.reshape(part, (-1, F))
    Y, Zk = ops.bias_activation(Z, b, activation, **kw)
    shape = (N, Ho, Wo, F)
    Zk = None if Zk is None else xp.reshape(Zk, shape)
    Y = xp.reshape(Y, shape)
    return Y, (X, W, geo, (activation, kw, Zk, Y), cols)


def backprop_conv2d(
    ops: Any, dY: Array, saved: Any, *, need_dX: bool = True, need_db: bool = True
) -> tuple[Array | None, Array, Array | None]:
    """``ConvOps.backprop_conv2d`` over the kernels of ``ops``; takes the reference's
    ``saved`` too (no columns kept, no activation)."""
    xp = ops.xp
    X, W, geo, act = saved[:4]
    cols = saved[4] if len(saved) > 4 else None
    strides, pads, _, groups, Ho, Wo = geo
    N, H, Wd, C = X.shape
    kh, kw_, Cg, F = W.shape
    dY2 = xp.reshape(dY, (-1, F))  # a copy only if dY is strided (channels_first)
    name, kw, Zk, Y = act if act is not None else ("linear", {}, None, None)
    Zk2 = None if Zk is None else xp.reshape(Zk, (-1, F))
    Y2 = None if Y is None else xp.reshape(Y, (-1, F))
    dZ, db = ops.backprop_bias_activation(dY2, Zk2, Y2, name, need_db=need_db, **kw)
    if _pointwise((kh, kw_), strides, pads, groups):
        X2, W2 = xp.reshape(X, (-1, C)), xp.reshape(W, (C, F))
        dW = xp.reshape(ops.matmul(xp.matrix_transpose(X2), dZ), W.shape)
        dX = xp.reshape(ops.matmul(dZ, xp.matrix_transpose(W2)), X.shape) if need_dX else None
        return dX, dW, db
    K, Fg, P = kh * kw_, F // groups, Ho * Wo
    Wg = [xp.reshape(W[..., g * Fg : (g + 1) * Fg], (K * Cg, Fg)) for g in range(groups)]
    dWg: list[Any] = [None] * groups
    chunks = [(0, N)] if cols is not None else ops._chunks(X, K, Ho, Wo)
    dXs = []
    for i, j in chunks:
        c = cols if cols is not None else ops._im2col(X[i:j, ...], (kh, kw_), geo)
        dZc = dZ[i * P : j * P, :]
        dcols = []
        for g in range(groups):
            cg = xp.reshape(c if groups == 1 else c[..., g * Cg : (g + 1) * Cg], (-1, K * Cg))
            dZg = dZc if groups == 1 else dZc[:, g * Fg : (g + 1) * Fg]
            part = ops.matmul(xp.matrix_transpose(cg), dZg)
            dWg[g] = part if dWg[g] is None else dWg[g] + part
            if need_dX:
                dc = ops.matmul(dZg, xp.matrix_transpose(Wg[g]))
                dcols.append(xp.reshape(dc, (j - i, Ho, Wo, K, Cg)))
        if need_dX:
            dc = dcols[0] if groups == 1 else xp.concat(dcols, axis=-1)
            dXs.append(ops._col2im(dc, (j - i, H, Wd, C), (kh, kw_), geo))
    if groups == 1:
        dW = xp.reshape(dWg[0], W.shape)
    else:
        dW = xp.concat([xp.reshape(d, (kh, kw_, Cg, Fg)) for d in dWg], axis=-1)
    dX = None
    if need_dX:
        dX = dXs[0] if len(dXs) == 1 else xp.concat(dXs, axis=0)
    return dX, dW, db
