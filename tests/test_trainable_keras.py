"""``trainable`` in the classic Keras GAN pattern, against Keras 3 (torch backend).

Keras 2 took a snapshot of ``trainable`` at ``compile``; Keras 3 reads it at each step.
So a discriminator compiled and then frozen (``trainable = False``) does not train in
its own ``train_on_batch`` either: it warns and changes nothing, its BatchNormalization
included (a frozen BatchNormalization normalises with its moving statistics). The test
runs the same sequence of ``train_on_batch`` calls on both libraries from the same
weights and checks which weights change in each call, and to what.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import pytest

import gpunet as gn

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")
torch.set_num_threads(1)

R = np.random.default_rng(0)
X = R.normal(size=(8, 4)).astype(np.float32)
Z = R.normal(size=(8, 2)).astype(np.float32)
ONES = np.ones((8, 1), np.float32)


def _models(lib: Any) -> tuple[Any, Any, Any]:
    """The classic order: compile D, freeze it, build and compile the combined model."""
    L = lib.layers
    D = lib.Sequential([lib.Input((4,)), L.Dense(3), L.BatchNormalization(), L.LeakyReLU(0.2),
                        L.Dense(1, activation="sigmoid")])  # fmt: skip
    G = lib.Sequential([lib.Input((2,)), L.Dense(4), L.BatchNormalization()])
    D.compile(optimizer=lib.optimizers.SGD(learning_rate=0.1), loss="binary_crossentropy")
    D.trainable = False
    z = lib.Input((2,))
    gan = lib.Model(z, D(G(z)))
    gan.compile(optimizer=lib.optimizers.SGD(learning_rate=0.1), loss="binary_crossentropy")
    return D, G, gan


def _np(a: Any) -> np.ndarray:
    """A copy of a gpunet or Keras weight, or tensor, as a NumPy array."""
    if isinstance(a, keras.Variable):
        a = a.value
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy().copy()
    return np.array(a.numpy())


def _values(model: Any) -> list[np.ndarray]:
    return [_np(w) for w in model.weights]


def _run(lib: Any, D: Any, G: Any, gan: Any) -> list[tuple[float, list[np.ndarray]]]:
    """Loss and every weight after each step of the Keras 3 loop (D unfrozen for its
    own steps, frozen for the combined model's)."""
    out = []
    for trainable, model, x, y in [(True, D, X, ONES), (False, gan, Z, ONES),
                                   (True, D, X, 0 * ONES), (False, gan, Z, ONES)]:  # fmt: skip
        D.trainable = trainable
        loss = model.train_on_batch(x, y)
        out.append((float(loss), _values(D) + _values(G)))
    return out


def _same_start() -> tuple[tuple[Any, Any, Any], tuple[Any, Any, Any]]:
    gn.utils.set_random_seed(0)
    keras.utils.set_random_seed(0)
    ours, theirs = _models(gn), _models(keras)
    for a, b in zip(ours[:2], theirs[:2], strict=True):
        a.set_weights(_values(b))
    return ours, theirs


def test_trainable_is_read_at_each_step_as_in_keras3() -> None:
    ours, theirs = _same_start()
    before = k_before = _values(theirs[0]) + _values(theirs[1])
    got = _run(gn, *ours)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras' DeprecationWarnings under NumPy 2
        want = _run(keras, *theirs)
    n_d = len(theirs[0].weights)
    for i, ((loss, after), (k_loss, k_after)) in enumerate(zip(got, want, strict=True)):
        changed = [not np.array_equal(a, b) for a, b in zip(after, before, strict=True)]
        k_changed = [not np.array_equal(a, b) for a, b in zip(k_after, k_before, strict=True)]
        assert changed == k_changed, f"step {i}: {changed} != Keras {k_changed}"
        np.testing.assert_allclose(loss, k_loss, rtol=1e-5, err_msg=f"step {i}")
        for a, b in zip(after, k_after, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"step {i}")
        # D's steps move all of D (moving statistics too) and none of G; the combined
        # model's move all of G and none of D (not even D's moving statistics)
        assert changed == [i % 2 == 0] * n_d + [i % 2 == 1] * (len(after) - n_d)
        before, k_before = after, k_after


def test_a_model_frozen_after_compile_warns_and_changes_nothing_as_in_keras3() -> None:
    """The Keras 2 loop's first call: D.train_on_batch with D frozen since compile."""
    ours, theirs = _same_start()
    start = _values(theirs[0])
    with pytest.warns(UserWarning, match="does not have any trainable weights"):
        loss = ours[0].train_on_batch(X, ONES)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # and Keras' DeprecationWarnings under NumPy 2
        k_loss = theirs[0].train_on_batch(X, ONES)
    assert "The model does not have any trainable weights." in [str(w.message) for w in caught]
    np.testing.assert_allclose(float(loss), float(k_loss), rtol=1e-5)
    for a, b, c in zip(_values(ours[0]), _values(theirs[0]), start, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, c)
    # Keras has now built D's optimizer on no weights, so D can never train with it
    # again (ValueError: Unknown variable); gpunet builds it at the first step that
    # has weights, and unfreezing D works
    ours[0].trainable = True
    ours[0].train_on_batch(X, ONES)
    assert not np.array_equal(_values(ours[0])[0], start[0])


def test_a_weight_unfrozen_after_the_first_step_is_refused_as_in_keras3() -> None:
    for lib in (gn, keras):
        D, _, gan = _models(lib)
        D.trainable = False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gan.train_on_batch(Z, ONES)
            D.trainable = True  # the combined model's optimizer was built on G's weights
            with pytest.raises(ValueError, match="optimizer"):
                gan.train_on_batch(Z, ONES)


def test_frozen_batchnorm_uses_moving_statistics_while_training() -> None:
    x = R.normal(size=(16, 3)) * 3.0 + 5.0
    for lib in (gn, keras):
        layer = lib.layers.BatchNormalization()
        layer.build((None, 3))
        layer.trainable = False
        y = _np(layer(x.astype(np.float32), training=True))
        # moving mean 0, variance 1: only epsilon's 1e-3 separates it from the input
        np.testing.assert_allclose(y, x / np.sqrt(1.0 + 1e-3), rtol=1e-5)
        np.testing.assert_array_equal(_np(layer.moving_mean), np.zeros(3))
