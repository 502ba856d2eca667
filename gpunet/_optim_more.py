"""``torch.optim.Adamax``, ``NAdam`` and ``RAdam`` on :class:`gpunet.optim.Optimizer`:
PyTorch's update formulas in its order of operations (its single-tensor path, the one
it runs on the CPU), so a run matches PyTorch's to rounding, state names included.

Example:
    >>> import gpunet as gn
    >>> w = gn.tensor([1.0, -2.0], requires_grad=True)
    >>> opt = gn.optim.NAdam([w], lr=0.1)
    >>> (w * w).sum().backward(); opt.step()
    >>> [round(v, 4) for v in w.tolist()]
    [0.8944, -1.8944]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gpunet.errors import InvalidParameterError
from gpunet.optim import Optimizer, check_betas


class _Betas(Optimizer):
    """Adam's family: the betas checked."""

    def _check(self, group: dict[str, Any]) -> None:
        super()._check(group)
        check_betas(group)


class Adamax(_Betas):
    """``torch.optim.Adamax``: ``m = lerp(m, g, 1 - b1)``; ``u = max(b2 u, |g| + eps)``;
    ``p -= lr / (1 - b1^t) * m / u``."""

    def __init__(self, params: Any, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:  # fmt: skip
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    def _slots(self, group: dict[str, Any]) -> dict[str, float]:
        return {"exp_avg": 0.0, "exp_inf": 0.0}

    def torch_step(
        self, ops: Any, hp: dict[str, Any], P: Any, G: Any, slots: dict[str, Any], t: int
    ) -> tuple[Any, ...]:
        xp, (b1, b2) = ops.xp, hp["betas"]
        M = slots["exp_avg"] + (G - slots["exp_avg"]) * (1 - b1)
        U = xp.maximum(slots["exp_inf"] * b2, xp.abs(G) + hp["eps"])
        return P - (hp["lr"] / (1 - b1**t)) * (M / U), M, U


class NAdam(_Betas):
    """``torch.optim.NAdam``: Adam with Nesterov momentum whose factor ``mu_t`` warms up
    by ``momentum_decay``; ``decoupled_weight_decay`` as AdamW.

    ``mu_product``, the product of each parameter's factors so far, is a state of its
    own as in PyTorch (a beta1 that a schedule moves enters step by step). PyTorch keeps
    it in a float32 tensor, each step's product rounded to float32, until a loaded
    state casts it to the parameter's dtype: the same here (it moves float64 results
    by 1e-12)."""

    def __init__(
        self, params: Any, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8, weight_decay: float = 0.0, momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
    ) -> None:  # fmt: skip
        if not momentum_decay >= 0:
            raise InvalidParameterError(f"Invalid momentum_decay value: {momentum_decay!r}")
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "momentum_decay": momentum_decay,
                    "decoupled_weight_decay": bool(decoupled_weight_decay)}  # fmt: skip
        self._loaded = False  # a loaded mu_product goes on in the parameters' dtype
        super().__init__(params, defaults)

    def _slots(self, group: dict[str, Any]) -> dict[str, float]:
        return {"exp_avg": 0.0, "exp_avg_sq": 0.0, "mu_product": 1.0}

    def state_dict(self) -> dict[str, Any]:
        """PyTorch's: ``mu_product`` a 0-d float32 per parameter."""
        sd = super().state_dict()
        for entry in sd["state"].values():
            mp = np.asarray(entry["mu_product"]).reshape(-1)
            entry["mu_product"] = np.array(mp[0] if mp.size else 1.0, "float32")
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        params = self._ordered()
        state = {}
        for i, entry in state_dict["state"].items():
            entry = dict(entry)
            if "mu_product" in entry:  # one number per parameter: spread over its slot
                value = float(np.asarray(entry["mu_product"]).reshape(-1)[0])
                entry["mu_product"] = np.full(params[int(i)].shape, value)
                self._loaded = True
            state[i] = entry
        super().load_state_dict({**state_dict, "state": state})

    def torch_step(
        self, ops: Any, hp: dict[str, Any], P: Any, G: Any, slots: dict[str, Any], t: int
    ) -> tuple[Any, ...]:
        xp, (b1, b2), lr, decay = ops.xp, hp["betas"], hp["lr"], hp["momentum_decay"]
        if hp["decoupled_weight_decay"] and hp["weight_decay"]:
            P = P * (1 - lr * hp["weight_decay"])
        mu = b1 * (1.0 - 0.5 * 0.96 ** (t * decay))
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * decay))
        MP = slots["mu_product"]
        if self._loaded:
            MP = MP * mu
        else:  # float32 arithmetic, as PyTorch's scalar-dtype tensor
            MP = xp.astype(xp.astype(MP, xp.float32) * mu, MP.dtype)
        M = slots["exp_avg"] + (G - slots["exp_avg"]) * (1 - b1)
        V = slots["exp_avg_sq"] * b2 + (G * G) * (1 - b2)
        denom = xp.sqrt(V / (1 - b2**t)) + hp["eps"]
        P = P + (-lr * (1.0 - mu) / (1.0 - MP)) * (G / denom)
        return P + ((-lr * mu_next) / (1.0 - MP * mu_next)) * (M / denom), M, V, MP


class RAdam(_Betas):
    """``torch.optim.RAdam``: Adam whose adaptive step is rectified by the variance of
    its estimate, plain momentum SGD while that variance is intractable (``rho_t <= 5``,
    the first steps)."""

    def __init__(
        self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8, weight_decay: float = 0.0, decoupled_weight_decay: bool = False,
    ) -> None:  # fmt: skip
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "decoupled_weight_decay": bool(decoupled_weight_decay)}  # fmt: skip
        super().__init__(params, defaults)

    def _slots(self, group: dict[str, Any]) -> dict[str, float]:
        return {"exp_avg": 0.0, "exp_avg_sq": 0.0}

    def torch_step(
        self, ops: Any, hp: dict[str, Any], P: Any, G: Any, slots: dict[str, Any], t: int
    ) -> tuple[Any, ...]:
        xp, (b1, b2), lr = ops.xp, hp["betas"], hp["lr"]
        if hp["decoupled_weight_decay"] and hp["weight_decay"]:
            P = P * (1 - lr * hp["weight_decay"])
        M = slots["exp_avg"] + (G - slots["exp_avg"]) * (1 - b1)
        V = slots["exp_avg_sq"] * b2 + (G * G) * (1 - b2)
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        corrected = M / bc1
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * t * (b2**t) / bc2
        if rho_t <= 5.0:
            return P - corrected * lr, M, V
        rect = math.sqrt(
            (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
        )
        adaptive = (bc2**0.5) / (xp.sqrt(V) + hp["eps"])
        return P - corrected * lr * adaptive * rect, M, V


__all__ = ["Adamax", "NAdam", "RAdam"]
