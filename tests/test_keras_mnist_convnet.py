"""The keras-io example "Simple MNIST convnet" (keras.io/examples/vision/mnist_convnet)
with only the names changed, on scikit-learn's digits resized to 28x28.

The model, summary, compile, fit and evaluate lines are the example's; the data are
the 8x8 digits (MNIST is not downloadable in CI) resized by bilinear interpolation.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

import gpunet as keras
from gpunet import layers

pytest.importorskip("sklearn")

num_classes = 10
input_shape = (28, 28, 1)


def _resize_28(images):
    """Bilinear resize of (n, 8, 8) images to (n, 28, 28), pixel centres aligned."""
    src = (np.arange(28) + 0.5) * 8 / 28 - 0.5
    src = np.clip(src, 0, 7)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, 7)
    w = src - lo
    rows = images[:, lo, :] * (1 - w)[None, :, None] + images[:, hi, :] * w[None, :, None]
    return rows[:, :, lo] * (1 - w) + rows[:, :, hi] * w


def _data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = _resize_28(x.reshape(-1, 8, 8) / 16.0).astype("float32")
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=0, stratify=y
    )
    return x_train, x_test, y_train, y_test


def _example_model():
    # the example's model, verbatim
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax"),
        ]
    )


ROW = re.compile(r"^(\S+) \((\w+)\)\s+\(None((?:, \d+)*)\)\s+([\d,]+)\s*$")


def _summary_rows(text):
    """(type, output shape, params) per layer row of a printed summary."""
    rows = []
    for line in text.splitlines():
        m = ROW.match(line.strip())
        if m:
            shape = tuple(int(d) for d in m.group(3).split(", ")[1:])
            rows.append((m.group(2), shape, int(m.group(4).replace(",", ""))))
    return rows


def test_resize_keeps_the_range_and_the_corners():
    x = np.random.default_rng(0).uniform(size=(3, 8, 8))
    big = _resize_28(x)
    assert big.shape == (3, 28, 28)
    assert big.min() >= x.min() and big.max() <= x.max()
    np.testing.assert_allclose(big[:, 0, 0], x[:, 0, 0])
    np.testing.assert_allclose(big[:, -1, -1], x[:, -1, -1])


@pytest.mark.slow
def test_simple_mnist_convnet_example_trains(capsys):
    keras.utils.set_random_seed(0)
    x_train, x_test, y_train, y_test = _data()
    # the example's preprocessing: channel axis, one-hot labels
    x_train = np.expand_dims(x_train, -1)
    x_test = np.expand_dims(x_test, -1)
    y_train = keras.utils.to_categorical(y_train, num_classes)
    y_test = keras.utils.to_categorical(y_test, num_classes)

    model = _example_model()
    model.summary()
    rows = _summary_rows(capsys.readouterr().out)
    assert [r[0] for r in rows] == [
        "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dropout", "Dense",
    ]  # fmt: skip
    batch_size = 128
    epochs = 5  # the example's 15 over MNIST's 60,000 images; 5 over 1,437 digits for CI
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    history = model.fit(
        x_train, y_train, batch_size=batch_size, epochs=epochs, validation_split=0.1, verbose=0
    )
    score = model.evaluate(x_test, y_test, verbose=0)
    assert len(history.history["val_accuracy"]) == epochs
    # chance is 0.1; five Adam epochs reach 0.88 here (seed 0); the bar leaves room for BLAS
    assert score[1] >= 0.85, score


def _keras3():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras3 = pytest.importorskip("keras")
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    if keras3.backend.backend() != "torch":
        pytest.skip("keras was imported with another backend")
    return keras3


def _keras_example(keras3):
    L = keras3.layers
    return keras3.Sequential(
        [
            keras3.Input(shape=input_shape),
            L.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            L.MaxPooling2D(pool_size=(2, 2)),
            L.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            L.MaxPooling2D(pool_size=(2, 2)),
            L.Flatten(),
            L.Dropout(0.5),
            L.Dense(num_classes, activation="softmax"),
        ]
    )


def _keras_demo_cnn(keras3):
    L = keras3.layers
    return keras3.Sequential(
        [
            keras3.Input(shape=(8, 8, 1)),
            L.Conv2D(16, 3, padding="same", activation="relu"),
            L.MaxPooling2D(2),
            L.Conv2D(32, 3, padding="same", activation="relu"),
            L.Flatten(),
            L.Dropout(0.3),
            L.Dense(10, activation="softmax"),
        ]
    )


def _demo_cnn():
    from gpunet.cli import _cnn

    return _cnn(keras, "cpu")


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [(_example_model, _keras_example), (_demo_cnn, _keras_demo_cnn)],
    ids=["mnist-convnet", "demo-cnn"],
)
@pytest.mark.slow  # the first keras import of a session takes ~3 s
def test_summary_matches_keras(ours, theirs):
    import contextlib
    import io

    keras3 = _keras3()
    ref = theirs(keras3)
    expected = [
        (type(layer).__name__, tuple(layer.output.shape[1:]), layer.count_params())
        for layer in ref.layers
    ]
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        ours().summary()
    assert _summary_rows(text.getvalue()) == expected
    total = re.search(r"Total params: ([\d,]+)", text.getvalue())
    assert total is not None and int(total.group(1).replace(",", "")) == ref.count_params()


def test_the_example_has_the_parameter_count_keras_io_prints():
    assert sum(layer.count_params() for layer in _keras_example(_keras3()).layers) == 34826
