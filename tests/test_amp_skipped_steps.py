"""A step skipped for a non-finite gradient is not a step: on the simulated device (where
the skip is decided on the device, with no host read) Adam's bias correction and
``iterations`` do not advance, as on the CPU path, in Keras 3's ``LossScaleOptimizer``
(whose inner optimizer is never called then) and in PyTorch (``GradScaler.step`` skips
``optimizer.step``)."""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn

W0 = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], "float32")
# gradients as the backward gives them (already scaled); step 3 and 6 overflow
GRADS = [np.full_like(W0, v) * np.linspace(0.5, 1.5, 6, dtype="float32").reshape(W0.shape)
         for v in (1.0, 2.0, np.inf, 3.0, -1.0, np.nan, 0.5, 2.0)]  # fmt: skip


def _gn_run(device, make_opt):
    """(weights, iterations, m, v) after each step of GRADS."""
    w = gn.nn.Parameter(gn.tensor(W0.copy(), device=device))
    opt = make_opt()
    opt.build([w])
    ops = w.ops
    out = []
    for G in GRADS:
        opt.zero_grad()
        w.grad = ops.asarray(G.copy())
        opt.step()
        st = opt.state_arrays()
        out.append((w.numpy().copy(), opt.iterations, st["m.0"].copy(), st["v.0"].copy()))
    return out, ops


def _lso(amsgrad=False):
    return gn.optimizers.LossScaleOptimizer(gn.optimizers.Adam(0.1, amsgrad=amsgrad),
                                            initial_scale=4.0, dynamic_growth_steps=2)  # fmt: skip


@pytest.mark.parametrize("amsgrad", [False, True])
def test_a_skipped_step_leaves_adam_as_the_cpu_path_on_the_device(amsgrad):
    cpu, _ = _gn_run("cpu", lambda: _lso(amsgrad))
    sim, _ = _gn_run("sim", lambda: _lso(amsgrad))
    assert [it for _, it, _, _ in sim] == [it for _, it, _, _ in cpu] == [1, 2, 2, 3, 4, 4, 5, 6]
    for (wc, _, mc, vc), (ws, _, ms, vs) in zip(cpu, sim, strict=True):
        # the device forms the bias corrections in float32 (no float64 there), the CPU's
        # host kernel rounds in its own order: an ulp or two
        np.testing.assert_allclose(ws, wc, rtol=2e-6, atol=1e-7)
        np.testing.assert_allclose(ms, mc, rtol=3e-7)
        np.testing.assert_allclose(vs, vc, rtol=3e-7)


def test_a_skipped_step_is_counted_on_the_device_without_a_host_read():
    w = gn.nn.Parameter(gn.tensor(W0.copy(), device="sim"))
    opt = _lso()
    opt.build([w])
    ops = w.ops
    before = ops.host_syncs
    for G in GRADS:
        opt.zero_grad()
        w.grad = ops.asarray(G.copy())
        opt.step()
    assert ops.host_syncs == before  # the skips, the scale and Adam's step stay there
    assert opt.iterations == 6 and ops.host_syncs == before + 1
    opt.iterations = 6  # set by a user or a checkpoint: steps taken, nothing left to read
    assert opt.iterations == 6 and ops.host_syncs == before + 1


@pytest.mark.slow  # importing keras takes seconds where no other test did yet
def test_weights_state_and_iterations_match_keras_loss_scale_optimizer():
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("keras runs on another backend in this process")
    import torch

    torch.set_num_threads(1)
    kv = keras.Variable(W0.copy())
    kopt = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.1), initial_scale=4.0,
                                               dynamic_growth_steps=2)  # fmt: skip
    kopt.build([kv])
    inner = kopt.inner_optimizer
    sim, _ = _gn_run("sim", _lso)
    for G, (w, it, m, v) in zip(GRADS, sim, strict=True):
        kopt.apply([keras.ops.convert_to_tensor(G)], [kv])
        assert it == int(_val(inner.iterations)) == int(_val(kopt.iterations))
        # Keras forms 1 - beta^t in float32 (~1e-5 relative at t = 1); counting a skipped
        # step would move lr_t by ~10% and the weights by ~1e-2 (steps are ~0.1 here)
        np.testing.assert_allclose(w, _val(kv), rtol=1e-5, atol=5e-6)
        np.testing.assert_allclose(m, _val(inner._momentums[0]).ravel(), rtol=1e-6)
        np.testing.assert_allclose(v, _val(inner._velocities[0]).ravel(), rtol=1e-6)


def _val(variable):
    return variable.value.detach().cpu().numpy()  # a keras Variable on the torch backend


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("device", ["cpu", "sim"])
def test_grad_scaler_skips_leave_adam_as_torch(device, amsgrad):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    tw = torch.nn.Parameter(torch.tensor(W0.copy()))
    topt = torch.optim.Adam([tw], lr=0.1, amsgrad=amsgrad)
    tscaler = torch.amp.GradScaler("cpu", init_scale=4.0, growth_interval=2)
    gw = gn.nn.Parameter(gn.tensor(W0.copy(), device=device))
    gopt = gn.optim.Adam([gw], lr=0.1, amsgrad=amsgrad)
    gscaler = gn.amp.GradScaler(init_scale=4.0, growth_interval=2)
    ops = gw.ops
    for G in GRADS:
        tscaler.scale(torch.tensor(1.0))
        gscaler.scale(gn.tensor(1.0, device=device))
        topt.zero_grad()
        gopt.zero_grad()
        tw.grad = torch.tensor(G.copy())
        gw.grad = ops.asarray(G.copy())
        tscaler.step(topt)
        gscaler.step(gopt)
        tscaler.update()
        gscaler.update()
        assert gscaler.get_scale() == tscaler.get_scale()
        np.testing.assert_allclose(gw.detach().numpy(), tw.detach().numpy(), rtol=2e-6,
                                   atol=1e-7)  # fmt: skip
        tstate, gstate = topt.state_dict()["state"][0], gopt.state_dict()["state"][0]
        assert float(gstate["step"]) == float(tstate["step"])
        np.testing.assert_allclose(gstate["exp_avg_sq"], tstate["exp_avg_sq"].numpy(), rtol=1e-6)
