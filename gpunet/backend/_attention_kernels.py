"""Launchers of ``kernels/attention.cu`` and ``FusedAttention``, the ``FusedOps``
overrides that route attention to them (falling back to the reference ``Ops`` for
what the kernels do not take: additive biases, more than 4 axes, other dtypes).

Between the batched GEMMs the masked softmax and its backward are one launch each.
From ``attention_stream_from`` keys on (head sizes up to 32, float16/float32, no
dropout) the forward and backward stream over the keys instead, keeping a
log-sum-exp per row and never the scores. From ``attention_flash_from`` keys on, the
tiled kernels of ``kernels/flash.cu`` (``_flash_kernels``: shared-memory tiles, head
sizes up to 64, every kernel dtype) take precedence where they fit. Both thresholds
are guesses: no GPU has measured them yet.
"""

from __future__ import annotations

from typing import Any

import numpy

from gpunet.backend._attention_ops import AttentionCache
from gpunet.backend._kernels import CTYPE, ROW_BLOCK, _check, _launch, fast_dtype, runner

_NULL = numpy.uint64(0)
_i64, _f64 = numpy.int64, numpy.float64
MAX_D = 32  # kAttnMaxD of kernels/attention.cu
STREAM_DTYPES = ("float16", "float32")
FILE = "attention.cu"


def _as4(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    full = (1,) * (4 - len(shape)) + tuple(int(n) for n in shape)
    return full[0], full[1], full[2], full[3]


def mask_args(keep: Any, shape: tuple[int, int, int, int], xp: Any = None) -> tuple[Any, ...]:
    """``(keep, sb, sh, sq, sk)``: a C-contiguous boolean mask and its element strides
    over the scores ``shape`` (0 along the axes it broadcasts over)."""
    if keep is None:
        return (_NULL, _i64(0), _i64(0), _i64(0), _i64(0))
    xp = runner().xp if xp is None else xp
    k = xp.ascontiguousarray(keep)
    ks = _as4(tuple(k.shape))
    k = xp.reshape(k, ks)
    strides, step = [], 1
    for n in reversed(ks):
        strides.append(0 if n == 1 else step)
        step *= n
    sb, sh, sq, sk = reversed(strides)
    return (k, _i64(sb), _i64(sh), _i64(sq), _i64(sk))


def fits(S: Any, keep: Any) -> bool:
    """Whether the kernels take scores ``S`` with mask ``keep``."""
    if fast_dtype(S) is None or S.ndim < 2 or S.ndim > 4:
        return False
    if keep is None:
        return True
    shape = _as4(tuple(S.shape))
    ks = _as4(tuple(keep.shape))
    return (
        keep.ndim <= 4
        and keep.dtype.name == "bool"
        and all(a in (1, b) for a, b in zip(ks, shape, strict=True))
    )


def attn_softmax(S: Any, keep: Any, scale: float, causal: bool) -> Any:
    """The masked, scaled softmax of every score row in one launch."""
    dtype = S.dtype.name
    _check("S", S, dtype)
    shape = _as4(tuple(S.shape))
    B, H, Tq, Tk = shape
    P = runner().xp.empty_like(S)
    rows = B * H * Tq
    args = (P, S, *mask_args(keep, shape))
    _launch(FILE, f"gpunet_attn_softmax<{CTYPE[dtype]}>", rows, ROW_BLOCK,
            (*args[:3], _i64(rows), _i64(Tq), _i64(Tk), _i64(H), *args[3:], _i64(causal),
             _f64(scale)))  # fmt: skip
    return P


def attn_softmax_bwd(dP: Any, P: Any, scale: float) -> Any:
    """``dS`` of :func:`attn_softmax` from ``dP`` and ``P`` (the mask is in ``P``'s zeros)."""
    dtype = P.dtype.name
    _check("P", P, dtype)
    _check("dP", dP, dtype, tuple(P.shape))
    Tk = int(P.shape[-1])
    rows = P.size // Tk if Tk else 0
    dS = runner().xp.empty_like(P)
    _launch(FILE, f"gpunet_attn_softmax_bwd<{CTYPE[dtype]}>", rows, ROW_BLOCK,
            (dS, dP, P, _i64(rows), _i64(Tk), _f64(scale)))  # fmt: skip
    return dS


def streams(Q: Any, K: Any, V: Any, keep: Any) -> bool:
    """Whether the streaming kernels take these inputs."""
    dtype = fast_dtype(Q, K, V)
    if dtype not in STREAM_DTYPES or Q.ndim != 4:
        return False
    same = K.shape[:2] == Q.shape[:2] == V.shape[:2] and K.shape[2] == V.shape[2]
    small = Q.shape[3] <= MAX_D and V.shape[3] <= MAX_D and Q.shape[3] == K.shape[3]
    scores = (*Q.shape[:3], K.shape[2])
    return bool(same and small) and (keep is None or fits(_Shape(scores, dtype), keep))


class _Shape:
    """Stands in for a scores array in :func:`fits` (its shape, dtype, layout)."""

    def __init__(self, shape: tuple[int, ...], dtype: str) -> None:
        self.shape, self.ndim = shape, len(shape)
        self.dtype = numpy.dtype(dtype)
        self.flags = type("F", (), {"c_contiguous": True})()


def attn_fwd(Q: Any, K: Any, V: Any, keep: Any, scale: float, causal: bool) -> tuple[Any, Any]:
    """``(O, lse)`` without the scores: one thread per query row."""
    B, H, Tq, dk = (int(n) for n in Q.shape)
    Tk, dv = int(K.shape[2]), int(V.shape[3])
    xp = runner().xp
    O = xp.empty((B, H, Tq, dv), dtype=Q.dtype)
    lse = xp.empty((B, H, Tq), dtype=xp.float32)
    rows = B * H * Tq
    m = mask_args(keep, (B, H, Tq, Tk))
    _launch(FILE, f"gpunet_attn_fwd<{CTYPE[Q.dtype.name]}>", rows, ROW_BLOCK,
            (O, lse, Q, K, V, m[0], _i64(rows), _i64(Tq), _i64(Tk), _i64(H), _i64(dk),
             _i64(dv), *m[1:], _i64(causal), _f64(scale)))  # fmt: skip
    return O, lse


def attn_bwd(dO: Any, c: AttentionCache) -> tuple[Any, Any, Any]:
    """``(dQ, dK, dV)`` of :func:`attn_fwd`, recomputing the weights from ``lse``."""
    Q, K, V = c.Q, c.K, c.V
    B, H, Tq, dk = (int(n) for n in Q.shape)
    Tk, dv = int(K.shape[2]), int(V.shape[3])
    xp = runner().xp
    dO = xp.ascontiguousarray(dO)
    _check("dO", dO, Q.dtype.name, (B, H, Tq, dv))
    dQ, dK, dV = xp.empty_like(Q), xp.empty_like(K), xp.empty_like(V)
    Dsum = xp.empty((B, H, Tq), dtype=xp.float32)
    m = mask_args(c.mask, (B, H, Tq, Tk))
    sizes = (_i64(Tq), _i64(Tk), _i64(H), _i64(dk), _i64(dv), *m[1:], _i64(c.causal),
             _f64(c.scale))  # fmt: skip
    t = CTYPE[Q.dtype.name]
    rows = B * H * Tq
    _launch(FILE, f"gpunet_attn_bwd_dq<{t}>", rows, ROW_BLOCK,
            (dQ, Dsum, dO, c.O, Q, K, V, c.lse, m[0], _i64(rows), *sizes))  # fmt: skip
    krows = B * H * Tk
    _launch(FILE, f"gpunet_attn_bwd_dkv<{t}>", krows, ROW_BLOCK,
            (dK, dV, dO, Q, K, V, c.lse, Dsum, m[0], _i64(krows), *sizes))  # fmt: skip
    return dQ, dK, dV


class FusedAttention:
    """``Ops`` overrides: attention through the kernels, the reference otherwise."""

    attention_stream_from = 1024  # keys; unmeasured (see the module docstring)
    attention_flash_from = 1024  # keys; unmeasured too

    def attention_softmax(
        self, S: Any, mask: Any = None, *, scale: float = 1.0, causal: bool = False,
        bias: Any = None,
    ) -> Any:  # fmt: skip
        if bias is None and fits(S, mask):
            return attn_softmax(S, mask, scale, causal)
        return super().attention_softmax(S, mask, scale=scale, causal=causal, bias=bias)  # type: ignore[misc]

    def backprop_attention_softmax(
        self, dP: Any, P: Any, mask: Any = None, *, scale: float = 1.0, causal: bool = False
    ) -> Any:
        if fast_dtype(dP, P) is not None and P.ndim >= 1 and dP.shape == P.shape:
            return attn_softmax_bwd(dP, P, scale)
        return super().backprop_attention_softmax(dP, P, mask, scale=scale, causal=causal)  # type: ignore[misc]

    def attention(
        self, Q: Any, K: Any, V: Any, mask: Any = None, *, scale: float, causal: bool = False,
        dropout: float = 0.0, keep_probs: bool = False, bias: Any = None,
    ) -> tuple[Any, Any, AttentionCache]:  # fmt: skip
        plain = dropout == 0.0 and not keep_probs and bias is None
        if plain and K.shape[-2] >= self.attention_flash_from:
            from gpunet.backend import _flash_kernels as fk  # it imports this module

            if fk.bound(Q, K, V, mask) is not None:
                O, lse = fk.flash_fwd(Q, K, V, mask, scale, causal)
                return O, None, fk.TiledCache(Q, K, V, O, mask, scale, causal, lse=lse,
                                              streamed=True)  # fmt: skip
        if plain and K.shape[-2] >= self.attention_stream_from and streams(Q, K, V, mask):
            O, lse = attn_fwd(Q, K, V, mask, scale, causal)
            return O, None, AttentionCache(Q, K, V, O, mask, scale, causal, lse=lse,
                                           streamed=True)  # fmt: skip
        return super().attention(Q, K, V, mask, scale=scale, causal=causal, dropout=dropout,  # type: ignore[misc,no-any-return]
                                 keep_probs=keep_probs, bias=bias)  # fmt: skip

    def backprop_attention(self, dO: Any, cache: AttentionCache) -> tuple[Any, Any, Any]:
        if cache.streamed:
            from gpunet.backend import _flash_kernels as fk

            if isinstance(cache, fk.TiledCache):
                return fk.flash_bwd(dO, cache)
            return attn_bwd(dO, cache)
        return super().backprop_attention(dO, cache)  # type: ignore[misc,no-any-return]
