"""Numerical faults and interrupts during ``fit``: a non-finite loss is caught in
the batch it appears, with the last finite weights kept; Ctrl-C leaves the model
at a step boundary with ``history`` holding the finished epochs."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

import gpunet as gn
from gpunet.errors import NonFiniteError

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 5)).astype("float32")
Y = RNG.normal(size=(40, 1)).astype("float32")
BIG = X.copy()
BIG[16:24] = 3e37  # batch 3 of 5: finite input that overflows in the second layer


def _model(optimizer="adam"):
    gn.utils.set_random_seed(3)
    model = gn.Sequential([
        gn.layers.Dense(4, kernel_initializer="ones", input_shape=(5,), name="hidden"),
        gn.layers.Dense(4, kernel_initializer=gn.initializers.Constant(10.0), name="blowup"),
        gn.layers.Dense(1, name="out"),
    ])  # fmt: skip
    model.compile(optimizer=optimizer, loss="mse")
    return model


def _state(model):
    return ([w.tobytes() for w in model.get_weights()],
            {k: v.tobytes() for k, v in model.optimizer.state_arrays().items()},
            model.optimizer.iterations)  # fmt: skip


def _after_steps(n_epochs, n_batches):
    """A model trained on exactly the first ``n_batches`` batches after ``n_epochs``."""
    ref = _model()
    for _ in range(n_epochs):
        ref.fit(X, Y, batch_size=8, shuffle=False, verbose=0)
    if n_batches:
        ref.fit(X[: 8 * n_batches], Y[: 8 * n_batches], batch_size=8, shuffle=False, verbose=0)
    return ref


def test_on_nan_raise_names_epoch_batch_and_layer_and_keeps_the_last_finite_weights():
    model = _model()
    with pytest.raises(NonFiniteError) as info:
        model.fit(BIG, Y, batch_size=8, shuffle=False, epochs=2, verbose=0)
    message = str(info.value)
    assert "epoch 1, batch 3" in message and "Dense 'blowup'" in message
    assert "last finite weights are kept" in message
    assert _state(model) == _state(_after_steps(0, 2))
    assert np.isfinite(model.predict(X)).all()


def test_on_nan_stop_ends_in_the_same_batch_like_terminate_on_nan():
    model = _model()
    history = model.fit(BIG, Y, batch_size=8, shuffle=False, epochs=5, verbose=0, on_nan="stop")
    assert len(history.history["loss"]) == 1 and not np.isfinite(history.history["loss"][0])
    assert _state(model) == _state(_after_steps(0, 2))


def test_on_nan_ignore_trains_on():
    model = _model("sgd")
    model.fit(BIG, Y, batch_size=8, shuffle=False, epochs=1, verbose=0, on_nan="ignore")
    assert model.optimizer.iterations == 5


def test_ctrl_c_is_held_until_the_step_is_complete():
    class CtrlC(gn.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_begin(self, batch, logs=None):
            if (self.epoch, batch) == (1, 2):
                os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, before the step

    model = _model()
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, Y, batch_size=8, shuffle=False, epochs=3, verbose=0, callbacks=[CtrlC()])
    assert _state(model) == _state(_after_steps(1, 3))  # the step it arrived in is complete
    assert len(model.history.history["loss"]) == 1  # the finished epoch
    assert model.predict(X).shape == (40, 1)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_keyboard_interrupt_from_a_callback_propagates_at_a_step_boundary():
    class Raise(gn.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                raise KeyboardInterrupt

    model = _model()
    model.fit(X, Y, batch_size=8, shuffle=False, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, Y, batch_size=8, shuffle=False, epochs=2, verbose=0, callbacks=[Raise()])
    assert _state(model) == _state(_after_steps(1, 2))
    assert model.history.history == {}
    assert np.isfinite(model.predict(X)).all()
