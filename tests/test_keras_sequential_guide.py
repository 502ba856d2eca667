"""The keras-io guide "The Sequential model" (https://keras.io/guides/sequential_model/)
run twice with only the imports changed (``import gpunet as keras``), once on Keras 3
(torch backend), and what the guide prints compared: layer counts, weight shapes,
``pop()``, ``summary()``'s parameter counts (parsed numbers, not text), the
feature-extraction outputs and the transfer-learning trainable counts.

The guide's Conv2D / MaxPooling2D parts wait for the convolution layers: the
``add() + summary()`` debugging walk-through is left out, and the two
feature-extraction examples use Dense layers in place of Conv2D (same code
otherwise). The second transfer-learning blueprint uses a small Sequential base in
place of ``keras.applications.Xception``.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Any

import numpy as np
import pytest

import gpunet

os.environ.setdefault("KERAS_BACKEND", "torch")
keras_lib = pytest.importorskip("keras")
torch = pytest.importorskip("torch")
torch.set_num_threads(1)


def _summary_numbers(model: Any) -> tuple[int, ...]:
    lines: list[str] = []
    model.summary(print_fn=lambda *a, **k: lines.append(str(a[0])))
    text = "\n".join(lines)
    found = [
        re.search(rf"^\s*{what} params: ([\d,]+)", text, re.M)
        for what in ("Total", "Trainable", "Non-trainable")
    ]
    assert all(found), text
    total, trainable, frozen = (int(m.group(1).replace(",", "")) for m in found if m)
    # a compiled Keras model counts its optimizer's variables (iterations, learning
    # rate) in "Total params" too; gpunet's summary lists the model's weights only
    opt = re.search(r"^\s*Optimizer params: ([\d,]+)", text, re.M)
    total -= int(opt.group(1).replace(",", "")) if opt else 0
    return total, trainable, frozen


def _shapes(ws: Any) -> list[tuple[int, ...]]:
    return [tuple(int(d) for d in w.shape) for w in ws]


def run_guide(keras: Any) -> dict[str, Any]:
    """The guide's code, with ``keras`` either Keras 3 or gpunet; returns what it prints."""
    layers, ops = keras.layers, keras.ops
    seen: dict[str, Any] = {}

    # -- When to use a Sequential model
    model = keras.Sequential(
        [
            layers.Dense(2, activation="relu", name="layer1"),
            layers.Dense(3, activation="relu", name="layer2"),
            layers.Dense(4, name="layer3"),
        ]
    )
    x = ops.ones((3, 3))
    y = model(x)
    seen["call_shape"] = tuple(y.shape)

    layer1 = layers.Dense(2, activation="relu", name="layer1")
    layer2 = layers.Dense(3, activation="relu", name="layer2")
    layer3 = layers.Dense(4, name="layer3")
    x = ops.ones((3, 3))
    y = layer3(layer2(layer1(x)))
    seen["function_shape"] = tuple(y.shape)

    # -- Creating a Sequential model
    model = keras.Sequential(
        [
            layers.Dense(2, activation="relu"),
            layers.Dense(3, activation="relu"),
            layers.Dense(4),
        ]
    )
    seen["n_layers"] = len(model.layers)

    model = keras.Sequential()
    model.add(layers.Dense(2, activation="relu"))
    model.add(layers.Dense(3, activation="relu"))
    model.add(layers.Dense(4))
    model.pop()
    seen["after_pop"] = len(model.layers)  # 2

    model = keras.Sequential(name="my_sequential")
    model.add(layers.Dense(2, activation="relu", name="layer1"))
    model.add(layers.Dense(3, activation="relu", name="layer2"))
    model.add(layers.Dense(4, name="layer3"))
    seen["names"] = (model.name, [layer.name for layer in model.layers])

    # -- Specifying the input shape in advance
    layer = layers.Dense(3)
    seen["unbuilt_layer_weights"] = len(layer.weights)  # Empty
    x = ops.ones((1, 4))
    y = layer(x)
    seen["layer_weight_shapes"] = _shapes(layer.weights)  # (4, 3) and (3,)

    model = keras.Sequential(
        [
            layers.Dense(2, activation="relu"),
            layers.Dense(3, activation="relu"),
            layers.Dense(4),
        ]
    )  # No weights at this stage!
    seen["unbuilt_model_weights"] = len(model.weights)
    x = ops.ones((1, 4))
    y = model(x)
    seen["n_weights_after_call"] = len(model.weights)  # 6
    seen["weight_shapes_after_call"] = _shapes(model.weights)
    seen["summary_after_call"] = _summary_numbers(model)

    model = keras.Sequential()
    model.add(keras.Input(shape=(4,)))
    model.add(layers.Dense(2, activation="relu"))
    seen["summary_with_input"] = _summary_numbers(model)
    seen["layers_with_input"] = [type(layer).__name__ for layer in model.layers]

    model = keras.Sequential()
    model.add(layers.Dense(2, activation="relu", input_shape=(4,)))
    seen["summary_with_input_shape"] = _summary_numbers(model)
    seen["weights_before_data"] = _shapes(model.weights)

    # -- A common debugging workflow: add() + summary() -- skipped: Conv2D/MaxPooling2D

    # -- Feature extraction with a Sequential model (Dense in place of Conv2D)
    initial_model = keras.Sequential(
        [
            keras.Input(shape=(250,)),
            layers.Dense(32, activation="relu"),
            layers.Dense(24, activation="relu"),
            layers.Dense(16, activation="relu"),
        ]
    )
    feature_extractor = keras.Model(
        inputs=initial_model.inputs,
        outputs=[layer.output for layer in initial_model.layers],
    )
    x = ops.ones((1, 250))
    features = feature_extractor(x)
    seen["features"] = [tuple(f.shape) for f in features]

    initial_model = keras.Sequential(
        [
            keras.Input(shape=(250,)),
            layers.Dense(32, activation="relu"),
            layers.Dense(24, activation="relu", name="my_intermediate_layer"),
            layers.Dense(16, activation="relu"),
        ]
    )
    feature_extractor = keras.Model(
        inputs=initial_model.inputs,
        outputs=initial_model.get_layer(name="my_intermediate_layer").output,
    )
    x = ops.ones((1, 250))
    features = feature_extractor(x)
    seen["one_feature"] = tuple(features.shape)

    # -- Transfer learning with a Sequential model
    model = keras.Sequential(
        [
            keras.Input(shape=(784,)),  # the guide's (784) is an int, which Keras 3 rejects
            layers.Dense(32, activation="relu"),
            layers.Dense(32, activation="relu"),
            layers.Dense(32, activation="relu"),
            layers.Dense(10),
        ]
    )
    for layer in model.layers[:-1]:
        layer.trainable = False
    seen["frozen_counts"] = (len(model.trainable_weights), len(model.non_trainable_weights))
    before = [np.array(_host(w)) for w in model.weights]
    rng = np.random.default_rng(0)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(rng.normal(size=(32, 784)), rng.normal(size=(32, 10)), epochs=1, verbose=0)
    seen["changed"] = [
        not np.array_equal(b, _host(w)) for b, w in zip(before, model.weights, strict=True)
    ]
    seen["summary_frozen"] = _summary_numbers(model)

    base_model = keras.Sequential([keras.Input(shape=(20,)), layers.Dense(16)])  # for Xception
    base_model.trainable = False
    model = keras.Sequential([base_model, layers.Dense(1000)])
    model(ops.ones((1, 20)))
    seen["blueprint_counts"] = (len(model.trainable_weights), len(model.non_trainable_weights))
    return seen


def _host(w: Any) -> np.ndarray:
    value = getattr(w, "value", None)  # a Keras variable holds a torch tensor
    if value is not None and hasattr(value, "detach"):
        return np.asarray(value.detach().numpy())
    return np.asarray(w.numpy())


def test_the_sequential_guide_prints_what_keras_prints() -> None:
    with warnings.catch_warnings():  # Keras 3 warns against input_shape=, which the guide uses
        warnings.filterwarnings("ignore", message=".*input_shape", category=UserWarning)
        want = run_guide(keras_lib)
    got = run_guide(gpunet)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == want[key], key
    # the numbers the guide's comments state, so a shared mistake cannot pass
    assert got["after_pop"] == 2 and got["n_weights_after_call"] == 6
    assert got["layer_weight_shapes"] == [(4, 3), (3,)]
    assert got["changed"] == [False] * 6 + [True, True]
