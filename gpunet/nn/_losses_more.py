"""PyTorch's distance and ranking losses (metric learning, siamese networks):
``pairwise_distance``, ``margin_ranking_loss``, ``triplet_margin_loss`` and
``cosine_embedding_loss``, with their modules, composed of differentiable tensor ops
in the formulas ATen uses (the same ``eps`` placements, so values match to rounding).

Example:
    >>> import gpunet as gn
    >>> a, p, n = gn.tensor([[0.0, 0.0]]), gn.tensor([[3.0, 4.0]]), gn.tensor([[6.0, 8.0]])
    >>> round(gn.nn.functional.pairwise_distance(a, p).item(), 4)
    5.0
    >>> round(gn.nn.TripletMarginLoss(margin=1.0)(a, p, n).item(), 4)
    0.0
"""

from __future__ import annotations

from typing import Any

from gpunet import functional as G
from gpunet._torch_more import minimum
from gpunet.autograd import Tensor
from gpunet.nn.functional import REDUCTIONS, _reduce, _t


def pairwise_distance(
    x1: Tensor, x2: Any, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False
) -> Tensor:
    """``||x1 - x2 + eps||_p`` over the last axis (``eps`` keeps the gradient finite
    where the two are equal)."""
    a = _t(x1)
    return (a - _t(x2, a) + eps).norm(p=p, dim=-1, keepdim=keepdim)  # type: ignore[no-any-return]


def _check(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")


def margin_ranking_loss(
    input1: Tensor, input2: Any, target: Any, margin: float = 0.0, reduction: str = "mean"
) -> Tensor:
    """``max(0, -target * (input1 - input2) + margin)``: ``target`` 1 ranks ``input1``
    above ``input2``, -1 below."""
    _check(reduction)
    a = _t(input1)
    b, y = _t(input2, a), _floating(_t(target, a), a)
    return _reduce(G.clamp(-y * (a - b) + margin, min=0.0), reduction)


def _floating(y: Tensor, like: Tensor) -> Tensor:
    """Integer +-1 targets in ``like``'s dtype (else an int64 target made it float64)."""
    if y.ops.xp.isdtype(y.dtype, "real floating"):
        return y
    return Tensor(y.ops.xp.astype(y.data, like.dtype), y.ops)


def triplet_margin_loss(
    anchor: Tensor, positive: Any, negative: Any, margin: float = 1.0, p: float = 2.0,
    eps: float = 1e-6, swap: bool = False, reduction: str = "mean",
) -> Tensor:  # fmt: skip
    """``max(0, margin + d(anchor, positive) - d(anchor, negative))`` with ``d`` the
    :func:`pairwise_distance`; ``swap`` takes the nearer of the negative's distances to
    the anchor and to the positive."""
    _check(reduction)
    if margin <= 0:
        raise ValueError(f"triplet_margin_loss: margin must be greater than 0, got {margin}")
    a = _t(anchor)
    pos, neg = _t(positive, a), _t(negative, a)
    d_pos = pairwise_distance(a, pos, p, eps)
    d_neg = pairwise_distance(a, neg, p, eps)
    if swap:
        d_neg = minimum(d_neg, pairwise_distance(pos, neg, p, eps))
    return _reduce(G.clamp(margin + d_pos - d_neg, min=0.0), reduction)


def cosine_embedding_loss(
    input1: Tensor, input2: Any, target: Any, margin: float = 0.0, reduction: str = "mean"
) -> Tensor:
    """``1 - cos(x1, x2)`` where ``target`` is 1 and ``max(0, cos(x1, x2) - margin)``
    where it is -1 (0 elsewhere), the cosine over the last axis as ATen forms it:
    ``sum(x1 x2) / sqrt((|x1|^2 + 1e-12) (|x2|^2 + 1e-12))``."""
    _check(reduction)
    a = _t(input1)
    b, y = _t(input2, a), _t(target, a)
    dim = a.ndim - 1
    dot = (a * b).sum(dim=dim)
    denom = (((a * a).sum(dim=dim) + 1e-12) * ((b * b).sum(dim=dim) + 1e-12)).sqrt()
    cos = dot / denom
    zero = cos * 0.0
    loss = G.where(y == 1, 1.0 - cos, zero) + G.where(y == -1, G.clamp(cos - margin, min=0.0), zero)
    return _reduce(loss, reduction)


class _Reduced:
    """A loss module: its keyword arguments kept, the function called with them."""

    fn: Any = None
    name = ""

    def __init__(self, reduction: str = "mean", **kw: Any) -> None:
        _check(reduction)
        self.reduction, self.kw = reduction, kw

    def __call__(self, *inputs: Any) -> Tensor:
        return type(self).fn(*inputs, reduction=self.reduction, **self.kw)  # type: ignore[no-any-return]

    forward = __call__

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class MarginRankingLoss(_Reduced):
    fn = margin_ranking_loss

    def __init__(self, margin: float = 0.0, reduction: str = "mean") -> None:
        super().__init__(reduction, margin=margin)


class TripletMarginLoss(_Reduced):
    fn = triplet_margin_loss

    def __init__(self, margin: float = 1.0, p: float = 2.0, eps: float = 1e-6,
                 swap: bool = False, reduction: str = "mean") -> None:  # fmt: skip
        super().__init__(reduction, margin=margin, p=p, eps=eps, swap=swap)


class CosineEmbeddingLoss(_Reduced):
    fn = cosine_embedding_loss

    def __init__(self, margin: float = 0.0, reduction: str = "mean") -> None:
        super().__init__(reduction, margin=margin)


class PairwiseDistance:
    """``nn.PairwiseDistance(p=2.0, eps=1e-6, keepdim=False)``."""

    def __init__(self, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> None:
        self.norm, self.eps, self.keepdim = p, eps, keepdim

    def __call__(self, x1: Tensor, x2: Any) -> Tensor:
        return pairwise_distance(x1, x2, self.norm, self.eps, self.keepdim)

    forward = __call__

    def __repr__(self) -> str:
        return "PairwiseDistance()"
