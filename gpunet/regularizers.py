"""Weight penalties added to the training loss: ``l1 * sum|W| + l2 * sum(W^2)``.

Example:
    >>> import gpunet as gn
    >>> gn.regularizers.get("l2").l2
    0.01
"""

from __future__ import annotations

from typing import Any

from gpunet.autograd import Tensor, record
from gpunet.errors import InvalidParameterError


class L1L2:
    """Penalty ``l1 * sum(|W|) + l2 * sum(W**2)`` (Keras defaults: 0.01)."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        if l1 < 0 or l2 < 0:
            raise InvalidParameterError(f"l1 and l2 must be >= 0, got {l1}, {l2}")
        self.l1, self.l2 = float(l1), float(l2)

    def __call__(self, W: Tensor) -> Tensor:
        xp, X = W.ops.xp, W.data
        return record(
            self.value(xp, X), W.ops, (W,), lambda g: (self.grad(xp, X) * g,), "regularizer"
        )

    def value(self, xp: Any, X: Any) -> Any:
        """The penalty of array ``X``, a 0-d array."""
        value = 0.0 * xp.sum(X)
        if self.l1:
            value = value + self.l1 * xp.sum(xp.abs(X))
        if self.l2:
            value = value + self.l2 * xp.sum(X * X)
        return value

    def grad(self, xp: Any, X: Any) -> Any:
        """The gradient of :meth:`value` with respect to ``X``."""
        return self.l1 * xp.sign(X) + (2.0 * self.l2) * X

    def get_config(self) -> dict[str, float]:
        return {"l1": self.l1, "l2": self.l2}


def L1(l1: float = 0.01) -> L1L2:
    return L1L2(l1=l1)


def L2(l2: float = 0.01) -> L1L2:
    return L1L2(l2=l2)


def get(spec: Any) -> L1L2 | None:
    """A regularizer from None, ``"l1"``, ``"l2"``, ``"l1_l2"``, a dict or an instance."""
    if spec is None or isinstance(spec, L1L2):
        return spec
    if isinstance(spec, str) and spec in ("l1", "l2", "l1_l2"):
        return {"l1": L1(), "l2": L2(), "l1_l2": L1L2(0.01, 0.01)}[spec]
    if isinstance(spec, dict) and set(spec) <= {"l1", "l2"}:
        return L1L2(**{k: float(v) for k, v in spec.items()})
    raise InvalidParameterError(
        f"unknown regularizer {spec!r}; expected 'l1', 'l2', 'l1_l2' or L1L2(l1, l2)"
    )
