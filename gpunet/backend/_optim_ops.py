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
        ok: Array | None = None,
    ) -> tuple[Array, Array | None]:
        """SGD with momentum in the Keras/scikit-learn form ``v <- m v - lr g``."""
        if decay:
            P = P * (1.0 - decay)
        if Vel is None or momentum == 0.0:
            return P - lr * G, Vel
        Vel = momentum * Vel - lr * G
        step = momentum * Vel - lr * G if nesterov else Vel
        return P + step, Vel

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
    ) -> tuple[Array, Array, Array | None, Array | None]:
        """RMSprop as Keras 3: ``A <- rho A + (1-rho) g^2``; ``P -= lr g / sqrt(A + eps)``.

        ``Mg`` (the running mean of ``g``) makes it centered; ``Mom`` adds momentum.
        """
        xp = self.xp
        if decay:
            P = P * (1.0 - decay)
        A = rho * A + (1.0 - rho) * (G * G)
        denom = A + eps
        if Mg is not None:
            Mg = rho * Mg + (1.0 - rho) * G
            denom = denom - Mg * Mg
        inc = lr * G / xp.sqrt(denom)
        if Mom is not None:
            Mom = momentum * Mom + inc
            inc = Mom
        return P - inc, A, Mom, Mg

    def adagrad(
        self, P: Array, G: Array, A: Array, *, lr: float, eps: float, decay: float = 0.0
    ) -> tuple[Array, Array]:
        """Adagrad as Keras: ``A <- A + g^2``; ``P -= lr g / sqrt(A + eps)``."""
        if decay:
            P = P * (1.0 - decay)
        A = A + G * G
        return P - lr * G / self.xp.sqrt(A + eps), A
