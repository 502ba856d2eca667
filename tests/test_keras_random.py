"""``gn.random``: keras.random's draws (normal, uniform, truncated_normal, randint,
shuffle, dropout, SeedGenerator): Keras 3's shapes, dtypes and seed semantics, the
distributions, and a VAE-style sampling layer that trains through its draws."""

from __future__ import annotations

import os

import numpy as np
import pytest

import gpunet as gn

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

R = gn.random


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.normal((3, 4), seed=1),
        lambda m: m.uniform((5,), minval=-1.0, maxval=2.0, seed=1),
        lambda m: m.truncated_normal((2, 2), seed=1),
        lambda m: m.randint((6,), 0, 9, seed=1),
        lambda m: m.normal((2,), dtype="float64", seed=1),
    ],
)
def test_shapes_and_dtypes_match_keras(call):
    ours, theirs = call(R), call(keras.random)
    assert tuple(ours.shape) == tuple(theirs.shape)
    assert str(ours.dtype) == str(theirs.dtype).replace("torch.", "")


def test_seed_semantics_are_keras_ones():
    gn.utils.set_random_seed(3)
    a = R.normal((50,)).numpy()
    gn.utils.set_random_seed(3)
    np.testing.assert_array_equal(R.normal((50,)).numpy(), a)  # the global seed repeats
    assert not np.array_equal(R.normal((50,)).numpy(), a)  # and the stream moves on
    np.testing.assert_array_equal(R.uniform((9,), seed=5).numpy(), R.uniform((9,), seed=5).numpy())
    gen, again = R.SeedGenerator(11), R.SeedGenerator(11)
    first, second = R.normal((7,), seed=gen).numpy(), R.normal((7,), seed=gen).numpy()
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(R.normal((7,), seed=again).numpy(), first)
    for bad in (-1, 1.5, "x"):
        with pytest.raises(ValueError, match="seed must be"):
            R.normal((2,), seed=bad)


def test_distributions():
    n = R.normal((200_000,), mean=1.0, stddev=2.0, seed=0).numpy()
    assert abs(n.mean() - 1.0) < 0.02 and abs(n.std() - 2.0) < 0.02
    u = R.uniform((200_000,), minval=-1.0, maxval=3.0, seed=0).numpy()
    assert u.min() >= -1.0 and u.max() < 3.0 and abs(u.mean() - 1.0) < 0.02
    t = R.truncated_normal((100_000,), mean=0.5, stddev=0.1, seed=0).numpy()
    assert np.abs(t - 0.5).max() <= 0.2 + 1e-6 and abs(t.std() - 0.088) < 0.003
    i = R.randint((10_000,), 2, 5, seed=0).numpy()
    assert set(np.unique(i)) == {2, 3, 4}


def test_dropout_and_shuffle():
    x = gn.tensor(np.arange(12.0).reshape(3, 4) + 1.0, requires_grad=True)
    d = R.dropout(x, 0.5, noise_shape=(None, 1), seed=0)
    kept = d.numpy() != 0
    assert (kept == kept[:, :1]).all()  # one draw per row
    np.testing.assert_allclose(d.numpy()[kept], 2 * x.numpy()[kept])
    d.sum().backward()
    np.testing.assert_allclose(x.grad, np.where(kept, 2.0, 0.0))
    s = R.shuffle(x, axis=1, seed=4)
    assert sorted(s.numpy()[0]) == sorted(x.numpy()[0])
    with pytest.raises(ValueError, match="rate"):
        R.dropout(x, 1.0)


def _fit_sampling(device, epochs):
    class Sampling(gn.layers.Layer):  # the reparameterisation of keras-io's VAE
        def __init__(self):
            super().__init__()
            self.seed_generator = gn.random.SeedGenerator(1337)

        def call(self, inputs):
            z_mean, z_log_var = inputs
            batch, dim = gn.ops.shape(z_mean)
            epsilon = gn.random.normal(shape=(batch, dim), seed=self.seed_generator)
            return z_mean + gn.ops.exp(0.5 * z_log_var) * epsilon

    gn.utils.set_random_seed(0)
    inputs = gn.Input((4,))
    z = Sampling()([gn.layers.Dense(2)(inputs), gn.layers.Dense(2)(inputs)])
    model = gn.Model(inputs, gn.layers.Dense(4)(z), device=device)
    model.compile(optimizer=gn.optimizers.Adam(0.02), loss="mse")
    X = np.random.default_rng(0).normal(size=(64, 4))
    return model.fit(X, X, epochs=epochs, batch_size=16, verbose=0).history["loss"]


def test_a_sampling_layer_trains_through_its_draws():
    losses = _fit_sampling("cpu", 30)
    assert losses[-1] < 0.7 * losses[0]


def test_draws_inside_a_call_land_on_the_layers_device():
    # on the simulated device a host-made constant would raise; the draws go to the
    # layer's device, so the fit runs and repeats the CPU's
    np.testing.assert_allclose(_fit_sampling("sim", 3), _fit_sampling("cpu", 3), rtol=1e-5)
    assert gn.random.normal((2,)).device == "cpu"  # outside any call: the CPU
