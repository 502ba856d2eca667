"""Metrics, losses and gn.ops against Keras 3 (KERAS_BACKEND=torch) on the same
inputs; the keras-io guide's custom loss and metric code run with only the imports
changed; float64 finite-difference checks of the ops gn.ops adds."""

from __future__ import annotations

import os

import numpy as np
import pytest

import gpunet as gn

os.environ["KERAS_BACKEND"] = "torch"
torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
torch.set_num_threads(1)
RNG = np.random.default_rng(0)
B = 24


def _data(kind: str):
    r = np.random.default_rng({"binary": 1, "categorical": 2, "sparse": 3, "regression": 4}[kind])
    if kind == "binary":
        return (r.random((B, 1)) > 0.5).astype("float32"), r.random((B, 1)).astype("float32")
    p = r.random((B, 4)).astype("float32")
    p /= p.sum(1, keepdims=True)
    labels = r.integers(0, 4, B)
    if kind == "sparse":
        return labels.astype("float32"), p
    if kind == "categorical":
        return np.eye(4, dtype="float32")[labels], p
    return r.normal(size=(B, 2)).astype("float32"), r.normal(size=(B, 2)).astype("float32")


METRICS = [  # (gpunet/keras class name, kwargs, data)
    ("BinaryAccuracy", {}, "binary"), ("BinaryAccuracy", {"threshold": 0.3}, "binary"),
    ("CategoricalAccuracy", {}, "categorical"), ("SparseCategoricalAccuracy", {}, "sparse"),
    ("TopKCategoricalAccuracy", {"k": 2}, "categorical"),
    ("SparseTopKCategoricalAccuracy", {"k": 2}, "sparse"),
    ("Precision", {}, "binary"), ("Precision", {"thresholds": [0.2, 0.5, 0.8]}, "binary"),
    ("Recall", {"thresholds": 0.4}, "binary"), ("Recall", {"thresholds": [0.3, 0.6]}, "binary"),
    ("TruePositives", {}, "binary"), ("FalsePositives", {"thresholds": [0.3, 0.7]}, "binary"),
    ("TrueNegatives", {"thresholds": 0.6}, "binary"), ("FalseNegatives", {}, "binary"),
    ("AUC", {}, "binary"), ("AUC", {"num_thresholds": 30}, "binary"),
    ("AUC", {"curve": "PR"}, "binary"), ("AUC", {"curve": "PR", "num_thresholds": 20}, "binary"),
    ("AUC", {"summation_method": "minoring"}, "binary"),
    ("AUC", {"curve": "PR", "summation_method": "majoring"}, "binary"),
    ("F1Score", {}, "categorical"),
    ("F1Score", {"average": "micro", "threshold": 0.3}, "categorical"),
    ("F1Score", {"average": "macro"}, "categorical"),
    ("F1Score", {"average": "weighted", "threshold": 0.25}, "categorical"),
    ("FBetaScore", {"beta": 2.0, "average": "macro", "threshold": 0.3}, "categorical"),
    ("MeanSquaredError", {}, "regression"), ("MeanAbsoluteError", {}, "regression"),
    ("RootMeanSquaredError", {}, "regression"),
]  # fmt: skip


def _feed(m, y, p, w, parts=3):
    for idx in np.array_split(np.arange(len(y)), parts):
        m.update_state(y[idx], p[idx], None if w is None else w[idx])
    return _np(m.result())


def _np(r):
    """A result as a float64 array (a Keras variable through its torch value)."""
    r = getattr(r, "value", r)
    return np.asarray(r.detach().numpy() if isinstance(r, torch.Tensor) else r, np.float64)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(("cls", "kw", "kind"), METRICS, ids=lambda v: str(v))
def test_metric_matches_keras(cls, kw, kind, weighted):
    y, p = _data(kind)
    w = RNG.uniform(0.2, 2.0, B).astype("float32") if weighted else None
    ours, theirs = getattr(gn.metrics, cls)(**kw), getattr(keras.metrics, cls)(**kw)
    np.testing.assert_allclose(_feed(ours, y, p, w), _feed(theirs, y, p, w), rtol=1e-5, atol=1e-6)
    ours.reset_state()
    theirs.reset_state()
    again = [_feed(m, y[:8], p[:8], None, 1) for m in (ours, theirs)]
    np.testing.assert_allclose(*again, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", ["Mean", "Sum"])
def test_reduction_metrics_match_keras(cls):
    v, w = RNG.normal(size=(6, 3)).astype("float32"), RNG.uniform(0, 2, 6).astype("float32")
    ours, theirs = getattr(gn.metrics, cls)(), getattr(keras.metrics, cls)()
    for m in (ours, theirs):
        m.update_state(v, sample_weight=w)
        m.update_state(v[:2, 0])
        m.update_state(2.5)
    np.testing.assert_allclose(ours.result(), np.asarray(theirs.result()), rtol=1e-6)


LOSSES = [
    ("MeanSquaredError", {}, "regression"), ("MeanAbsoluteError", {}, "regression"),
    ("Huber", {"delta": 0.7}, "regression"), ("Poisson", {}, "binary"),
    ("BinaryCrossentropy", {}, "binary"),
    ("BinaryCrossentropy", {"from_logits": True}, "regression"),
    ("CategoricalCrossentropy", {"label_smoothing": 0.1}, "categorical"),
    ("CategoricalCrossentropy", {"from_logits": True}, "categorical"),
    ("SparseCategoricalCrossentropy", {}, "sparse"),
]  # fmt: skip
REDUCTIONS = ["sum_over_batch_size", "sum", "none", None, "mean", "mean_with_sample_weight"]


def _yp(kind):
    y, p = _data(kind)
    if kind == "regression" and p.shape[1] == 2:
        y = (y > 0).astype("float32")  # also valid BCE targets
    return y, p


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("cls", "kw", "kind"), LOSSES, ids=lambda v: str(v))
def test_loss_matches_keras_values_and_gradients(cls, kw, kind, reduction):
    y, p = _yp(kind)
    if cls in ("MeanSquaredError", "MeanAbsoluteError", "Huber"):
        y = _data("regression")[0]
    w = RNG.uniform(0.2, 2.0, B).astype("float32")
    for sw in (None, w):
        P = gn.tensor(p.astype("float64"), requires_grad=True)
        ours = getattr(gn.losses, cls)(reduction=reduction, **kw)(y.astype("float64"), P, sw)
        Pt = torch.tensor(p.astype("float64"), requires_grad=True)
        theirs = getattr(keras.losses, cls)(reduction=reduction, dtype="float64", **kw)(
            torch.tensor(y.astype("float64")), Pt, None if sw is None else torch.tensor(sw)
        )
        np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-6, atol=1e-9)
        ours.sum().backward() if ours.ndim else ours.backward()
        theirs.sum().backward()
        np.testing.assert_allclose(P.grad, Pt.grad.numpy(), rtol=1e-5, atol=1e-9)


def _guide(keras, ops):
    """The keras-io guide's code (training_with_built_in_methods), verbatim."""

    def custom_mean_squared_error(y_true, y_pred):
        return ops.mean(ops.square(y_true - y_pred), axis=-1)

    class CustomMSE(keras.losses.Loss):
        def __init__(self, regularization_factor=0.1, name="custom_mse"):
            super().__init__(name=name)
            self.regularization_factor = regularization_factor

        def call(self, y_true, y_pred):
            mse = ops.mean(ops.square(y_true - y_pred), axis=-1)
            reg = ops.mean(ops.square(0.5 - y_pred), axis=-1)
            return mse + reg * self.regularization_factor

    class CategoricalTruePositives(keras.metrics.Metric):
        def __init__(self, name="categorical_true_positives", **kwargs):
            super().__init__(name=name, **kwargs)
            self.true_positives = self.add_variable(shape=(), name="ctp", initializer="zeros")

        def update_state(self, y_true, y_pred, sample_weight=None):
            y_pred = ops.reshape(ops.argmax(y_pred, axis=1), (-1, 1))
            values = ops.cast(y_true, "int32") == ops.cast(y_pred, "int32")
            values = ops.cast(values, "float32")
            if sample_weight is not None:
                sample_weight = ops.cast(sample_weight, "float32")
                values = ops.multiply(values, sample_weight)
            self.true_positives.assign_add(ops.sum(values))

        def result(self):
            return self.true_positives

        def reset_state(self):
            # The state of the metric will be reset at the start of each epoch.
            self.true_positives.assign(0.0)

    class BinaryTruePositives(keras.metrics.Metric):  # the Keras 2 guides' add_weight
        def __init__(self, name="binary_true_positives", **kwargs):
            super().__init__(name=name, **kwargs)
            self.true_positives = self.add_weight(name="tp", initializer="zeros")

        def update_state(self, y_true, y_pred, sample_weight=None):
            values = ops.logical_and(ops.cast(y_true, "bool"), y_pred > 0.5)
            values = ops.cast(values, "float32")
            if sample_weight is not None:
                values = ops.multiply(values, ops.cast(sample_weight, "float32"))
            self.true_positives.assign_add(ops.sum(values))

        def result(self):
            return self.true_positives

    return custom_mean_squared_error, CustomMSE, CategoricalTruePositives, BinaryTruePositives


def _model():
    gn.random.seed(0) if hasattr(gn.random, "seed") else None
    return gn.Sequential([gn.layers.Dense(16, activation="relu", input_shape=(8,)),
                          gn.layers.Dense(10, activation="softmax")])  # fmt: skip


def test_guide_custom_losses_train_and_match_keras():
    fn_gn, cls_gn, *_ = _guide(gn, gn.ops)
    fn_k, cls_k, *_ = _guide(keras, keras.ops)
    x = RNG.normal(size=(64, 8)).astype("float32")
    y_train = RNG.integers(0, 10, 64).astype("float32")
    y_train_one_hot = gn.ops.one_hot(y_train, num_classes=10)
    for ours, theirs in ((fn_gn, fn_k), (cls_gn(), cls_k())):
        model = _model()
        model.compile(optimizer=gn.optimizers.Adam(learning_rate=0.01), loss=ours)
        before = model.evaluate(x, y_train_one_hot, verbose=0)
        h = model.fit(x, y_train_one_hot, batch_size=16, epochs=3, verbose=0).history
        after = model.evaluate(x, y_train_one_hot, verbose=0)
        assert after < before and len(h["loss"]) == 3
        pred = model.predict(x, verbose=0)
        oracle = keras.losses.Loss.__call__ if isinstance(theirs, keras.losses.Loss) else None
        expect = theirs(torch.tensor(y_train_one_hot.numpy()), torch.tensor(pred))
        expect = expect.mean() if oracle is None else expect
        np.testing.assert_allclose(after, float(expect), rtol=1e-5)


def test_guide_custom_metrics_match_keras_and_fit():
    *_, ctp_gn, btp_gn = _guide(gn, gn.ops)
    *_, ctp_k, btp_k = _guide(keras, keras.ops)
    y, p = _data("sparse")
    yb, pb = _data("binary")
    w = RNG.uniform(0.5, 2, B).astype("float32")
    for (ours, theirs), (yy, pp) in (
        ((ctp_gn(), ctp_k()), (y, p)),
        ((btp_gn(), btp_k()), (yb, pb)),
    ):
        np.testing.assert_allclose(_feed(ours, yy, pp, w), _feed(theirs, yy, pp, w), rtol=1e-6)
        ours.reset_state()
        assert ours.result() == 0.0
    model = _model()
    model.compile(optimizer=gn.optimizers.RMSprop(learning_rate=1e-3),
                  loss=gn.losses.SparseCategoricalCrossentropy(), metrics=[ctp_gn()])  # fmt: skip
    x = RNG.normal(size=(32, 8)).astype("float32")
    labels = RNG.integers(0, 10, 32).astype("float32")
    h = model.fit(x, labels, batch_size=32, epochs=2, verbose=0).history
    assert len(h["categorical_true_positives"]) == 2
    _, got = model.evaluate(x, labels, batch_size=32, verbose=0)
    keras_m = ctp_k()
    keras_m.update_state(torch.tensor(labels), torch.tensor(model.predict(x, verbose=0)))
    assert got == pytest.approx(float(_np(keras_m.result())))


def test_metric_function_and_bad_subclass():
    m = gn.metrics.get(lambda t, p: gn.ops.abs(t - p))
    y, p = _data("regression")
    ref = keras.metrics.MeanMetricWrapper(lambda t, p: keras.ops.abs(t - p))
    np.testing.assert_allclose(_feed(m, y, p, None), _feed(ref, y, p, None), rtol=1e-6)

    class Early(gn.metrics.Metric):
        def __init__(self):
            self.v = self.add_variable(name="v")

    with pytest.raises(gn.errors.InvalidParameterError, match="super"):
        Early()
    with pytest.raises(gn.errors.InvalidParameterError, match="reduction"):
        gn.losses.MeanSquaredError(reduction="average")

    class NoCall(gn.losses.Loss):
        pass

    with pytest.raises(NotImplementedError, match="call"):
        NoCall()(np.zeros((2, 1)), np.zeros((2, 1)))


OPS_X = np.random.default_rng(5).normal(size=(3, 4))
OPS_Y = np.random.default_rng(6).normal(size=(3, 4))
FD_CASES = {  # the ops gn.ops adds, each a function of two float64 tensors
    "sqrt": lambda a, b: gn.ops.sqrt(gn.ops.abs(a) + 0.5),
    "abs": lambda a, b: gn.ops.abs(a),
    "maximum": lambda a, b: gn.ops.maximum(a, b),
    "minimum": lambda a, b: gn.ops.minimum(a, 0.1 * b),
    "clip": lambda a, b: gn.ops.clip(a, -0.5, 0.7),
    "where": lambda a, b: gn.ops.where(gn.ops.greater(a, b), a * b, b),
    "max": lambda a, b: gn.ops.max(a * b, axis=1),
    "min": lambda a, b: gn.ops.min(a - b, axis=0, keepdims=True),
    "max_all": lambda a, b: gn.ops.max(a),
    "transpose": lambda a, b: gn.ops.transpose(a, (1, 0)) * gn.ops.transpose(b),
    "divide_no_nan": lambda a, b: gn.ops.divide_no_nan(a, gn.ops.relu(b)),
}


@pytest.mark.parametrize("name", list(FD_CASES))
def test_added_ops_finite_difference(name):
    fn, eps = FD_CASES[name], 1e-6
    A, Bm = gn.tensor(OPS_X, requires_grad=True), gn.tensor(OPS_Y, requires_grad=True)
    fn(A, Bm).sum().backward()
    for T, X, other in ((A, OPS_X, OPS_Y), (Bm, OPS_Y, OPS_X)):
        num = np.zeros_like(X)
        for i in np.ndindex(X.shape):
            hi, lo = X.copy(), X.copy()
            hi[i] += eps
            lo[i] -= eps
            args = (hi, other) if T is A else (other, hi)
            args_lo = (lo, other) if T is A else (other, lo)
            f = lambda u, v: float(fn(gn.tensor(u), gn.tensor(v)).sum())  # noqa: E731
            num[i] = (f(*args) - f(*args_lo)) / (2 * eps)
        got = np.zeros_like(X) if T.grad is None else T.grad
        np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    "name",
    ["sqrt", "abs", "square", "exp", "log", "relu", "sigmoid", "tanh", "softplus", "softmax",
     "negative", "argmax", "argmin"],
)  # fmt: skip
def test_unary_ops_match_keras_ops(name):
    X = np.abs(OPS_X) + 0.1 if name in ("sqrt", "log") else OPS_X
    ours = getattr(gn.ops, name)(gn.tensor(X)).numpy()
    np.testing.assert_allclose(ours, getattr(keras.ops, name)(torch.tensor(X)).numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    "name",
    ["add", "subtract", "multiply", "divide", "maximum", "minimum", "equal", "not_equal",
     "greater", "greater_equal", "less", "less_equal", "divide_no_nan"],
)  # fmt: skip
def test_binary_ops_match_keras_ops(name):
    Y = np.where(OPS_Y > 0.5, 0.0, OPS_Y) if name == "divide_no_nan" else OPS_Y
    ours = getattr(gn.ops, name)(gn.tensor(OPS_X), Y).numpy()
    theirs = getattr(keras.ops, name)(torch.tensor(OPS_X), torch.tensor(Y)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_shape_and_reduction_ops_match_keras_ops():
    t, k = gn.ops.convert_to_tensor(OPS_X), torch.tensor(OPS_X)
    pairs = [
        (gn.ops.mean(t, axis=-1), keras.ops.mean(k, axis=-1)),
        (gn.ops.sum(t, axis=0, keepdims=True), keras.ops.sum(k, axis=0, keepdims=True)),
        (gn.ops.max(t, axis=1), keras.ops.max(k, axis=1)),
        (gn.ops.min(t), keras.ops.min(k)),
        (gn.ops.clip(t, -0.3, 0.4), keras.ops.clip(k, -0.3, 0.4)),
        (gn.ops.where(t > 0, t, -1.0), keras.ops.where(k > 0, k, -1.0)),
        (gn.ops.reshape(t, (4, 3)), keras.ops.reshape(k, (4, 3))),
        (gn.ops.expand_dims(t, 1), keras.ops.expand_dims(k, 1)),
        (gn.ops.squeeze(gn.ops.expand_dims(t, 0), 0), k),
        (gn.ops.transpose(t), keras.ops.transpose(k)),
        (gn.ops.matmul(t, gn.ops.transpose(t)), keras.ops.matmul(k, keras.ops.transpose(k))),
        (gn.ops.one_hot(np.array([2, 0]), 3), keras.ops.one_hot(torch.tensor([2, 0]), 3)),
        (gn.ops.cast(t > 0, "float32"), keras.ops.cast(k > 0, "float32")),
        (gn.ops.concatenate([t, t], axis=0), keras.ops.concatenate([k, k], axis=0)),
    ]
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours.numpy(), np.asarray(theirs), rtol=1e-6)


def test_ops_leave_the_callers_tensor_alone_and_reach_its_gradient():
    x = gn.tensor(np.array([[1.0, -2.0]]), requires_grad=True)
    y = gn.ops.convert_to_tensor(x)
    assert type(x) is gn.Tensor and isinstance(y, gn.ops.OpsTensor)
    assert (y == 1.0).numpy().tolist() == [[True, False]]
    gn.ops.sum(gn.ops.cast(y, x.dtype) * 3.0).backward()
    np.testing.assert_array_equal(x.grad, [[3.0, 3.0]])
