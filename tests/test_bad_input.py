"""The bad-input table: each case names the offending value, raises the same
exception type with the same message on every device (checked on the host before
any device work), and leaves the model usable.

Devices: "cpu" and the strict simulated device "sim"; a real GPU joins through the
``gpu`` marker where one exists.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import gpunet as gn
from gpunet.backend import _compat
from gpunet.errors import (
    InputValidationError,
    InvalidParameterError,
    NotCompiledError,
)

HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None
HAS_GPU = _compat.gpu_count()[0] > 0
DEVICES = [
    "cpu",
    "sim",
    pytest.param(
        "cuda",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not HAS_GPU, reason="needs CuPy + a CUDA GPU")],
    ),
]
RNG = np.random.default_rng(0)
X = RNG.normal(size=(20, 5)).astype("float32")
Y = np.arange(20) % 3


def _nan_at(r, c):
    A = X.copy()
    A[r, c] = np.nan
    return A


def _model(device, loss="sparse_categorical_crossentropy", out=3, act="softmax", compiled=True):
    gn.utils.set_random_seed(0)
    model = gn.Sequential([gn.layers.Dense(8, activation="relu", input_shape=(5,), name="hidden"),
                           gn.layers.Dense(out, activation=act, name="out")], name="net",
                          device=device)  # fmt: skip
    if compiled:
        model.compile(optimizer="adam", loss=loss)
    return model


def _fit(x, y, **kw):
    return lambda m: m.fit(x, y, verbose=0, **kw)


def _mse(call):
    return lambda d: call(_model(d, loss="mse", out=1, act=None))


def _with(loss, out, act, call):
    return lambda d: call(_model(d, loss=loss, out=out, act=act))


def _sparse(call):
    return lambda d: call(_model(d))


M = _sparse
CASES = [
    # (id, run(device), exception, words the message must contain)
    ("NaN in X (fit)", M(_fit(_nan_at(2, 1), Y)), InputValidationError,
     ["X contains NaN", "row 2, column 1"]),
    ("NaN in X (predict)", M(lambda m: m.predict(_nan_at(7, 4))), InputValidationError,
     ["X contains NaN", "row 7, column 4"]),
    ("NaN in X (evaluate)", M(lambda m: m.evaluate(_nan_at(0, 0), Y, verbose=0)),
     InputValidationError, ["X contains NaN", "row 0, column 0"]),
    ("inf in X", M(_fit(np.where(X > 1.5, np.inf, X), Y)), InputValidationError,
     ["X contains infinity"]),
    ("1e39 in float32 X", M(_fit(X.astype(np.float64) * 1e39, Y)), InputValidationError,
     ["too large", "float32"]),
    ("NaN in y", _mse(_fit(X, np.where(Y == 1, np.nan, Y))), InputValidationError,
     ["y contains NaN"]),
    ("inf in y", _mse(_fit(X, np.where(Y == 1, -np.inf, Y))), InputValidationError,
     ["y contains infinity"]),
    ("NaN in integer labels", M(_fit(X, np.where(Y == 1, np.nan, Y))), InputValidationError,
     ["y contains NaN"]),
    ("X/y length mismatch", M(_fit(X, Y[:19])), InputValidationError,
     ["inconsistent numbers of samples", "[20, 19]"]),
    ("empty X", M(_fit(X[:0], Y[:0])), InputValidationError, ["0 sample(s)", "(0, 5)"]),
    ("zero features", M(lambda m: m.predict(np.zeros((4, 0)))), InputValidationError,
     ["0 feature(s)", "(4, 0)"]),
    ("1-D X", M(_fit(X[:, 0], Y)), InputValidationError,
     ["Expected 2D array, got 1D array", "(20,)", "reshape(-1, 1)"]),
    ("3-D X (predict)", M(lambda m: m.predict(X.reshape(20, 5, 1))), InputValidationError,
     ["dim 3, while dim 2 is required", "(5, 1)"]),
    ("3-D X (fit)", M(_fit(np.stack([X, X], 1), Y)), InputValidationError,
     ["dim 3, while dim 2 is required", "(2, 5)"]),
    ("wrong feature count (predict)", M(lambda m: m.predict(X[:, :3])), InputValidationError,
     ["X has 3 features", "expects 5"]),
    ("wrong feature count (fit)", M(_fit(np.hstack([X, X]), Y)), InputValidationError,
     ["X has 10 features", "expects 5"]),
    ("label 3 of 3 classes", M(_fit(X, np.where(Y == 2, 3, Y))), InputValidationError,
     ["label 3 outside [0, 3)"]),
    ("label -1", M(_fit(X, Y - 1)), InputValidationError, ["label -1 outside [0, 3)"]),
    ("label out of range (evaluate)", M(lambda m: m.evaluate(X, Y + 7, verbose=0)),
     InputValidationError, ["label 9 outside [0, 3)"]),
    ("continuous labels", M(_fit(X, Y + 0.5)), InputValidationError,
     ["labels must be integers", "0.5"]),
    ("string labels", M(_fit(X, np.array(list("abcde") * 4))), InputValidationError,
     ["labels must be integers", "<U1"]),
    ("one-hot width", _with("categorical_crossentropy", 3, "softmax", _fit(X, np.eye(4)[Y])),
     InputValidationError, ["4 columns", "3 units"]),
    ("y width for mse", _mse(_fit(X, np.ones((20, 3)))), InputValidationError,
     ["3 columns", "1 units"]),
    ("strings in X", M(_fit(np.where(X > 0, "a", "1.5").astype(object), Y)),
     InputValidationError, ["could not convert string to float: 'a'"]),
    ("None in X", M(_fit(np.where(X > 1, None, X).astype(object), Y)), InputValidationError,
     ["X contains NaN"]),
    ("complex X", M(_fit(X + 1j, Y)), InputValidationError, ["Complex data not supported"]),
    ("ragged X", M(_fit([[1.0, 2.0], [3.0]], [0, 1])), InputValidationError,
     ["could not be converted"]),
    ("fit before compile", lambda d: _model(d, compiled=False).fit(X, Y, verbose=0),
     NotCompiledError, ["compiled before fit", "model.compile"]),
    ("evaluate before compile", lambda d: _model(d, compiled=False).evaluate(X, Y),
     NotCompiledError, ["compiled before evaluate"]),
    ("batch_size=0", M(_fit(X, Y, batch_size=0)), InvalidParameterError,
     ["'batch_size'", "Got 0"]),
    ("epochs=-1", M(_fit(X, Y, epochs=-1)), InvalidParameterError, ["'epochs'", "Got -1"]),
    ("validation_split=1.5", M(_fit(X, Y, validation_split=1.5)), InvalidParameterError,
     ["validation_split", "1.5"]),
    ("on_nan='skip'", M(_fit(X, Y, on_nan="skip")), InvalidParameterError, ["on_nan", "'skip'"]),
    ("sample_weight length", M(_fit(X, Y, sample_weight=np.ones(19))), InputValidationError,
     ["sample_weight has 19 entries, expected 20"]),
    ("probabilities outside [0, 1] as y", _with("binary_crossentropy", 1, "sigmoid",
                                                _fit(X, Y)),
     InputValidationError, ["binary_crossentropy", "[0, 1]", "[0, 2]"]),
    ("probabilities outside [0, 1] as y_pred", _with(gn.losses.BinaryCrossentropy(), 1, None,
                                                     _fit(X * 10, Y % 2)),
     InputValidationError, ["y_pred must be probabilities in [0, 1]", "from_logits=True"]),
]  # fmt: skip
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("run", "exc", "words"), [c[1:] for c in CASES], ids=IDS)
def test_bad_input_is_named(device, run, exc, words):
    with pytest.raises(exc) as info:
        run(device)
    message = str(info.value)
    assert all(w in message for w in words), message


@pytest.mark.parametrize("run", [c[1] for c in CASES], ids=IDS)
def test_same_error_type_and_message_on_cpu_and_the_simulated_device(run):
    errors = []
    for device in ("cpu", "sim"):
        try:
            run(device)
        except Exception as exc:  # the table's cases all raise
            errors.append((type(exc), str(exc)))
    assert len(errors) == 2 and errors[0] == errors[1]


def test_the_model_is_usable_after_bad_input():
    model = _model("sim")
    for bad in (_nan_at(0, 0), X[:, :3], X.reshape(20, 5, 1)):
        with pytest.raises(InputValidationError):
            model.fit(bad, Y, verbose=0)
    model.fit(X, Y, verbose=0)
    assert model.predict(X).shape == (20, 3)


# -- the scikit-learn estimators: scikit-learn's own errors and wording -------------------
def _est(kind, device, **params):
    from gpunet.sklearn import MLPClassifier, MLPRegressor

    cls = MLPClassifier if kind == "clf" else MLPRegressor
    return cls(hidden_layer_sizes=(8,), max_iter=5, device=device, random_state=0, **params)


def _fitted(kind, device):
    est = _est(kind, device)
    with pytest.warns(Warning):  # ConvergenceWarning after 5 iterations
        est.fit(X, Y if kind == "clf" else X[:, 0])
    return est


def _not_fitted_error():
    from sklearn.exceptions import NotFittedError

    return NotFittedError


EST_CASES = [
    ("NaN in X", lambda d: _est("clf", d).fit(_nan_at(1, 1), Y), ValueError,
     ["Input X contains NaN"]),
    ("inf in X", lambda d: _est("reg", d).fit(np.where(X > 1, np.inf, X), Y), ValueError,
     ["Input X contains infinity"]),
    ("NaN in y", lambda d: _est("reg", d).fit(X, np.where(Y == 1, np.nan, Y)), ValueError,
     ["Input y contains NaN"]),
    ("X/y length mismatch", lambda d: _est("clf", d).fit(X, Y[:19]), ValueError,
     ["inconsistent numbers of samples", "[20, 19]"]),
    ("empty X", lambda d: _est("clf", d).fit(X[:0], Y[:0]), ValueError, ["0 sample(s)"]),
    ("1-D X", lambda d: _est("reg", d).fit(X[:, 0], Y), ValueError, ["Expected 2D array"]),
    ("3-D X", lambda d: _est("reg", d).fit(X.reshape(20, 5, 1), Y), ValueError,
     ["dim 3"]),
    ("complex X", lambda d: _est("clf", d).fit(X + 1j, Y), ValueError, ["Complex data"]),
    ("continuous y for a classifier", lambda d: _est("clf", d).fit(X, Y + 0.5), ValueError,
     ["Unknown label type", "0.5"]),
    ("predict before fit", lambda d: _est("clf", d).predict(X), "NotFittedError",
     ["not fitted yet"]),
    ("wrong feature count", lambda d: _fitted("clf", d).predict(X[:, :3]), ValueError,
     ["X has 3 features", "expecting 5 features"]),
    ("learning_rate_init=-1", lambda d: _est("clf", d, learning_rate_init=-1).fit(X, Y),
     ValueError, ["learning_rate_init", "Got -1"]),
    ("hidden_layer_sizes=[0]", lambda d: _est("reg", d).set_params(
        hidden_layer_sizes=[0]).fit(X, Y), ValueError, ["hidden_layer_sizes", "0"]),
]  # fmt: skip
EST_IDS = [c[0] for c in EST_CASES]


@pytest.mark.skipif(not HAS_SKLEARN, reason="needs scikit-learn")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("run", "exc", "words"), [c[1:] for c in EST_CASES], ids=EST_IDS)
def test_estimator_bad_input_is_named(device, run, exc, words):
    exc = _not_fitted_error() if exc == "NotFittedError" else exc
    with pytest.raises(exc) as info:
        run(device)
    assert all(w in str(info.value) for w in words), str(info.value)


@pytest.mark.skipif(not HAS_SKLEARN, reason="needs scikit-learn")
@pytest.mark.parametrize("run", [c[1] for c in EST_CASES], ids=EST_IDS)
def test_estimators_fail_the_same_way_on_cpu_and_the_simulated_device(run):
    errors = []
    for device in ("cpu", "sim"):
        try:
            run(device)
        except Exception as exc:
            errors.append((type(exc), str(exc)))
    assert len(errors) == 2 and errors[0] == errors[1]
