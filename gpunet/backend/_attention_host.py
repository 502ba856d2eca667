"""The attention ops of ``NumpyOps`` over the host build of ``kernels/``: the masked
softmax between the score GEMMs and the blocked path's softmax blocks, each one
threaded pass (``host.cpp``'s vectorized rows), the reference (``AttentionOps``)
for what they do not take.

From ``attention_split_from`` score elements (without dropout) the leading axes
(batch, heads) are split between the host's threads, each running its heads with
one BLAS thread and its kernels on itself: products of 128 query rows (the
blocked path) or of one short sequence's head are too small to share well between
BLAS threads, and the softmax passes between them left the second core idle or,
worse, fighting BLAS's spinning workers (a T = 2048 step took as long at 2
threads as at 1). Each group of heads owns its slices of every output, so the
results are those of one thread.

Self-attention over a fused projection (the Transformer blocks') runs head by head in
the host kernels where they have NumPy's own ``cblas_?gemm`` (``host.blas``): each
head's score product, softmax rows and value product back to back while its scores
are in cache, the pool sharing the heads (0.5 ms of 3.3 at 1 thread for the encoder
block's 128 heads of 64 x 64, forward and backward, alone; bench/run.py -w E).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from gpunet.backend import _attention_kernels as ak
from gpunet.backend import _blas_threads
from gpunet.backend._attention_ops import AttentionCache, AttentionOps
from gpunet.backend._host_conv import _fast, _ptr

Array = Any
HOST_MIN = 8192  # as numpy_ops: below this a kernel call costs more than NumPy
_local = threading.local()  # .serial: this thread runs a group, its kernels on itself
_pool_lock = threading.Lock()
_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _executor(n: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``n`` worker threads (made once per size and process:
    a forked child inherits the pool but not its threads, and would wait forever)."""
    key = (os.getpid(), n)
    with _pool_lock:
        if key not in _pools:
            _pools[key] = ThreadPoolExecutor(n, thread_name_prefix="gpunet-attn")
        return _pools[key]


def _serial() -> int:
    return int(getattr(_local, "serial", False))


def _split_axis(arrays: tuple[Array, ...], extras: tuple[Any, ...]) -> tuple[int, int] | None:
    """``(axis, size)``: the longest leading axis (counted from the end) that the
    inputs share unbroadcast, and that every mask or bias has whole or of size 1."""
    Q = arrays[0]
    if any(a.shape[:-2] != Q.shape[:-2] or type(a) is not np.ndarray for a in arrays):
        return None
    best = None
    for ax in range(-3, -Q.ndim - 1, -1):
        n = Q.shape[ax]
        ok = all(m is None or m.ndim < -ax or m.shape[ax] in (1, n) for m in extras)
        if ok and n > 1 and (best is None or n > best[1]):
            best = (ax, n)
    return best


def _take(A: Any, ax: int, part: slice) -> Any:
    """``A``'s slice ``part`` along ``ax`` (from the end), or ``A`` where it broadcasts."""
    if A is None or A.ndim < -ax or A.shape[ax] == 1:
        return A
    index: list[Any] = [slice(None)] * A.ndim
    index[A.ndim + ax] = part
    return A[tuple(index)]


class HostAttentionOps(AttentionOps):
    host: Any
    # score elements from which attention splits: a split costs ~0.1 ms of handing
    # over; the encoder block's 128 heads of 64 x 64 scores (2**19) take ~5 ms
    attention_split_from = 1 << 18

    def _right_t(self, K: Array) -> Array:
        """A contiguous copy: OpenBLAS's products with a transposed view as the right
        operand took 1.5-1.8x as long for heads of 64 x 32 (5% for T = 2048 blocks)."""
        if type(K) is not np.ndarray:
            return super()._right_t(K)
        return np.ascontiguousarray(np.swapaxes(K, -1, -2))

    def _groups(self, arrays: tuple[Array, ...], extras: tuple[Any, ...]) -> Any:
        """``(axis, parts)`` to split the blocked path along, or None: one thread."""
        Q, K = arrays[0], arrays[1]
        big = Q.size // Q.shape[-1] * K.shape[-2] >= self.attention_split_from if Q.size else False
        threads = 1 if self.host is None or _serial() or not big else self.host.threads
        split = _split_axis(arrays, extras) if threads > 1 else None
        if split is None or not _blas_threads.available():
            return None
        ax, n = split
        nt = min(threads, n)
        bounds = [round(i * n / nt) for i in range(nt + 1)]
        return ax, [slice(a, b) for a, b in itertools.pairwise(bounds)]

    def _in_groups(self, parts: list[slice], fn: Any) -> list[Any]:
        """``fn(part)`` for every part: the first here, the others on the pool."""

        def run(part: slice) -> Any:
            before = _serial()
            _local.serial = True
            try:
                return fn(part)
            finally:
                _local.serial = bool(before)

        with _blas_threads.one_blas_thread():
            futures = [_executor(len(parts) - 1).submit(run, p) for p in parts[1:]]
            first = run(parts[0])
            return [first, *(f.result() for f in futures)]

    def _whole_attention(
        self, Q: Array, K: Array, V: Array, mask: Any, scale: float, causal: bool, bias: Any,
        apply: bool = True,
    ) -> tuple[Array | None, Array]:  # fmt: skip
        groups = self._groups((Q, K, V), (mask, bias)) if apply else None
        if groups is None:
            return super()._whole_attention(Q, K, V, mask, scale, causal, bias, apply)
        ax, parts = groups

        def one(p: slice) -> tuple[Array | None, Array]:
            t = [_take(A, ax, p) for A in (Q, K, V, mask, bias)]
            return super(HostAttentionOps, self)._whole_attention(
                t[0], t[1], t[2], t[3], scale, causal, t[4]
            )

        out = self._in_groups(parts, one)
        return tuple(np.concatenate([o[i] for o in out], axis=ax) for i in (0, 1))  # type: ignore[return-value]

    def _whole_backprop(self, dO: Array, c: AttentionCache) -> tuple[Array, Array, Array]:
        groups = self._groups((c.Q, c.K, c.V, dO), (c.mask,)) if c.D is None else None
        if groups is None:
            return super()._whole_backprop(dO, c)
        ax, parts = groups

        def one(p: slice) -> tuple[Array, Array, Array]:
            arrays = (c.Q, c.K, c.V, c.O, c.P, c.mask, dO)
            Q, K, V, O, P, mask, g = (_take(A, ax, p) for A in arrays)
            part = AttentionCache(Q, K, V, O, mask, c.scale, c.causal, P=P)
            return super(HostAttentionOps, self)._whole_backprop(g, part)

        out = self._in_groups(parts, one)
        return tuple(np.concatenate([o[i] for o in out], axis=ax) for i in range(3))  # type: ignore[return-value]

    def _blocked_attention(
        self, Q: Array, K: Array, V: Array, mask: Any, scale: float, causal: bool, bias: Any
    ) -> tuple[Array, Array]:
        groups = self._groups((Q, K, V), (mask, bias))
        if groups is None:
            return super()._blocked_attention(Q, K, V, mask, scale, causal, bias)
        ax, parts = groups

        def one(p: slice) -> tuple[Array, Array]:
            t = [_take(A, ax, p) for A in (Q, K, V, mask, bias)]
            return super(HostAttentionOps, self)._blocked_attention(
                t[0], t[1], t[2], t[3], scale, causal, t[4]
            )

        out = self._in_groups(parts, one)
        return tuple(np.concatenate([o[i] for o in out], axis=ax) for i in (0, 1))  # type: ignore[return-value]

    def _blocked_backprop(self, dO: Array, c: AttentionCache) -> tuple[Array, Array, Array]:
        groups = self._groups((c.Q, c.K, c.V, dO), (c.mask, c.bias))
        if groups is None:
            return super()._blocked_backprop(dO, c)
        ax, parts = groups

        def one(p: slice) -> tuple[Array, Array, Array]:
            arrays = (c.Q, c.K, c.V, c.O, c.lse, c.mask, c.bias, dO)
            Q, K, V, O, lse, mask, bias, g = (_take(A, ax, p) for A in arrays)
            part = AttentionCache(Q, K, V, O, mask, c.scale, c.causal, lse=lse, bias=bias)
            return super(HostAttentionOps, self)._blocked_backprop(g, part)

        out = self._in_groups(parts, one)
        return tuple(np.concatenate([o[i] for o in out], axis=ax) for i in range(3))  # type: ignore[return-value]

    # -- self-attention over one fused projection: results written where they go ----------
    def self_attention(
        self, Y5: Array, mask: Array | None = None, *, scale: float, causal: bool = False,
        dropout: float = 0.0, keep_probs: bool = False, bias: Array | None = None,
    ) -> tuple[Array, Array | None, AttentionCache]:  # fmt: skip
        """The whole-scores path with ``P`` and the ``(B, L, H, dh)`` output allocated
        once and each group of heads writing its part of them: no copy to the output
        layout, no concatenation of the groups' results."""
        B, L, _, H, dh = Y5.shape
        whole = B * H * L * L <= self.attention_whole and not dropout
        if not whole or self.host is None or _fast(Y5) is None:
            return super().self_attention(Y5, mask, scale=scale, causal=causal, dropout=dropout,
                                          keep_probs=keep_probs, bias=bias)  # fmt: skip
        q, k, v = (Y5[:, :, i, ...].transpose(0, 2, 1, 3) for i in range(3))
        out = np.empty((B, L, H, dh), Y5.dtype)
        O, P = out.transpose(0, 2, 1, 3), np.empty((B, H, L, L), Y5.dtype)
        if self._by_heads(Y5, mask, bias):
            keep, sb, sh, sq, sk = ak.mask_args(mask, (B, H, L, L), np)
            split = self._split_heads(B * H * L * L)
            args = (_ptr(keep), B, L, H, dh, sb, sh, sq, sk, int(causal), scale, split)
            with _blas_threads.one_blas_thread() if split else contextlib.nullcontext():
                fwd = self.host.self_attn_fwd[_fast(Y5)]
                fwd(out.ctypes.data, P.ctypes.data, Y5.ctypes.data, *args)
            cache = AttentionCache(q, k, v, O, mask, scale, causal, P=P, bias=bias, Y5=Y5)
            return out, (P if keep_probs else None), cache

        def one(t: list[Any]) -> None:
            Qp, Kp, Vp, Op, Pp, m, b = t
            S = np.matmul(Qp, self._right_t(Kp))
            fresh = self.attention_softmax(S, m, scale=scale, causal=causal, bias=b,
                                           out=Pp if Pp.flags.c_contiguous else None)  # fmt: skip
            if fresh is not Pp:
                Pp[...] = fresh
            np.matmul(Pp, Vp, out=Op)

        self._over_groups(one, (q, k, v, O, P, mask, bias), (mask, bias))
        cache = AttentionCache(q, k, v, O, mask, scale, causal, P=P, bias=bias)
        return out, (P if keep_probs else None), cache

    def _by_heads(self, Y5: Array, mask: Any, bias: Any) -> bool:
        """Whether the host's head-by-head kernels (over NumPy's BLAS) take these."""
        if not self.host.blas or bias is not None or 0 in Y5.shape:
            return False
        if mask is None:
            return True
        B, L, _, H, _ = Y5.shape
        if type(mask) is not np.ndarray or mask.dtype != np.bool_ or mask.ndim > 4:
            return False
        return all(a in (1, b) for a, b in zip(ak._as4(mask.shape), (B, H, L, L), strict=True))

    def _split_heads(self, scores: int) -> int:
        """1 where the head-by-head kernels share the heads between the host's threads
        (with one BLAS thread each): as ``_groups`` decides for the Python groups."""
        big = scores >= self.attention_split_from and not _serial()
        return int(big and self.host.threads > 1 and _blas_threads.available())

    def backprop_self_attention(self, dO: Array, c: AttentionCache) -> Array:
        if c.P is None or c.D is not None or type(c.P) is not np.ndarray:
            return super().backprop_self_attention(dO, c)
        B, L, H, dh = dO.shape
        dY = np.empty((B, L, 3, H, dh), dO.dtype)
        if c.Y5 is not None and _fast(dO, c.Y5) is not None:
            split = self._split_heads(B * H * L * L)
            with _blas_threads.one_blas_thread() if split else contextlib.nullcontext():
                self.host.self_attn_bwd[_fast(dO)](dY.ctypes.data, dO.ctypes.data,
                                                   c.P.ctypes.data, c.Y5.ctypes.data, B, L, H,
                                                   dh, c.scale, split)  # fmt: skip
            return dY
        dQ, dK, dV = (dY[:, :, i, ...].transpose(0, 2, 1, 3) for i in range(3))
        g = dO.transpose(0, 2, 1, 3)

        def one(t: list[Any]) -> None:
            Qp, Kp, Vp, Pp, m, gp, dQp, dKp, dVp = t
            dP = np.matmul(gp, self._right_t(Vp))
            dS = self.backprop_attention_softmax(dP, Pp, m, scale=c.scale, causal=c.causal)
            np.matmul(Pp.transpose(0, 1, 3, 2), gp, out=dVp)
            np.matmul(dS, Kp, out=dQp)
            np.matmul(dS.transpose(0, 1, 3, 2), Qp, out=dKp)

        self._over_groups(one, (c.Q, c.K, c.V, c.P, c.mask, g, dQ, dK, dV), (c.mask,))
        return dY

    def _over_groups(self, fn: Any, arrays: tuple[Any, ...], extras: tuple[Any, ...]) -> None:
        """``fn`` over every group of heads (``_groups``), each given its slices of
        ``arrays``, or once over the whole arrays."""
        groups = self._groups(arrays[:3], extras)
        if groups is None:
            fn(list(arrays))
            return
        ax, parts = groups
        self._in_groups(parts, lambda p: fn([_take(A, ax, p) for A in arrays]))

    def attention_softmax(
        self, S: Array, mask: Array | None = None, *, scale: float = 1.0, causal: bool = False,
        bias: Array | None = None, out: Array | None = None,
    ) -> Array:  # fmt: skip
        """The host kernel's masked softmax (into ``out``, C-contiguous, when given)."""
        suffix = _fast(S, out) if self.host is not None and S.size >= HOST_MIN else None
        if suffix is None or bias is not None or not ak.fits(S, mask):
            return super().attention_softmax(S, mask, scale=scale, causal=causal, bias=bias)
        B, H, Tq, Tk = ak._as4(tuple(S.shape))
        keep, sb, sh, sq, sk = ak.mask_args(mask, (B, H, Tq, Tk), np)
        P = np.empty_like(S) if out is None else out
        self.host.attn_softmax[suffix](P.ctypes.data, S.ctypes.data, _ptr(keep), B * H * Tq,
                                       Tq, Tk, H, sb, sh, sq, sk, int(causal), scale)  # fmt: skip
        return P

    def backprop_attention_softmax(
        self, dP: Array, P: Array, mask: Array | None = None, *, scale: float = 1.0,
        causal: bool = False,
    ) -> Array:  # fmt: skip
        ok = self.host is not None and P.size >= HOST_MIN and P.ndim >= 1
        suffix = _fast(dP, P) if ok and dP.shape == P.shape else None
        if suffix is None:
            return super().backprop_attention_softmax(dP, P, mask, scale=scale, causal=causal)
        Tk = P.shape[-1]
        dS = np.empty_like(P)
        self.host.attn_softmax_bwd[suffix](dS.ctypes.data, dP.ctypes.data, P.ctypes.data,
                                           P.size // Tk, Tk, scale)  # fmt: skip
        return dS

    def _block_args(self, S: Array, mask: Any, rows: slice, *arrays: Array) -> Any:
        """``(suffix, keep, rows, nr, n, H, sb, sh, sq, sk, q0)`` for the host block
        kernels, or None: the mask is read in place through its strides."""
        if self.host is None or S.ndim < 2 or S.ndim > 4 or S.size < HOST_MIN:
            return None
        suffix = _fast(S, *arrays)
        if suffix is None or (mask is not None and (type(mask) is not np.ndarray
                                                    or mask.dtype != np.bool_)):  # fmt: skip
            return None
        shape = (1,) * (4 - S.ndim) + tuple(S.shape)
        keep, strides = None, (0, 0, 0, 0)
        if mask is not None:
            if mask.ndim > 4:
                return None
            m = mask[(None,) * (4 - mask.ndim)]
            pairs = zip((*m.shape[:2], m.shape[3]), (*shape[:2], shape[3]), strict=True)
            if any(a not in (1, b) for a, b in pairs):
                return None
            keep = m
            strides = tuple(0 if n == 1 else s for n, s in zip(m.shape, m.strides, strict=True))  # type: ignore[assignment]
        nr, n = shape[2], shape[3]
        return (suffix, keep, shape[0] * shape[1] * nr, nr, n, shape[1], *strides, rows.start)

    def attention_block(
        self, S: Array, mask: Any, scale: float, causal: bool, rows: slice, bias: Any
    ) -> tuple[Array, Array]:
        args = None if bias is not None else self._block_args(S, mask, rows)
        if args is None:
            return super().attention_block(S, mask, scale, causal, rows, bias)
        suffix, keep, R = args[0], args[1], args[2]
        P, lse = np.empty_like(S), np.empty((*S.shape[:-1], 1), S.dtype)
        self.host.attn_block_fwd[suffix](P.ctypes.data, lse.ctypes.data, S.ctypes.data,
                                         _ptr(keep), R, *args[3:], int(causal), scale,
                                         _serial())  # fmt: skip
        return P, lse

    def backprop_attention_block(
        self, S: Array, dP: Array, lse: Array, Dsum: Array, mask: Any, scale: float,
        causal: bool, rows: slice, bias: Any,
    ) -> tuple[Array, Array]:  # fmt: skip
        lse, Dsum = np.ascontiguousarray(lse), np.ascontiguousarray(Dsum)
        args = None if bias is not None else self._block_args(S, mask, rows, dP, lse, Dsum)
        if args is None:
            return super().backprop_attention_block(S, dP, lse, Dsum, mask, scale, causal,
                                                    rows, bias)  # fmt: skip
        suffix, keep, R = args[0], args[1], args[2]
        P, dS = np.empty_like(S), np.empty_like(S)
        self.host.attn_block_bwd[suffix](P.ctypes.data, dS.ctypes.data, S.ctypes.data,
                                         dP.ctypes.data, lse.ctypes.data, Dsum.ctypes.data,
                                         _ptr(keep), R, *args[3:], int(causal), scale,
                                         _serial())  # fmt: skip
        return P, dS
