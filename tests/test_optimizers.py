"""Optimizer updates against values worked out by hand with scalar arithmetic
(Keras-style golden tests), plus clipping, schedules and the PyTorch spellings."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gpunet as gn
from gpunet.errors import InvalidParameterError

GRADS = [np.array([0.5, -1.0]), np.array([0.25, 2.0]), np.array([-0.75, 0.5])]
W0 = np.array([1.0, -2.0])


def _run(opt_factory, grads=GRADS, w0=W0):
    w = gn.layers.Parameter(gn.get_ops("cpu").asarray(w0.copy()), gn.get_ops("cpu"), name="w")
    opt = opt_factory([w])
    history = []
    for g in grads:
        w.grad = g.copy()
        opt.step()
        history.append(w.numpy().copy())
    return history


def _by_hand_adam(lr, b1, b2, eps, torch_eps=False, decay=0.0):
    w, m, v, out = W0.tolist(), [0.0, 0.0], [0.0, 0.0], []
    for t, g in enumerate(GRADS, start=1):
        for i in range(2):
            w[i] *= 1.0 - lr * decay
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] ** 2
            if torch_eps:  # PyTorch: eps added to the bias-corrected root
                w[i] -= lr * (m[i] / (1 - b1**t)) / (math.sqrt(v[i] / (1 - b2**t)) + eps)
            else:  # Keras and scikit-learn: alpha_t with eps outside the correction
                alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
                w[i] -= alpha * m[i] / (math.sqrt(v[i]) + eps)
        out.append(list(w))
    return out


def test_adam_matches_hand_computation():
    got = _run(lambda p: gn.optimizers.Adam(0.1, params=p))
    np.testing.assert_allclose(got, _by_hand_adam(0.1, 0.9, 0.999, 1e-7), rtol=1e-12)
    # a pasted golden value, so a change of the formula cannot hide in both places
    np.testing.assert_allclose(got[0], [0.9, -1.9], rtol=1e-6)


def test_torch_adam_and_adamw_match_hand_computation():
    got = _run(lambda p: gn.optim.Adam(p, lr=0.05, eps=1e-3))
    np.testing.assert_allclose(
        got, _by_hand_adam(0.05, 0.9, 0.999, 1e-3, torch_eps=True), rtol=1e-12
    )
    got = _run(lambda p: gn.optim.AdamW(p, lr=0.05, weight_decay=0.1))
    expect = _by_hand_adam(0.05, 0.9, 0.999, 1e-8, torch_eps=True, decay=0.1)
    np.testing.assert_allclose(got, expect, rtol=1e-12)


def test_keras_adamw_decouples_weight_decay():
    got = _run(lambda p: gn.optimizers.AdamW(0.1, weight_decay=0.5, params=p))
    np.testing.assert_allclose(got, _by_hand_adam(0.1, 0.9, 0.999, 1e-7, decay=0.5), rtol=1e-12)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_matches_hand_computation(nesterov):
    lr, mom = 0.1, 0.9
    w, v, expect = W0.tolist(), [0.0, 0.0], []
    for g in GRADS:
        for i in range(2):
            v[i] = mom * v[i] - lr * g[i]
            w[i] += mom * v[i] - lr * g[i] if nesterov else v[i]
        expect.append(list(w))
    got = _run(lambda p: gn.optimizers.SGD(lr, momentum=mom, nesterov=nesterov, params=p))
    np.testing.assert_allclose(got, expect, rtol=1e-12)
    if not nesterov:  # golden: v1 = -0.05, 0.1 -> w1 = 0.95, -1.9
        np.testing.assert_allclose(got[0], [0.95, -1.9], rtol=1e-12)


def test_plain_sgd_and_torch_sgd_with_l2():
    got = _run(lambda p: gn.optimizers.SGD(0.5, params=p))
    np.testing.assert_allclose(got[0], [0.75, -1.5], rtol=1e-12)
    got = _run(lambda p: gn.optim.SGD(p, lr=0.5, weight_decay=0.1))
    # PyTorch: g + wd * w = [0.6, -1.2] -> w = [0.7, -1.4]
    np.testing.assert_allclose(got[0], [0.7, -1.4], rtol=1e-12)


def test_rmsprop_matches_hand_computation():
    lr, rho, eps, mom = 0.01, 0.9, 1e-7, 0.5
    w, a, m, expect = W0.tolist(), [0.0, 0.0], [0.0, 0.0], []
    for g in GRADS:
        for i in range(2):
            a[i] = rho * a[i] + (1 - rho) * g[i] ** 2
            m[i] = mom * m[i] + lr * g[i] / math.sqrt(a[i] + eps)
            w[i] -= m[i]
        expect.append(list(w))
    got = _run(lambda p: gn.optimizers.RMSprop(lr, rho=rho, momentum=mom, params=p))
    np.testing.assert_allclose(got, expect, rtol=1e-12)


def test_centered_rmsprop_matches_hand_computation():
    lr, rho, eps = 0.01, 0.9, 1e-7
    w, a, mg, expect = W0.tolist(), [0.0, 0.0], [0.0, 0.0], []
    for g in GRADS:
        for i in range(2):
            a[i] = rho * a[i] + (1 - rho) * g[i] ** 2
            mg[i] = rho * mg[i] + (1 - rho) * g[i]
            w[i] -= lr * g[i] / math.sqrt(a[i] + eps - mg[i] ** 2)
        expect.append(list(w))
    got = _run(lambda p: gn.optimizers.RMSprop(lr, rho=rho, centered=True, params=p))
    np.testing.assert_allclose(got, expect, rtol=1e-12)


def test_adagrad_matches_hand_computation():
    lr, eps = 0.1, 1e-7
    w, a, expect = W0.tolist(), [0.1, 0.1], []
    for g in GRADS:
        for i in range(2):
            a[i] += g[i] ** 2
            w[i] -= lr * g[i] / math.sqrt(a[i] + eps)
        expect.append(list(w))
    got = _run(lambda p: gn.optimizers.Adagrad(lr, params=p))
    np.testing.assert_allclose(got, expect, rtol=1e-12)


def test_clipping():
    got = _run(lambda p: gn.optimizers.SGD(1.0, clipvalue=0.4, params=p), grads=[GRADS[0]])
    np.testing.assert_allclose(got[0], W0 - np.clip(GRADS[0], -0.4, 0.4))
    got = _run(lambda p: gn.optimizers.SGD(1.0, clipnorm=0.5, params=p), grads=[GRADS[1]])
    g = GRADS[1] * 0.5 / np.linalg.norm(GRADS[1])
    np.testing.assert_allclose(got[0], W0 - g)
    # global norm over two parameters
    ops = gn.get_ops("cpu")
    a = gn.layers.Parameter(ops.asarray(np.zeros(2)), ops, name="a")
    b = gn.layers.Parameter(ops.asarray(np.zeros(1)), ops, name="b")
    opt = gn.optimizers.SGD(1.0, global_clipnorm=1.0, params=[a, b])
    a.grad, b.grad = np.array([3.0, 0.0]), np.array([4.0])
    opt.step()
    np.testing.assert_allclose(np.concatenate([a.numpy(), b.numpy()]), [-0.6, 0.0, -0.8])


def test_parameters_without_gradient_are_skipped():
    ops = gn.get_ops("cpu")
    a = gn.layers.Parameter(ops.asarray(np.ones(2)), ops, name="a")
    b = gn.layers.Parameter(ops.asarray(np.ones(2)), ops, name="b")
    opt = gn.optimizers.Adam(0.1, params=[a, b])
    a.grad = np.array([1.0, 1.0])
    opt.step()
    assert np.all(b.numpy() == 1.0) and np.all(a.numpy() < 1.0)


def test_schedules():
    s = gn.optimizers.schedules
    assert s.ExponentialDecay(0.1, 10, 0.5)(20) == pytest.approx(0.025)
    assert s.ExponentialDecay(0.1, 10, 0.5, staircase=True)(19) == pytest.approx(0.05)
    assert s.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1])(15) == 0.5
    c = s.CosineDecay(0.0, decay_steps=100, warmup_target=1.0, warmup_steps=10)
    assert c(5) == pytest.approx(0.5)
    assert c(10) == pytest.approx(1.0)
    assert c(60) == pytest.approx(0.5)
    assert c(110) == pytest.approx(0.0)
    assert s.InverseTimeDecay(1.0, 1, 1.0)(3) == pytest.approx(0.25)
    # a schedule is accepted wherever a learning rate is, and read at each step
    got = _run(lambda p: gn.optimizers.SGD(s.PiecewiseConstantDecay([0], [1.0, 0.0]), params=p))
    np.testing.assert_allclose(got[0], W0 - GRADS[0])
    np.testing.assert_allclose(got[2], got[0])


def _one():
    ops = gn.get_ops("cpu")
    return [gn.layers.Parameter(ops.asarray(np.ones(2)), ops, name="w")]


def test_keras_zero_grad_keeps_zeros_when_asked():
    (w,) = _one()
    opt = gn.optimizers.SGD(0.1, params=[w])
    w.grad = np.array([1.0, 2.0])
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(w.grad, [0.0, 0.0])
    opt.zero_grad()
    assert w.grad is None


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: gn.optimizers.Adam(-1.0), "learning_rate"),
        (lambda: gn.optimizers.SGD(0.1, momentum=1.5), "momentum"),
        (lambda: gn.optimizers.Adam(beta_1=1.0), "beta_1"),
        (lambda: gn.optimizers.get("adamx"), "adam, adamw, adagrad"),
        (lambda: gn.optimizers.SGD(clipnorm=-1), "clipnorm"),
        (lambda: gn.optimizers.SGD(clipnorm=1.0, global_clipnorm=1.0), "Only one of, clipnorm=1.0"),
        (lambda: gn.optim.Adam([]), "empty parameter list"),
        (lambda: gn.optim.SGD(_one(), lr=-0.1), "Invalid learning rate, -0.1"),
        (lambda: gn.optim.Adam(_one(), betas=(0.9, 1.0)), "beta parameter at index 1"),
    ],
)
def test_invalid_hyperparameters(make, words):
    with pytest.raises(InvalidParameterError) as info:
        make()
    assert all(w in str(info.value) for w in words.split(", "))
