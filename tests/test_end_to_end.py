"""Training on real data sets reaches the accuracies a user expects."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import gpunet as gn


def _split(X, y, seed=0):
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=0.25, random_state=seed, stratify=y if len(np.unique(y)) < 20 else None
    )
    scaler = StandardScaler().fit(X_tr)
    return scaler.transform(X_tr), scaler.transform(X_te), y_tr, y_te


def test_digits_reaches_95_percent():
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = _split(X, y)
    model = gn.Sequential(
        [
            gn.layers.Dense(128, activation="relu", input_shape=(64,)),
            gn.layers.Dropout(0.2),
            gn.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(X_tr, y_tr, epochs=15, batch_size=32, verbose=0)
    _, acc = model.evaluate(X_te, y_te, verbose=0)
    assert acc >= 0.95, acc
    assert (model.predict(X_te).argmax(1) == y_te).mean() == pytest.approx(acc)


def test_breast_cancer_reaches_95_percent():
    X, y = load_breast_cancer(return_X_y=True)
    X_tr, X_te, y_tr, y_te = _split(X, y)
    model = gn.Sequential(
        [
            gn.layers.Dense(32, activation="relu", input_shape=(30,)),
            gn.layers.Dense(16, activation="relu"),
            gn.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy", "auc"])
    history = model.fit(X_tr, y_tr, epochs=30, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    result = model.evaluate(X_te, y_te, verbose=0, return_dict=True)
    assert result["accuracy"] >= 0.95, result
    assert result["auc"] >= 0.97, result


def test_diabetes_regression_beats_the_mean_predictor():
    X, y = load_diabetes(return_X_y=True)
    X_tr, X_te, y_tr, y_te = _split(X, y)
    mu, sd = y_tr.mean(), y_tr.std()
    model = gn.Sequential(
        [
            gn.layers.Dense(16, activation="relu", input_shape=(10,), kernel_regularizer="l2"),
            gn.layers.Dense(1),
        ]
    )
    model.compile(optimizer=gn.optimizers.Adam(0.01), loss="mse", metrics=["r2", "mae"])
    stop = gn.callbacks.EarlyStopping(patience=10, restore_best_weights=True)
    history = model.fit(
        X_tr,
        (y_tr - mu) / sd,
        epochs=200,
        batch_size=32,
        verbose=0,
        validation_split=0.2,
        validation_shuffle=True,
        callbacks=[stop],
    )
    assert len(history.epoch) < 200  # early stopping ended it
    pred = model.predict(X_te)[:, 0] * sd + mu
    mse_model = np.mean((pred - y_te) ** 2)
    mse_mean = np.mean((mu - y_te) ** 2)
    # diabetes is noisy: a linear model explains ~40 % of the variance of this split
    assert mse_model < 0.75 * mse_mean, (mse_model, mse_mean)


def test_synthetic_regression_is_fit_almost_exactly():
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 1, size=(2000, 5))
    y = 10 * np.sin(np.pi * X[:, 0] * X[:, 1]) + 20 * (X[:, 2] - 0.5) ** 2 + 10 * X[:, 3]
    X_tr, X_te, y_tr, y_te = X[:1600], X[1600:], y[:1600], y[1600:]
    mu, sd = y_tr.mean(), y_tr.std()
    model = gn.Sequential(
        [
            gn.layers.Dense(64, activation="gelu", input_shape=(5,)),
            gn.layers.Dense(64, activation="gelu"),
            gn.layers.Dense(1),
        ]
    )
    model.compile(optimizer=gn.optimizers.Adam(0.003), loss="huber", metrics=["r2"])
    model.fit(X_tr, (y_tr - mu) / sd, epochs=40, batch_size=32, verbose=0)
    r2 = model.evaluate(X_te, (y_te - mu) / sd, verbose=0, return_dict=True)["r2"]
    assert r2 > 0.95, r2


def test_synthetic_function_is_learned_with_a_manual_loop():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(512, 2)).astype("float32")
    y = (np.sin(X[:, :1]) + X[:, 1:] ** 2).astype("float32")

    class Net(gn.Model):
        def __init__(self):
            super().__init__()
            self.a = gn.layers.Dense(64, activation="tanh")
            self.b = gn.layers.Dense(64, activation="tanh")
            self.out = gn.layers.Dense(1)

        def call(self, x):
            h = self.a(x)
            return self.out(h + self.b(h))  # residual connection

    net = Net()
    net(X[:1])
    opt = gn.optimizers.Adam(0.01, params=net.parameters())
    loss_fn = gn.losses.MeanSquaredError()
    first = None
    for _ in range(300):
        loss = loss_fn(y, net(X))
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.02 * first
