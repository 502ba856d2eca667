"""``F.scaled_dot_product_attention`` and ``nn.MultiheadAttention`` with PyTorch's
arguments, masks and parameter layout (``in_proj_weight (3E, E)``, ``in_proj_bias``,
``out_proj``), so a PyTorch ``state_dict`` loads as it is.

Masks as PyTorch's: for ``scaled_dot_product_attention`` a boolean ``attn_mask`` is
True where attention *is allowed*; for ``MultiheadAttention`` boolean ``attn_mask`` and
``key_padding_mask`` are True where it is *not*; float masks are added to the scores.
One difference: a query row with every key masked gets all-zero weights here (as in
Keras), where PyTorch returns NaN.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gpunet import functional as G
from gpunet import random as grandom
from gpunet.autograd import Tensor, as_tensor, record
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers.base import Layer
from gpunet.nn._module import TorchModule, torch_param
from gpunet.nn.modules import Linear


def _split_mask(ops: Any, m: Any, allowed: bool, dtype: Any) -> tuple[Any, Any]:
    """``(keep, bias)`` of a PyTorch mask: boolean (``allowed``: True means attend)
    or additive float."""
    if m is None:
        return None, None
    xp = ops.xp
    if not isinstance(m, Tensor):  # host data: in the model's dtype before it moves
        host = np.asarray(m)
        arr = ops.asarray(host) if host.dtype == bool else ops.asarray(host, dtype=dtype)
    else:
        arr = m.data
    if arr.dtype == xp.bool:
        return (arr if allowed else xp.logical_not(arr)), None
    return None, xp.astype(arr, dtype)


def attention_node(
    q: Tensor, k: Tensor, v: Tensor, keep: Any, bias: Any, *, scale: float, causal: bool,
    dropout: float, need_weights: bool = False,
) -> tuple[Tensor, Any]:  # fmt: skip
    """Attention over tensors as one graph node; returns ``(out, P or None)``."""
    ops = q.ops
    O, P, cache = ops.attention(q.data, k.data, v.data, keep, scale=scale, causal=causal,
                                dropout=dropout, keep_probs=need_weights, bias=bias)  # fmt: skip
    shapes = [tuple(t.shape) for t in (q, k, v)]

    def backward(dO: Any) -> tuple[Any, ...]:
        grads = ops.backprop_attention(dO, cache)
        return tuple(ops.sum_to_shape(g, s) for g, s in zip(grads, shapes, strict=True))

    return record(O, ops, (q, k, v), backward, "attention"), P


def _self_attention_node(
    y: Tensor, H: int, keep: Any, bias: Any, *, scale: float, causal: bool, dropout: float,
    need_weights: bool,
) -> tuple[Tensor, Any]:  # fmt: skip
    """Attention from the fused projection ``y (B, L, 3E)`` to ``(B, L, E)`` as one
    node: the heads are strided views of ``y`` (no copies, none of the three split
    projections' slice and permute nodes) and the gradients of q, k and v are written
    into one ``(B, L, 3E)`` array, which the projection takes in one GEMM."""
    ops, xp = y.ops, y.ops.xp
    B, L, E3 = y.shape
    dh = E3 // (3 * H)
    O, P, cache = ops.self_attention(xp.reshape(y.data, (B, L, 3, H, dh)), keep, scale=scale,
                                     causal=causal, dropout=dropout, keep_probs=need_weights,
                                     bias=bias)  # fmt: skip
    out = xp.reshape(O, (B, L, H * dh))

    def backward(g: Any) -> tuple[Any]:
        dY = ops.backprop_self_attention(xp.reshape(g, (B, L, H, dh)), cache)
        return (xp.reshape(dY, (B, L, E3)),)

    return record(out, ops, (y,), backward, "attention"), P


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Any = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """``softmax(query @ key^T * scale + mask) @ value`` over the last two axes, as
    ``torch.nn.functional.scaled_dot_product_attention`` (dropout applies whenever
    ``dropout_p > 0``, as there).

    Example:
        >>> import numpy as np, gpunet as gn
        >>> q = gn.tensor(np.ones((1, 2, 3, 4)))
        >>> gn.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True).shape
        (1, 2, 3, 4)
    """
    if enable_gqa:
        raise InvalidParameterError("scaled_dot_product_attention: enable_gqa is not supported")
    q = query if isinstance(query, Tensor) else as_tensor(np.asarray(query), _ops())
    k, v = (t if isinstance(t, Tensor) else as_tensor(np.asarray(t), q.ops) for t in (key, value))
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2 or q.shape[-1] != k.shape[-1]:
        raise InputValidationError(
            f"scaled_dot_product_attention: query (..., L, E) and key (..., S, E) must share "
            f"E; got query {q.shape}, key {k.shape}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise InputValidationError(
            f"scaled_dot_product_attention: key {k.shape} and value {v.shape} must have the "
            "same number of steps S"
        )
    if is_causal and attn_mask is not None:
        raise InvalidParameterError(
            "scaled_dot_product_attention: give attn_mask or is_causal, not both (PyTorch)"
        )
    keep, bias = _split_mask(q.ops, attn_mask, True, q.dtype)
    _check_broadcast(keep if keep is not None else bias, (*q.shape[:-1], k.shape[-2]))
    s = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    return attention_node(q, k, v, keep, bias, scale=s, causal=is_causal,
                          dropout=float(dropout_p))[0]  # fmt: skip


def _ops() -> Any:
    from gpunet.backend import get_ops

    return get_ops("cpu")


def _check_broadcast(m: Any, shape: tuple[int, ...]) -> None:
    if m is None:
        return
    got = tuple(m.shape)
    pairs = zip(got[::-1], shape[::-1], strict=False)
    if len(got) > len(shape) or any(a not in (1, b) for a, b in pairs):
        raise InputValidationError(
            f"attention mask of shape {got} does not broadcast to the scores' shape {shape}"
        )


class MultiheadAttention(TorchModule, Layer):
    """PyTorch's ``nn.MultiheadAttention`` (``kdim``/``vdim`` equal to ``embed_dim``).

    ``forward(query, key, value, key_padding_mask=None, need_weights=True,
    attn_mask=None, average_attn_weights=True, is_causal=False)`` returns
    ``(attn_output, attn_weights)``; inputs are ``(L, N, E)``, or ``(N, L, E)`` with
    ``batch_first=True``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> mha = gn.nn.MultiheadAttention(8, 2, batch_first=True)
        >>> x = np.ones((3, 5, 8), dtype="float32")
        >>> out, w = mha(x, x, x)
        >>> out.shape, w.shape
        ((3, 5, 8), (3, 5, 5))
        >>> list(mha.state_dict())
        ['in_proj_weight', 'in_proj_bias', 'out_proj.weight', 'out_proj.bias']
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(dtype=None if dtype is None else np.dtype(dtype).name)
        if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim <= 0:
            raise InvalidParameterError(f"embed_dim must be a positive int, got {embed_dim!r}")
        if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads <= 0:
            raise InvalidParameterError(f"num_heads must be a positive int, got {num_heads!r}")
        if embed_dim % num_heads:
            raise InvalidParameterError(
                f"embed_dim must be divisible by num_heads, got {embed_dim} and {num_heads}"
            )
        if (
            add_bias_kv
            or add_zero_attn
            or kdim not in (None, embed_dim)
            or (vdim not in (None, embed_dim))
        ):
            raise InvalidParameterError(
                "MultiheadAttention: add_bias_kv, add_zero_attn and kdim/vdim other than "
                "embed_dim are not supported"
            )
        if not 0.0 <= dropout < 1.0:
            raise InvalidParameterError(f"dropout must be in [0, 1), got {dropout!r}")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, float(dropout)
        self.head_dim, self.batch_first = embed_dim // num_heads, bool(batch_first)
        rng = grandom.generator("init")
        bound = math.sqrt(6.0 / (embed_dim + 3 * embed_dim))  # xavier_uniform_ of (3E, E)
        self.in_proj_weight = torch_param(
            self, "in_proj_weight", rng.uniform(-bound, bound, (3 * embed_dim, embed_dim))
        )
        self.in_proj_bias = (
            torch_param(self, "in_proj_bias", np.zeros(3 * embed_dim)) if bias else None
        )
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=self.dtype)
        if self.out_proj.bias is not None:
            self.out_proj.bias.assign(np.zeros(embed_dim))  # PyTorch zeroes it
        self.built = True
        if device is not None:
            self.to(device)

    def call(  # type: ignore[override]
        self,
        query: Tensor,
        key: Any,
        value: Any,
        key_padding_mask: Any = None,
        need_weights: bool = True,
        attn_mask: Any = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
        training: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        k, v = self._convert(key), self._convert(value)
        q = query
        for name, t in (("query", q), ("key", k), ("value", v)):
            if t.ndim != 3 or t.shape[-1] != self.embed_dim:
                raise InputValidationError(
                    f"MultiheadAttention({self.embed_dim}, {self.num_heads}): {name} must have "
                    f"shape (L, N, {self.embed_dim}) (batch_first: (N, L, {self.embed_dim})), "
                    f"got {t.shape}"
                )
        if not self.batch_first:  # (L, N, E) -> (N, L, E)
            q, k, v = (G.permute(t, (1, 0, 2)) for t in (q, k, v))
        if is_causal and attn_mask is None:
            raise InvalidParameterError("Need attn_mask if specifying the is_causal hint")
        out, P = self._attend(q, k, v, key_padding_mask, attn_mask, need_weights, training)
        out = self.out_proj(out)
        if not self.batch_first:
            out = G.permute(out, (1, 0, 2))
        if not need_weights:
            return out, None
        xp = self.ops.xp
        W = xp.mean(P, axis=1) if average_attn_weights else P
        return out, Tensor(W, self.ops)

    def _attend(
        self, q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Any, attn_mask: Any,
        need_weights: bool, training: bool,
    ) -> tuple[Tensor, Any]:  # fmt: skip
        ops, xp = self.ops, self.ops.xp
        B, L, E = q.shape
        S, H, dh = k.shape[1], self.num_heads, self.head_dim
        keep, bias = None, None
        for m, allowed, shape in (
            (attn_mask, False, None),
            (key_padding_mask, False, (B, 1, 1, S)),
        ):
            if m is None:
                continue
            mk, mb = _split_mask(ops, m, allowed, q.dtype)
            arr = mk if mk is not None else mb
            if shape is None:  # (L, S) or (N * heads, L, S)
                if tuple(arr.shape) == (B * H, L, S):
                    shape = (B, H, L, S)
                elif tuple(arr.shape) == (L, S):
                    shape = (1, 1, L, S)
                else:
                    raise InputValidationError(
                        f"attn_mask must have shape {(L, S)} or {(B * H, L, S)}, got "
                        f"{tuple(arr.shape)}"
                    )
            elif tuple(arr.shape) != (B, S):
                raise InputValidationError(
                    f"key_padding_mask must have shape {(B, S)}, got {tuple(arr.shape)}"
                )
            arr = xp.reshape(arr, shape)
            if mk is not None:
                keep = arr if keep is None else xp.logical_and(keep, arr)
            else:
                bias = arr if bias is None else bias + arr
        kw: dict[str, Any] = {"scale": 1.0 / math.sqrt(dh), "causal": False,
                              "need_weights": need_weights,
                              "dropout": self.dropout if training else 0.0}  # fmt: skip
        if q is k and k is v:  # self-attention: one (E, 3E) projection, heads as its views
            y = G.linear(q, self.in_proj_weight, self.in_proj_bias)
            return _self_attention_node(y, H, keep, bias, **kw)
        Wq, Wk, Wv = (self.in_proj_weight[i * E : (i + 1) * E] for i in range(3))
        b = self.in_proj_bias
        bs = [None] * 3 if b is None else [b[i * E : (i + 1) * E] for i in range(3)]
        heads = []
        for t, W, c, T in ((q, Wq, bs[0], L), (k, Wk, bs[1], S), (v, Wv, bs[2], S)):
            y = G.linear(t, W, c)
            heads.append(G.permute(G.reshape(y, (B, T, H, dh)), (0, 2, 1, 3)))
        hq, hk, hv = heads
        out, P = attention_node(hq, hk, hv, keep, bias, **kw)
        return G.reshape(G.permute(out, (0, 2, 1, 3)), (B, L, E)), P

    def extra_repr(self) -> str:
        return ""
