"""Bad input gets a clear gpunet error naming the bad value (core API)."""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn
from gpunet.errors import (
    DeviceError,
    InputValidationError,
    InvalidParameterError,
    NotCompiledError,
)


def _model(loss="sparse_categorical_crossentropy", out=3, act="softmax"):
    model = gn.Sequential(
        [
            gn.layers.Dense(8, activation="relu", input_shape=(4,)),
            gn.layers.Dense(out, activation=act),
        ]
    )
    model.compile(optimizer="adam", loss=loss)
    return model


X = np.random.default_rng(0).normal(size=(20, 4))
y = np.arange(20) % 3


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (
            lambda m: m.fit(X[:, :3], y, verbose=0),
            InputValidationError,
            ["3 features", "expects 4", "dense"],
        ),
        (lambda m: m.predict(X[:, :3]), InputValidationError, ["3 features", "4"]),
        (
            lambda m: m.fit(X, y[:19], verbose=0),
            InputValidationError,
            ["inconsistent numbers of samples", "[20, 19]"],
        ),
        (
            lambda m: m.fit(np.where(X > 1, np.nan, X), y, verbose=0),
            InputValidationError,
            ["X contains NaN", "row"],
        ),
        (
            lambda m: m.fit(np.where(X > 1, np.inf, X), y, verbose=0),
            InputValidationError,
            ["infinity"],
        ),
        (lambda m: m.fit(X * 1e39, y, verbose=0), InputValidationError, ["too large", "float32"]),
        (
            lambda m: m.fit(X, np.where(y == 1, np.nan, y), verbose=0),
            InputValidationError,
            ["y contains NaN"],
        ),
        (lambda m: m.fit(X[:0], y[:0], verbose=0), InputValidationError, ["0 sample(s)"]),
        (lambda m: m.predict(np.zeros((5, 0))), InputValidationError, ["0 feature(s)"]),
        (
            lambda m: m.fit(X[:, 0], y, verbose=0),
            InputValidationError,
            ["Expected 2D array, got 1D", "reshape"],
        ),
        (lambda m: m.fit(X, y + 1, verbose=0), InputValidationError, ["label 3 outside [0, 3)"]),
        (lambda m: m.fit(X, y - 1, verbose=0), InputValidationError, ["label -1 outside [0, 3)"]),
        (lambda m: m.fit(X, y + 0.5, verbose=0), InputValidationError, ["integers", "0.5"]),
        (
            lambda m: m.fit(X.astype(str).astype(object) + "a", y, verbose=0),
            InputValidationError,
            ["could not convert string to float"],
        ),
        (lambda m: m.fit(X + 1j, y, verbose=0), InputValidationError, ["Complex data"]),
        (
            lambda m: m.fit(X, y, batch_size=0, verbose=0),
            InvalidParameterError,
            ["batch_size", "Got 0"],
        ),
        (lambda m: m.fit(X, y, epochs=-1, verbose=0), InvalidParameterError, ["epochs", "Got -1"]),
        (
            lambda m: m.fit(X, y, validation_split=1.5, verbose=0),
            InvalidParameterError,
            ["validation_split", "1.5"],
        ),
        (
            lambda m: m.fit(X, y, on_nan="skip", verbose=0),
            InvalidParameterError,
            ["on_nan", "skip"],
        ),
    ],
)
def test_bad_fit_and_predict_input(call, exc, words):
    with pytest.raises(exc) as info:
        call(_model())
    assert all(w in str(info.value) for w in words), str(info.value)


def test_one_hot_width_and_probability_targets():
    model = _model(loss="categorical_crossentropy")
    with pytest.raises(InputValidationError, match="4 columns but the output layer has 3 units"):
        model.fit(X, np.eye(4)[y % 4], verbose=0)
    bce = _model(loss="binary_crossentropy", out=1, act="sigmoid")
    with pytest.raises(InputValidationError, match=r"probabilities in \[0, 1\].*\[0, 2\]"):
        bce.fit(X, y, verbose=0)


def test_probabilities_outside_0_1_given_to_a_probability_loss():
    loss = gn.losses.BinaryCrossentropy()
    with pytest.raises(InputValidationError, match=r"y_pred must be probabilities.*\[-0.5, 1.5\]"):
        loss(np.array([[1.0], [0.0]]), np.array([[1.5], [-0.5]]))


def test_fit_and_evaluate_before_compile():
    model = gn.Sequential([gn.layers.Dense(2, input_shape=(4,))])
    for call in (lambda: model.fit(X, y), lambda: model.evaluate(X, y)):
        with pytest.raises(NotCompiledError, match=r"model\.compile"):
            call()


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: gn.layers.Dense(0), ["units", "0"]),
        (lambda: gn.layers.Dense(4, activation="bogus"), ["bogus", "relu", "sigmoid"]),
        (lambda: gn.layers.Dropout(1.0), ["rate", "1.0"]),
        (lambda: _model().compile(optimizer="adam", loss="bogus"), ["bogus", "mse"]),
        (lambda: _model().compile(optimizer="bogus", loss="mse"), ["bogus", "adam", "sgd"]),
        (
            lambda: _model().compile(optimizer=gn.optimizers.Adam(-0.1), loss="mse"),
            ["learning_rate", "-0.1"],
        ),
        (lambda: gn.metrics.get("bogus"), ["bogus", "accuracy"]),
        (lambda: gn.initializers.get("bogus"), ["bogus", "glorot_uniform"]),
        (lambda: gn.regularizers.get("l3"), ["l3", "l2"]),
    ],
)
def test_invalid_hyperparameters_name_the_value(make, words):
    with pytest.raises(InvalidParameterError) as info:
        make()
    assert all(w in str(info.value) for w in words), str(info.value)


def test_devices():
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        gn.get_ops("tpu")
    if "cuda:0" not in gn.available_devices():
        with pytest.raises(DeviceError, match=r"pip install 'gpunet\[cuda12\]'|no CUDA"):
            gn.Sequential([gn.layers.Dense(2)], device="cuda")
    assert gn.get_ops("auto").device in ("cpu", "cuda:0")
    assert gn.get_ops(-1).device == "cpu"


def test_errors_are_also_builtin_exceptions():
    assert issubclass(InputValidationError, ValueError)
    assert issubclass(NotCompiledError, RuntimeError)
    assert issubclass(gn.errors.OutOfMemoryError, MemoryError)
