"""Metrics (Keras names). State lives on the model's device and each update is
device work only; ``result()`` is the one host read, made at a progress-bar
refresh or an epoch end, never per batch.

Example:
    >>> import numpy as np, gpunet as gn
    >>> m = gn.metrics.BinaryAccuracy()
    >>> m.update_state(np.array([[1.0], [0.0]]), np.array([[0.9], [0.8]]))
    >>> m.result()
    0.5
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpunet.autograd import Tensor
from gpunet.backend import get_ops
from gpunet.errors import InvalidParameterError


def _arrays(y_true: Any, y_pred: Any) -> tuple[Any, Any, Any]:
    if isinstance(y_pred, Tensor):
        ops, P = y_pred.ops, y_pred.data
    else:
        ops = get_ops("cpu")
        P = ops.asarray(np.asarray(y_pred, dtype=np.float64))
    if isinstance(y_true, Tensor):
        T = y_true.data
    elif isinstance(y_true, (np.ndarray, list, tuple)):
        T = ops.asarray(np.asarray(y_true))
    else:
        T = y_true
    if P.ndim == 1:
        P = ops.xp.reshape(P, (-1, 1))
    return ops, T, P


class Metric:
    """Base: ``update_state(y_true, y_pred, sample_weight=None)``, ``result()``,
    ``reset_state()``. Subclasses keep named sums in ``self.state``."""

    name = "metric"
    state_names: tuple[str, ...] = ("total", "count")

    def __init__(self, name: str | None = None) -> None:
        self.name = name or self.name
        self.state: dict[str, Any] = {}
        self._ops: Any = None

    def reset_state(self) -> None:
        self.state = {}

    def _add(self, ops: Any, **values: Any) -> None:
        if not self.state or self._ops is not ops:
            self._ops = ops
            self.state = {k: ops.zeros(self.shape(k), ops.accum_dtype) for k in self.state_names}
        for k, v in values.items():
            self.state[k] = self.state[k] + v

    def shape(self, key: str) -> tuple[int, ...]:
        return ()

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        ops, T, P = _arrays(y_true, y_pred)
        xp = ops.xp
        values = self.values(ops, T, P)  # per-sample, shape (B,)
        if sample_weight is not None:
            w = sample_weight.data if isinstance(sample_weight, Tensor) else sample_weight
            w = xp.astype(ops.asarray(w) if isinstance(w, np.ndarray) else w, values.dtype)
            self._add(ops, total=xp.sum(values * w), count=xp.sum(w))
        else:
            self._add(ops, total=xp.sum(values), count=float(values.shape[0]))

    def values(self, ops: Any, T: Any, P: Any) -> Any:
        raise NotImplementedError  # pragma: no cover - each metric defines it

    def result(self) -> float:
        if not self.state:
            return 0.0
        total, count = self._read("total"), self._read("count")
        return float(total / count) if count else 0.0

    def _read(self, key: str) -> Any:
        value = self._ops.to_numpy(self.state[key])
        return float(value) if value.ndim == 0 else value

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> float:
        self.reset_state()
        self.update_state(y_true, y_pred, sample_weight)
        return self.result()

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name}


class Mean(Metric):
    """Running (weighted) mean of given values; ``fit`` tracks the loss with it."""

    name = "mean"

    def update_state(self, values: Any, weight: Any = 1.0, sample_weight: Any = None) -> None:  # type: ignore[override]
        ops = values.ops if isinstance(values, Tensor) else get_ops("cpu")
        v = values.data if isinstance(values, Tensor) else values
        self._add(ops, total=v * weight, count=weight)


def _labels_of(xp: Any, T: Any, P: Any) -> Any:
    if T.ndim == P.ndim and T.shape[-1] == P.shape[-1] and P.shape[-1] > 1:
        return xp.argmax(T, axis=-1)
    return xp.reshape(T, (-1,))


class Accuracy(Metric):
    """Fraction of exact matches (``y_pred == y_true``)."""

    name = "accuracy"

    def values(self, ops: Any, T: Any, P: Any) -> Any:
        xp = ops.xp
        T = xp.reshape(xp.astype(T, P.dtype), P.shape)
        return xp.mean(xp.astype(T == P, P.dtype), axis=-1)


class BinaryAccuracy(Metric):
    """Fraction of ``(y_pred > threshold) == y_true`` over all outputs."""

    name = "binary_accuracy"

    def __init__(self, name: str | None = None, threshold: float = 0.5) -> None:
        super().__init__(name)
        self.threshold = float(threshold)

    def values(self, ops: Any, T: Any, P: Any) -> Any:
        xp = ops.xp
        T = xp.reshape(xp.astype(T, P.dtype), P.shape)
        hit = xp.astype(P > self.threshold, P.dtype) == xp.astype(T > 0.5, P.dtype)
        return xp.mean(xp.astype(hit, P.dtype), axis=-1)


class CategoricalAccuracy(Metric):
    """Fraction of rows where ``argmax(y_pred) == argmax(y_true)``."""

    name = "categorical_accuracy"

    def values(self, ops: Any, T: Any, P: Any) -> Any:
        xp = ops.xp
        return xp.astype(xp.argmax(P, axis=-1) == xp.argmax(T, axis=-1), P.dtype)


class SparseCategoricalAccuracy(Metric):
    """Fraction of rows where ``argmax(y_pred)`` equals the integer label."""

    name = "sparse_categorical_accuracy"

    def values(self, ops: Any, T: Any, P: Any) -> Any:
        xp = ops.xp
        labels = xp.reshape(xp.astype(T, xp.int64), (-1,))
        return xp.astype(xp.astype(xp.argmax(P, axis=-1), xp.int64) == labels, P.dtype)


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
    name = "root_mean_squared_error"

    def result(self) -> float:
        return float(np.sqrt(super().result()))


class _Confusion(Metric):
    """True/false positives and negatives at one or more thresholds."""

    state_names = ("tp", "fp", "fn", "tn")

    def __init__(
        self, name: str | None = None, thresholds: Any = 0.5, from_logits: bool = False
    ) -> None:
        super().__init__(name)
        self.thresholds = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
        self.from_logits = bool(from_logits)

    def shape(self, key: str) -> tuple[int, ...]:
        return (len(self.thresholds),)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        ops, T, P = _arrays(y_true, y_pred)
        xp = ops.xp
        if self.from_logits:
            P = ops.sigmoid(P)
        pos = xp.reshape(xp.astype(T, P.dtype), (-1, 1)) > 0.5
        th = ops.asarray(self.thresholds, dtype=P.dtype)
        above = xp.reshape(P, (-1, 1)) > th
        w = 1.0
        if sample_weight is not None:
            sw = (
                sample_weight.data
                if isinstance(sample_weight, Tensor)
                else ops.asarray(sample_weight)
            )
            reps = P.shape[-1] if P.ndim == 2 else 1
            w = xp.reshape(xp.astype(xp.stack([sw] * reps, axis=-1), P.dtype), (-1, 1))

        def count(mask: Any) -> Any:
            return xp.sum(xp.astype(mask, P.dtype) * w, axis=0)

        self._add(
            ops,
            tp=count(pos & above),
            fp=count(~pos & above),
            fn=count(pos & ~above),
            tn=count(~pos & ~above),
        )

    def counts(self) -> dict[str, Any]:
        return {k: np.asarray(self._read(k)) for k in self.state_names}


class Precision(_Confusion):
    name = "precision"

    def result(self) -> float:
        if not self.state:
            return 0.0
        c = self.counts()
        d = c["tp"][0] + c["fp"][0]
        return float(c["tp"][0] / d) if d else 0.0


class Recall(_Confusion):
    name = "recall"

    def result(self) -> float:
        if not self.state:
            return 0.0
        c = self.counts()
        d = c["tp"][0] + c["fn"][0]
        return float(c["tp"][0] / d) if d else 0.0


class AUC(_Confusion):
    """Area under the ROC curve from ``num_thresholds`` buckets (Keras, trapezoids)."""

    name = "auc"

    def __init__(
        self, num_thresholds: int = 200, name: str | None = None, from_logits: bool = False
    ) -> None:
        if num_thresholds < 2:
            raise InvalidParameterError(f"num_thresholds must be > 1, got {num_thresholds}")
        eps = 1e-7
        inner = np.linspace(0.0, 1.0, num_thresholds)[1:-1]
        super().__init__(name, np.concatenate([[-eps], inner, [1.0 + eps]]), from_logits)

    def result(self) -> float:
        if not self.state:
            return 0.0
        c = self.counts()
        tpr = np.divide(
            c["tp"], c["tp"] + c["fn"], out=np.zeros_like(c["tp"]), where=(c["tp"] + c["fn"]) > 0
        )
        fpr = np.divide(
            c["fp"], c["fp"] + c["tn"], out=np.zeros_like(c["fp"]), where=(c["fp"] + c["tn"]) > 0
        )
        # thresholds ascend, so both rates descend: integrate right to left
        return float(np.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2.0))


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
        w = (
            1.0
            if sample_weight is None
            else xp.reshape(xp.astype(ops.asarray(sample_weight), P.dtype), (-1, 1))
        )
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


_REGISTRY: dict[str, Any] = {
    "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "precision": Precision,
    "recall": Recall,
    "auc": AUC,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "rmse": RootMeanSquaredError,
    "root_mean_squared_error": RootMeanSquaredError,
    "r2": R2Score,
    "r2_score": R2Score,
}


def get(spec: Any, loss: Any = None) -> Metric:
    """A metric from a name or instance. ``"accuracy"``/``"acc"`` picks the binary,
    categorical or sparse variant from the compiled ``loss``, as Keras does."""
    if isinstance(spec, Metric):
        return spec
    if spec in ("accuracy", "acc"):
        kind = getattr(loss, "name", "")
        logits = bool(getattr(loss, "from_logits", False))
        if kind == "binary_crossentropy":
            return BinaryAccuracy(name=spec, threshold=0.0 if logits else 0.5)
        if kind == "categorical_crossentropy":
            return CategoricalAccuracy(name=spec)
        if kind == "sparse_categorical_crossentropy":
            return SparseCategoricalAccuracy(name=spec)
        return Accuracy(name=spec)
    if isinstance(spec, str) and spec in _REGISTRY:
        return _REGISTRY[spec](name=spec)  # type: ignore[no-any-return]
    valid = ", ".join(sorted([*_REGISTRY, "accuracy"]))
    raise InvalidParameterError(f"unknown metric {spec!r}; expected one of {valid}")
