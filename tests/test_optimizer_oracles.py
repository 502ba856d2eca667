"""gn.optim against torch.optim and gn.optimizers against keras.optimizers
(KERAS_BACKEND=torch): the same starting weights, the same gradient sequence,
10 steps, compared after every step."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import gpunet as gn

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

SHAPES = [(3, 4), (4,), (2, 3)]
STEPS = 10
TOL = {"float64": {"rtol": 1e-12, "atol": 1e-14}, "float32": {"rtol": 1e-5, "atol": 1e-5}}
# Keras forms a few scalars in float32 (its floatx) even for float64 variables, and
# rounds some products in another order: the hyperparameters below are exact in
# float32, and float64 results agree to ~1e-11 rather than to the last bit.
KERAS_TOL = {**TOL, "float64": {"rtol": 1e-10, "atol": 1e-12}}
# ... and its clipping takes max(norm, clipnorm) in float32 (a Python number beside a
# float64 tensor gives float32 there), so clipped float64 steps agree to ~1e-9
CLIP_TOL = {**TOL, "float64": {"rtol": 1e-7, "atol": 1e-8}}


def _data(seed=0, scale=1.0, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    W0 = [rng.standard_normal(s) for s in shapes]
    grads = [[scale * rng.standard_normal(s) for s in shapes] for _ in range(STEPS)]
    return W0, grads


def _gn_params(W0, dtypes):
    ops = gn.get_ops("cpu")
    return [
        gn.layers.Parameter(ops.asarray(w.astype(dt)), ops, name=f"w{i}")
        for i, (w, dt) in enumerate(zip(W0, dtypes, strict=True))
    ]


def _torch_params(W0, dtypes):
    return [
        torch.nn.Parameter(torch.tensor(w.astype(dt))) for w, dt in zip(W0, dtypes, strict=True)
    ]


def _assert_close(got, want, dtype, msg):
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_allclose(
            np.asarray(a), np.asarray(b), err_msg=f"{msg} [{i}]", **TOL[dtype]
        )


def _torch_step(opt, params, grads, skip=()):
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        p.grad = None if i in skip else torch.tensor(g.astype(p.detach().numpy().dtype))
    opt.step()


def _gn_step(opt, params, grads, skip=()):
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        p.grad = None if i in skip else g.astype(p.numpy().dtype)
    opt.step()


# -- gn.optim vs torch.optim ----------------------------------------------------------------
TORCH_CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3}),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "weight_decay": 0.1}),
    ("Adam", {}),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-3, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("AdamW", {}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.3, "eps": 1e-4, "amsgrad": True}),
    ("RMSprop", {}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-3, "momentum": 0.5}),
    ("RMSprop", {"centered": True, "eps": 1e-4}),
    ("RMSprop", {"centered": True, "momentum": 0.7, "weight_decay": 0.05}),
    ("Adagrad", {}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.1, "initial_accumulator_value": 0.2, "eps": 1e-3}),
    ("Adagrad", {"weight_decay": 0.1}),
    ("Adadelta", {}),
    ("Adadelta", {"lr": 0.5, "rho": 0.8, "eps": 1e-4, "weight_decay": 0.1}),
    ("Adamax", {}),
    ("Adamax", {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-3, "weight_decay": 0.1}),
    ("NAdam", {}),
    ("NAdam", {"lr": 0.01, "betas": (0.8, 0.99), "momentum_decay": 0.05, "weight_decay": 0.1}),
    ("NAdam", {"lr": 0.01, "weight_decay": 0.2, "decoupled_weight_decay": True}),
    ("RAdam", {}),  # 10 steps: the plain-momentum start (rho_t <= 5), then rectified
    ("RAdam", {"lr": 0.01, "betas": (0.8, 0.9), "eps": 1e-4, "weight_decay": 0.1}),
    ("RAdam", {"lr": 0.01, "weight_decay": 0.2, "decoupled_weight_decay": True}),
]


def _compare_torch(name, kwargs, dtype, W0, grads, *, skip=None, groups=None, lr_at=None):
    dts = [dtype] * len(W0)
    P, Q = _gn_params(W0, dts), _torch_params(W0, dts)
    mine = getattr(gn.optim, name)(P if groups is None else groups(P), **kwargs)
    ref = getattr(torch.optim, name)(Q if groups is None else groups(Q), **kwargs)
    for t, gs in enumerate(grads):
        if lr_at is not None and t in lr_at:  # as a scheduler or a tutorial does
            for i, lr in lr_at[t].items():
                mine.param_groups[i]["lr"] = ref.param_groups[i]["lr"] = lr
        s = () if skip is None else skip(t)
        _gn_step(mine, P, gs, s)
        _torch_step(ref, Q, gs, s)
        _assert_close([p.numpy() for p in P], [q.detach() for q in Q], dtype, f"{name} step {t}")
    return mine, ref, P, Q


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name, kwargs", TORCH_CASES, ids=lambda v: str(v))
def test_torch_optimizers_match_torch_step_by_step(name, kwargs, dtype):
    W0, grads = _data(1)
    _compare_torch(name, kwargs, dtype, W0, grads)


@pytest.mark.parametrize("name", ["RMSprop", "Adagrad", "Adam"])
def test_eps_placement_matches_torch_with_tiny_gradients(name):
    # RMSprop with eps inside the root made the first step ~100x PyTorch's here
    W0, grads = _data(2, scale=1e-6)
    _, _, P, _ = _compare_torch(name, {"lr": 0.01}, "float64", W0, grads[:1])
    step = np.abs(P[0].numpy() - W0[0]).max()
    assert step > 5e-3  # eps inside the root would move RMSprop's and Adagrad's far less


PARAM_GROUPS = [
    ("SGD", {"lr": 0.1, "momentum": 0.9}, [{"lr": 0.5, "momentum": 0.0}, {"weight_decay": 0.2}]),
    ("Adam", {"lr": 0.01}, [{"lr": 0.1, "betas": (0.5, 0.9)}, {"weight_decay": 0.1}]),
    ("AdamW", {"lr": 0.01}, [{"weight_decay": 0.0}, {"lr": 0.05, "eps": 1e-3}]),
    ("RMSprop", {}, [{"momentum": 0.9}, {"centered": True, "lr": 0.001}]),
    ("Adagrad", {}, [{"lr_decay": 0.5}, {"lr": 0.5}]),
]


@pytest.mark.parametrize("name, kwargs, overrides", PARAM_GROUPS, ids=lambda v: str(v))
def test_parameter_groups_and_lr_changed_mid_run_match_torch(name, kwargs, overrides):
    W0, grads = _data(3)

    def groups(ps):
        return [{"params": ps[:2], **overrides[0]}, {"params": ps[2:], **overrides[1]}]

    lr_at = {5: {0: 0.02, 1: 0.3}, 8: {0: 0.002}}
    mine, ref, *_ = _compare_torch(name, kwargs, "float64", W0, grads, groups=groups, lr_at=lr_at)
    for g, h in zip(mine.param_groups, ref.param_groups, strict=True):
        assert {k: g[k] for k in g if k != "params"} == {k: h[k] for k in g if k != "params"}


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "Adagrad"])
def test_parameters_without_a_gradient_keep_their_own_step_count(name):
    W0, grads = _data(4)
    kwargs = {"lr": 0.05, "momentum": 0.9, "dampening": 0.5} if name == "SGD" else {}
    mine, ref, *_ = _compare_torch(
        name, kwargs, "float64", W0, grads, skip=lambda t: {1} if t in (2, 3, 7) else ()
    )
    if name != "SGD":
        ref_p = [p for g in ref.param_groups for p in g["params"]][1]
        assert float(mine.state_dict()["state"][1]["step"]) == float(ref.state[ref_p]["step"])


@pytest.mark.parametrize("name, kwargs", TORCH_CASES, ids=lambda v: str(v))
def test_state_dict_matches_torch_and_resumes_exactly(name, kwargs):
    W0, grads = _data(5)
    mine, ref, P, Q = _compare_torch(name, kwargs, "float64", W0, grads[:5])
    sd, rsd = mine.state_dict(), ref.state_dict()
    assert sorted(sd["state"]) == sorted(rsd["state"])
    for i, st in sd["state"].items():
        assert sorted(st) == sorted(rsd["state"][i]), (i, sorted(st))
        for k, v in st.items():
            w = rsd["state"][i][k]
            if v is None or w is None:
                assert v is None and w is None
            else:
                np.testing.assert_allclose(v, np.asarray(w), rtol=1e-12, atol=1e-15, err_msg=k)
    for g, h in zip(sd["param_groups"], rsd["param_groups"], strict=True):
        assert all(g[k] == h[k] for k in g), (g, h)
    # a fresh optimizer that loads our dict, and one that loads PyTorch's, go on as torch does
    for source in (sd, rsd):
        P2 = _gn_params([p.numpy() for p in P], ["float64"] * len(P))
        resumed = getattr(gn.optim, name)(P2, **kwargs)
        resumed.load_state_dict(source)
        Q2 = _torch_params([q.detach().numpy() for q in Q], ["float64"] * len(Q))
        ref2 = getattr(torch.optim, name)(Q2, **kwargs)
        ref2.load_state_dict(rsd)
        for gs in grads[5:]:
            _gn_step(resumed, P2, gs)
            _torch_step(ref2, Q2, gs)
        _assert_close([p.numpy() for p in P2], [q.detach() for q in Q2], "float64", name)


def test_load_state_dict_refuses_a_different_layout():
    W0, _ = _data(6)
    opt = gn.optim.Adam(_gn_params(W0, ["float64"] * 3))
    other = gn.optim.Adam(_gn_params(W0[:2], ["float64"] * 2))
    with pytest.raises(gn.errors.InvalidParameterError, match="doesn't match the size"):
        opt.load_state_dict(other.state_dict())


def test_zero_grad_set_to_none_or_zeros_as_torch():
    W0, grads = _data(7)
    P, Q = _gn_params(W0, ["float64"] * 3), _torch_params(W0, ["float64"] * 3)
    mine, ref = gn.optim.SGD(P, lr=0.1, momentum=0.9), torch.optim.SGD(Q, lr=0.1, momentum=0.9)
    _gn_step(mine, P, grads[0], skip={2})
    _torch_step(ref, Q, grads[0], skip={2})
    mine.zero_grad(set_to_none=False)
    ref.zero_grad(set_to_none=False)
    for p, q in zip(P, Q, strict=True):
        assert (p.grad is None) == (q.grad is None)
        if q.grad is not None:
            np.testing.assert_array_equal(p.grad, q.grad.numpy())
            assert not np.any(p.grad)
    # backward then accumulates into the zeros, and the step is the plain one
    for p, q, g in zip(P[:2], Q[:2], grads[1][:2], strict=True):
        p.accumulate_grad(g)
        q.grad += torch.tensor(g)
    mine.step()
    ref.step()
    _assert_close([p.numpy() for p in P], [q.detach() for q in Q], "float64", "after zeros")
    mine.zero_grad()
    ref.zero_grad()
    assert all(p.grad is None for p in P) and all(q.grad is None for q in Q)


def test_learning_rate_attribute_sets_every_group_and_checks_its_value():
    W0, _ = _data(8)
    P = _gn_params(W0, ["float64"] * 3)
    opt = gn.optim.SGD([{"params": P[:1]}, {"params": P[1:], "lr": 0.5}], lr=0.1)
    assert opt.learning_rate == 0.1
    opt.learning_rate = 0.01  # what ReduceLROnPlateau and LearningRateScheduler do
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.01]
    with pytest.raises(gn.errors.InvalidParameterError, match="-1"):
        opt.learning_rate = -1
    with pytest.raises(gn.errors.InvalidParameterError, match="more than one"):
        opt.add_param_group({"params": P[:1]})
    with pytest.raises(gn.errors.InvalidParameterError, match="Nesterov"):
        gn.optim.SGD(P, lr=0.1, nesterov=True)


def test_torch_sgd_runs_on_the_fused_host_kernel():
    W0, grads = _data(9)
    P = _gn_params(W0, ["float32"] * 3)
    if P[0].ops.host is None:
        from gpunet.backend import _host

        pytest.skip(f"host kernels unavailable: {_host.status()}")
    opt = gn.optim.SGD(P, lr=0.1, momentum=0.9, nesterov=True)
    assert len(opt.groups) == 1  # one flat buffer, so one fused call per step
    calls = []
    ops = P[0].ops
    orig = ops.host.sgd["f32"]
    ops.host.sgd["f32"] = lambda *a: calls.append(a) or orig(*a)
    try:
        _gn_step(opt, P, grads[0])
    finally:
        ops.host.sgd["f32"] = orig
    assert len(calls) == 1 and calls[0][3] == sum(int(np.prod(s)) for s in SHAPES)


# -- gn.optimizers vs keras.optimizers ------------------------------------------------------
os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported, as Keras requires
keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover - keras imported elsewhere first
    pytest.skip("keras was imported with another backend", allow_module_level=True)


def _kv(v):
    return v.value.detach().numpy()


LR = 0.0625  # exact in float32: Keras keeps the learning rate in a float32 variable
KERAS_CASES = [
    ("SGD", {}),
    ("SGD", {"momentum": 0.875}),
    ("SGD", {"momentum": 0.875, "nesterov": True, "weight_decay": 0.125}),
    ("Adam", {}),
    ("Adam", {"beta_1": 0.75, "epsilon": 2**-10, "clipnorm": 0.5}),
    ("AdamW", {"weight_decay": 2**-8}),
    ("AdamW", {"weight_decay": 0.25, "clipvalue": 0.375}),
    ("Adam", {"amsgrad": True, "beta_2": 0.875}),
    ("RMSprop", {}),
    ("RMSprop", {"rho": 0.75, "momentum": 0.5, "epsilon": 2**-10}),
    ("RMSprop", {"centered": True, "momentum": 0.75}),
    ("RMSprop", {"momentum": 0.5, "global_clipnorm": 1.0}),
    ("Adagrad", {}),
    ("Adagrad", {"initial_accumulator_value": 0.5, "weight_decay": 0.125}),
]


def _compare_keras(name, kwargs, dtypes, W0, grads, *, lr_at=None):
    P = _gn_params(W0, dtypes)
    V = [keras.Variable(w.astype(dt), dtype=dt) for w, dt in zip(W0, dtypes, strict=True)]
    kwargs = {"learning_rate": LR, **kwargs}  # defaults: test_keras_defaults_are_keras
    mine, ref = getattr(gn.optimizers, name)(**kwargs), getattr(keras.optimizers, name)(**kwargs)
    for t, gs in enumerate(grads):
        if lr_at is not None and t in lr_at:
            mine.learning_rate = ref.learning_rate = lr_at[t]
        gs = [g.astype(dt) for g, dt in zip(gs, dtypes, strict=True)]
        mine.apply_gradients(zip(gs, P, strict=True))
        ref.apply_gradients(zip([keras.ops.convert_to_tensor(g) for g in gs], V, strict=True))
        for i, (p, v) in enumerate(zip(P, V, strict=True)):
            np.testing.assert_allclose(
                p.numpy(), _kv(v), err_msg=f"{name} step {t} [{i}]",
                **(CLIP_TOL if {"clipnorm", "global_clipnorm"} & set(kwargs) else KERAS_TOL)[
                    dtypes[i]
                ],
            )  # fmt: skip
    assert mine.iterations == int(_kv(ref.iterations)) == len(grads)
    return mine, ref


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name, kwargs", KERAS_CASES, ids=lambda v: str(v))
def test_keras_optimizers_match_keras_step_by_step(name, kwargs, dtype):
    W0, grads = _data(10)
    _compare_keras(name, kwargs, [dtype] * 3, W0, grads)


@pytest.mark.parametrize(
    "clip", [{"global_clipnorm": 0.5}, {"clipnorm": 0.5}, {"clipvalue": 0.125}]
)
def test_clipping_over_mixed_dtypes_matches_keras(clip):
    # one global norm over every variable, float32 and float64 alike
    W0, grads = _data(11)
    _compare_keras("SGD", {"momentum": 0.5, **clip},
                   ["float64", "float32", "float64"], W0, grads)  # fmt: skip


def test_learning_rate_assigned_mid_run_matches_keras():
    W0, grads = _data(12)
    for name in ("SGD", "Adam", "RMSprop"):
        kw = {"momentum": 0.9} if name != "Adam" else {}
        _compare_keras(name, kw, ["float64"] * 3, W0, grads, lr_at={4: 0.125, 7: 0.015625})


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_keras_defaults_are_keras(name):
    mine, ref = getattr(gn.optimizers, name)(), getattr(keras.optimizers, name)()
    with warnings.catch_warnings():  # Keras' Variable.numpy() trips NumPy 2's copy warning
        warnings.simplefilter("ignore", DeprecationWarning)
        theirs = ref.get_config()
    ours = mine.get_config()
    shared = sorted(set(ours) & set(theirs) - {"learning_rate"})
    assert len(shared) >= 4, shared
    assert {k: ours[k] or None for k in shared} == {k: theirs[k] or None for k in shared}
    assert mine.learning_rate == pytest.approx(float(theirs["learning_rate"]), rel=1e-7)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_torch_defaults_are_torch(name):
    W0, _ = _data(14)
    mine = getattr(gn.optim, name)(_gn_params(W0, ["float64"] * 3))
    ref = getattr(torch.optim, name)(_torch_params(W0, ["float64"] * 3))
    assert mine.defaults == {k: ref.defaults[k] for k in mine.defaults}


def test_two_clipping_options_are_refused_as_keras_does():
    with pytest.raises(ValueError, match="Only one of"):
        keras.optimizers.SGD(clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(gn.errors.InvalidParameterError, match="Only one of"):
        gn.optimizers.SGD(clipnorm=1.0, clipvalue=1.0)


SCHEDULES = [
    ("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 3, "decay_rate": 0.5}),
    (
        "ExponentialDecay",
        {"initial_learning_rate": 0.1, "decay_steps": 3, "decay_rate": 0.5, "staircase": True},
    ),
    ("InverseTimeDecay", {"initial_learning_rate": 0.1, "decay_steps": 2, "decay_rate": 0.5}),
    (
        "InverseTimeDecay",
        {"initial_learning_rate": 0.1, "decay_steps": 2, "decay_rate": 0.5, "staircase": True},
    ),
    ("CosineDecay", {"initial_learning_rate": 0.1, "decay_steps": 7, "alpha": 0.1}),
    (
        "CosineDecay",
        {"initial_learning_rate": 0.0, "decay_steps": 6, "warmup_target": 0.2, "warmup_steps": 3},
    ),
    ("PiecewiseConstantDecay", {"boundaries": [2, 5], "values": [0.1, 0.05, 0.01]}),
]


@pytest.mark.parametrize("name, kwargs", SCHEDULES, ids=lambda v: str(v))
def test_schedules_match_keras_and_drive_the_steps_as_keras(name, kwargs):
    mine = getattr(gn.optimizers.schedules, name)(**kwargs)
    ref = getattr(keras.optimizers.schedules, name)(**kwargs)
    got = [mine(t) for t in range(15)]
    want = [float(ref(t)) for t in range(15)]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    W0, grads = _data(13)
    lr_m = getattr(gn.optimizers.schedules, name)(**kwargs)
    P = _gn_params(W0, ["float32"] * 3)
    V = [keras.Variable(w.astype("float32")) for w in W0]
    opt = gn.optimizers.SGD(learning_rate=lr_m, momentum=0.9)
    kopt = keras.optimizers.SGD(learning_rate=ref, momentum=0.9)
    for gs in grads:
        gs = [g.astype("float32") for g in gs]
        opt.apply_gradients(zip(gs, P, strict=True))
        kopt.apply_gradients(zip([keras.ops.convert_to_tensor(g) for g in gs], V, strict=True))
    _assert_close([p.numpy() for p in P], [_kv(v) for v in V], "float32", name)


def test_learning_rate_reads_and_assignments_as_keras():
    sched = {"initial_learning_rate": 0.5, "decay_steps": 2, "decay_rate": 0.5}
    mine = gn.optimizers.SGD(gn.optimizers.schedules.ExponentialDecay(**sched))
    ref = keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(**sched))
    assert mine.learning_rate == pytest.approx(float(ref.learning_rate))
    with pytest.raises(TypeError, match="not settable"):
        ref.learning_rate = 0.1
    with pytest.raises(TypeError, match="not settable"):
        mine.learning_rate = 0.1
    mine, ref = gn.optimizers.Adam(0.5), keras.optimizers.Adam(0.5)
    mine.learning_rate = ref.learning_rate = 0.25
    assert mine.learning_rate == float(ref.learning_rate) == 0.25


@pytest.mark.parametrize("name", ["Adamax", "NAdam", "RAdam"])
def test_adam_family_refuses_bad_hyperparameters_as_torch(name):
    P = _gn_params(*_data(8)[:1], ["float64"] * 3)
    for bad in ({"betas": (1.0, 0.9)}, {"betas": (0.9, -0.1)}, {"lr": -1.0}, {"eps": -1e-8}):
        with pytest.raises(gn.errors.InvalidParameterError, match="Invalid"):
            getattr(gn.optim, name)(P, **bad)
        with pytest.raises(ValueError, match="Invalid"):
            getattr(torch.optim, name)(_torch_params(_data(8)[0], ["float64"] * 3), **bad)
    if name == "NAdam":
        with pytest.raises(gn.errors.InvalidParameterError, match="momentum_decay"):
            gn.optim.NAdam(P, momentum_decay=-0.1)


def test_sgd_momentum_set_after_the_start_takes_effect_as_torch():
    """A momentum written into param_groups later (CyclicLR's cycle, a script) makes
    the buffer at that step from g, as PyTorch's; set back to 0 it stops being used."""
    W0, grads = _data(9)

    def lr_at(t):  # momentum on at step 3, off at 6, on again at 8 (the buffer kept)
        return {3: 0.9, 6: 0.0, 8: 0.5}.get(t)

    dts = ["float64"] * len(W0)
    P, Q = _gn_params(W0, dts), _torch_params(W0, dts)
    mine, ref = gn.optim.SGD(P, lr=0.1, dampening=0.3), torch.optim.SGD(Q, lr=0.1, dampening=0.3)
    for t, gs in enumerate(grads):
        if lr_at(t) is not None:
            mine.param_groups[0]["momentum"] = ref.param_groups[0]["momentum"] = lr_at(t)
        _gn_step(mine, P, gs)
        _torch_step(ref, Q, gs)
        _assert_close([p.numpy() for p in P], [q.detach() for q in Q], "float64", f"step {t}")


@pytest.mark.parametrize("name", ["NAdam", "RAdam"])
def test_per_group_decoupled_weight_decay_as_torch(name):
    W0, grads = _data(10)

    def groups(ps):
        return [{"params": ps[:2]}, {"params": ps[2:], "decoupled_weight_decay": True}]

    _compare_torch(name, {"lr": 0.05, "weight_decay": 0.5}, "float64", W0, grads, groups=groups)


def test_nadam_under_a_moving_beta1_matches_torch():
    """CyclicLR cycles Adam-family betas[0]: NAdam's momentum product takes each step's
    factor as it was, as PyTorch's per-parameter mu_product."""
    W0, grads = _data(11)
    dts = ["float64"] * len(W0)
    P, Q = _gn_params(W0, dts), _torch_params(W0, dts)
    mine, ref = gn.optim.NAdam(P, lr=0.05), torch.optim.NAdam(Q, lr=0.05)
    S, TS = gn.optim.lr_scheduler, torch.optim.lr_scheduler
    s1, s2 = (
        S.CyclicLR(mine, 0.01, 0.05, step_size_up=3),
        TS.CyclicLR(ref, 0.01, 0.05, step_size_up=3),
    )
    for t, gs in enumerate(grads):
        _gn_step(mine, P, gs)
        _torch_step(ref, Q, gs)
        s1.step()
        s2.step()
        _assert_close([p.numpy() for p in P], [q.detach() for q in Q], "float64", f"step {t}")


@pytest.mark.parametrize(
    "skips",
    [{0: (1,), 1: (1,), 2: (1,)},  # parameter 1 first steps at t = 3
     {0: (1,), 1: (0, 2)}],  # steps equal again at t = 2: two buffers new then, one not
    ids=["late start", "steps realigned"],
)  # fmt: skip
def test_sgd_momentum_set_late_with_parameters_at_different_steps(skips):
    """Each parameter's buffer copies g at its own first step with momentum on."""
    W0, grads = _data(12)
    dts = ["float64"] * len(W0)
    P, Q = _gn_params(W0, dts), _torch_params(W0, dts)
    mine = gn.optim.SGD(P, lr=0.1, dampening=0.5)
    ref = torch.optim.SGD(Q, lr=0.1, dampening=0.5)
    for t, gs in enumerate(grads):
        if t == 1:
            mine.param_groups[0]["momentum"] = ref.param_groups[0]["momentum"] = 0.9
        skip = skips.get(t, ())
        _gn_step(mine, P, gs, skip)
        _torch_step(ref, Q, gs, skip)
        _assert_close([p.numpy() for p in P], [q.detach() for q in Q], "float64", f"step {t}")
