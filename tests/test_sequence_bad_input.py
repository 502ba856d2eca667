"""The bad-input table for Embedding, Masking, TimeDistributed, masks and
pad_sequence: each case is an InputValidationError naming the layer, the bad value
and what was expected, identical on "cpu" and the strict simulated device "sim", and
the model stays usable afterwards."""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn
from gpunet.errors import InputValidationError
from gpunet.nn.utils.rnn import pad_sequence

L = gn.layers
DEVICES = ["cpu", "sim"]
IDS = np.array([[3, 1, 4, 0], [5, 9, 2, 6]])
Y = np.array([0, 1])


def _net(device):
    gn.utils.set_random_seed(0)
    model = gn.Sequential([gn.Input(shape=(4,), dtype="int32"),
                           L.Embedding(10, 3, mask_zero=True, name="emb"),
                           L.GlobalAveragePooling1D(name="pool"),
                           L.Dense(2, activation="softmax")], device=device)  # fmt: skip
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def _ids(**changes):
    A = IDS.copy()
    for k, v in changes.items():
        A[int(k[1]), int(k[2])] = v
    return A


def _fit(x):
    return lambda d: _net(d).fit(x, Y, verbose=0)


def _layer(make, x, **kw):
    def run(device):
        layer = make().to(device)
        layer(gn.tensor(x, device=device), **kw)

    return run


X3 = np.ones((2, 4, 3), "float32")
CASES = [
    # (id, run(device), words the message must contain)
    ("id = input_dim in fit", _fit(_ids(a01=10)),
     ["layer 'emb'", "id 10", "[0, 10)", "0 to 9"]),
    ("negative id in fit", _fit(_ids(a12=-3)), ["layer 'emb'", "id -3", "[0, 10)"]),
    ("id out of range in predict", lambda d: _net(d).predict(_ids(a00=99)),
     ["layer 'emb'", "id 99", "[0, 10)"]),
    ("id out of range, eager", _layer(lambda: L.Embedding(5, 2, name="e5"), IDS),
     ["layer 'e5'", "id 9", "[0, 5)", "0 to 4"]),
    ("nn.Embedding id out of range", _layer(lambda: gn.nn.Embedding(4, 2, name="nn_e4"), IDS),
     ["layer 'nn_e4'", "id 9", "[0, 4)"]),
    ("boolean ids", _layer(lambda: L.Embedding(5, 2, name="e5"), IDS > 2),
     ["layer 'e5'", "integer ids", "bool"]),
    ("mask of the wrong shape", _layer(lambda: L.GlobalAveragePooling1D(name="gap"), X3,
                                       mask=np.ones((2, 3), bool)),
     ["layer 'gap'", "mask of shape (2, 3)", "input of shape (2, 4, 3)", "(2, 4)"]),
    ("mask with too many axes", _layer(lambda: L.Dense(2, name="d"), X3,
                                       mask=np.ones((2, 4, 3, 1), bool)),
     ["layer 'd'", "mask of shape (2, 4, 3, 1)", "(2, 4)"]),
    ("BatchNormalization mask of the wrong rank",
     _layer(lambda: L.BatchNormalization(name="bn"), X3, mask=np.ones(2, bool), training=True),
     ["layer 'bn'", "one axis less", "mask of shape (2,)", "(2, 4, 3)"]),
    ("Masking of a 1-D input", _layer(lambda: L.Masking(name="m"), np.ones(3, "float32")),
     ["layer 'm'", "(batch, time, features)", "(3,)"]),
    ("TimeDistributed of a 2-D input",
     _layer(lambda: L.TimeDistributed(L.Dense(2), name="td"), np.ones((2, 3), "float32")),
     ["layer 'td'", "(batch, time, ...)", "(2, 3)"]),
    ("pad_sequence of mismatched steps",
     lambda d: pad_sequence([gn.tensor(np.ones((2, 3), "float32"), device=d),
                             gn.tensor(np.ones((1, 2), "float32"), device=d)]),
     ["sequence 1", "(1, 2)", "(length, *(3,))"]),
]  # fmt: skip
IDS_ = [c[0] for c in CASES]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("run", "words"), [c[1:] for c in CASES], ids=IDS_)
def test_sequence_bad_input_is_named(device, run, words):
    if device == "sim":
        pytest.importorskip("array_api_strict")
    with pytest.raises(InputValidationError) as info:
        run(device)
    message = str(info.value)
    assert all(w in message for w in words), message


@pytest.mark.parametrize("run", [c[1] for c in CASES], ids=IDS_)
def test_same_message_on_cpu_and_the_simulated_device(run):
    pytest.importorskip("array_api_strict")
    messages = []
    for device in DEVICES:
        with pytest.raises(InputValidationError) as info:
            run(device)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


@pytest.mark.parametrize("device", DEVICES)
def test_a_text_model_is_usable_after_bad_ids(device):
    if device == "sim":
        pytest.importorskip("array_api_strict")
    model = _net(device)
    model.fit(IDS, Y, verbose=0)
    before = model.predict(IDS)
    for bad in (_ids(a01=10), _ids(a00=-1)):
        with pytest.raises(InputValidationError):
            model.fit(bad, Y, verbose=0)
    np.testing.assert_array_equal(model.predict(IDS), before)
    model.fit(IDS, Y, verbose=0)
    assert model.predict(IDS).shape == (2, 2)
