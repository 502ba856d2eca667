"""Batch and layer normalization with their backprops.

Both normalise ``X`` to ``Xhat`` and apply ``gamma * Xhat + beta``; batch norm
reduces over every axis but the last (the features, as Keras' ``axis=-1``), layer
norm over the last axis only.
"""

from __future__ import annotations

from typing import Any

Array = Any


class NormOps:
    xp: Any

    def _batch_axes(self, X: Array) -> tuple[int, ...]:
        return tuple(range(X.ndim - 1))

    def batchnorm(
        self, X: Array, gamma: Array, beta: Array, *, epsilon: float
    ) -> tuple[Array, Array, Array, Array, Array]:
        """Training-mode batch norm: returns ``(Y, Xhat, inv_std, mean, var)``."""
        xp = self.xp
        axes = self._batch_axes(X)
        mean = xp.mean(X, axis=axes)
        C = X - mean
        var = xp.mean(C * C, axis=axes)
        inv_std = 1.0 / xp.sqrt(var + epsilon)
        Xhat = C * inv_std
        return Xhat * gamma + beta, Xhat, inv_std, mean, var

    def backprop_batchnorm(
        self, dY: Array, Xhat: Array, inv_std: Array, gamma: Array
    ) -> tuple[Array, Array, Array]:
        """Returns ``(dX, dgamma, dbeta)`` of training-mode batch norm."""
        xp = self.xp
        axes = self._batch_axes(dY)
        N = 1
        for a in axes:
            N *= dY.shape[a]
        dbeta = xp.sum(dY, axis=axes)
        dgamma = xp.sum(dY * Xhat, axis=axes)
        dX = (gamma * inv_std / N) * (N * dY - dbeta - Xhat * dgamma)
        return dX, dgamma, dbeta

    def batchnorm_inference(
        self,
        X: Array,
        gamma: Array,
        beta: Array,
        mean: Array,
        var: Array,
        *,
        epsilon: float,
    ) -> tuple[Array, Array, Array]:
        """Eval-mode batch norm with fixed statistics: ``(Y, Xhat, inv_std)``."""
        inv_std = 1.0 / self.xp.sqrt(var + epsilon)
        Xhat = (X - mean) * inv_std
        return Xhat * gamma + beta, Xhat, inv_std

    def backprop_batchnorm_inference(
        self, dY: Array, Xhat: Array, inv_std: Array, gamma: Array
    ) -> tuple[Array, Array, Array]:
        xp = self.xp
        axes = self._batch_axes(dY)
        return dY * (gamma * inv_std), xp.sum(dY * Xhat, axis=axes), xp.sum(dY, axis=axes)

    def layernorm(
        self, X: Array, gamma: Array, beta: Array, *, epsilon: float,
        residual: Array | None = None,
    ) -> tuple[Array, Array, Array]:  # fmt: skip
        """Layer norm over the last axis: returns ``(Y, Xhat, inv_std)``; of
        ``X + residual`` when given (a post-norm block's sum, whose gradient is that of
        both terms)."""
        xp = self.xp
        if residual is not None:
            X = X + residual
        mean = xp.mean(X, axis=-1, keepdims=True)
        C = X - mean
        inv_std = 1.0 / xp.sqrt(xp.mean(C * C, axis=-1, keepdims=True) + epsilon)
        Xhat = C * inv_std
        return Xhat * gamma + beta, Xhat, inv_std

    def backprop_layernorm(
        self, dY: Array, Xhat: Array, inv_std: Array, gamma: Array
    ) -> tuple[Array, Array, Array]:
        """Returns ``(dX, dgamma, dbeta)`` of layer norm."""
        xp = self.xp
        axes = self._batch_axes(dY)
        dXhat = dY * gamma
        m1 = xp.mean(dXhat, axis=-1, keepdims=True)
        m2 = xp.mean(dXhat * Xhat, axis=-1, keepdims=True)
        dX = inv_std * (dXhat - m1 - Xhat * m2)
        return dX, xp.sum(dY * Xhat, axis=axes), xp.sum(dY, axis=axes)
