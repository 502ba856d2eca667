"""Learning-rate schedules, accepted wherever a learning rate is.

A schedule maps the optimizer's step count (0 for the first update) to a rate.

Example:
    >>> import gpunet as gn
    >>> s = gn.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    >>> s(10)
    0.05
"""

from __future__ import annotations

import math
from typing import Any

from gpunet.errors import InvalidParameterError


class LearningRateSchedule:
    """Base: ``schedule(step) -> float``."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError  # pragma: no cover - each schedule defines it

    def get_config(self) -> dict[str, Any]:
        return dict(vars(self))


def _positive(**values: float) -> None:
    for key, v in values.items():
        if not (isinstance(v, (int, float)) and v > 0):
            raise InvalidParameterError(f"{key} must be > 0, got {v!r}")


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``."""

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        decay_rate: float,
        staircase: bool = False,
    ) -> None:
        _positive(
            initial_learning_rate=initial_learning_rate,
            decay_steps=decay_steps,
            decay_rate=decay_rate,
        )
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps, self.decay_rate = int(decay_steps), float(decay_rate)
        self.staircase = bool(staircase)

    def __call__(self, step: int) -> float:
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate**p


class InverseTimeDecay(LearningRateSchedule):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)``."""

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        decay_rate: float,
        staircase: bool = False,
    ) -> None:
        _positive(initial_learning_rate=initial_learning_rate, decay_steps=decay_steps)
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps, self.decay_rate = int(decay_steps), float(decay_rate)
        self.staircase = bool(staircase)

    def __call__(self, step: int) -> float:
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate / (1.0 + self.decay_rate * p)


class CosineDecay(LearningRateSchedule):
    """Optional linear warmup to ``warmup_target``, then a cosine from there down
    to ``alpha`` times it over ``decay_steps`` (Keras 3 semantics)."""

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        alpha: float = 0.0,
        warmup_target: float | None = None,
        warmup_steps: int = 0,
    ) -> None:
        _positive(decay_steps=decay_steps)
        if initial_learning_rate < 0 or not 0.0 <= alpha <= 1.0 or warmup_steps < 0:
            raise InvalidParameterError(
                "CosineDecay needs initial_learning_rate >= 0, 0 <= alpha <= 1, "
                f"warmup_steps >= 0; got {initial_learning_rate}, {alpha}, {warmup_steps}"
            )
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps, self.alpha = int(decay_steps), float(alpha)
        self.warmup_target = None if warmup_target is None else float(warmup_target)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step: int) -> float:
        start = self.initial_learning_rate
        if self.warmup_target is not None and self.warmup_steps > 0:
            if step < self.warmup_steps:
                return start + (self.warmup_target - start) * step / self.warmup_steps
            start, step = self.warmup_target, step - self.warmup_steps
        t = min(step, self.decay_steps) / self.decay_steps
        cosine = 0.5 * (1.0 + math.cos(math.pi * t))
        return start * ((1.0 - self.alpha) * cosine + self.alpha)


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[i]`` while ``boundaries[i-1] < step <= boundaries[i]``."""

    def __init__(self, boundaries: list[int], values: list[float]) -> None:
        if len(values) != len(boundaries) + 1:
            raise InvalidParameterError(
                f"need len(values) == len(boundaries) + 1, got {len(values)} and {len(boundaries)}"
            )
        if list(boundaries) != sorted(boundaries):
            raise InvalidParameterError(f"boundaries must increase, got {boundaries}")
        self.boundaries = [int(b) for b in boundaries]
        self.values = [float(v) for v in values]

    def __call__(self, step: int) -> float:
        for b, v in zip(self.boundaries, self.values, strict=False):
            if step <= b:
                return v
        return self.values[-1]


CLASSES = {
    c.__name__: c for c in (ExponentialDecay, InverseTimeDecay, CosineDecay, PiecewiseConstantDecay)
}
