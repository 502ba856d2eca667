"""The bad-input table for convolution, pooling and reshaping layers: each case is an
InputValidationError naming the layer and the shapes, identical on "cpu" and the
strict simulated device "sim", and the model stays usable afterwards.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn
from gpunet.errors import InputValidationError

L = gn.layers
DEVICES = ["cpu", "sim"]
X = np.random.default_rng(0).uniform(size=(6, 8, 8, 1)).astype("float32")
Y = np.arange(6) % 2


def _net(device, *layers):
    gn.utils.set_random_seed(0)
    model = gn.Sequential([*layers, L.Flatten(), L.Dense(2, activation="softmax")],
                          device=device)  # fmt: skip
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def _fit(x, *make):
    return lambda d: _net(d, *(f() for f in make)).fit(x, Y, verbose=0)


def _fitted_then(call):
    def run(device):
        model = _net(device, L.Conv2D(4, 3, name="conv"))
        model.fit(X, Y, verbose=0)
        call(model)

    return run


CASES = [
    # (id, run(device), words the message must contain)
    ("3-D input to Conv2D", _fit(X[..., 0], lambda: L.Conv2D(4, 3, name="conv")),
     ["layer 'conv'", "rank 4", "(batch, height, width, channels)", "8, 8)"]),
    ("5-D input to Conv2D", _fit(X[..., None], lambda: L.Conv2D(4, 3, name="conv")),
     ["layer 'conv'", "rank 4", "8, 8, 1, 1)"]),
    ("3-D input to MaxPooling2D", _fit(X[..., 0], lambda: L.MaxPooling2D(2, name="pool")),
     ["layer 'pool' (MaxPooling2D)", "4 dimensions", "8, 8)"]),
    ("channels differ after build (predict)",
     _fitted_then(lambda m: m.predict(np.repeat(X, 3, axis=-1))),
     ["layer 'conv'", "built for 1 input channels, got 3", "(None, 8, 8, 3)"]),
    ("channels differ after build (fit)",
     _fitted_then(lambda m: m.fit(np.repeat(X, 2, axis=-1), Y, verbose=0)),
     ["layer 'conv'", "built for 1 input channels, got 2", "(None, 8, 8, 2)"]),
    ("kernel larger than the input", _fit(X[:, :3, :3], lambda: L.Conv2D(4, 5, name="conv")),
     ["layer 'conv'", "kernel (5, 5)", "larger than the input", "3, 3, 1)", "'valid'"]),
    ("dilated kernel larger than the input",
     _fit(X[:, :4, :4], lambda: L.Conv2D(4, 3, dilation_rate=2, name="conv")),
     ["layer 'conv'", "kernel (3, 3)", "dilation (2, 2)", "4, 4, 1)"]),
    ("kernel larger than the declared Input",
     lambda d: _net(d, gn.Input((3, 3, 1)), L.Conv2D(4, 5, name="conv")),
     ["layer 'conv'", "kernel (5, 5)", "(None, 3, 3, 1)"]),
    ("pool larger than the input", _fit(X[:, :3, :3], lambda: L.MaxPooling2D(4, name="pool")),
     ["layer 'pool' (MaxPooling2D)", "pool_size (4, 4)", "spatial shape (3, 3)"]),
    ("Reshape to an impossible shape", _fit(X, lambda: L.Reshape((5, 5), name="rs")),
     ["layer 'rs' (Reshape)", "(8, 8, 1) (64 values)", "(5, 5)"]),
]  # fmt: skip
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("run", "words"), [c[1:] for c in CASES], ids=IDS)
def test_conv_bad_input_is_named(device, run, words):
    with pytest.raises(InputValidationError) as info:
        run(device)
    message = str(info.value)
    assert all(w in message for w in words), message


@pytest.mark.parametrize("run", [c[1] for c in CASES], ids=IDS)
def test_same_message_on_cpu_and_the_simulated_device(run):
    messages = []
    for device in DEVICES:
        with pytest.raises(InputValidationError) as info:
            run(device)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


@pytest.mark.parametrize("device", DEVICES)
def test_a_convnet_is_usable_after_bad_input(device):
    model = _net(device, L.Conv2D(4, 3, name="conv"), L.MaxPooling2D(2))
    model.fit(X, Y, verbose=0)
    before = model.predict(X)
    for bad in (X[..., 0], np.repeat(X, 3, axis=-1), X[:, :2, :2]):
        with pytest.raises(InputValidationError):
            model.fit(bad, Y, verbose=0)
    np.testing.assert_array_equal(model.predict(X), before)
    model.fit(X, Y, verbose=0)
    assert model.predict(X).shape == (6, 2)
