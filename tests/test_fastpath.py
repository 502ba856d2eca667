"""The graph-free step (any stack of layers with a forward_pass) gives bit-identical
results to training through the autograd graph, and declines what it cannot do."""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn
from gpunet.engine import step as fastpath

RNG = np.random.default_rng(3)
X = RNG.normal(size=(96, 6)).astype("float32")


def _train(make, loss, y, fast, metrics=("accuracy",), **fit):
    gn.utils.set_random_seed(11)
    model = make()
    x = X.reshape(-1, 3, 2) if model.layers[0].input_shape_hint == (3, 2) else X
    model.use_fastpath = fast
    model.compile(optimizer="adam", loss=loss, metrics=list(metrics))
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0, **fit)
    return model, history


CASES = [
    (
        "sigmoid+bce",
        lambda: gn.Sequential(
            [
                gn.layers.Dense(8, activation="relu", input_shape=(6,)),
                gn.layers.Dropout(0.3),
                gn.layers.Dense(1, activation="sigmoid"),
            ]
        ),
        "binary_crossentropy",
        (X[:, 0] > 0).astype("float32"),
    ),
    (
        "softmax+scce",
        lambda: gn.Sequential(
            [
                gn.layers.Dense(8, activation="tanh", input_shape=(6,)),
                gn.layers.Dense(3),
                gn.layers.Activation("softmax"),
            ]
        ),
        "sparse_categorical_crossentropy",
        np.argmax(X[:, :3], 1),
    ),
    (
        "softmax+cce smooth",
        lambda: gn.Sequential(
            [
                gn.layers.Dense(8, activation="gelu", input_shape=(6,)),
                gn.layers.Dense(3, activation="softmax"),
            ]
        ),
        gn.losses.CategoricalCrossentropy(label_smoothing=0.1),
        np.eye(3)[np.argmax(X[:, :3], 1)],
    ),
    (
        "logits",
        lambda: gn.Sequential(
            [gn.layers.Dense(8, activation="swish", input_shape=(6,)), gn.layers.Dense(3)]
        ),
        gn.losses.SparseCategoricalCrossentropy(from_logits=True),
        np.argmax(X[:, :3], 1),
    ),
    (
        "mse elu",
        lambda: gn.Sequential(
            [gn.layers.Dense(8, activation="elu", input_shape=(6,)), gn.layers.Dense(2)]
        ),
        "mse",
        X[:, :2] * 2,
    ),
    (
        "mse l1l2 batchnorm",
        lambda: gn.Sequential(
            [
                gn.layers.Dense(8, activation="relu", input_shape=(6,), kernel_regularizer="l2"),
                gn.layers.BatchNormalization(),
                gn.layers.LayerNormalization(),
                gn.layers.Dense(2, bias_regularizer=gn.regularizers.L1L2(0.01, 0.02)),
            ]
        ),
        "mse",
        X[:, :2] * 2,
    ),
    (
        "flatten 3-d input",
        lambda: gn.Sequential(
            [
                gn.layers.Dense(4, activation="relu", input_shape=(3, 2)),
                gn.layers.Flatten(),
                gn.layers.Dense(3, activation="softmax"),
            ]
        ),
        "sparse_categorical_crossentropy",
        np.argmax(X[:, :3], 1),
    ),
]


@pytest.mark.parametrize("name, make, loss, y", CASES, ids=[c[0] for c in CASES])
def test_fast_step_is_bit_identical_to_the_graph(name, make, loss, y):
    w = np.linspace(0.5, 2.0, len(X))
    metrics = ("accuracy",) if "mse" not in name else ("mae",)
    fast, h_fast = _train(make, loss, y, True, metrics, sample_weight=w)
    graph, h_graph = _train(make, loss, y, False, metrics, sample_weight=w)
    assert fast._step_plan is not None and graph._step_plan is None
    for a, b in zip(fast.get_weights(), graph.get_weights(), strict=True):
        assert np.array_equal(a, b)
    assert h_fast.history == h_graph.history
    for k, v in fast.optimizer.state_arrays().items():
        assert np.array_equal(v, graph.optimizer.state_arrays()[k])


def test_plan_declines_what_needs_the_graph():
    def planned(model, loss="mse"):
        model.compile(optimizer="sgd", loss=loss)
        model.build_from_input_shape()
        return fastpath.plan(model)

    dense = lambda **kw: gn.layers.Dense(2, input_shape=(6,), **kw)  # noqa: E731
    assert planned(gn.Sequential([dense()])) is not None
    # every built-in layer runs on it, penalties included
    assert planned(gn.Sequential([dense(kernel_regularizer="l2")])) is not None
    assert planned(gn.Sequential([dense(), gn.layers.BatchNormalization()])) is not None
    assert planned(gn.Sequential([dense(activation=gn.activations.relu)])) is not None
    assert planned(gn.Sequential([dense(activation=lambda t: t * 2.0)])) is None
    assert planned(gn.Sequential([dense()]), loss=lambda yt, yp: ((yp - yt) ** 2).mean()) is None
    # probabilities that do not come from the matching activation: the graph checks them
    assert planned(gn.Sequential([dense(activation="relu")]), "binary_crossentropy") is None


@pytest.mark.parametrize("name, make, loss, y", CASES, ids=[c[0] for c in CASES])
def test_fast_predict_is_bit_identical_to_the_graph(name, make, loss, y):
    model, _ = _train(make, loss, y, True)
    x = X.reshape(-1, 3, 2) if model.layers[0].input_shape_hint == (3, 2) else X
    fast = model.predict(x, batch_size=40)
    model.use_fastpath = False
    assert np.array_equal(fast, model.predict(x, batch_size=40))
    with gn.no_grad():
        assert np.array_equal(fast, model(x, training=False).numpy())


def test_mixed_dtypes_cast_to_each_layer_and_skip_the_fast_path():
    model = gn.Sequential([gn.layers.Dense(3, input_shape=(6,))], dtype="float64")
    assert model.predict(X).dtype == np.float32  # the layer's dtype, as Keras' autocast
    mixed = gn.Sequential(
        [gn.layers.Dense(3, input_shape=(6,), dtype="float64"), gn.layers.Dense(2)]
    )
    assert mixed.predict(X).dtype == np.float32
    assert fastpath.plan(mixed, training=False) is None
    x = gn.tensor(X.astype("float64"), requires_grad=True)
    y = model.layers[0](x)
    y.sum().backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float64
