"""PyTorch spellings of the optimizers: ``optim.Adam(model.parameters(), lr=1e-3)``
with PyTorch's defaults and formulas (epsilon added to the bias-corrected root,
``weight_decay`` as an L2 term added to the gradient, AdamW's decoupled; RMSprop and
Adagrad add eps outside the root; momentum buffers hold raw gradients, so a new
``lr`` acts on them at once).

Parameter groups work as in PyTorch: pass dicts, read or change
``optimizer.param_groups[i]["lr"]`` between steps; each group updates in one fused
pass over its own flat buffer.

Example:
    >>> from gpunet import nn, optim
    >>> weight, bias = nn.Linear(3, 1).parameters()
    >>> opt = optim.SGD([{"params": [weight]}, {"params": [bias], "lr": 0.5}], lr=0.1, momentum=0.9)
    >>> [g["lr"] for g in opt.param_groups]
    [0.1, 0.5]
    >>> opt.param_groups[0]["lr"] = 0.01
    >>> sorted(opt.state_dict())
    ['param_groups', 'state']
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from gpunet.backend._optim_ops import AdamStep, adam_constants
from gpunet.errors import InvalidParameterError
from gpunet.optimizers._base import Optimizer as _Base
from gpunet.optimizers._base import _pack


def check_betas(group: dict[str, Any]) -> None:
    """Adam's family: each of ``group["betas"]`` in [0, 1)."""
    for i, b in enumerate(group["betas"]):
        if not 0.0 <= b < 1.0:
            raise InvalidParameterError(f"Invalid beta parameter at index {i}: {b!r}")


class Optimizer(_Base):
    """Base of the PyTorch spellings: ``param_groups``, ``state_dict``, ``zero_grad``.

    Args:
        params: Tensors, or dicts with ``"params"`` and any hyperparameter to
            override for that group.
        defaults: Every hyperparameter and its value for groups that do not set it.
    """

    has_step = True  # whether PyTorch keeps a "step" per parameter (SGD does not)

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        super().__init__(defaults["lr"])
        groups = list(params.values() if isinstance(params, dict) else params)
        if not groups:
            raise InvalidParameterError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (a dict with ``"params"``) that steps with its own settings."""
        params = param_group["params"]
        params = [params] if hasattr(params, "ops") else list(params)
        seen = {id(p) for p in self.params}
        if any(id(p) in seen for p in params) or len({id(p) for p in params}) < len(params):
            raise InvalidParameterError("some parameters appear in more than one parameter group")
        if not params:
            raise InvalidParameterError("a parameter group got an empty parameter list")
        group = {**self.defaults, **param_group, "params": params}
        self._check(group)
        self.param_groups.append(group)
        for flat in _pack(params, self._slots(group)):
            flat.hp = group
            self.groups.append(flat)

    # -- hyperparameters, per group --------------------------------------------------
    def _check(self, group: dict[str, Any]) -> None:
        for key in ("lr", "weight_decay", "eps", "momentum"):
            v = group.get(key, 0.0)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise InvalidParameterError(f"Invalid {key} value: {v!r}; expected a number >= 0")

    def _slots(self, group: dict[str, Any]) -> dict[str, float]:
        raise NotImplementedError  # pragma: no cover - each optimizer defines it

    @property
    def learning_rate(self) -> float:
        """The first group's ``lr``; setting it sets every group's (as Keras
        callbacks such as ``ReduceLROnPlateau`` do)."""
        return float(self.param_groups[0]["lr"]) if self.param_groups else self._lr

    @learning_rate.setter
    def learning_rate(self, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise InvalidParameterError(f"Invalid learning rate: {value!r}; expected a float >= 0")
        self._lr = float(value)
        for group in self.param_groups:
            group["lr"] = self._lr

    def get_config(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.defaults.items()}

    # -- the step --------------------------------------------------------------------
    def _step(self) -> None:
        for g in self.groups:
            xp = g.ops.xp
            if g.all_grads_in_place() and len(set(g.steps)) == 1:
                g.current = None
                self._torch_update(g, g.P, g.G, g.slots, g.steps[0] + 1)
                g.steps = [g.steps[0] + 1] * len(g.params)
                continue
            for i, p in enumerate(g.params):  # parameters that skip a step keep their count
                if p._grad is not None:
                    slots = {k: g.views(v, i) for k, v in g.slots.items()}
                    G = xp.reshape(p._grad, (-1,))
                    g.current = i
                    self._torch_update(g, g.views(g.P, i), G, slots, g.steps[i] + 1)
                    g.steps[i] += 1
        self._iterations += 1

    def _torch_update(self, g: Any, P: Any, G: Any, slots: dict[str, Any], t: int) -> None:
        self._skipped = g.skipped
        wd = g.hp.get("weight_decay", 0.0)
        if wd and not g.hp.get("decoupled_weight_decay", getattr(self, "decoupled", False)):
            G = G + wd * P  # a new array: p.grad stays what backward left, as in PyTorch
        res = self.torch_step(g.ops, g.hp, P, G, slots, t)
        self._write(g.ops, (P, *slots.values()), res)

    def torch_step(
        self, ops: Any, hp: dict[str, Any], P: Any, G: Any, slots: dict[str, Any], t: int
    ) -> tuple[Any, ...]:
        """New ``(P, *slots)`` after step ``t`` (1 for the first) of one group."""
        raise NotImplementedError  # pragma: no cover - each optimizer defines it

    # -- state -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """PyTorch's structure: ``{"state": {index: {...}}, "param_groups": [...]}``,
        parameters numbered in group order, state arrays as NumPy copies."""
        index = {id(p): i for i, p in enumerate(self._ordered())}
        # steps a device flag skipped (GradScaler) were not taken, as PyTorch's step skips
        skipped = {id(g): 0 if g.skipped is None else int(g.ops.to_numpy(g.skipped))
                   for g in self.groups}  # fmt: skip
        groups = [
            {**{k: v for k, v in grp.items() if k != "params"},
             "params": [index[id(p)] for p in grp["params"]]}
            for grp in self.param_groups
        ]  # fmt: skip
        state: dict[int, dict[str, Any]] = {}
        for g in self.groups:
            for i, p in enumerate(g.params):
                if g.steps[i] == 0 and not self._eager_state(g):
                    continue  # PyTorch makes a parameter's state at its first step
                entry: dict[str, Any] = {}
                if self.has_step:
                    entry["step"] = np.array(float(g.steps[i] - skipped[id(g)]), "float32")
                for k, v in g.slots.items():
                    entry[k] = np.array(g.ops.to_numpy(g.views(v, i))).reshape(p.shape)
                if entry:  # SGD without momentum keeps no state, as in PyTorch
                    state[index[id(p)]] = entry
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore ``state_dict()`` output (PyTorch's own loads too: tensors are
        read with ``np.asarray``)."""
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups):
            raise InvalidParameterError(
                f"loaded state dict has {len(saved)} parameter groups, "
                f"the optimizer {len(self.param_groups)}"
            )
        for mine, theirs in zip(self.param_groups, saved, strict=True):
            if len(theirs["params"]) != len(mine["params"]):
                raise InvalidParameterError(
                    "loaded state dict contains a parameter group that doesn't match "
                    f"the size of optimizer's group: {len(theirs['params'])} != "
                    f"{len(mine['params'])}"
                )
        params = self._ordered()
        for mine, theirs in zip(self.param_groups, saved, strict=True):
            for k in mine:
                if k != "params" and k in theirs:
                    mine[k] = tuple(theirs[k]) if isinstance(mine[k], tuple) else theirs[k]
        where = {id(p): (g, i) for g in self.groups for i, p in enumerate(g.params)}
        for g in self.groups:  # the file's steps are steps taken
            g.skipped = None
        state = {int(k): v for k, v in state_dict["state"].items()}
        for n, p in enumerate(params):
            g, i = where[id(p)]
            entry = state.get(n, {})
            for k, v in g.slots.items():
                init = self._slots(g.hp)[k]
                value = entry.get(k)
                arr = np.full(p.shape, init) if value is None else np.asarray(value)
                g.ops.assign(g.views(v, i), g.ops.asarray(arr.reshape(-1), dtype=v.dtype))
            if not entry:
                g.steps[i] = 0
            else:
                g.steps[i] = int(float(np.asarray(entry["step"]))) if self.has_step else 1

    def _ordered(self) -> list[Any]:
        return [p for grp in self.param_groups for p in grp["params"]]

    def _eager_state(self, g: Any) -> bool:
        return False


class SGD(Optimizer):
    """``torch.optim.SGD``: ``b <- momentum b + (1 - dampening) g`` (``b = g`` at the
    first step), ``p -= lr b`` (Nesterov: ``p -= lr (g + momentum b)``)."""

    has_step = False

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening,
                    "weight_decay": weight_decay, "nesterov": nesterov}  # fmt: skip
        super().__init__(params, defaults)

    def _check(self, group: dict[str, Any]) -> None:
        super()._check(group)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise InvalidParameterError("Nesterov momentum requires a momentum and zero dampening")

    def _slots(self, group: dict[str, Any]) -> dict[str, float]:
        return {"momentum_buffer": 0.0} if group["momentum"] else {}

    def _step(self) -> None:
        # a momentum set in param_groups after the start (CyclicLR's cycle, a script)
        # takes effect as in PyTorch: the buffer is made at that step, from g
        for g in self.groups:
            if g.hp["momentum"] and "momentum_buffer" not in g.slots:
                g.slots["momentum_buffer"] = g.ops.zeros(g.P.shape, g.P.dtype)
                g.buffer_from = [s + 1 for s in g.steps]
        super()._step()

    def _torch_update(self, g: Any, P: Any, G: Any, slots: dict[str, Any], t: int) -> None:
        starts = g.buffer_from if g.current is None else [g.buffer_from[g.current]]
        if len(set(starts)) > 1 and t in starts:  # only some buffers' first step: one by one
            for i in range(len(g.params)):
                g.current = i
                views = {k: g.views(v, i) for k, v in slots.items()}
                self._torch_update(g, g.views(P, i), g.views(G, i), views, t)
            g.current = None
            return
        self._fresh = t == starts[0]  # a buffer's first step copies g
        super()._torch_update(g, P, G, slots, t)

    def torch_step(
        self, ops: Any, hp: dict[str, Any], P: Any, G: Any, slots: dict[str, Any], t: int
    ) -> tuple[Any, ...]:
        buf = slots.get("momentum_buffer") if hp["momentum"] else None  # (0: p -= lr g)
        newP, newB = ops.sgd(
            P,
            G,
            buf,
            lr=hp["lr"],
            momentum=hp["momentum"],
            nesterov=bool(hp["nesterov"]),
            dampening=0.0 if self._fresh else hp["dampening"],
            lr_in_buffer=False,
            **self._guard(),
        )
        if not slots:
            return (newP,)
        return (newP, slots["momentum_buffer"] if buf is None else newB)


class Adam(Optimizer):
    """``torch.optim.Adam``; ``weight_decay`` adds ``wd * p`` to the gradient."""

    decoupled = False

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "amsgrad": bool(amsgrad)}  # fmt: skip
        super().__init__(params, defaults)

    def _check(self, group: dict[str, Any]) -> None:
        super()._check(group)
        check_betas(group)

    def _slots(self, group: dict[str, Any]) -> dict[str, float]:
        return {
            "exp_avg": 0.0,
            "exp_avg_sq": 0.0,
            **({"max_exp_avg_sq": 0.0} if group["amsgrad"] else {}),
        }

    def torch_step(
        self, ops: Any, hp: dict[str, Any], P: Any, G: Any, slots: dict[str, Any], t: int
    ) -> tuple[Any, ...]:
        (b1, b2), lr = hp["betas"], hp["lr"]
        # lr / (1 - b1^t) * m / (sqrt(v) / c2 + eps), written as the fused op's form
        lr_t, eps = adam_constants(lr, t, b1, b2, hp["eps"], True)
        kw = {"lr_t": lr_t, "beta1": b1, "beta2": b2, "eps": eps,
              "decay": lr * hp["weight_decay"] if self.decoupled else 0.0}  # fmt: skip
        M, V = slots["exp_avg"], slots["exp_avg_sq"]
        if hp["amsgrad"]:
            if self._skipped is not None:  # arrays of the device's step number
                dev = AdamStep(lr, t, self._skipped, True)
                kw["lr_t"], kw["eps"] = ops.device_adam_constants(dev, b1, b2, hp["eps"])
            return ops.amsgrad(P, G, M, V, slots["max_exp_avg_sq"], **kw)  # type: ignore[no-any-return]
        # steps the device skipped do not count (GradScaler.step never takes them)
        step = None if self._skipped is None else AdamStep(lr, t, self._skipped, True)
        return ops.adam(P, G, M, V, **kw, **self._guard(), step=step)  # type: ignore[no-any-return]


class AdamW(Adam):
    """``torch.optim.AdamW``: ``p *= 1 - lr * weight_decay`` before the Adam step."""

    decoupled = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


class RMSprop(Optimizer):
    """``torch.optim.RMSprop``: ``p -= lr g / (sqrt(a) + eps)`` (eps outside the
    root, unlike Keras); momentum accumulates ``g / (sqrt(a) + eps)``."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        defaults = {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay,
                    "momentum": momentum, "centered": centered}  # fmt: skip
        super().__init__(params, defaults)

    def _slots(self, group: dict[str, Any]) -> dict[str, float]:
        slots = {"square_avg": 0.0}
        if group["momentum"]:
            slots["momentum_buffer"] = 0.0
        if group["centered"]:
            slots["grad_avg"] = 0.0
        return slots

    def torch_step(
        self, ops: Any, hp: dict[str, Any], P: Any, G: Any, slots: dict[str, Any], t: int
    ) -> tuple[Any, ...]:
        newP, A, Mom, Mg = ops.rmsprop(
            P,
            G,
            slots["square_avg"],
            slots.get("momentum_buffer"),
            slots.get("grad_avg"),
            lr=hp["lr"],
            rho=hp["alpha"],
            eps=hp["eps"],
            momentum=hp["momentum"],
            eps_inside_sqrt=False,
            lr_in_buffer=False,
        )
        return (newP, A, *(x for x in (Mom, Mg) if x is not None))


class Adagrad(Optimizer):
    """``torch.optim.Adagrad``: ``s += g^2``; ``p -= clr g / (sqrt(s) + eps)`` with
    ``clr = lr / (1 + (step - 1) lr_decay)``."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
    ) -> None:
        defaults = {"lr": lr, "lr_decay": lr_decay, "weight_decay": weight_decay,
                    "initial_accumulator_value": initial_accumulator_value, "eps": eps}  # fmt: skip
        super().__init__(params, defaults)

    def _check(self, group: dict[str, Any]) -> None:
        super()._check(group)
        for key in ("lr_decay", "initial_accumulator_value"):
            if not group[key] >= 0:
                raise InvalidParameterError(f"Invalid {key} value: {group[key]!r}")

    def _slots(self, group: dict[str, Any]) -> dict[str, float]:
        return {"sum": float(group["initial_accumulator_value"])}

    def _eager_state(self, g: Any) -> bool:
        return True  # PyTorch's Adagrad makes its state in the constructor

    def torch_step(
        self, ops: Any, hp: dict[str, Any], P: Any, G: Any, slots: dict[str, Any], t: int
    ) -> tuple[Any, ...]:
        clr = hp["lr"] / (1.0 + (t - 1) * hp["lr_decay"])
        return ops.adagrad(  # type: ignore[no-any-return]
            P, G, slots["sum"], lr=clr, eps=hp["eps"], eps_inside_sqrt=False
        )


class Adadelta(Optimizer):
    """``torch.optim.Adadelta``: ``v = rho v + (1 - rho) g^2``;
    ``d = sqrt(u + eps) / sqrt(v + eps) g``; ``u = rho u + (1 - rho) d^2``; ``p -= lr d``."""

    def __init__(self, params: Any, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0.0) -> None:  # fmt: skip
        if not 0.0 <= rho <= 1.0:
            raise InvalidParameterError(f"Invalid rho value: {rho!r}; expected a number in [0, 1]")
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay})

    def _slots(self, group: dict[str, Any]) -> dict[str, float]:
        return {"square_avg": 0.0, "acc_delta": 0.0}

    def torch_step(
        self, ops: Any, hp: dict[str, Any], P: Any, G: Any, slots: dict[str, Any], t: int
    ) -> tuple[Any, ...]:
        xp, rho, eps = ops.xp, hp["rho"], hp["eps"]
        V = slots["square_avg"] * rho + (G * G) * (1.0 - rho)
        D = xp.sqrt(slots["acc_delta"] + eps) / xp.sqrt(V + eps) * G
        U = slots["acc_delta"] * rho + (D * D) * (1.0 - rho)
        return P - D * hp["lr"], V, U


# torch.optim.lr_scheduler, importable as a submodule too (from gpunet.optim.lr_scheduler
# import StepLR): this module is not a package, so the name is registered by hand
from gpunet import lr_scheduler  # noqa: E402

sys.modules[f"{__name__}.lr_scheduler"] = lr_scheduler

from gpunet._lbfgs import LBFGS  # noqa: E402  (it builds on Optimizer above)
from gpunet._optim_more import Adamax, NAdam, RAdam  # noqa: E402  (as LBFGS)

__all__ = [
    "LBFGS",
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "NAdam",
    "Optimizer",
    "RAdam",
    "RMSprop",
    "lr_scheduler",
]  # fmt: skip
