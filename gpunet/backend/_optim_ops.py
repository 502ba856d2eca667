"""Optimizer updates: each takes the parameter ``P``, gradient ``G`` and state,
and returns the new ``(P, *state)``. The reference returns new arrays (the caller
assigns them in place); fast backends update in place in one pass.

``decay`` is decoupled weight decay already multiplied by the learning rate:
``P <- P * (1 - decay)`` before the step (AdamW, and Keras' ``weight_decay``).

``ok`` (adam, sgd) is a device-side 0-d boolean: an implementation that updates in
place skips the step when it is false; one that returns new arrays leaves that to
the caller (``Optimizer`` keeps the old values where ``ok`` is false).
"""

from __future__ import annotations

from typing import Any

Array = Any


class OptimizerOps:
    xp: Any

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
    ) -> tuple[Array, Array, Array]:
        """One Adam step (https://arxiv.org/abs/1412.6980, section 2 end).

        ``lr_t`` carries both bias corrections, ``lr * sqrt(1 - b2^t) / (1 - b1^t)``,
        and ``eps`` is where the caller wants it (Keras: as given; PyTorch:
        ``eps * sqrt(1 - b2^t)``), so one update serves both conventions.
        """
        xp = self.xp
        M = beta1 * M + (1.0 - beta1) * G
        V = beta2 * V + (1.0 - beta2) * (G * G)
        if decay:
            P = P * (1.0 - decay)
        P = P - lr_t * M / (xp.sqrt(V) + eps)
        return P, M, V

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
