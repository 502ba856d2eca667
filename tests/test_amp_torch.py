"""``gn.amp.GradScaler`` against ``torch.amp.GradScaler`` on the CPU: the same gradient
sequences, infinities and NaNs included, give the same scales, growth trackers,
skipped steps and weights; and ``gn.autocast`` follows autocast's op lists."""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

# gradients as the backward gives them (already scaled); inf/NaN force skips
ROWS = [[1.0, 2.0], [np.inf, 1.0], [0.5, -0.5], [3.0, 1.0], [np.nan, 0.0], [1.0, 1.0],
        [2.0, 2.0], [1.0, -1.0], [-np.inf, 2.0], [0.25, 0.25], [1.0, 3.0]]  # fmt: skip


@pytest.mark.parametrize("unscale_first", [False, True])
def test_scales_trackers_skips_and_weights_match_torch(unscale_first):
    kw = {"init_scale": 3.0, "growth_factor": 2.0, "backoff_factor": 0.25, "growth_interval": 3}
    tw = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    topt = torch.optim.SGD([tw], lr=0.1)
    tscaler = torch.amp.GradScaler("cpu", **kw)
    gw = gn.nn.Parameter(gn.tensor([1.0, -1.0]))
    gopt = gn.optim.SGD([gw], lr=0.1)
    gscaler = gn.amp.GradScaler("cpu", **kw)
    for row in ROWS:
        g = np.array(row, "float32")
        tscaler.scale(torch.tensor(1.0))  # creates the scale on first use, as a loss would
        gscaler.scale(gn.tensor(1.0))
        topt.zero_grad()
        gopt.zero_grad()
        tw.grad = torch.tensor(g)
        gw.grad = g.copy()
        if unscale_first:
            tscaler.unscale_(topt)
            gscaler.unscale_(gopt)
            np.testing.assert_array_equal(gw.grad.numpy(), tw.grad.numpy())
        tscaler.step(topt)
        gscaler.step(gopt)
        tscaler.update()
        gscaler.update()
        assert gscaler.get_scale() == tscaler.get_scale()
        assert gscaler.state_dict() == tscaler.state_dict()
        # skipped steps leave both untouched; a taken one differs by torch's fused
        # multiply-add in SGD at most (1 ulp), not by the scaler
        np.testing.assert_allclose(gw.detach().numpy(), tw.detach().numpy(), rtol=3e-7)


def test_errors_and_state_dict_round_trip_as_torch():
    gw = gn.nn.Parameter(gn.tensor([1.0]))
    opt = gn.optim.SGD([gw], lr=0.1)
    scaler = gn.amp.GradScaler()
    with pytest.raises(AssertionError, match="_scale is None"):
        scaler.step(opt)
    scaler.scale(gn.tensor(1.0))
    gw.grad = np.ones(1, "float32")
    scaler.unscale_(opt)
    with pytest.raises(RuntimeError, match="already been called on this optimizer"):
        scaler.unscale_(opt)
    scaler.step(opt)
    with pytest.raises(RuntimeError, match="step\\(\\) has already been called"):
        scaler.step(opt)
    scaler.update()
    other = gn.amp.GradScaler(init_scale=8.0)
    other.load_state_dict(scaler.state_dict())
    t = torch.amp.GradScaler("cpu")
    t.load_state_dict(scaler.state_dict())
    assert other.state_dict() == t.state_dict() == scaler.state_dict()
    with pytest.raises(RuntimeError, match="empty"):
        other.load_state_dict({})


def test_autocast_follows_the_op_lists_and_is_per_thread():
    import threading

    lin, sm = gn.nn.Linear(3, 4), gn.nn.Softmax(dim=-1)
    relu = gn.nn.ReLU()
    x = gn.tensor(np.ones((2, 3), "float32"))
    with gn.autocast("cpu", dtype=gn.float16):
        h = lin(x)
        seen = []
        t = threading.Thread(target=lambda: seen.append(lin(x).dtype))
        t.start()
        t.join()
        assert h.dtype == np.float16 and relu(h).dtype == np.float16
        assert sm(h).dtype == np.float16  # CPU autocast: softmax follows its input
        with gn.autocast("cpu", enabled=False):
            assert lin(x).dtype == np.float32
    with gn.autocast("cuda"):  # float16; CUDA's float32 list has softmax
        assert sm(lin(x)).dtype == np.float32
    assert seen == [np.float32] and lin(x).dtype == np.float32
    with torch.autocast("cpu", dtype=torch.float16):  # the same answers from torch
        th = torch.nn.Linear(3, 4)(torch.ones(2, 3))
        assert th.dtype == torch.float16 and torch.relu(th).dtype == torch.float16
        assert torch.softmax(th, -1).dtype == torch.float16
        # losses are on both lists' float32 side
        assert torch.nn.CrossEntropyLoss()(th, torch.tensor([0, 1])).dtype == torch.float32
    with gn.autocast("cpu", dtype=gn.float16):
        assert gn.nn.CrossEntropyLoss()(lin(x), gn.tensor(np.array([0, 1]))).dtype == np.float32
    with pytest.raises(gn.errors.InvalidParameterError, match="int8"):
        gn.autocast("cpu", dtype="int8")


def test_autocast_training_loop_with_the_scaler_learns():
    gn.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4)).astype("float32")
    y = (X @ np.array([1.0, -2.0, 0.5, 1.0], "float32"))[:, None]
    model = gn.nn.Sequential(gn.nn.Linear(4, 16), gn.nn.ReLU(), gn.nn.Linear(16, 1))
    opt = gn.optim.Adam(model.parameters(), lr=0.01)
    scaler = gn.amp.GradScaler(init_scale=2.0**16)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        with gn.autocast("cpu", dtype=gn.float16):
            out = model(gn.tensor(X))
        loss = ((out.float() - gn.tensor(y)) ** 2).mean()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(float(loss.item()))
    assert losses[-1] < 0.1 * losses[0]
    assert all(p.dtype == np.float32 for p in model.parameters())


@pytest.mark.slow  # importing keras takes seconds where no other test did yet
def test_loss_scale_optimizer_matches_keras():
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("keras runs on another backend in this process")
    kv = keras.Variable(np.array([1.0, -1.0], "float32"))
    kopt = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1), initial_scale=8.0,
                                               dynamic_growth_steps=3)  # fmt: skip
    kopt.build([kv])
    gw = gn.nn.Parameter(gn.tensor([1.0, -1.0]))
    gopt = gn.optimizers.LossScaleOptimizer(gn.optimizers.SGD(0.1), initial_scale=8.0,
                                            dynamic_growth_steps=3)  # fmt: skip
    gopt.build([gw])
    for row in ROWS:
        g = np.array(row, "float32")
        kopt.apply([keras.ops.convert_to_tensor(g)], [kv])
        gw.grad = g.copy()
        gopt.step()
        assert gopt.dynamic_scale == float(_val(kopt.dynamic_scale))
        assert gopt.step_counter == int(_val(kopt.step_counter))
        assert gopt.iterations == int(_val(kopt.iterations))
        np.testing.assert_allclose(gw.detach().numpy(), _val(kv), rtol=3e-7)


def _val(variable):
    return variable.value.detach().cpu().numpy()  # a keras Variable on the torch backend


@pytest.mark.slow  # importing keras takes seconds where no other test did yet
def test_layer_policy_attributes_match_keras():
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    for policy in ("mixed_float16", "mixed_bfloat16", "float32"):
        k, g = keras.layers.Dense(2, dtype=policy), gn.layers.Dense(2, dtype=policy)
        for attr in ("compute_dtype", "variable_dtype", "dtype"):
            assert getattr(g, attr) == getattr(k, attr), (policy, attr)
        assert g.dtype_policy.name == k.dtype_policy.name
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        kopt = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        kopt.compile(optimizer="adam", loss="mse")
        gn.mixed_precision.set_global_policy("mixed_float16")
        gm = gn.Sequential([gn.layers.Dense(1, input_shape=(2,))])
        gm.compile(optimizer="adam", loss="mse")
        assert type(gm.optimizer).__name__ == type(kopt.optimizer).__name__
        assert gm.optimizer.initial_scale == kopt.optimizer.initial_scale == 2.0**15
        assert gm.optimizer.dynamic_growth_steps == kopt.optimizer.dynamic_growth_steps == 2000
    finally:
        keras.mixed_precision.set_global_policy("float32")
        gn.mixed_precision.set_global_policy(None)


@pytest.mark.parametrize("ac_dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("in_dtype", ["float16", "float32"])
def test_batch_norm_under_autocast_answers_in_its_input_dtype_as_torch(ac_dtype, in_dtype):
    # batch_norm is on neither of autocast's lists: a half input gives a half output,
    # the statistics and running averages stay float32 (torch 2.13, CPU autocast)
    rng = np.random.default_rng(5)
    X = (rng.standard_normal((4, 3, 5, 5)) * 2 + 1).astype(in_dtype)
    tbn = torch.nn.BatchNorm2d(3)
    gbn = gn.nn.BatchNorm2d(3)
    with torch.autocast("cpu", dtype=getattr(torch, ac_dtype)):
        ty = tbn(torch.tensor(X))
    with gn.autocast("cpu", dtype=ac_dtype):
        gy = gbn(gn.tensor(X))
    assert str(ty.dtype) == f"torch.{in_dtype}" and gy.dtype == np.dtype(in_dtype)
    assert gbn.moving_mean.dtype == np.float32 and tbn.running_mean.dtype == torch.float32
    tol = 2e-3 if in_dtype == "float16" else 1e-5
    np.testing.assert_allclose(gy.detach().numpy().astype("float32"), ty.detach().float().numpy(),
                               atol=tol)  # fmt: skip
    np.testing.assert_allclose(gbn.moving_mean.numpy(), tbn.running_mean.numpy(), rtol=1e-5)
    np.testing.assert_allclose(gbn.moving_variance.numpy(), tbn.running_var.numpy(), rtol=1e-4)
    with gn.autocast("cuda"):  # CUDA autocast: batch norm on no list either
        assert gbn(gn.tensor(X)).dtype == np.dtype(in_dtype)
        assert gn.nn.LayerNorm(5)(gn.tensor(X)).dtype == np.float32  # its float32 list
    with gn.autocast("cpu", dtype=ac_dtype):  # CPU autocast: layer norm follows too
        assert gn.nn.LayerNorm(5)(gn.tensor(X)).dtype == np.dtype(in_dtype)
