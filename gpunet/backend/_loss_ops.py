"""Losses as fused ops: each returns the per-sample loss ``L`` and ``dP``, the
gradient of ``sum_i scale_i * L_i`` with respect to the prediction, in one call.

``scale`` is a Python float or an array of shape ``(B,)`` (sample weight / batch
size). Targets ``T`` have the prediction's shape ``(B, K)``; the per-sample loss
is the mean over the last axis, as in Keras.
"""

from __future__ import annotations

from typing import Any

Array = Any


class LossOps:
    xp: Any

    def _row_scale(self, scale: Any, K: int) -> Any:
        # (B,) -> (B, 1) so it broadcasts over the K outputs; fold in the 1/K mean
        if isinstance(scale, (int, float)):
            return scale / K
        return self.xp.reshape(scale, (-1, 1)) / K

    def onehot(self, labels: Array, C: int, dtype: Any) -> Array:
        """``(B,)`` integer labels to a ``(B, C)`` one-hot matrix of ``dtype``."""
        xp = self.xp
        classes = self.arange(C, dtype=labels.dtype)  # type: ignore[attr-defined]
        return xp.astype(xp.reshape(labels, (-1, 1)) == classes, dtype)

    def softmax_cross_entropy(
        self, Z: Array, T: Array, *, scale: Any, label_smoothing: float = 0.0
    ) -> tuple[Array, Array]:
        """Cross-entropy of ``softmax(Z)`` against target distributions ``T``.

        Returns ``(L, dZ)`` with ``dZ = (softmax(Z) - T_smoothed) * scale``, the
        stable fused form: no probability is ever passed through ``log``.
        """
        xp = self.xp
        C = Z.shape[-1]
        if label_smoothing:
            T = T * (1.0 - label_smoothing) + label_smoothing / C
        Zs = Z - self._finite_max(Z, -1)  # type: ignore[attr-defined]
        E = xp.exp(Zs)
        S = xp.sum(E, axis=-1, keepdims=True)
        sT = xp.sum(T, axis=-1, keepdims=True)  # 1 for proper distributions
        # -sum_j T_j log_softmax(Z)_j = sT*log(S) - T.Zs: no (M + log S) - Z_label
        # cancellation at |Z| ~ 1e4, and no probability goes through log.
        L = (xp.log(S) * sT)[..., 0] - xp.sum(T * Zs, axis=-1)
        dZ = (E / S * sT - T) * self._row_scale(scale, 1)
        return L, dZ

    def sparse_softmax_cross_entropy(
        self, Z: Array, labels: Array, *, scale: Any, label_smoothing: float = 0.0
    ) -> tuple[Array, Array]:
        """As :meth:`softmax_cross_entropy` with integer ``labels`` of shape ``(B,)``."""
        T = self.onehot(labels, Z.shape[-1], Z.dtype)
        return self.softmax_cross_entropy(Z, T, scale=scale, label_smoothing=label_smoothing)

    def sigmoid_cross_entropy(
        self, Z: Array, T: Array, *, scale: Any, label_smoothing: float = 0.0
    ) -> tuple[Array, Array]:
        """Binary cross-entropy of ``sigmoid(Z)`` against ``T``, from the logits.

        ``max(Z, 0) - Z*T + log1p(exp(-|Z|))`` never overflows; the gradient is
        ``(sigmoid(Z) - T) * scale / K``.
        """
        xp = self.xp
        if label_smoothing:
            T = T * (1.0 - label_smoothing) + 0.5 * label_smoothing
        l = xp.maximum(Z, 0.0) - Z * T + xp.log1p(xp.exp(-xp.abs(Z)))
        K = Z.shape[-1]
        dZ = (self.sigmoid(Z) - T) * self._row_scale(scale, K)  # type: ignore[attr-defined]
        return xp.mean(l, axis=-1), dZ

    def binary_cross_entropy(
        self, P: Array, T: Array, *, scale: Any, epsilon: float, label_smoothing: float = 0.0
    ) -> tuple[Array, Array]:
        """Binary cross-entropy of probabilities ``P`` clipped to ``[eps, 1 - eps]``."""
        xp = self.xp
        if label_smoothing:
            T = T * (1.0 - label_smoothing) + 0.5 * label_smoothing
        Pc = xp.clip(P, epsilon, 1.0 - epsilon)
        l = -(T * xp.log(Pc) + (1.0 - T) * xp.log(1.0 - Pc))
        inside = xp.astype((P > epsilon) & (P < 1.0 - epsilon), P.dtype)
        g = (Pc - T) / (Pc * (1.0 - Pc)) * inside
        return xp.mean(l, axis=-1), g * self._row_scale(scale, P.shape[-1])

    def categorical_cross_entropy(
        self, P: Array, T: Array, *, scale: Any, epsilon: float, label_smoothing: float = 0.0
    ) -> tuple[Array, Array]:
        """Cross-entropy of probability rows ``P`` (renormalised, clipped) against ``T``."""
        xp = self.xp
        C = P.shape[-1]
        if label_smoothing:
            T = T * (1.0 - label_smoothing) + label_smoothing / C
        S = xp.sum(P, axis=-1, keepdims=True)
        Q = P / S
        Qc = xp.clip(Q, epsilon, 1.0 - epsilon)
        L = -xp.sum(T * xp.log(Qc), axis=-1)
        inside = xp.astype((Q > epsilon) & (Q < 1.0 - epsilon), P.dtype)
        G = -T / Qc * inside  # dL/dQ
        # through Q = P / S: dL/dP_j = G_j / S - sum_k G_k P_k / S^2
        dP = G / S - xp.sum(G * P, axis=-1, keepdims=True) / (S * S)
        return L, dP * self._row_scale(scale, 1)

    def squared_error(self, P: Array, T: Array, *, scale: float) -> tuple[Array, Array]:
        """``(sum((P - T)**2), scale * (P - T))``: a whole-array squared error (PyTorch's
        ``mse_loss``, ``scale`` its gradient's factor) and its gradient, 0-d and like P."""
        E = P - T
        return self.xp.sum(E * E), E * scale

    def mean_squared_error(self, P: Array, T: Array, *, scale: Any) -> tuple[Array, Array]:
        E = P - T
        return self.xp.mean(E * E, axis=-1), (2.0 * E) * self._row_scale(scale, P.shape[-1])

    def mean_absolute_error(self, P: Array, T: Array, *, scale: Any) -> tuple[Array, Array]:
        xp = self.xp
        E = P - T
        return xp.mean(xp.abs(E), axis=-1), xp.sign(E) * self._row_scale(scale, P.shape[-1])

    def huber(self, P: Array, T: Array, *, scale: Any, delta: float = 1.0) -> tuple[Array, Array]:
        xp = self.xp
        E = P - T
        A = xp.abs(E)
        l = xp.where(A <= delta, 0.5 * E * E, delta * (A - 0.5 * delta))
        dP = xp.clip(E, -delta, delta) * self._row_scale(scale, P.shape[-1])
        return xp.mean(l, axis=-1), dP

    def poisson(self, P: Array, T: Array, *, scale: Any, epsilon: float) -> tuple[Array, Array]:
        """Keras ``poisson``: ``mean(P - T * log(P + eps))`` over the last axis."""
        xp = self.xp
        l = P - T * xp.log(P + epsilon)
        dP = (1.0 - T / (P + epsilon)) * self._row_scale(scale, P.shape[-1])
        return xp.mean(l, axis=-1), dP
