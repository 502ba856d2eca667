"""Optimizer updates: each takes the parameter ``P``, gradient ``G`` and state,
and returns the new ``(P, *state)``. The reference returns new arrays (the caller
assigns them in place); fast backends update in place in one pass.

``decay`` is decoupled weight decay already multiplied by the learning rate:
``P <- P * (1 - decay)`` before the step (AdamW, and Keras' ``weight_decay``).

``ok`` (adam, sgd) is a device-side 0-d boolean: an implementation that updates in
place skips the step when it is false; one that returns new arrays leaves that to
the caller (``Optimizer`` keeps the old values where ``ok`` is false).

``step`` (adam) is an :class:`AdamStep`: the step number counted on the device, so a
step that ``ok`` skipped does not advance Adam's bias correction, with no host read.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

Array = Any
_EXACT_BACK = 3  # skips up to which a device without float64 takes the host's constants


class AdamStep(NamedTuple):
    """Adam's step ``t - skipped``: ``t`` the host's count (this step included),
    ``skipped`` a 0-d int32 device count of the steps a false ``ok`` skipped. The bias
    corrections are formed from it in place of ``lr_t``/``eps`` (``lr`` and the raw
    ``eps`` then; ``scale_eps``: PyTorch's ``eps * sqrt(1 - b2^t)``)."""

    lr: float
    t: int
    skipped: Any
    scale_eps: bool


def adam_constants(lr: float, t: int, beta1: float, beta2: float, eps: float,
                   scale_eps: bool) -> tuple[float, float]:  # fmt: skip
    """``(lr_t, eps_t)`` of step ``t`` on the host (the kernels form the same in double).

    Example:
        >>> adam_constants(0.1, 1, 0.5, 0.75, 1e-8, scale_eps=False)
        (0.1, 1e-08)
    """
    root = math.sqrt(1.0 - beta2**t)
    return lr * root / (1.0 - beta1**t), (eps * root if scale_eps else eps)


class OptimizerOps:
    xp: Any
    name: str

    def dtype(self, name: Any) -> Any:
        raise NotImplementedError  # pragma: no cover - Ops defines it

    def adam(
        self,
        P: Array,
        G: Array,
        M: Array,
        V: Array,
        *,
        lr_t: float,
        beta1: float,
        beta2: float,
        eps: float,
        decay: float = 0.0,
        ok: Array | None = None,
        step: AdamStep | None = None,
    ) -> tuple[Array, Array, Array]:
        """One Adam step (https://arxiv.org/abs/1412.6980, section 2 end).

        ``lr_t`` carries both bias corrections, ``lr * sqrt(1 - b2^t) / (1 - b1^t)``,
        and ``eps`` is where the caller wants it (Keras: as given; PyTorch:
        ``eps * sqrt(1 - b2^t)``), so one update serves both conventions. ``step``
        (an :class:`AdamStep`) forms both from a device-side step number instead.
        """
        xp = self.xp
        if step is not None:
            lr_t, eps = self.device_adam_constants(step, beta1, beta2, eps)
        M = beta1 * M + (1.0 - beta1) * G
        V = beta2 * V + (1.0 - beta2) * (G * G)
        if decay:
            P = P * (1.0 - decay)
        P = P - lr_t * M / (xp.sqrt(V) + eps)
        return P, M, V

    def device_adam_constants(self, step: AdamStep, beta1: float, beta2: float, eps: float) -> Any:
        """``adam_constants`` of ``step`` as 0-d device arrays: in float64 where the device
        has it (the host's arithmetic). Without float64 (the simulated device) the host's
        values for the last few step numbers are picked on the device, so a run with few
        skips rounds as the host does; further back, float32 through ``expm1`` (``1 - b^k``
        without the cancellation of ``1 - pow``)."""
        xp, has64 = self.xp, self.name != "array_api_strict"
        k = xp.astype(step.t - step.skipped, self.dtype("float64" if has64 else "float32"))

        def one_minus_pow(b: float) -> Any:
            if has64:
                return 1.0 - xp.pow(xp.full_like(k, b), k)
            return -xp.expm1(k * math.log(b)) if b > 0 else xp.ones_like(k)

        root = xp.sqrt(one_minus_pow(beta2))
        lr_t, eps_t = step.lr * root / one_minus_pow(beta1), eps * root if step.scale_eps else eps
        if has64:
            return lr_t, eps_t
        eps_t = xp.full_like(k, eps) if isinstance(eps_t, float) else eps_t
        for back in range(min(step.t - 1, _EXACT_BACK), -1, -1):
            exact = adam_constants(step.lr, step.t - back, beta1, beta2, eps, step.scale_eps)
            here = step.skipped == back
            lr_t, eps_t = xp.where(here, exact[0], lr_t), xp.where(here, exact[1], eps_t)
        return lr_t, eps_t

    def amsgrad(
        self,
        P: Array,
        G: Array,
        M: Array,
        V: Array,
        Vmax: Array,
        *,
        lr_t: float,
        beta1: float,
        beta2: float,
        eps: float,
        decay: float = 0.0,
    ) -> tuple[Array, Array, Array, Array]:
        """Adam's AMSGrad variant (https://openreview.net/forum?id=ryQu7f-RZ): the
        root takes the running maximum ``Vmax`` of ``V``; arguments as ``adam``."""
        xp = self.xp
        M = beta1 * M + (1.0 - beta1) * G
        V = beta2 * V + (1.0 - beta2) * (G * G)
        Vmax = xp.maximum(Vmax, V)
        if decay:
            P = P * (1.0 - decay)
        return P - lr_t * M / (xp.sqrt(Vmax) + eps), M, V, Vmax

    def sgd(
        self,
        P: Array,
        G: Array,
        Vel: Array | None,
        *,
        lr: float,
        momentum: float = 0.0,
        nesterov: bool = False,
        decay: float = 0.0,
        dampening: float = 0.0,
        lr_in_buffer: bool = True,
        ok: Array | None = None,
    ) -> tuple[Array, Array | None]:
        """SGD with momentum, in either library's form of the buffer.

        ``lr_in_buffer`` (Keras, scikit-learn): ``v <- m v - lr g``; ``P += v``
        (Nesterov: ``P += m v - lr g``). Otherwise PyTorch's: ``b <- m b + (1 - d) g``;
        ``P -= lr b`` (Nesterov: ``P -= lr (g + m b)``), so a new ``lr`` acts on the
        whole buffer at once. PyTorch's first step sets ``b = g``: pass
        ``dampening=0`` then (the buffer starts at zero).
        """
        if decay:
            P = P * (1.0 - decay)
        if Vel is None or momentum == 0.0:
            return P - lr * G, Vel
        a, s = _sgd_coefficients(lr, dampening, lr_in_buffer)
        Vel = momentum * Vel + a * G
        step = momentum * Vel + a * G if nesterov else Vel
        return P + s * step, Vel

    def rmsprop(
        self,
        P: Array,
        G: Array,
        A: Array,
        Mom: Array | None,
        Mg: Array | None,
        *,
        lr: float,
        rho: float,
        eps: float,
        momentum: float = 0.0,
        decay: float = 0.0,
        eps_inside_sqrt: bool = True,
        lr_in_buffer: bool = True,
    ) -> tuple[Array, Array, Array | None, Array | None]:
        """RMSprop: ``A <- rho A + (1-rho) g^2``; ``P -= lr g / D``.

        Keras 3 (the defaults): ``D = sqrt(A + eps)`` and the momentum buffer holds
        ``lr g / D``. PyTorch (``eps_inside_sqrt=False, lr_in_buffer=False``):
        ``D = sqrt(A) + eps`` and the buffer holds ``g / D``, scaled by ``lr`` at each
        step. ``Mg`` (the running mean of ``g``) makes it centered: ``A - Mg^2`` under
        the root; ``Mom`` adds momentum.
        """
        xp = self.xp
        if decay:
            P = P * (1.0 - decay)
        A = rho * A + (1.0 - rho) * (G * G)
        var = A
        if Mg is not None:
            Mg = rho * Mg + (1.0 - rho) * G
            var = A - Mg * Mg
        denom = xp.sqrt(var + eps) if eps_inside_sqrt else xp.sqrt(var) + eps
        inc = lr * G / denom if lr_in_buffer else G / denom
        if Mom is not None:
            Mom = momentum * Mom + inc
            inc = Mom
        return (P - inc if lr_in_buffer else P - lr * inc), A, Mom, Mg

    def adagrad(
        self,
        P: Array,
        G: Array,
        A: Array,
        *,
        lr: float,
        eps: float,
        decay: float = 0.0,
        eps_inside_sqrt: bool = True,
    ) -> tuple[Array, Array]:
        """Adagrad: ``A <- A + g^2``; ``P -= lr g / sqrt(A + eps)`` (Keras) or, with
        ``eps_inside_sqrt=False``, ``P -= lr g / (sqrt(A) + eps)`` (PyTorch)."""
        xp = self.xp
        if decay:
            P = P * (1.0 - decay)
        A = A + G * G
        denom = xp.sqrt(A + eps) if eps_inside_sqrt else xp.sqrt(A) + eps
        return P - lr * (G / denom), A


def _sgd_coefficients(lr: float, dampening: float, lr_in_buffer: bool) -> tuple[float, float]:
    """``(a, s)`` of the one SGD-momentum form both libraries fit:
    ``v <- m v + a g``; ``P += s v`` (the kernels take the same two numbers)."""
    return (-lr, 1.0) if lr_in_buffer else (1.0 - dampening, -lr)
