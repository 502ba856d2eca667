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


class _Hits(gn.metrics.Metric):
    """A Keras-style metric: variables, gn.ops, assign_add."""

    def __init__(self, name="hits", **kwargs):
        super().__init__(name=name, **kwargs)
        self.hits = self.add_variable(shape=(), initializer="zeros", name="hits")
        self.seen = self.add_weight(name="seen", initializer=0.0)

    def update_state(self, y_true, y_pred, sample_weight=None):
        ops = gn.ops
        hit = ops.cast(ops.argmax(y_pred, axis=-1) == ops.argmax(y_true, axis=-1), "float32")
        if sample_weight is not None:
            hit = hit * ops.cast(sample_weight, "float32")
        self.hits.assign_add(ops.sum(hit))
        self.seen.assign_add(ops.cast(ops.shape(y_pred)[0], "float32"))

    def result(self):
        return gn.ops.divide_no_nan(self.hits, self.seen)


class _MSE(gn.losses.Loss):
    def call(self, y_true, y_pred):
        return gn.ops.mean(gn.ops.square(y_true - y_pred), axis=-1)


def _fit_custom(device):
    gn.utils.set_random_seed(3)
    r = np.random.default_rng(7)
    X, y = r.normal(size=(48, 5)).astype("float32"), r.integers(0, 3, 48)
    model = gn.Sequential([gn.layers.Dense(8, activation="relu", input_shape=(5,)),
                           gn.layers.Dense(3, activation="softmax")], device=device)  # fmt: skip
    model.compile(optimizer="adam", loss=_MSE(), metrics=[_Hits(), "categorical_accuracy"])
    Y = np.eye(3, dtype="float32")[y]
    w = np.linspace(0.5, 1.5, 48)
    hist = model.fit(X, Y, epochs=2, batch_size=16, sample_weight=w, verbose=0).history
    return hist, model.evaluate(X, Y, verbose=0), y, w


def test_custom_metric_and_loss_on_the_simulated_device_match_the_cpu():
    (h0, e0, *_), (h1, e1, *_) = _fit_custom("cpu"), _fit_custom("sim")
    assert h0.keys() == h1.keys() == {"loss", "hits", "categorical_accuracy"}
    for k in h0:
        np.testing.assert_allclose(h1[k], h0[k], rtol=1e-4)
    np.testing.assert_allclose(e1, e0, rtol=1e-4)
    # one-hot targets give argmax labels: hits/seen is then the categorical accuracy
    assert e0[1] == pytest.approx(e0[2], rel=1e-6)


def test_metric_variables_reset_assign_and_read():
    m = _Hits()
    assert m.result() == 0.0
    m.update_state(np.eye(2)[[0, 1]], np.array([[0.9, 0.1], [0.8, 0.2]]), np.array([1.0, 3.0]))
    assert m.result() == pytest.approx(0.5) and float(m.hits) == 1.0
    assert [v.name for v in m.variables] == ["hits", "seen"] and m.state_names == ("hits", "seen")
    m.seen.assign(4.0)
    assert m.result() == pytest.approx(0.25)
    m.reset_state()
    assert float(m.hits) == 0.0 and float(m.seen) == 0.0
    with pytest.raises(gn.errors.InvalidParameterError, match="hits"):
        m.add_variable(name="hits")


def test_vector_results_print_in_the_progress_bar(capsys):
    x = RNG.normal(size=(32, 3))
    y = (x[:, 0] > 0).astype(float)
    model = gn.Sequential([gn.layers.Dense(1, activation="sigmoid", input_shape=(3,))])
    per_threshold = gn.metrics.Precision(thresholds=[0.3, 0.6])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=[per_threshold])
    h = model.fit(x, y, epochs=1, verbose=1).history
    (p,) = h["precision"]
    assert p.shape == (2,) and f"{p:.2f}" == f"[{p[0]:.2f} {p[1]:.2f}]"
    printed = capsys.readouterr()
    assert f"precision: [{p[0]:.4f} {p[1]:.4f}]" in printed.err + printed.out


def test_custom_metric_variables_join_the_metrics_allreduce():
    from gpunet.distributed import _strategy

    class TwoRanks:  # the other rank holds the same sums
        def allreduce_(self, buf, what):
            buf *= 2

    class Count(gn.metrics.Metric):
        def __init__(self, name="count", **kwargs):
            super().__init__(name=name, **kwargs)
            self.n = self.add_variable(shape=(), initializer="zeros", name="n")

        def update_state(self, y_true, y_pred, sample_weight=None):
            self.n.assign_add(gn.ops.cast(gn.ops.shape(y_pred)[0], "float32"))

        def result(self):
            return self.n

    model = gn.Sequential([gn.layers.Dense(1, input_shape=(3,))])
    model.compile(optimizer="sgd", loss="mse", metrics=[Count(), _Hits()])
    x = RNG.normal(size=(10, 3))
    model.fit(x, np.eye(1)[np.zeros(10, int)], epochs=1, batch_size=4, verbose=0)
    local = model._read_local_metrics()
    s = _strategy.MPIStrategy.__new__(_strategy.MPIStrategy)
    s.rank, s.size, s.comm = 0, 2, TwoRanks()
    both = s.read_metrics(model, "")
    assert local["count"] == 10.0 and both["count"] == 20.0  # counts add up over ranks
    assert both["hits"] == pytest.approx(local["hits"]) and both["loss"] == pytest.approx(
        local["loss"]
    )
    assert model._read_local_metrics() == local  # the local state is left alone
