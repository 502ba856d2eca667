"""The callback protocol against Keras 3 (torch backend): which hooks run, in
which order, with which arguments and which ``logs`` keys, for ``fit`` (with
validation, ``validation_freq``, ``steps_per_epoch``, ``validation_steps``),
``evaluate`` and ``predict``; and the logged values, from the same weights."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

import gpunet as gn

# Keras's own Variable.numpy() trips NumPy 2's copy= deprecation
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

HOOKS = [
    "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
    "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
    "on_test_batch_begin", "on_test_batch_end", "on_predict_begin", "on_predict_end",
    "on_predict_batch_begin", "on_predict_batch_end",
]  # fmt: skip


def recorder(base: type) -> Any:
    """A callback class on ``base`` that records (hook, args, sorted logs keys, logs)."""

    def make(name: str) -> Any:
        def hook(self: Any, *args: Any, logs: Any = None) -> None:
            if args and logs is None and not isinstance(args[-1], int):
                *args, logs = args  # type: ignore[assignment]
            values = {k: v for k, v in (logs or {}).items() if k != "outputs"}
            keys = None if logs is None else sorted(logs)
            self.events.append((name, tuple(args), keys, {k: float(v) for k, v in values.items()}))

        return hook

    ns: dict[str, Any] = {h: make(h) for h in HOOKS}

    def init(self: Any) -> None:
        base.__init__(self)
        self.events = []

    ns["__init__"] = init
    return type("Recorder", (base,), ns)


@pytest.fixture(scope="module")
def keras() -> Any:
    os.environ["KERAS_BACKEND"] = "torch"
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return pytest.importorskip("keras")


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((10, 3)).astype("float32"), rng.integers(0, 2, 10)


def _pair(keras: Any) -> tuple[Any, Any]:
    km = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    km.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
               metrics=["accuracy"])  # fmt: skip
    gm = gn.Sequential([gn.layers.Dense(2, activation="softmax", input_shape=(3,))])
    gm.compile(optimizer=gn.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
               metrics=["accuracy"])  # fmt: skip
    gm.set_weights([np.asarray(w) for w in km.get_weights()])
    return km, gm


def _run(model: Any, base: type, what: str) -> list[Any]:
    x, y = _data()
    rec = recorder(base)()
    if what == "fit":
        model.fit(x, y, batch_size=4, epochs=2, validation_data=(x, y), shuffle=False,
                  callbacks=[rec], verbose=0)  # fmt: skip
    elif what == "fit_steps":  # 3 batches a pass, 2 steps an epoch: epoch 2 runs out
        model.fit(x, y, batch_size=4, epochs=3, steps_per_epoch=2, validation_data=(x, y),
                  validation_freq=2, validation_steps=1, shuffle=False, callbacks=[rec],
                  verbose=0)  # fmt: skip
    elif what == "evaluate":
        model.evaluate(x, y, batch_size=4, callbacks=[rec], verbose=0)
    else:
        model.predict(x, batch_size=4, callbacks=[rec], verbose=0)
    return rec.events  # type: ignore[no-any-return]


@pytest.mark.parametrize("what", ["fit", "fit_steps", "evaluate", "predict"])
def test_hooks_order_args_and_logs_match_keras(keras: Any, what: str) -> None:
    km, gm = _pair(keras)
    with pytest.warns(UserWarning, match="ran out of data") if what == "fit_steps" else _null():
        want = _run(km, keras.callbacks.Callback, what)
    with pytest.warns(UserWarning, match="ran out of data") if what == "fit_steps" else _null():
        got = _run(gm, gn.callbacks.Callback, what)
    assert [e[:3] for e in got] == [e[:3] for e in want]
    for g, w in zip(got, want, strict=True):
        for k, v in w[3].items():
            assert g[3][k] == pytest.approx(v, rel=1e-5, abs=1e-6), (g[0], g[1], k)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _stop_run(lib: Any, model: Any) -> list[Any]:
    x, y = _data()
    seen: list[Any] = []
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")

    def stop(batch: int, logs: Any) -> None:
        seen.append(("batch", batch, sorted(logs)))
        if batch == 1:
            model.stop_training = True

    cb = lib.callbacks.LambdaCallback(
        on_batch_end=stop, on_epoch_end=lambda e, logs: seen.append(("epoch", e, sorted(logs)))
    )
    model.fit(x, y, batch_size=2, epochs=3, callbacks=[cb], verbose=0)
    return seen


def test_lambda_callback_batch_hooks_and_stop_training_mid_epoch(keras: Any) -> None:
    km = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    gm = gn.Sequential([gn.layers.Dense(2, activation="softmax", input_shape=(3,))])
    want = _stop_run(keras, km)
    assert _stop_run(gn, gm) == want
    assert want == [("batch", 0, ["loss"]), ("batch", 1, ["loss"]), ("epoch", 0, ["loss"])]
