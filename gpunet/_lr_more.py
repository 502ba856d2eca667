"""More of ``torch.optim.lr_scheduler``: ``PolynomialLR``, ``MultiplicativeLR``,
``CyclicLR`` and ``ChainedScheduler``, exported by :mod:`gpunet.lr_scheduler`.

``PolynomialLR`` and ``MultiplicativeLR`` scale the rate each group holds, as
PyTorch's do, so they compose in a ``ChainedScheduler``; ``CyclicLR`` is stepped
once per batch and cycles the momentum (SGD's ``momentum``, Adam's ``beta1``) the
other way round.

Example:
    >>> import gpunet as gn
    >>> w = gn.nn.Parameter(gn.zeros(2))
    >>> opt = gn.optim.SGD([w], lr=1.0, momentum=0.9)
    >>> sched = gn.optim.lr_scheduler.CyclicLR(opt, base_lr=0.1, max_lr=0.5, step_size_up=2)
    >>> rates = []
    >>> for batch in range(4):
    ...     opt.step()
    ...     sched.step()
    ...     rates.append(round(sched.get_last_lr()[0], 6))
    >>> rates, round(opt.param_groups[0]["momentum"], 6)
    ([0.3, 0.5, 0.3, 0.1], 0.9)
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from typing import Any

from gpunet.errors import InvalidParameterError
from gpunet.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    ExponentialLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    ReduceLROnPlateau,
    StepLR,
)

# gpunet computes these from scratch; PyTorch's scale the rate held, which a chain sees
_FROM_SCRATCH = (StepLR, MultiStepLR, ExponentialLR, ConstantLR, LinearLR, CosineAnnealingLR)


def _per_group(name: str, optimizer: Any, value: Any) -> list[float]:
    """One value per parameter group: a list of that many, or one for all."""
    n = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise InvalidParameterError(
                f"{name} must have the same length as optimizer.param_groups. "
                f"{name} has {len(value)} values, param_groups has {n}."
            )
        return [float(v) for v in value]
    return [float(value)] * n


def _fn_state(fn: Any) -> dict[str, Any] | None:
    """What a state_dict keeps of a schedule's function: a callable object's
    attributes; nothing of a plain function or lambda."""
    if fn is None or isinstance(fn, types.FunctionType):
        return None
    return dict(getattr(fn, "__dict__", {}))


class _Chainable(LRScheduler):
    """A schedule that scales the rate each group holds; the step made when it is
    built leaves the rates as they are."""

    def __init__(self, optimizer: Any, last_epoch: int = -1) -> None:
        self._is_initial = True
        super().__init__(optimizer, last_epoch)
        self._is_initial = False


class PolynomialLR(_Chainable):
    """``lr = initial_lr * (1 - min(epoch, total_iters) / total_iters) ** power``:
    each step scales the held rate by the ratio of consecutive factors, and
    ``step(epoch)`` uses the closed form, as PyTorch's."""

    def __init__(self, optimizer: Any, total_iters: int = 5, power: float = 1.0,
                 last_epoch: int = -1) -> None:  # fmt: skip
        self.total_iters, self.power, self._closed = total_iters, power, False
        super().__init__(optimizer, last_epoch)

    def step(self, epoch: int | None = None) -> None:
        self._closed = epoch is not None
        super().step(epoch)

    def get_lr(self) -> list[float]:
        groups, t, T = self.optimizer.param_groups, self.last_epoch, self.total_iters
        if self._closed:
            return [b * (1.0 - min(T, t) / T) ** self.power for b in self.base_lrs]
        if self._is_initial or t > T:
            return [g["lr"] for g in groups]
        f = ((1.0 - t / T) / (1.0 - (t - 1) / T)) ** self.power
        return [g["lr"] * f for g in groups]


class MultiplicativeLR(_Chainable):
    """``lr = lr * lr_lambda(epoch)`` at each step (one function, or one per group)."""

    def __init__(self, optimizer: Any, lr_lambda: Any, last_epoch: int = -1) -> None:
        n = len(optimizer.param_groups)
        fns = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * n
        if len(fns) != n:
            raise InvalidParameterError(f"Expected {n} lr_lambdas, but got {len(fns)}")
        for fn in fns:
            if not callable(fn):
                raise TypeError(f"lr_lambda should be a function, but got {type(fn).__name__}")
        self.lr_lambdas: list[Callable[[int], float]] = fns
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        if self._is_initial:
            return [g["lr"] for g in groups]
        return [g["lr"] * f(self.last_epoch) for g, f in zip(groups, self.lr_lambdas, strict=True)]

    def state_dict(self) -> dict[str, Any]:
        state = {k: v for k, v in super().state_dict().items() if k != "lr_lambdas"}
        state["lr_lambdas"] = [_fn_state(f) for f in self.lr_lambdas]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        saved = state.pop("lr_lambdas", [])
        super().load_state_dict(state)
        for fn, attrs in zip(self.lr_lambdas, saved, strict=False):
            if attrs is not None:
                fn.__dict__.update(attrs)


class CyclicLR(LRScheduler):
    """The cyclical learning-rate policy, stepped once per batch: the rate goes from
    ``base_lr`` up to ``max_lr`` over ``step_size_up`` steps and back over
    ``step_size_down``, its height scaled by ``mode`` ("triangular": 1,
    "triangular2": halved each cycle, "exp_range": ``gamma ** step``) or by
    ``scale_fn`` of the cycle or step (``scale_mode``); the momentum runs from
    ``max_momentum`` down to ``base_momentum`` and back."""

    def __init__(
        self, optimizer: Any, base_lr: Any, max_lr: Any, step_size_up: int = 2000,
        step_size_down: int | None = None, mode: str = "triangular", gamma: float = 1.0,
        scale_fn: Callable[[float], float] | None = None, scale_mode: str = "cycle",
        cycle_momentum: bool = True, base_momentum: Any = 0.8, max_momentum: Any = 0.9,
        last_epoch: int = -1,
    ) -> None:  # fmt: skip
        if not hasattr(optimizer, "param_groups"):
            raise InvalidParameterError(
                f"CyclicLR needs a gn.optim optimizer, got {type(optimizer).__name__}"
            )
        groups = optimizer.param_groups
        base_lrs = _per_group("base_lr", optimizer, base_lr)
        if last_epoch == -1:
            for g, lr in zip(groups, base_lrs, strict=True):
                g["lr"] = lr
        self.max_lrs = _per_group("max_lr", optimizer, max_lr)
        up = float(step_size_up)
        self.total_size = up + (float(step_size_down) if step_size_down is not None else up)
        self.step_ratio = up / self.total_size
        if mode not in ("triangular", "triangular2", "exp_range") and scale_fn is None:
            raise InvalidParameterError("mode is invalid and scale_fn is None")
        self.mode, self.gamma, self._scale_fn_custom = mode, float(gamma), scale_fn
        if scale_fn is None:
            scale_mode = "iterations" if mode == "exp_range" else "cycle"
        self.scale_mode, self.cycle_momentum = scale_mode, bool(cycle_momentum)
        if self.cycle_momentum:
            defaults = getattr(optimizer, "defaults", groups[0] if groups else {})
            if "momentum" not in defaults and "betas" not in defaults:
                raise InvalidParameterError("optimizer must support momentum or beta1 with "
                                            "`cycle_momentum` option enabled")  # fmt: skip
            self.use_beta1 = "betas" in defaults
            self.base_momentums = _per_group("base_momentum", optimizer, base_momentum)
            self.max_momentums = _per_group("max_momentum", optimizer, max_momentum)
            if last_epoch == -1:
                for g, lo, hi in zip(groups, self.base_momentums, self.max_momentums, strict=True):
                    self._set_momentum(g, hi)
                    g["max_momentum"], g["base_momentum"] = hi, lo
        super().__init__(optimizer, last_epoch)
        self.base_lrs = base_lrs

    def _set_momentum(self, group: dict[str, Any], m: float) -> None:
        if self.use_beta1:
            group["betas"] = (m, *tuple(group["betas"])[1:])
        else:
            group["momentum"] = m

    def scale_fn(self, x: float) -> float:
        """The height's scale at cycle (or step) ``x``."""
        if self._scale_fn_custom is not None:
            return self._scale_fn_custom(x)
        if self.mode == "triangular":
            return 1.0
        if self.mode == "triangular2":
            return 1 / (2.0 ** (x - 1))
        return float(self.gamma**x)

    def get_lr(self) -> list[float]:
        cycle = math.floor(1 + self.last_epoch / self.total_size)
        x = 1.0 + self.last_epoch / self.total_size - cycle
        r = self.step_ratio
        f = x / r if x <= r else (x - 1) / (r - 1)
        at = cycle if self.scale_mode == "cycle" else self.last_epoch
        lrs = [b + (m - b) * f * self.scale_fn(at)
               for b, m in zip(self.base_lrs, self.max_lrs, strict=True)]  # fmt: skip
        if self.cycle_momentum:
            for g, lo, hi in zip(self.optimizer.param_groups, self.base_momentums,
                                 self.max_momentums, strict=True):  # fmt: skip
                self._set_momentum(g, hi - (hi - lo) * f * self.scale_fn(at))
        return lrs

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["_scale_fn_custom"] = _fn_state(self._scale_fn_custom)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        attrs = state.pop("_scale_fn_custom", None)
        super().load_state_dict(state)
        if attrs is not None and self._scale_fn_custom is not None:
            self._scale_fn_custom.__dict__.update(attrs)


class ChainedScheduler:
    """Steps every one of ``schedulers`` at each ``step()``, each on the rate the one
    before it set, as PyTorch's chain: a warm-up factor times a decay, say.
    ``StepLR``, ``MultiStepLR``, ``ExponentialLR``, ``ConstantLR``, ``LinearLR`` and
    ``CosineAnnealingLR`` take PyTorch's chainable step here (the held rate times
    their step's ratio), and the rates their construction set are redone that way.

    Example:
        >>> import gpunet as gn
        >>> opt = gn.optim.SGD([gn.nn.Parameter(gn.zeros(2))], lr=1.0)
        >>> S = gn.optim.lr_scheduler
        >>> sched = S.ChainedScheduler([S.ConstantLR(opt, factor=0.1, total_iters=2),
        ...                             S.ExponentialLR(opt, gamma=0.5)])
        >>> rates = [sched.get_last_lr()[0]]
        >>> for epoch in range(3):
        ...     opt.step()
        ...     sched.step()
        ...     rates.append(round(sched.get_last_lr()[0], 6))
        >>> rates
        [0.1, 0.05, 0.25, 0.125]
    """

    def __init__(self, schedulers: Any, optimizer: Any = None) -> None:
        schedulers = list(schedulers)
        if not schedulers:
            raise InvalidParameterError("ChainedScheduler expects at least one scheduler to be "
                                        "chained, but got no scheduler.")  # fmt: skip
        optimizer = schedulers[0].optimizer if optimizer is None else optimizer
        for i, s in enumerate(schedulers):
            if not hasattr(s, "optimizer"):
                raise TypeError(f"ChainedScheduler at index {i} should have `optimizer` as its "
                                "attribute.")  # fmt: skip
            if isinstance(s, ReduceLROnPlateau):
                raise InvalidParameterError(
                    "ChainedScheduler does not support `ReduceLROnPlateau` scheduler as it "
                    "requires additional kwargs to be specified when calling `step`, but got "
                    f"one at index {i} in the given schedulers sequence."
                )
            if s.optimizer is not optimizer:
                raise InvalidParameterError(
                    "ChainedScheduler expects all schedulers to belong to the same optimizer, "
                    f"but got scheduler {type(s).__name__} at index {i} with another one"
                )
        self._schedulers, self.optimizer = schedulers, optimizer
        groups = optimizer.param_groups
        if any(isinstance(s, _FROM_SCRATCH) for s in schedulers):  # redo the first steps
            lrs = [float(g["initial_lr"]) for g in groups]
            for s in schedulers:
                if isinstance(s, _FROM_SCRATCH):
                    own = zip(lrs, s.base_lrs, s.get_lr(), strict=True)
                    lrs = [self._chained(s, lr, b, b, n) for lr, b, n in own]
                elif not isinstance(s, _Chainable):
                    lrs = list(s.get_last_lr())
                s._last_lr = list(lrs)
            for g, lr in zip(groups, lrs, strict=True):
                g["lr"] = lr
        self._last_lr = [float(g["lr"]) for g in groups]

    @staticmethod
    def _chained(s: Any, lr: float, base: float, prev: float, new: float) -> float:
        """PyTorch's chainable step of ``s`` from ``lr``; ``prev`` and ``new`` are
        the rates ``s`` gives on its own before and after the step."""
        if not isinstance(s, CosineAnnealingLR):
            return lr * (new / prev if prev or new else 1.0)
        t, T, eta = s.last_epoch, s.T_max, s.eta_min
        if t == 0:
            return lr
        if (t - 1 - T) % (2 * T) == 0:
            return lr + (base - eta) * (1 - math.cos(math.pi / T)) / 2
        return (1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T)) * (
            lr - eta
        ) + eta

    def step(self) -> None:
        groups = self.optimizer.param_groups
        for s in self._schedulers:
            if isinstance(s, _FROM_SCRATCH):
                prev = s.get_lr()
                s.last_epoch += 1
                for g, b, p, n in zip(groups, s.base_lrs, prev, s.get_lr(), strict=True):
                    g["lr"] = self._chained(s, g["lr"], b, p, n)
                s._last_lr = [float(g["lr"]) for g in groups]
            else:
                s.step()
        self._last_lr = [float(g["lr"]) for g in groups]

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "_schedulers")}
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        saved = state.pop("_schedulers")
        self.__dict__.update(state)
        for s, sub in zip(self._schedulers, saved, strict=True):
            s.load_state_dict(sub)


__all__ = ["ChainedScheduler", "CyclicLR", "MultiplicativeLR", "PolynomialLR"]
