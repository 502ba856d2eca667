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

from gpunet.errors import InvalidParameterError
from gpunet.metrics._base import Mean, MeanMetricWrapper, Metric, Sum, Variable
from gpunet.metrics._classification import (
    AUC,
    Accuracy,
    BinaryAccuracy,
    CategoricalAccuracy,
    F1Score,
    FalseNegatives,
    FalsePositives,
    FBetaScore,
    Precision,
    Recall,
    SparseCategoricalAccuracy,
    SparseTopKCategoricalAccuracy,
    TopKCategoricalAccuracy,
    TrueNegatives,
    TruePositives,
)
from gpunet.metrics._regression import (
    MeanAbsoluteError,
    MeanSquaredError,
    R2Score,
    RootMeanSquaredError,
)

_REGISTRY: dict[str, Any] = {
    "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "precision": Precision,
    "recall": Recall,
    "auc": AUC,
    "true_positives": TruePositives,
    "false_positives": FalsePositives,
    "true_negatives": TrueNegatives,
    "false_negatives": FalseNegatives,
    "f1_score": F1Score,
    "fbeta_score": FBetaScore,
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
    """A metric from a name, an instance, or a function ``f(y_true, y_pred)`` giving
    one value per sample (tracked as its running mean). ``"accuracy"``/``"acc"``
    picks the binary, categorical or sparse variant from the compiled ``loss``, as
    Keras does."""
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
    if isinstance(spec, type) and issubclass(spec, Metric):
        return spec()
    if callable(spec) and not isinstance(spec, str):
        return MeanMetricWrapper(spec)
    valid = ", ".join(sorted([*_REGISTRY, "accuracy"]))
    raise InvalidParameterError(f"unknown metric {spec!r}; expected one of {valid}")


__all__ = [
    "AUC", "Accuracy", "BinaryAccuracy", "CategoricalAccuracy", "F1Score", "FBetaScore",
    "FalseNegatives", "FalsePositives", "Mean", "MeanAbsoluteError", "MeanMetricWrapper",
    "MeanSquaredError", "Metric", "Precision", "R2Score", "Recall", "RootMeanSquaredError",
    "SparseCategoricalAccuracy", "SparseTopKCategoricalAccuracy", "Sum",
    "TopKCategoricalAccuracy", "TrueNegatives", "TruePositives", "Variable", "get",
]  # fmt: skip
