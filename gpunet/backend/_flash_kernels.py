"""Launchers of ``kernels/flash.cu``: tiled attention through shared memory.

A block holds the rows of one (batch, head) that it owns and loops over tiles of the
other side, so the scores are never materialised (FlashAttention's algorithm: an
online softmax, each row's log-sum-exp kept for the backward, which recomputes the
weights in two kernels without atomics). Head sizes up to 64, in float16, bfloat16,
float32 and float64; ``FusedAttention`` uses them from ``attention_flash_from`` keys
on, a threshold no GPU has measured yet.

Example:
    >>> from gpunet.backend import _flash_kernels
    >>> [_flash_kernels.head_bound("float32", d) for d in (20, 40, 80)]
    [32, 64, None]
"""

from __future__ import annotations

from typing import Any

import numpy

from gpunet.backend._attention_kernels import _Shape, fits, mask_args
from gpunet.backend._attention_ops import AttentionCache
from gpunet.backend._kernels import CTYPE, _check, _launch, fast_dtype, runner

_i64, _f64 = numpy.int64, numpy.float64
FILE = "flash.cu"
BOUNDS = (32, 64)  # the head-size bounds D instantiated (_kernels.INSTANTIATIONS)


def head_bound(dtype: str, d: int) -> int | None:
    """The template head size ``D`` that takes head size ``d``, None if none does."""
    return next((D for D in BOUNDS if d <= D), None) if dtype in CTYPE else None


def _math(dtype: str) -> str:
    """The dtype of ``lse`` and ``Dsum``: the kernels' math type (``Math<T>::type``)."""
    return "float64" if dtype == "float64" else "float32"


def rows_per_block(dtype: str, D: int) -> int:
    """Threads (= owned rows) per block: ``FlashShape<T, D>::kRows`` of flash.cu."""
    return 8192 // (D * (8 if dtype == "float64" else 4))


def bound(Q: Any, K: Any, V: Any, keep: Any) -> int | None:
    """``D`` when the tiled kernels take these inputs (4-d, contiguous, same heads,
    no empty axis: the reference defines those)."""
    dtype = fast_dtype(Q, K, V)
    if dtype is None or Q.ndim != 4 or K.ndim != 4 or V.ndim != 4 or 0 in (*Q.shape, *K.shape):
        return None
    same = K.shape[:2] == Q.shape[:2] == V.shape[:2] and K.shape[2] == V.shape[2]
    if not same or Q.shape[3] != K.shape[3]:
        return None
    scores = (*Q.shape[:3], K.shape[2])
    if keep is not None and not fits(_Shape(scores, dtype), keep):
        return None
    return head_bound(dtype, max(int(Q.shape[3]), int(V.shape[3])))


class TiledCache(AttentionCache):
    """An ``AttentionCache`` made by :func:`flash_fwd` (its backward is :func:`flash_bwd`)."""


def flash_fwd(Q: Any, K: Any, V: Any, keep: Any, scale: float, causal: bool) -> tuple[Any, Any]:
    """``(O, lse)`` of attention, one block per ``rows_per_block`` query rows."""
    B, H, Tq, dk = (int(n) for n in Q.shape)
    Tk, dv = int(K.shape[2]), int(V.shape[3])
    dtype = Q.dtype.name
    D = head_bound(dtype, max(dk, dv))
    assert D is not None, f"head sizes {dk}, {dv} are over the tiled kernels' bound"
    xp = runner().xp
    O = xp.empty((B, H, Tq, dv), dtype=Q.dtype)
    lse = xp.empty((B, H, Tq), dtype=_math(dtype))
    m = mask_args(keep, (B, H, Tq, Tk))
    R = rows_per_block(dtype, D)
    _launch(FILE, f"gpunet_flash_fwd<{CTYPE[dtype]}, {D}>", B * H * -(-Tq // R) * R, R,
            (O, lse, Q, K, V, m[0], _i64(B * H), _i64(Tq), _i64(Tk), _i64(H), _i64(dk),
             _i64(dv), *m[1:], _i64(causal), _f64(scale)))  # fmt: skip
    return O, lse


def flash_bwd(dO: Any, c: AttentionCache) -> tuple[Any, Any, Any]:
    """``(dQ, dK, dV)`` of :func:`flash_fwd`: dQ per query block, then dK, dV per key block."""
    Q, K, V = c.Q, c.K, c.V
    B, H, Tq, dk = (int(n) for n in Q.shape)
    Tk, dv = int(K.shape[2]), int(V.shape[3])
    dtype = Q.dtype.name
    D = head_bound(dtype, max(dk, dv))
    assert D is not None, f"head sizes {dk}, {dv} are over the tiled kernels' bound"
    xp = runner().xp
    dO = xp.ascontiguousarray(dO)
    _check("dO", dO, dtype, (B, H, Tq, dv))
    dQ, dK, dV = xp.empty_like(Q), xp.empty_like(K), xp.empty_like(V)
    Dsum = xp.empty((B, H, Tq), dtype=_math(dtype))
    m = mask_args(c.mask, (B, H, Tq, Tk))
    sizes = (_i64(B * H), _i64(Tq), _i64(Tk), _i64(H), _i64(dk), _i64(dv), *m[1:],
             _i64(c.causal), _f64(c.scale))  # fmt: skip
    name, R = f"<{CTYPE[dtype]}, {D}>", rows_per_block(dtype, D)
    _launch(FILE, f"gpunet_flash_bwd_dq{name}", B * H * -(-Tq // R) * R, R,
            (dQ, Dsum, dO, c.O, Q, K, V, c.lse, m[0], *sizes))  # fmt: skip
    _launch(FILE, f"gpunet_flash_bwd_dkv{name}", B * H * -(-Tk // R) * R, R,
            (dK, dV, dO, Q, K, V, c.lse, Dsum, m[0], *sizes))  # fmt: skip
    return dQ, dK, dV
