"""Regression metrics (Keras names; ``R2Score`` as scikit-learn's ``r2_score``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from gpunet.metrics._base import Metric, _arrays, _weights


class MeanAbsoluteError(Metric):
    name = "mean_absolute_error"

    def values(self, ops: Any, T: Any, P: Any) -> Any:
        xp = ops.xp
        return xp.mean(xp.abs(P - xp.reshape(xp.astype(T, P.dtype), P.shape)), axis=-1)


class MeanSquaredError(Metric):
    name = "mean_squared_error"

    def values(self, ops: Any, T: Any, P: Any) -> Any:
        xp = ops.xp
        E = P - xp.reshape(xp.astype(T, P.dtype), P.shape)
        return xp.mean(E * E, axis=-1)


class RootMeanSquaredError(MeanSquaredError):
    """``sqrt`` of the running (weighted) mean squared error."""

    name = "root_mean_squared_error"

    def result(self) -> float:
        return float(np.sqrt(super().result()))


class R2Score(Metric):
    """Coefficient of determination, averaged over outputs (sklearn's ``r2_score``)."""

    name = "r2_score"
    state_names = ("n", "sy", "syy", "sres")

    def shape(self, key: str) -> tuple[int, ...]:
        return () if key == "n" else (self._k,)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        ops, T, P = _arrays(y_true, y_pred)
        xp = ops.xp
        T = xp.reshape(xp.astype(T, P.dtype), P.shape)
        self._k = P.shape[-1]
        w = _weights(ops, sample_weight, P.dtype)
        w = 1.0 if w is None else xp.reshape(w, (-1, 1))
        n = float(P.shape[0]) if sample_weight is None else xp.sum(w)
        E = T - P
        self._add(
            ops,
            n=n,
            sy=xp.sum(T * w, axis=0),
            syy=xp.sum(T * T * w, axis=0),
            sres=xp.sum(E * E * w, axis=0),
        )

    def result(self) -> float:
        if not self.state:
            return 0.0
        n = self._read("n")
        sy, syy, sres = (np.atleast_1d(self._read(k)) for k in ("sy", "syy", "sres"))
        stot = syy - sy * sy / n
        r2 = np.where(
            stot > 0, 1.0 - sres / np.where(stot > 0, stot, 1.0), np.where(sres > 0, 0.0, 1.0)
        )
        return float(np.mean(r2))
