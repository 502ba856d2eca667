"""The code of the tutorials our users come from (shared/seeds), with gpunet names
in place of tf.keras and torch, runs as written."""

from __future__ import annotations

import numpy as np

import gpunet as gn


def _data(n=200, d=10, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype("float32")
    w = rng.normal(size=(d,))
    return X, w


def test_keras_regression_snippet():
    X, w = _data()
    y = X @ w
    X_train, X_test, y_train = X[:150], X[150:], y[:150]
    input_size = X.shape[1]
    # --- the tutorial's code, tf.keras -> gn ---
    model = gn.Sequential(
        [
            gn.layers.Dense(32, activation="relu", input_shape=(input_size,)),
            gn.layers.Dense(1),  # Output layer
        ]
    )
    model.compile(optimizer="adam", loss="mse")
    model.fit(X_train, y_train, epochs=10, batch_size=32)
    predictions = model.predict(X_test)
    # ---
    assert predictions.shape == (50, 1)
    assert isinstance(predictions, np.ndarray)


def test_keras_binary_classification_snippet():
    X, w = _data()
    y = (X @ w > 0).astype("float32")
    X_train, X_test, y_train = X[:150], X[150:], y[:150]
    model = gn.Sequential(
        [
            gn.layers.Dense(64, activation="relu", input_shape=(10,)),
            gn.layers.Dense(32, activation="relu"),
            gn.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(X_train, y_train, epochs=10, batch_size=32)
    predictions = model.predict(X_test)
    assert predictions.shape == (50, 1)
    assert np.all((predictions >= 0) & (predictions <= 1))
    assert ((predictions[:, 0] > 0.5) == (y[150:] > 0.5)).mean() > 0.8


def test_issue_example_with_dropout_validation_and_summary(capsys):
    X, w = _data(400)
    y = (X @ w > 0).astype("float32")
    X_train, X_test, y_train, y_test = X[:300], X[300:], y[:300], y[300:]
    model = gn.Sequential(
        [
            gn.layers.Dense(64, activation="relu", input_shape=(10,)),
            gn.layers.Dropout(0.2),
            gn.layers.Dense(32, activation="relu"),
            gn.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(X_train, y_train, epochs=10, batch_size=32, validation_split=0.1)
    model.evaluate(X_test, y_test)
    predictions = model.predict(X_test)
    model.summary()
    out = capsys.readouterr().out
    assert "Total params: 2,817" in out and "dense" in out
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.history["loss"]) == 10
    assert predictions.shape == (100, 1)


def test_pytorch_snippet_with_a_training_loop():
    from gpunet import nn

    class SimpleNet(nn.Module):
        def __init__(self, input_size, num_classes):
            super().__init__()
            self.layers = nn.Sequential(
                nn.Linear(input_size, 100),
                nn.ReLU(),
                nn.Linear(100, 50),
                nn.ReLU(),
                nn.Linear(50, num_classes),
            )

        def forward(self, x):
            return self.layers(x)

    X, _ = _data(300, 4)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0).astype(int)
    model = SimpleNet(4, 3)
    criterion = nn.CrossEntropyLoss()
    optimizer = gn.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        model.train()
        outputs = model(X)
        loss = criterion(outputs, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with gn.no_grad():
        logits = model(X)
    assert not logits.requires_grad
    assert (logits.numpy().argmax(1) == y).mean() > 0.9


def test_numpy_snippets_of_the_first_tutorial_match_gpunet_activations():
    x = np.linspace(-5, 5, 11)
    np.testing.assert_allclose(gn.activations.sigmoid(x), 1 / (1 + np.exp(-x)), rtol=1e-12)
    np.testing.assert_allclose(gn.activations.relu(x), np.maximum(0, x))
    np.testing.assert_allclose(gn.activations.tanh(x), np.tanh(x))
    sm = gn.activations.softmax(x)
    np.testing.assert_allclose(sm, np.exp(x) / np.sum(np.exp(x)), rtol=1e-12)
