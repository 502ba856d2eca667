"""Metrics against scikit-learn's implementations on the same data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

import gpunet as gn

RNG = np.random.default_rng(0)


def _chunks(m, y_true, y_pred, sw=None, parts=3):
    """Feed a metric in several batches, as fit does."""
    m.reset_state()
    for idx in np.array_split(np.arange(len(y_true)), parts):
        m.update_state(y_true[idx], y_pred[idx], None if sw is None else sw[idx])
    return m.result()


def test_binary_metrics_match_sklearn():
    y = (RNG.random(300) > 0.4).astype("float64")
    p = np.clip(y * 0.6 + RNG.random(300) * 0.5, 0, 1)
    assert _chunks(gn.metrics.BinaryAccuracy(), y, p) == pytest.approx(
        skm.accuracy_score(y, p > 0.5)
    )
    assert _chunks(gn.metrics.Precision(), y, p) == pytest.approx(skm.precision_score(y, p > 0.5))
    assert _chunks(gn.metrics.Recall(), y, p) == pytest.approx(skm.recall_score(y, p > 0.5))
    # 200 thresholds approximate the exact ROC area closely
    assert _chunks(gn.metrics.AUC(), y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=2e-3)
    w = RNG.uniform(0.5, 2, 300)
    assert _chunks(gn.metrics.BinaryAccuracy(), y, p, w) == pytest.approx(
        skm.accuracy_score(y, p > 0.5, sample_weight=w)
    )


def test_categorical_metrics_match_sklearn():
    labels = RNG.integers(0, 4, 200)
    logits = RNG.normal(size=(200, 4)) + np.eye(4)[labels] * 1.5
    expect = skm.accuracy_score(labels, logits.argmax(1))
    assert _chunks(gn.metrics.SparseCategoricalAccuracy(), labels, logits) == pytest.approx(expect)
    assert _chunks(gn.metrics.CategoricalAccuracy(), np.eye(4)[labels], logits) == pytest.approx(
        expect
    )


def test_regression_metrics_match_sklearn():
    y = RNG.normal(size=(150, 2))
    p = y + RNG.normal(scale=0.5, size=(150, 2))
    assert _chunks(gn.metrics.MeanAbsoluteError(), y, p) == pytest.approx(
        skm.mean_absolute_error(y, p)
    )
    assert _chunks(gn.metrics.MeanSquaredError(), y, p) == pytest.approx(
        skm.mean_squared_error(y, p)
    )
    assert _chunks(gn.metrics.R2Score(), y, p) == pytest.approx(skm.r2_score(y, p))
    w = RNG.uniform(0.5, 2, 150)
    assert _chunks(gn.metrics.R2Score(), y, p, w) == pytest.approx(
        skm.r2_score(y, p, sample_weight=w)
    )
    assert _chunks(gn.metrics.RootMeanSquaredError(), y, p) == pytest.approx(
        np.sqrt(skm.mean_squared_error(y, p))
    )


def test_accuracy_follows_the_loss_as_keras():
    assert isinstance(
        gn.metrics.get("accuracy", gn.losses.get("binary_crossentropy")), gn.metrics.BinaryAccuracy
    )
    assert isinstance(
        gn.metrics.get("acc", gn.losses.get("categorical_crossentropy")),
        gn.metrics.CategoricalAccuracy,
    )
    assert isinstance(
        gn.metrics.get("accuracy", gn.losses.get("sparse_categorical_crossentropy")),
        gn.metrics.SparseCategoricalAccuracy,
    )
    logits = gn.metrics.get("accuracy", gn.losses.BinaryCrossentropy(from_logits=True))
    assert logits.threshold == 0.0  # logits: the decision boundary is 0, not 0.5


def test_metrics_in_fit_match_a_recomputation():
    X = RNG.normal(size=(128, 5)).astype("float32")
    y = (X[:, 0] - X[:, 1] > 0).astype("float32")
    model = gn.Sequential(
        [
            gn.layers.Dense(6, activation="relu", input_shape=(5,)),
            gn.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(
        optimizer="adam",
        loss="binary_crossentropy",
        metrics=["accuracy", "precision", "recall", "auc", "mae", "mse"],
    )
    logs = model.evaluate(X, y, verbose=0, return_dict=True)
    p = model.predict(X)[:, 0]
    assert logs["accuracy"] == pytest.approx(skm.accuracy_score(y, p > 0.5))
    assert logs["precision"] == pytest.approx(skm.precision_score(y, p > 0.5, zero_division=0))
    assert logs["recall"] == pytest.approx(skm.recall_score(y, p > 0.5))
    assert logs["mae"] == pytest.approx(np.mean(np.abs(p - y)), rel=1e-5)
    assert logs["mse"] == pytest.approx(np.mean((p - y) ** 2), rel=1e-5)
    assert logs["loss"] == pytest.approx(skm.log_loss(y, p), rel=1e-4)
