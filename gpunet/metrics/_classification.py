"""Classification metrics (Keras names and semantics)."""

from __future__ import annotations

from typing import Any

import numpy as np

from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.metrics._base import Metric, _arrays, _weights


class Accuracy(Metric):
    """Fraction of exact matches (``y_pred == y_true``)."""

    name = "accuracy"

    def values(self, ops: Any, T: Any, P: Any) -> Any:
        xp = ops.xp
        T = xp.reshape(xp.astype(T, P.dtype), P.shape)
        return xp.mean(xp.astype(T == P, P.dtype), axis=-1)


class BinaryAccuracy(Metric):
    """Fraction of outputs where ``(y_pred > threshold) == y_true``."""

    name = "binary_accuracy"

    def __init__(self, name: str | None = None, dtype: Any = None, threshold: float = 0.5) -> None:
        super().__init__(name, dtype)
        self.threshold = float(threshold)

    def values(self, ops: Any, T: Any, P: Any) -> Any:
        xp = ops.xp
        T = xp.reshape(xp.astype(T, P.dtype), P.shape)
        hit = xp.astype(P > self.threshold, P.dtype) == T
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


def _in_top_k(ops: Any, labels: Any, P: Any, k: int) -> Any:
    """Whether each row's label scores at least the row's k-th largest score (ties
    count as hits, as Keras' ``in_top_k``)."""
    xp = ops.xp
    k = min(k, P.shape[-1])
    kth = xp.sort(P, axis=-1)[:, P.shape[-1] - k]
    onehot = ops.onehot(labels, P.shape[-1], P.dtype)
    mine = xp.sum(P * onehot, axis=-1)
    return xp.astype(mine >= kth, P.dtype)


class TopKCategoricalAccuracy(Metric):
    """Fraction of rows whose one-hot target is among the ``k`` highest scores."""

    name = "top_k_categorical_accuracy"

    def __init__(self, k: int = 5, name: str | None = None, dtype: Any = None) -> None:
        super().__init__(name, dtype)
        if int(k) < 1:
            raise InvalidParameterError(f"k must be >= 1, got {k!r}")
        self.k = int(k)

    def values(self, ops: Any, T: Any, P: Any) -> Any:
        labels = ops.xp.astype(ops.xp.argmax(T, axis=-1), ops.xp.int64)
        return _in_top_k(ops, labels, P, self.k)


class SparseTopKCategoricalAccuracy(TopKCategoricalAccuracy):
    """Fraction of rows whose integer label is among the ``k`` highest scores."""

    name = "sparse_top_k_categorical_accuracy"

    def values(self, ops: Any, T: Any, P: Any) -> Any:
        labels = ops.xp.reshape(ops.xp.astype(T, ops.xp.int64), (-1,))
        return _in_top_k(ops, labels, P, self.k)


class _Confusion(Metric):
    """True/false positives and negatives at one or more thresholds: a label is
    positive when non-zero, a prediction when above the threshold."""

    state_names = ("tp", "fp", "fn", "tn")

    def __init__(
        self,
        thresholds: Any = None,
        name: str | None = None,
        dtype: Any = None,
        from_logits: bool = False,
    ) -> None:
        super().__init__(name, dtype)
        given = 0.5 if thresholds is None else thresholds
        self.thresholds = np.atleast_1d(np.asarray(given, dtype=np.float64))
        if self.thresholds.ndim != 1 or not np.all(np.isfinite(self.thresholds)):
            raise InvalidParameterError(
                f"thresholds must be a number or a list of finite numbers, got {thresholds!r}"
            )
        self._one = np.ndim(given) == 0
        self.from_logits = bool(from_logits)

    def shape(self, key: str) -> tuple[int, ...]:
        return (len(self.thresholds),)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        ops, T, P = _arrays(y_true, y_pred)
        xp = ops.xp
        if self.from_logits:
            P = ops.sigmoid(P)
        if T.size != P.size:
            raise InputValidationError(
                f"{self.name}: y_true has {T.size} values for {P.size} predictions"
            )
        pos = xp.reshape(xp.astype(T, P.dtype), (-1, 1)) != 0
        th = ops.asarray(self.thresholds, dtype=P.dtype)
        above = xp.reshape(P, (-1, 1)) > th
        w: Any = 1.0
        sw = _weights(ops, sample_weight, P.dtype)
        if sw is not None:
            sw = xp.reshape(sw, (-1, 1)) if sw.size == P.shape[0] else xp.reshape(sw, P.shape)
            w = xp.reshape(xp.broadcast_to(sw, P.shape), (-1, 1))

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
        if not self.state:
            return {k: np.zeros(len(self.thresholds)) for k in self.state_names}
        return {k: np.atleast_1d(self._read(k)) for k in self.state_names}

    def _per_threshold(self, values: np.ndarray) -> Any:
        return float(values[0]) if self._one else values

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "thresholds": self.thresholds.tolist()}


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a / b``, 0 where ``b`` is 0 (Keras' ``divide_no_nan``)."""
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b != 0)


class _Count(_Confusion):
    key = "tp"

    def result(self) -> Any:
        return self._per_threshold(self.counts()[self.key])


class TruePositives(_Count):
    """Weighted count of positives predicted positive, per threshold."""

    name, key = "true_positives", "tp"


class FalsePositives(_Count):
    """Weighted count of negatives predicted positive, per threshold."""

    name, key = "false_positives", "fp"


class TrueNegatives(_Count):
    """Weighted count of negatives predicted negative, per threshold."""

    name, key = "true_negatives", "tn"


class FalseNegatives(_Count):
    """Weighted count of positives predicted negative, per threshold."""

    name, key = "false_negatives", "fn"


class Precision(_Confusion):
    """``tp / (tp + fp)`` at each threshold (a float for one threshold)."""

    name = "precision"

    def result(self) -> Any:
        c = self.counts()
        return self._per_threshold(_ratio(c["tp"], c["tp"] + c["fp"]))


class Recall(_Confusion):
    """``tp / (tp + fn)`` at each threshold (a float for one threshold)."""

    name = "recall"

    def result(self) -> Any:
        c = self.counts()
        return self._per_threshold(_ratio(c["tp"], c["tp"] + c["fn"]))


class AUC(_Confusion):
    """Area under the ROC or precision-recall curve from ``num_thresholds`` buckets
    (Keras' ``AUC``: trapezoids, or for ``curve="PR"`` the interpolation of Davis &
    Goadrich; ``summation_method="minoring"``/``"majoring"`` for lower/upper sums)."""

    name = "auc"

    def __init__(
        self,
        num_thresholds: int = 200,
        curve: str = "ROC",
        summation_method: str = "interpolation",
        name: str | None = None,
        dtype: Any = None,
        from_logits: bool = False,
    ) -> None:
        if num_thresholds < 2:
            raise InvalidParameterError(f"num_thresholds must be > 1, got {num_thresholds}")
        if str(curve).upper() not in ("ROC", "PR"):
            raise InvalidParameterError(f"curve must be 'ROC' or 'PR', got {curve!r}")
        if summation_method not in ("interpolation", "minoring", "majoring"):
            raise InvalidParameterError(
                "summation_method must be 'interpolation', 'minoring' or 'majoring', "
                f"got {summation_method!r}"
            )
        eps = 1e-7
        inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
        super().__init__([-eps, *inner, 1.0 + eps], name, dtype, from_logits)
        self.num_thresholds = int(num_thresholds)
        self.curve, self.summation_method = str(curve).upper(), summation_method

    def result(self) -> float:
        c = self.counts()
        tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
        if self.curve == "PR" and self.summation_method == "interpolation":
            return _interpolated_pr_auc(tp, fp, fn)
        recall = _ratio(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _ratio(fp, fp + tn), recall
        else:
            x, y = recall, _ratio(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        else:
            heights = (np.minimum if self.summation_method == "minoring" else np.maximum)(
                y[:-1], y[1:]
            )
        # thresholds ascend, so both rates descend: integrate right to left
        return float(np.sum((x[:-1] - x[1:]) * heights))

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "num_thresholds": self.num_thresholds, "curve": self.curve,
                "summation_method": self.summation_method}  # fmt: skip


def _interpolated_pr_auc(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> float:
    """Precision interpolated between buckets along the number of positive
    predictions (Davis & Goadrich 2006), as Keras' ``interpolate_pr_auc``."""
    dtp = tp[:-1] - tp[1:]
    p = tp + fp
    dp = p[:-1] - p[1:]
    slope = _ratio(dtp, np.maximum(dp, 0.0))
    intercept = tp[1:] - slope * p[1:]
    both = (p[:-1] > 0) & (p[1:] > 0)
    p_ratio = np.where(both, _ratio(p[:-1], np.maximum(p[1:], 0.0)), 1.0)
    log_ratio = np.log(np.where(p_ratio > 0, p_ratio, 1.0))
    step = _ratio(slope * (dtp + intercept * log_ratio), np.maximum(tp[1:] + fn[1:], 0.0))
    return float(np.sum(step))


class FBetaScore(Metric):
    """F-beta score per class of ``(batch, classes)`` targets (Keras' ``FBetaScore``).

    Args:
        average: None (one score per class), ``"micro"``, ``"macro"`` or ``"weighted"``.
        beta: weight of recall against precision.
        threshold: predictions above it are positive; None takes each row's maximum.
    """

    name = "fbeta_score"
    state_names = ("tp", "fp", "fn", "support")

    def __init__(
        self,
        average: str | None = None,
        beta: float = 1.0,
        threshold: float | None = None,
        name: str | None = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(name, dtype)
        if average not in (None, "micro", "macro", "weighted"):
            raise InvalidParameterError(
                f"average must be None, 'micro', 'macro' or 'weighted', got {average!r}"
            )
        if beta <= 0:
            raise InvalidParameterError(f"beta must be > 0, got {beta!r}")
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise InvalidParameterError(f"threshold must be in [0, 1], got {threshold!r}")
        self.average, self.beta, self.threshold = average, float(beta), threshold
        self._k = 0

    def shape(self, key: str) -> tuple[int, ...]:
        return () if self.average == "micro" else (self._k,)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        ops, T, P = _arrays(y_true, y_pred)
        xp = ops.xp
        if P.ndim != 2 or T.ndim != 2:
            raise InputValidationError(
                f"{self.name} expects 2-d (batch, classes) inputs, got y_true of shape "
                f"{tuple(T.shape)} and y_pred of shape {tuple(P.shape)}"
            )
        if self._k and P.shape[1] != self._k:
            raise InputValidationError(f"{self.name}: {P.shape[1]} classes after {self._k}")
        self._k = P.shape[1]
        T = xp.astype(T, P.dtype)
        if self.threshold is None:  # the row's top score; an all-zero row stays negative
            top = xp.max(P, axis=-1, keepdims=True)
            Yp = xp.astype((P >= top) & (xp.abs(P) > 1e-9), P.dtype)
        else:
            Yp = xp.astype(P > self.threshold, P.dtype)
        w = _weights(ops, sample_weight, P.dtype)
        w = 1.0 if w is None else xp.reshape(w, (-1, 1))
        axis = None if self.average == "micro" else 0

        def total(V: Any) -> Any:
            return xp.sum(V * w, axis=axis)

        self._add(
            ops,
            tp=total(Yp * T),
            fp=total(Yp * (1.0 - T)),
            fn=total((1.0 - Yp) * T),
            support=total(T),
        )

    def result(self) -> Any:
        if not self.state:
            return 0.0
        eps = 1e-7  # Keras' backend.epsilon()
        tp, fp, fn, support = (np.asarray(self._read(k)) for k in self.state_names)
        precision = tp / (tp + fp + eps)
        recall = tp / (tp + fn + eps)
        b2 = self.beta**2
        f = precision * recall / (b2 * precision + recall + eps) * (1.0 + b2)
        if self.average == "weighted":
            return float(np.sum(f * support / (np.sum(support) + eps)))
        if self.average is not None:
            return float(np.mean(f))
        return f

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "average": self.average,
            "beta": self.beta,
            "threshold": self.threshold,
        }


class F1Score(FBetaScore):
    """F1 score (``FBetaScore`` with ``beta=1``).

    Example:
        >>> import numpy as np, gpunet as gn
        >>> m = gn.metrics.F1Score(average="micro", threshold=0.5)
        >>> m.update_state(np.array([[1, 0], [0, 1]]), np.array([[0.9, 0.2], [0.6, 0.3]]))
        >>> round(m.result(), 4)
        0.5
    """

    name = "f1_score"

    def __init__(
        self,
        average: str | None = None,
        threshold: float | None = None,
        name: str | None = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(average, 1.0, threshold, name, dtype)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["beta"]
        return config
