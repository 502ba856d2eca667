"""PyTorch's loss modules: ``loss_fn(input, target)`` with ``reduction`` of
``'mean'`` (default), ``'sum'`` or ``'none'``.

Example:
    >>> import gpunet as gn
    >>> gn.nn.MSELoss(reduction="sum")(gn.tensor([1.0, 2.0]), gn.tensor([0.0, 0.0])).item()
    5.0
"""

from __future__ import annotations

from typing import Any

from gpunet import mixed_precision
from gpunet.autograd import Tensor
from gpunet.nn import functional as F


class _Loss:
    fn: Any = None

    def __init__(self, reduction: str = "mean", **kw: Any) -> None:
        if reduction not in F.REDUCTIONS:
            raise ValueError(f"{reduction} is not a valid value for reduction")
        self.reduction, self.kw = reduction, kw

    def __call__(self, input: Tensor, target: Any) -> Tensor:
        if mixed_precision.autocasting():  # losses are on autocast's float32 list
            input = mixed_precision.loss_input(input)
        return type(self).fn(input, target, reduction=self.reduction, **self.kw)  # type: ignore[no-any-return]

    forward = __call__

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class MSELoss(_Loss):
    fn = F.mse_loss


class L1Loss(_Loss):
    fn = F.l1_loss


class HuberLoss(_Loss):
    fn = F.huber_loss

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction, delta=delta)


class BCELoss(_Loss):
    fn = F.binary_cross_entropy

    def __init__(self, weight: Any = None, reduction: str = "mean") -> None:
        super().__init__(reduction, weight=weight)


class BCEWithLogitsLoss(_Loss):
    fn = F.binary_cross_entropy_with_logits

    def __init__(self, weight: Any = None, reduction: str = "mean", pos_weight: Any = None) -> None:
        super().__init__(reduction, weight=weight, pos_weight=pos_weight)


class NLLLoss(_Loss):
    fn = F.nll_loss

    def __init__(
        self, weight: Any = None, ignore_index: int = -100, reduction: str = "mean"
    ) -> None:
        super().__init__(reduction, weight=weight, ignore_index=ignore_index)


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits against class labels or class probabilities.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> logits = gn.tensor(np.array([[2.0, 0.0], [0.0, 2.0]]))
        >>> loss = gn.nn.CrossEntropyLoss()
        >>> bool(np.isclose(loss(logits, np.array([0, 1])).item(),
        ...                 loss(logits, np.eye(2)).item()))
        True
    """

    fn = F.cross_entropy

    def __init__(
        self,
        weight: Any = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(
            reduction, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing
        )


class SmoothL1Loss(_Loss):
    fn = F.smooth_l1_loss

    def __init__(self, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__(reduction, beta=beta)


class KLDivLoss(_Loss):
    """``reduction`` also takes ``"batchmean"``, the KL divergence's own mean."""

    fn = F.kl_div

    def __init__(self, reduction: str = "mean", log_target: bool = False) -> None:
        if reduction not in (*F.REDUCTIONS, "batchmean"):
            raise ValueError(f"{reduction} is not a valid value for reduction")
        self.reduction, self.kw = reduction, {"log_target": bool(log_target)}


class CosineSimilarity:
    """``nn.CosineSimilarity(dim=1, eps=1e-8)``: :func:`functional.cosine_similarity`."""

    def __init__(self, dim: int = 1, eps: float = 1e-8) -> None:
        self.dim, self.eps = dim, eps

    def __call__(self, x1: Tensor, x2: Any) -> Tensor:
        return F.cosine_similarity(x1, x2, self.dim, self.eps)

    forward = __call__

    def __repr__(self) -> str:
        return "CosineSimilarity()"
