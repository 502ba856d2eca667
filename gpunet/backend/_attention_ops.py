"""Scaled dot-product attention with its backprop: the scores by batched GEMMs, a
masked softmax in float32 (also for float16 inputs), and, when the scores would be
large, blocks of query rows so memory grows linearly in the sequence length.

Shapes: ``Q (..., Tq, dk)``, ``K (..., Tk, dk)``, ``V (..., Tk, dv)``; a mask is
boolean, True where a query may attend to a key, and broadcasts to ``(..., Tq, Tk)``.
A causal mask keeps key ``j <= i`` for query ``i`` (PyTorch's top-left alignment). As
Keras' ``Softmax`` does, a masked score is replaced by ``FILL`` and its weight then set
to 0, so a row with every key masked has all-zero weights (PyTorch returns NaN there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Array = Any
FILL = -1e9  # a masked score (Keras' large negative number; exp underflows to 0)


@dataclass
class AttentionCache:
    """What ``backprop_attention`` needs: the inputs, and the probabilities ``P``
    (with the dropout mask ``D``) or, in blocks, each row's log-sum-exp ``lse``."""

    Q: Array
    K: Array
    V: Array
    O: Array
    mask: Array | None
    scale: float
    causal: bool
    P: Array | None = None
    D: Array | None = None
    lse: Array | None = None
    bias: Array | None = None
    streamed: bool = False  # made by the streaming kernels (FusedAttention)
    Y5: Array | None = None  # the fused projection the host's head-by-head pass read


class AttentionOps:
    xp: Any
    matmul: Any  # AmpOps' (a mixed policy's GEMMs in low precision on a device)
    attention_chunk = 128  # query rows per block on the blocked path
    attention_whole = 1 << 21  # score elements up to which P is kept whole (8 MiB)

    def _right_t(self, K: Array) -> Array:
        """``K`` with its last two axes swapped, as the right operand of a product
        (the host backend makes it contiguous: faster products)."""
        return self.xp.matrix_transpose(K)

    def _math_dtype(self, X: Array) -> Any:
        xp = self.xp
        return xp.float32 if str(X.dtype) == "float16" else X.dtype

    def _keep(self, mask: Array | None, causal: bool, rows: slice, Tq: int, Tk: int) -> Any:
        """The boolean mask of query rows ``rows`` (None: keep everything)."""
        xp = self.xp
        keep = None
        if mask is not None:
            keep = _rows(mask, rows)
        if causal:
            r = xp.arange(rows.start, rows.stop, **self.device_kw)  # type: ignore[attr-defined]
            c = xp.arange(Tk, **self.device_kw)  # type: ignore[attr-defined]
            tri = xp.reshape(r, (-1, 1)) >= xp.reshape(c, (1, -1))
            keep = tri if keep is None else xp.logical_and(keep, tri)
        return keep

    def attention_softmax(
        self,
        S: Array,
        mask: Array | None = None,
        *,
        scale: float = 1.0,
        causal: bool = False,
        bias: Array | None = None,
    ) -> Array:
        """``where(mask, softmax(where(mask, scale * S, FILL)), 0)`` over the last
        axis, computed in float32 for float16 scores and returned in ``S.dtype``.
        ``bias`` (a float array broadcasting to ``S``) is added after the scaling.

        Example:
            >>> import numpy as np
            >>> from gpunet.backend.ops import Ops
            >>> Ops().attention_softmax(np.zeros((2, 2)), causal=True)
            array([[1. , 0. ],
                   [0.5, 0.5]])
        """
        P, _ = self._softmax_rows(S, mask, scale, causal, slice(0, S.shape[-2]), bias)
        return self.xp.astype(P, S.dtype)

    def _scores(
        self, S: Array, mask: Array | None, scale: float, causal: bool, rows: slice, bias: Any
    ) -> tuple[Array, Any]:
        """The masked, scaled scores of rows ``rows`` in the math dtype, and the mask."""
        xp = self.xp
        Z = xp.astype(S, self._math_dtype(S)) * scale
        if bias is not None:
            Z = Z + xp.astype(_rows(bias, rows), Z.dtype)
        keep = self._keep(mask, causal, rows, rows.stop, S.shape[-1])
        if keep is not None:
            Z = xp.where(keep, Z, xp.full_like(Z, FILL))
        return Z, keep

    def _softmax_rows(
        self, S: Array, mask: Array | None, scale: float, causal: bool, rows: slice,
        bias: Any = None,
    ) -> tuple[Array, Array]:  # fmt: skip
        """``(P, lse)`` in the math dtype for score rows ``rows`` (S holds only them)."""
        xp = self.xp
        Z, keep = self._scores(S, mask, scale, causal, rows, bias)
        m = xp.max(Z, axis=-1, keepdims=True)
        E = xp.exp(Z - m)
        s = xp.sum(E, axis=-1, keepdims=True)
        P = E / s
        if keep is not None:  # a row with every key masked gets no weight at all (Keras)
            P = xp.where(keep, P, xp.zeros_like(P))
        return P, m + xp.log(s)

    def backprop_attention_softmax(
        self,
        dP: Array,
        P: Array,
        mask: Array | None = None,
        *,
        scale: float = 1.0,
        causal: bool = False,
    ) -> Array:
        """The gradient of the scores ``S`` from that of ``P``: masked scores get none
        (they were replaced by a constant)."""
        xp = self.xp
        md = self._math_dtype(P)
        dS = self._dscores(xp.astype(dP, md), xp.astype(P, md), None, mask, scale, causal,
                           slice(0, P.shape[-2]))  # fmt: skip
        return xp.astype(dS, P.dtype)

    def _dscores(
        self, dP: Array, P: Array, Dsum: Array | None, mask: Array | None, scale: float,
        causal: bool, rows: slice,
    ) -> Array:  # fmt: skip
        xp = self.xp
        if Dsum is None:
            Dsum = xp.sum(P * dP, axis=-1, keepdims=True)
        dS = P * (dP - Dsum) * scale
        keep = self._keep(mask, causal, rows, rows.stop, P.shape[-1])
        return dS if keep is None else xp.where(keep, dS, xp.zeros_like(dS))

    def attention(
        self,
        Q: Array,
        K: Array,
        V: Array,
        mask: Array | None = None,
        *,
        scale: float,
        causal: bool = False,
        dropout: float = 0.0,
        keep_probs: bool = False,
        bias: Array | None = None,
    ) -> tuple[Array, Array | None, AttentionCache]:
        """``softmax(mask(scale * Q @ K^T)) @ V``; returns ``(O, P, cache)``, ``P``
        only with ``keep_probs`` (before dropout, as Keras returns the scores).

        Dropout (inverted, rate ``dropout``) drops attention weights. With neither
        dropout nor ``keep_probs``, scores over ``attention_whole`` elements are done
        ``attention_chunk`` query rows at a time, keeping a log-sum-exp per row for
        the backward instead of ``P``. ``bias`` is added to the scaled scores.
        """
        Tq, Tk = Q.shape[-2], K.shape[-2]
        lead = tuple(Q.shape[:-2])
        n = Tq * Tk
        for d in lead:
            n *= d
        if keep_probs or dropout > 0.0 or n <= self.attention_whole:
            D = None
            if dropout > 0.0:
                O, P = self._whole_attention(Q, K, V, mask, scale, causal, bias, apply=False)
                D = self.dropout_mask(tuple(P.shape), dropout, P.dtype)  # type: ignore[attr-defined]
                O = self.matmul(P * D, V)
            else:
                O, P = self._whole_attention(Q, K, V, mask, scale, causal, bias)
            cache = AttentionCache(Q, K, V, O, mask, scale, causal, P=P, D=D, bias=bias)
            return O, (P if keep_probs else None), cache
        O, lse = self._blocked_attention(Q, K, V, mask, scale, causal, bias)
        return O, None, AttentionCache(Q, K, V, O, mask, scale, causal, lse=lse, bias=bias)

    def self_attention(
        self, Y5: Array, mask: Array | None = None, *, scale: float, causal: bool = False,
        dropout: float = 0.0, keep_probs: bool = False, bias: Array | None = None,
    ) -> tuple[Array, Array | None, AttentionCache]:  # fmt: skip
        """:meth:`attention` over the heads of one fused projection ``Y5 (B, L, 3, H,
        dh)`` (query, key and value of each head as its strided views); the output as
        ``(B, L, H, dh)``, the layout the output projection reads."""
        xp = self.xp
        q, k, v = (xp.permute_dims(Y5[:, :, i, ...], (0, 2, 1, 3)) for i in range(3))
        O, P, cache = self.attention(q, k, v, mask, scale=scale, causal=causal,
                                     dropout=dropout, keep_probs=keep_probs, bias=bias)  # fmt: skip
        return xp.permute_dims(O, (0, 2, 1, 3)), P, cache

    def backprop_self_attention(self, dO: Array, cache: AttentionCache) -> Array:
        """The gradient ``(B, L, 3, H, dh)`` of :meth:`self_attention`'s ``Y5`` from
        that of its output ``dO (B, L, H, dh)``."""
        xp = self.xp
        B, L, H, dh = dO.shape
        dY = xp.empty((B, L, 3, H, dh), dtype=dO.dtype, **self.device_kw)  # type: ignore[attr-defined]
        grads = self.backprop_attention(xp.permute_dims(dO, (0, 2, 1, 3)), cache)
        for i, d in enumerate(grads):
            dY[:, :, i, ...] = xp.permute_dims(d, (0, 2, 1, 3))
        return dY

    def _whole_attention(
        self, Q: Array, K: Array, V: Array, mask: Any, scale: float, causal: bool, bias: Any,
        apply: bool = True,
    ) -> tuple[Array | None, Array]:  # fmt: skip
        """``(P @ V, P)`` with the whole probabilities ``P`` (``(None, P)`` unless
        ``apply``)."""
        S = self.matmul(Q, self._right_t(K))
        P = self.attention_softmax(S, mask, scale=scale, causal=causal, bias=bias)
        return (self.matmul(P, V) if apply else None), P

    def _blocked_attention(
        self, Q: Array, K: Array, V: Array, mask: Any, scale: float, causal: bool, bias: Any
    ) -> tuple[Array, Array]:
        """``(O, lse)`` over blocks of ``attention_chunk`` query rows."""
        xp = self.xp
        Kt = self._right_t(K)
        Tq, Tk = Q.shape[-2], K.shape[-2]
        blocks, lses = [], []
        for r0 in range(0, Tq, self.attention_chunk):
            rows = slice(r0, min(Tq, r0 + self.attention_chunk))
            n = min(Tk, rows.stop) if causal else Tk  # causal: later keys have weight 0
            S = self.matmul(Q[..., rows, :], Kt[..., :n])
            P, lse = self.attention_block(S, _cols(mask, n), scale, causal, rows, _cols(bias, n))
            blocks.append(self.matmul(_as(xp, P, V.dtype), V[..., :n, :]))
            lses.append(lse)
        return xp.concat(blocks, axis=-2), xp.concat(lses, axis=-2)

    def backprop_attention(self, dO: Array, cache: AttentionCache) -> tuple[Array, Array, Array]:
        """``(dQ, dK, dV)`` of :meth:`attention` (``dK``/``dV`` summed over any axes
        that ``K``/``V`` broadcast along)."""
        if cache.P is not None:
            return self._whole_backprop(dO, cache)
        return self._blocked_backprop(dO, cache)

    def _whole_backprop(self, dO: Array, c: AttentionCache) -> tuple[Array, Array, Array]:
        """``(dQ, dK, dV)`` of :meth:`_whole_attention` (and its dropout)."""
        xp = self.xp
        Q, K, V = c.Q, c.K, c.V
        Pd = c.P if c.D is None else c.P * c.D
        dPd = self.matmul(dO, self._right_t(V))
        dP = dPd if c.D is None else dPd * c.D
        dS = self.backprop_attention_softmax(dP, c.P, c.mask, scale=c.scale, causal=c.causal)
        dV = self.matmul(xp.matrix_transpose(Pd), dO)
        dQ = self.matmul(dS, K)
        dK = self.matmul(xp.matrix_transpose(dS), Q)
        return dQ, self._unbroadcast(dK, K), self._unbroadcast(dV, V)

    def _blocked_backprop(self, dO: Array, c: AttentionCache) -> tuple[Array, Array, Array]:
        """``(dQ, dK, dV)`` of :meth:`_blocked_attention`, the weights recomputed."""
        xp = self.xp
        Q, K, V = c.Q, c.K, c.V
        md = self._math_dtype(Q)
        Kt, Vt = self._right_t(K), self._right_t(V)
        Tq, Tk = Q.shape[-2], K.shape[-2]
        dQs: list[Array] = []
        dK: Any = None
        dV: Any = None
        assert c.lse is not None
        Dsum_all = xp.sum(_as(xp, dO, md) * _as(xp, c.O, md), axis=-1, keepdims=True)
        for r0 in range(0, Tq, self.attention_chunk):
            rows = slice(r0, min(Tq, r0 + self.attention_chunk))
            n = min(Tk, rows.stop) if c.causal else Tk
            Qc, dOc = Q[..., rows, :], dO[..., rows, :]
            S = self.matmul(Qc, Kt[..., :n])
            dP = self.matmul(dOc, Vt[..., :n])
            P, dS = self.backprop_attention_block(
                S,
                dP,
                c.lse[..., rows, :],
                Dsum_all[..., rows, :],
                _cols(c.mask, n),
                c.scale,
                c.causal,
                rows,
                _cols(c.bias, n),
            )
            dQs.append(self.matmul(dS, K[..., :n, :]))
            gK = self.matmul(xp.matrix_transpose(dS), Qc)
            gV = self.matmul(xp.matrix_transpose(_as(xp, P, V.dtype)), dOc)
            if dK is None:
                dK = xp.zeros((*gK.shape[:-2], Tk, gK.shape[-1]), dtype=gK.dtype, **self._kw())
                dV = xp.zeros((*gV.shape[:-2], Tk, gV.shape[-1]), dtype=gV.dtype, **self._kw())
            dK[..., :n, :] += gK  # in place: no fresh (Tk, d) array per block
            dV[..., :n, :] += gV
        return xp.concat(dQs, axis=-2), self._unbroadcast(dK, K), self._unbroadcast(dV, V)

    def attention_block(
        self, S: Array, mask: Any, scale: float, causal: bool, rows: slice, bias: Any
    ) -> tuple[Array, Array]:
        """``(P, lse)`` of score rows ``rows`` (``S`` holds only them), P in the math
        dtype, lse ``(..., rows, 1)``: the blocked forward's softmax."""
        return self._softmax_rows(S, mask, scale, causal, rows, bias)

    def backprop_attention_block(
        self, S: Array, dP: Array, lse: Array, Dsum: Array, mask: Any, scale: float,
        causal: bool, rows: slice, bias: Any,
    ) -> tuple[Array, Array]:  # fmt: skip
        """``(P, dS)`` of score rows ``rows``: the weights recomputed from ``lse``, and
        ``dS = scale * P * (dP - Dsum)`` in ``S.dtype`` (masked keys have ``P = 0``, so
        they get no gradient without the mask)."""
        xp = self.xp
        Z, keep = self._scores(S, mask, scale, causal, rows, bias)
        P = xp.exp(Z - lse)
        if keep is not None:
            P = xp.where(keep, P, xp.zeros_like(P))
        dS = P * (xp.astype(dP, P.dtype) - Dsum) * scale
        return xp.astype(P, S.dtype), xp.astype(dS, S.dtype)

    def _kw(self) -> dict[str, Any]:
        return self.device_kw  # type: ignore[attr-defined,no-any-return]

    def _unbroadcast(self, G: Array, X: Array) -> Array:
        return self.sum_to_shape(G, tuple(X.shape))  # type: ignore[attr-defined,no-any-return]


def _as(xp: Any, A: Array, dtype: Any) -> Array:
    """``A`` in ``dtype``, without the copy ``astype`` makes when it already is (a
    copy of every score block of the blocked path otherwise)."""
    return A if A.dtype == dtype else xp.astype(A, dtype)


def _rows(A: Array, rows: slice) -> Array:
    """Rows ``rows`` of a mask or bias that broadcasts to the scores."""
    return A if A.ndim < 2 or A.shape[-2] == 1 else A[..., rows, :]


def _cols(A: Array | None, n: int) -> Array | None:
    """The first ``n`` key columns of a mask or bias that broadcasts to the scores."""
    return A if A is None or A.ndim < 1 or A.shape[-1] == 1 else A[..., :n]
