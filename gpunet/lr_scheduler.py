"""``torch.optim.lr_scheduler``: learning-rate schedules for the PyTorch-style
optimizers of :mod:`gpunet.optim`, stepped by hand once per epoch (or batch).

Each sets ``group["lr"]`` of every parameter group, which the next
``optimizer.step()`` reads; ``get_last_lr()``, ``state_dict()`` and
``load_state_dict()`` behave as PyTorch's. Constructing one records each group's
``initial_lr`` and applies the schedule's first value, as PyTorch does.

Example:
    >>> import gpunet as gn
    >>> w = gn.nn.Parameter(gn.zeros(2))
    >>> opt = gn.optim.SGD([w], lr=1.0)
    >>> sched = gn.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    >>> for epoch in range(4):
    ...     opt.step()
    ...     sched.step()
    >>> sched.get_last_lr()
    [0.25]
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from typing import Any

from gpunet.errors import InvalidParameterError


class LRScheduler:
    """Base: ``get_lr`` gives each group's rate at ``last_epoch``."""

    def __init__(self, optimizer: Any, last_epoch: int = -1) -> None:
        if not hasattr(optimizer, "param_groups"):
            raise InvalidParameterError(
                f"{type(self).__name__} needs a gn.optim optimizer, got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            if last_epoch == -1:
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                raise KeyError("param 'initial_lr' is not specified in param_groups when "
                               "resuming an optimizer")  # fmt: skip
        self.base_lrs = [float(g["initial_lr"]) for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def get_lr(self) -> list[float]:
        raise NotImplementedError  # pragma: no cover - each schedule defines it

    def step(self, epoch: int | None = None) -> None:
        self.last_epoch = self.last_epoch + 1 if epoch is None else int(epoch)
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self._last_lr = [float(g["lr"]) for g in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "optimizer" and not callable(v)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.__dict__.update(state_dict)


class StepLR(LRScheduler):
    """``lr = initial_lr * gamma ** (epoch // step_size)``."""

    def __init__(self, optimizer: Any, step_size: int, gamma: float = 0.1,
                 last_epoch: int = -1) -> None:  # fmt: skip
        if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1:
            raise InvalidParameterError(f"StepLR step_size must be an int >= 1, got {step_size!r}")
        self.step_size, self.gamma = step_size, float(gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [b * self.gamma ** (self.last_epoch // self.step_size) for b in self.base_lrs]


class MultiStepLR(LRScheduler):
    """``lr = initial_lr * gamma ** (number of milestones reached)``."""

    def __init__(self, optimizer: Any, milestones: Any, gamma: float = 0.1,
                 last_epoch: int = -1) -> None:  # fmt: skip
        self.milestones, self.gamma = sorted(int(m) for m in milestones), float(gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        n = sum(m <= self.last_epoch for m in self.milestones)
        return [b * self.gamma**n for b in self.base_lrs]


class ExponentialLR(LRScheduler):
    """``lr = initial_lr * gamma ** epoch``."""

    def __init__(self, optimizer: Any, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [b * self.gamma**self.last_epoch for b in self.base_lrs]


class LambdaLR(LRScheduler):
    """``lr = initial_lr * lr_lambda(epoch)`` (one function, or one per group)."""

    def __init__(self, optimizer: Any, lr_lambda: Any, last_epoch: int = -1) -> None:
        n = len(optimizer.param_groups)
        fns = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * n
        if len(fns) != n or not all(callable(f) for f in fns):
            raise InvalidParameterError(f"LambdaLR needs a function or {n} functions")
        self.lr_lambdas: list[Callable[[int], float]] = fns
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [b * f(self.last_epoch) for b, f in zip(self.base_lrs, self.lr_lambdas, strict=True)]

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().state_dict().items() if k != "lr_lambdas"}


class CosineAnnealingLR(LRScheduler):
    """``eta_min + (initial_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``."""

    def __init__(self, optimizer: Any, T_max: int, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:  # fmt: skip
        if isinstance(T_max, bool) or not isinstance(T_max, int) or T_max < 1:
            raise InvalidParameterError(
                f"CosineAnnealingLR T_max must be an int >= 1, got {T_max!r}"
            )
        self.T_max, self.eta_min = T_max, float(eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        c = (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
        return [self.eta_min + (b - self.eta_min) * c for b in self.base_lrs]


class LinearLR(LRScheduler):
    """The factor goes linearly from ``start_factor`` to ``end_factor`` over
    ``total_iters`` steps (a warm-up), then stays."""

    def __init__(self, optimizer: Any, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1) -> None:  # fmt: skip
        if not 0.0 < start_factor <= 1.0 or not 0.0 <= end_factor <= 1.0:
            raise InvalidParameterError(
                f"LinearLR needs 0 < start_factor <= 1 and 0 <= end_factor <= 1, got "
                f"start_factor={start_factor!r}, end_factor={end_factor!r}"
            )
        self.start_factor, self.end_factor = float(start_factor), float(end_factor)
        self.total_iters = int(total_iters)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        done = min(self.last_epoch, self.total_iters) / max(self.total_iters, 1)
        f = self.start_factor + (self.end_factor - self.start_factor) * done
        return [b * f for b in self.base_lrs]


class ConstantLR(LRScheduler):
    """``factor`` times the rate for the first ``total_iters`` steps, then the rate."""

    def __init__(self, optimizer: Any, factor: float = 1.0 / 3, total_iters: int = 5,
                 last_epoch: int = -1) -> None:  # fmt: skip
        if not 0.0 <= factor <= 1.0:
            raise InvalidParameterError(f"ConstantLR factor must be in [0, 1], got {factor!r}")
        self.factor, self.total_iters = float(factor), int(total_iters)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        f = self.factor if self.last_epoch < self.total_iters else 1.0
        return [b * f for b in self.base_lrs]


class CosineAnnealingWarmRestarts(LRScheduler):
    """Cosine annealing restarted every ``T_i`` steps: ``T_0``, then times ``T_mult``."""

    def __init__(self, optimizer: Any, T_0: int, T_mult: int = 1, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:  # fmt: skip
        if isinstance(T_0, bool) or not isinstance(T_0, int) or T_0 < 1:
            raise InvalidParameterError(f"Expected positive integer T_0, but got {T_0!r}")
        if isinstance(T_mult, bool) or not isinstance(T_mult, int) or T_mult < 1:
            raise InvalidParameterError(f"Expected integer T_mult >= 1, but got {T_mult!r}")
        self.T_0, self.T_i, self.T_mult, self.eta_min = T_0, T_0, T_mult, float(eta_min)
        self.T_cur: float = last_epoch
        super().__init__(optimizer, last_epoch)

    def step(self, epoch: Any = None) -> None:
        if epoch is None:
            self.T_cur += 1
            if self.T_cur >= self.T_i:
                self.T_cur, self.T_i = self.T_cur - self.T_i, self.T_i * self.T_mult
        else:  # PyTorch's rule for a given (possibly fractional) epoch
            e = float(epoch)
            if e >= self.T_0 and self.T_mult == 1:
                self.T_cur = e % self.T_0
            elif e >= self.T_0:
                n = int(math.log(e / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
                self.T_cur = e - self.T_0 * (self.T_mult**n - 1) / (self.T_mult - 1)
                self.T_i = self.T_0 * self.T_mult**n
            else:
                self.T_i, self.T_cur = self.T_0, e
        super().step(None if epoch is None else math.floor(float(epoch)))

    def get_lr(self) -> list[float]:
        c = (1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2
        return [self.eta_min + (b - self.eta_min) * c for b in self.base_lrs]


class OneCycleLR(LRScheduler):
    """The 1cycle policy, stepped once per batch: the rate rises from
    ``max_lr / div_factor`` to ``max_lr`` over ``pct_start`` of ``total_steps`` (or
    ``epochs * steps_per_epoch``), then anneals to ``initial / final_div_factor``
    (``anneal_strategy`` "cos" or "linear"; ``three_phase`` as PyTorch's); the
    momentum (SGD's ``momentum``, Adam's ``beta1``) cycles the other way."""

    def __init__(
        self, optimizer: Any, max_lr: Any, total_steps: int | None = None,
        epochs: int | None = None, steps_per_epoch: int | None = None, pct_start: float = 0.3,
        anneal_strategy: str = "cos", cycle_momentum: bool = True, base_momentum: Any = 0.85,
        max_momentum: Any = 0.95, div_factor: float = 25.0, final_div_factor: float = 1e4,
        three_phase: bool = False, last_epoch: int = -1,
    ) -> None:  # fmt: skip
        if total_steps is None:
            if not epochs or not steps_per_epoch or epochs < 1 or steps_per_epoch < 1:
                raise InvalidParameterError(
                    "OneCycleLR needs total_steps, or epochs and steps_per_epoch, >= 1; got "
                    f"total_steps={total_steps!r}, epochs={epochs!r}, "
                    f"steps_per_epoch={steps_per_epoch!r}"
                )
            total_steps = int(epochs) * int(steps_per_epoch)
        if (
            total_steps < 1
            or not 0.0 <= pct_start <= 1.0
            or anneal_strategy not in ("cos", "linear")
        ):
            raise InvalidParameterError(
                f"OneCycleLR total_steps={total_steps!r} (>= 1), pct_start={pct_start!r} "
                f"(in [0, 1]), anneal_strategy={anneal_strategy!r} ('cos' or 'linear')"
            )
        self.total_steps, self.anneal_strategy = int(total_steps), anneal_strategy
        T, p = float(self.total_steps), float(pct_start)
        ends = [p * T - 1, 2 * p * T - 2, T - 1] if three_phase else [p * T - 1, T - 1]
        up, down, rest = ("max_momentum", "base_momentum"), ("base_momentum", "max_momentum"), (
            "max_momentum", "max_momentum")  # fmt: skip
        keys = ([("initial_lr", "max_lr", *up), ("max_lr", "initial_lr", *down),
                 ("initial_lr", "min_lr", *rest)] if three_phase
                else [("initial_lr", "max_lr", *up), ("max_lr", "min_lr", *down)])  # fmt: skip
        self._phases = list(zip(ends, keys, strict=True))
        groups, n = optimizer.param_groups, len(optimizer.param_groups)
        each = lambda v: list(v) if isinstance(v, (list, tuple)) else [v] * n  # noqa: E731
        self.cycle_momentum = bool(cycle_momentum)
        self._beta1 = self.cycle_momentum and "betas" in groups[0]
        if self.cycle_momentum and not self._beta1 and "momentum" not in groups[0]:
            raise InvalidParameterError("optimizer must support momentum or beta1 with "
                                        "cycle_momentum enabled")  # fmt: skip
        for g, top, lo, hi in zip(groups, each(max_lr), each(base_momentum), each(max_momentum),
                                  strict=True):  # fmt: skip
            if last_epoch == -1:
                g["initial_lr"] = float(top) / div_factor
                g["max_lr"], g["min_lr"] = float(top), g["initial_lr"] / final_div_factor
            if self.cycle_momentum:
                g["base_momentum"], g["max_momentum"] = float(lo), float(hi)
                self._set_momentum(g, float(hi))
        super().__init__(optimizer, last_epoch)

    def _set_momentum(self, group: dict[str, Any], m: float) -> None:
        if self._beta1:
            group["betas"] = (m, *tuple(group["betas"])[1:])
        else:
            group["momentum"] = m

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"Tried to step {step} times. The specified number of total "
                             f"steps is {self.total_steps}")  # fmt: skip
        lrs = []
        for g in self.optimizer.param_groups:
            start = 0.0
            for i, (end, (a, b, ma, mb)) in enumerate(self._phases):
                if step <= end or i == len(self._phases) - 1:
                    pct = (step - start) / (end - start)
                    lrs.append(self._anneal(g[a], g[b], pct))
                    if self.cycle_momentum:  # the momentum runs the other way round
                        self._set_momentum(g, self._anneal(g[ma], g[mb], pct))
                    break
                start = end
        return lrs


class SequentialLR:
    """``schedulers`` one after another, switching at ``milestones`` (a warm-up
    ``LinearLR`` then ``CosineAnnealingLR``, say); the next one starts from its step 0."""

    def __init__(self, optimizer: Any, schedulers: Any, milestones: Any,
                 last_epoch: int = -1) -> None:  # fmt: skip
        self._schedulers, self._milestones = list(schedulers), [int(m) for m in milestones]
        if len(self._milestones) != len(self._schedulers) - 1:
            raise InvalidParameterError(
                f"SequentialLR expects {len(self._schedulers) - 1} milestones for "
                f"{len(self._schedulers)} schedulers, got {len(self._milestones)}"
            )
        if any(s.optimizer is not optimizer for s in self._schedulers):
            raise InvalidParameterError("SequentialLR: every scheduler must use its optimizer")
        self.optimizer, self.last_epoch = optimizer, last_epoch + 1
        for group in optimizer.param_groups:  # back to the initial rates, as PyTorch
            group["lr"] = group["initial_lr"]
        for s in self._schedulers:  # undo the step each made when it was built
            s.last_epoch -= 1
        self._schedulers[0].step()
        self._last_lr = self._schedulers[0].get_last_lr()

    def step(self) -> None:
        self.last_epoch += 1
        i = bisect.bisect_right(self._milestones, self.last_epoch)
        s = self._schedulers[i]
        if i > 0 and self._milestones[i - 1] == self.last_epoch:
            s.step(0)
        else:
            s.step()
        self._last_lr = s.get_last_lr()

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)


class ReduceLROnPlateau:
    """Multiply every group's ``lr`` by ``factor`` once ``metrics`` passed to
    ``step(metrics)`` stop improving for ``patience`` epochs (PyTorch's rules:
    ``threshold_mode`` "rel"/"abs", ``cooldown``, ``min_lr``, changes under ``eps``
    skipped)."""

    def __init__(self, optimizer: Any, mode: str = "min", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel",
                 cooldown: int = 0, min_lr: Any = 0.0, eps: float = 1e-8) -> None:  # fmt: skip
        if mode not in ("min", "max") or threshold_mode not in ("rel", "abs"):
            raise InvalidParameterError(
                f"ReduceLROnPlateau mode={mode!r}, threshold_mode={threshold_mode!r}; "
                "expected 'min'/'max' and 'rel'/'abs'"
            )
        if not 0.0 <= factor < 1.0:
            raise InvalidParameterError(f"ReduceLROnPlateau factor must be < 1.0, got {factor!r}")
        self.optimizer = optimizer
        n = len(optimizer.param_groups)
        self.min_lrs = list(min_lr) if isinstance(min_lr, (list, tuple)) else [min_lr] * n
        self.mode, self.factor, self.patience = mode, float(factor), int(patience)
        self.threshold, self.threshold_mode = float(threshold), threshold_mode
        self.cooldown, self.eps = int(cooldown), float(eps)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = self.cooldown_counter = 0
        self.last_epoch = 0
        self._last_lr = [float(g["lr"]) for g in optimizer.param_groups]

    def _better(self, a: float) -> bool:
        rel = self.threshold_mode == "rel"
        if self.mode == "min":
            return a < (self.best * (1.0 - self.threshold) if rel else self.best - self.threshold)
        return a > (self.best * (1.0 + self.threshold) if rel else self.best + self.threshold)

    def step(self, metrics: Any) -> None:
        current = float(metrics)
        self.last_epoch += 1
        if self._better(current):
            self.best, self.num_bad_epochs = current, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for group, low in zip(self.optimizer.param_groups, self.min_lrs, strict=True):
                new = max(float(group["lr"]) * self.factor, float(low))
                if float(group["lr"]) - new > self.eps:
                    group["lr"] = new
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self._last_lr = [float(g["lr"]) for g in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.__dict__.update(state_dict)


# PolynomialLR, MultiplicativeLR, CyclicLR and ChainedScheduler build on the classes above
from gpunet._lr_more import ChainedScheduler, CyclicLR, MultiplicativeLR, PolynomialLR  # noqa: E402

__all__ = ["ChainedScheduler", "ConstantLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts",
           "CyclicLR", "ExponentialLR", "LRScheduler", "LambdaLR", "LinearLR", "MultiStepLR",
           "MultiplicativeLR", "OneCycleLR", "PolynomialLR", "ReduceLROnPlateau", "SequentialLR",
           "StepLR"]  # fmt: skip
