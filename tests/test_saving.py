"""model.save / load_model / save_weights / load_weights: round trips, interop with
the safetensors package, and the promises that make a file safe to load."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gpunet as gn
from gpunet import saving
from gpunet.errors import InvalidParameterError, ModelFileError
from gpunet.saving import _container

ROOT = Path(__file__).resolve().parents[1]
X = np.random.default_rng(0).normal(size=(40, 5)).astype("float32")
Y = np.arange(40) % 3


def _model(**compile_kw):
    model = gn.Sequential([
        gn.layers.Dense(16, activation="relu", input_shape=(5,), kernel_regularizer="l2"),
        gn.layers.BatchNormalization(),
        gn.layers.Dropout(0.25),
        gn.layers.Dense(8, activation={"name": "leaky_relu", "alpha": 0.1},
                        kernel_initializer=gn.initializers.RandomNormal(0.0, 0.1, seed=3)),
        gn.layers.LayerNormalization(),
        gn.layers.Activation("gelu"),
        gn.layers.Dense(3, activation="softmax", use_bias=False),
    ])  # fmt: skip
    model.compile(**({"optimizer": "adam", "loss": "sparse_categorical_crossentropy",
                      "metrics": ["accuracy"]} | compile_kw))  # fmt: skip
    return model


def _trained(**compile_kw):
    model = _model(**compile_kw)
    model.fit(X, Y, epochs=2, batch_size=8, verbose=0)
    return model


def _equal_state(a, b):
    assert [w.tobytes() for w in a.get_weights()] == [w.tobytes() for w in b.get_weights()]
    sa, sb = a.optimizer.state_arrays(), b.optimizer.state_arrays()
    assert sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert a.optimizer.iterations == b.optimizer.iterations


@pytest.mark.parametrize(
    "compile_kw",
    [
        {},
        {"optimizer": gn.optimizers.SGD(0.05, momentum=0.9, nesterov=True)},
        {"optimizer": gn.optimizers.RMSprop(centered=True, momentum=0.5, clipnorm=1.0)},
        {"optimizer": gn.optimizers.AdamW(gn.optimizers.schedules.CosineDecay(0.01, 100))},
        {"optimizer": "adagrad", "loss": gn.losses.SparseCategoricalCrossentropy(
            label_smoothing=0.1)},
    ],
)  # fmt: skip
def test_model_roundtrip_is_exact_and_training_continues_identically(tmp_path, compile_kw):
    model = _trained(**compile_kw)
    model.save(tmp_path / "m.gpunet")
    again = gn.models.load_model(tmp_path / "m.gpunet")
    _equal_state(model, again)
    assert np.array_equal(model.predict(X), again.predict(X))
    assert again.get_config() == model.get_config()
    assert type(again.optimizer) is type(model.optimizer)
    assert again.optimizer.get_config() == model.optimizer.get_config()
    # the same next steps from the same random state give the same weights
    state = gn.random.get_state()
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    gn.random.set_state(state)
    again.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    _equal_state(model, again)


def test_loading_changes_no_global_state(tmp_path):
    _trained().save(tmp_path / "m.gpunet")
    gn.config.set_floatx("float64")
    state = gn.random.get_state()
    modules = set(sys.modules)
    gn.models.load_model(tmp_path / "m.gpunet")
    assert gn.random.get_state() == state
    assert gn.config.floatx() == "float64"
    assert set(sys.modules) == modules


def test_without_optimizer_loads_uncompiled_and_float64_stays_float64(tmp_path):
    gn.config.set_floatx("float64")
    model = _trained()
    model.save(tmp_path / "m.gpunet", include_optimizer=False)
    again = gn.models.load_model(tmp_path / "m.gpunet")
    assert again.optimizer is None and again.compiled_loss is None
    assert again.get_weights()[0].dtype == np.float64
    assert np.array_equal(model.predict(X), again.predict(X))


def test_lazily_built_model_with_flatten_first_saves_its_input_shape(tmp_path):
    model = gn.Sequential([gn.layers.Flatten(), gn.layers.Dense(4)])
    images = np.ones((2, 3, 2), dtype="float32")
    expected = model.predict(images)
    model.save(tmp_path / "m.gpunet")
    assert np.array_equal(gn.models.load_model(tmp_path / "m.gpunet").predict(images), expected)
    unbuilt = gn.Sequential([gn.layers.Dense(4)])
    unbuilt.save(tmp_path / "u.gpunet")
    assert gn.models.load_model(tmp_path / "u.gpunet").weights == []


def test_weights_of_a_subclassed_model(tmp_path):
    class Residual(gn.Model):
        def __init__(self):
            super().__init__()
            self.inner = gn.layers.Dense(5, activation="tanh")
            self.out = gn.layers.Dense(2)

        def call(self, x):
            return self.out(x + self.inner(x))

    a, b = Residual(), Residual()
    a(X[:1]), b(X[:1])
    with pytest.raises(InvalidParameterError, match="save_weights"):
        a.save(tmp_path / "m.gpunet")
    a.save_weights(tmp_path / "w.gpunet")
    b.load_weights(tmp_path / "w.gpunet")
    assert np.array_equal(a.predict(X), b.predict(X))
    with pytest.raises(ModelFileError, match="no weights yet"):
        Residual().load_weights(tmp_path / "w.gpunet")


def test_save_refuses_what_a_file_cannot_hold(tmp_path):
    custom = gn.Sequential([gn.layers.Dense(2, activation=lambda t: t, input_shape=(3,))])
    with pytest.raises(InvalidParameterError, match="custom activation"):
        custom.save(tmp_path / "m.gpunet")
    model = _model(loss=lambda y, p: gn.functional.mean(p))
    with pytest.raises(InvalidParameterError, match="include_optimizer=False"):
        model.save(tmp_path / "m.gpunet")
    model.save(tmp_path / "m.gpunet", include_optimizer=False)
    nested = gn.Sequential([gn.Sequential([gn.layers.Dense(2, input_shape=(3,))])])
    with pytest.raises(InvalidParameterError, match="unknown layer type 'Sequential'"):
        nested.save(tmp_path / "n.gpunet")


def test_load_onto_the_simulated_device(tmp_path):
    pytest.importorskip("gpunet.backend.strict_ops")
    model = _trained()
    model.save(tmp_path / "m.gpunet")
    again = gn.models.load_model(tmp_path / "m.gpunet", device="sim")
    assert again.device == "sim"
    np.testing.assert_allclose(again.predict(X), model.predict(X), rtol=1e-5, atol=1e-6)


def _sections(data: bytes) -> tuple[bytes, bytes]:
    n_json = int.from_bytes(data[16:24], "little")
    n_payload = int.from_bytes(data[24:32], "little")
    return data[32 : 32 + n_json], data[32 + n_json : 32 + n_json + n_payload]


def test_the_weights_section_is_safetensors_and_files_it_writes_are_read():
    st = pytest.importorskip("safetensors.numpy")
    model = _trained()
    doc, payload = _sections(_container.pack({"kind": "weights"}, {
        k: p.numpy() for k, p in saving.named_weights(model).items()}))  # fmt: skip
    theirs = st.load(payload)
    ours = {k: p.numpy() for k, p in saving.named_weights(model).items()}
    assert theirs.keys() == ours.keys() and all(np.array_equal(theirs[k], ours[k]) for k in ours)
    arrays = {"a": np.arange(6, dtype="float64").reshape(2, 3), "b": np.ones(0, "float16"),
              "c": np.array(7.0, dtype="float32")}  # fmt: skip
    back = saving._safetensors.loads(st.save(arrays, metadata={"source": "x"}))
    assert all(np.array_equal(back[k], arrays[k]) and back[k].dtype == arrays[k].dtype
               for k in arrays)  # fmt: skip
    assert json.loads(doc)["kind"] == "weights"


def test_loads_where_cupy_cannot_be_imported(tmp_path):
    _trained().save(tmp_path / "m.gpunet")
    code = (
        "import sys; sys.modules['cupy'] = None\n"
        "import gpunet as gn\n"
        f"m = gn.models.load_model({str(tmp_path / 'm.gpunet')!r})\n"
        "print(m.count_params(), m.device)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[1] == "cpu"


LOAD_MODULES = ["saving/_safetensors.py", "saving/_container.py", "saving/_schema.py",
                "saving/_tensors.py", "saving/_model.py", "checkpoint.py"]  # fmt: skip


@pytest.mark.parametrize("module", LOAD_MODULES)
def test_no_unsafe_loader_in_any_load_path(module):
    source = (ROOT / "gpunet" / module).read_text()
    code = "\n".join(line.split("#")[0] for line in source.splitlines())  # comments aside
    banned = r"\b(pickle|cPickle|marshal|eval|exec|importlib|__import__|allow_pickle|np\.load" \
             r"|numpy\.load|getattr\(\w+, *(cfg|name|config))\b"  # fmt: skip
    assert not re.findall(banned, code)
