"""PolynomialLR, MultiplicativeLR, CyclicLR and ChainedScheduler against
torch.optim.lr_scheduler's, stepped side by side: every group's rate, and CyclicLR's
momentum (SGD's ``momentum``, Adam's ``beta1``), at every step."""

from __future__ import annotations

import pickle
import warnings
from typing import Any

import numpy as np
import pytest

import gpunet as gn

torch = pytest.importorskip("torch")
GS, TS = gn.optim.lr_scheduler, torch.optim.lr_scheduler


def _optimizers(kind: str, groups: int = 1) -> tuple[Any, Any]:
    """The same optimizer in gpunet and torch, over ``groups`` parameter groups."""

    def build(lib: Any, param: Any) -> Any:
        ps = [param() for _ in range(groups)]
        spec = [{"params": [p], "lr": 0.1 * (i + 1)} for i, p in enumerate(ps)]
        if kind == "adam":
            return lib.optim.Adam(spec, lr=0.1, betas=(0.9, 0.99))
        if kind == "adagrad":
            return lib.optim.Adagrad(spec, lr=0.1)
        return lib.optim.SGD(spec, lr=0.1, momentum=0.9)

    return (build(gn, lambda: gn.nn.Parameter(gn.zeros(2))),
            build(torch, lambda: torch.nn.Parameter(torch.zeros(2))))  # fmt: skip


def _state(opt: Any) -> list[float]:
    out = []
    for g in opt.param_groups:
        out.append(float(g["lr"]))
        if "betas" in g:
            out.append(float(g["betas"][0]))
        elif "momentum" in g:
            out.append(float(g["momentum"]))
    return out


def _trace(opt: Any, sched: Any, steps: int) -> np.ndarray:
    """Rates and momenta at each step (and, in a chain, each scheduler's last rates)."""

    def row() -> list[float]:
        subs = getattr(sched, "_schedulers", [])
        return _state(opt) + [float(lr) for s in subs for lr in s.get_last_lr()]

    out = [row()]
    with warnings.catch_warnings():  # torch's notes on step order and step(epoch)
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(steps):
            opt.step()
            sched.step()
            out.append(row())
            assert sched.get_last_lr() == [g["lr"] for g in opt.param_groups]
    return np.array(out)


class Halving:
    """A callable object: its attributes travel in the state_dict, as in torch."""

    def __init__(self) -> None:
        self.base = 0.5

    def __call__(self, x: float) -> float:
        return float(self.base**x)


def _cyclic(**kw: Any) -> Any:
    return lambda m, o: m.CyclicLR(o, base_lr=0.01, max_lr=0.2, **kw)


CASES: dict[str, tuple[Any, int, str, int]] = {
    "PolynomialLR": (lambda m, o: m.PolynomialLR(o), 9, "sgd", 1),
    "PolynomialLR(power 2, 2 groups)": (
        lambda m, o: m.PolynomialLR(o, total_iters=7, power=2.0),
        12,
        "sgd",
        2,
    ),
    "PolynomialLR(power 0.5)": (
        lambda m, o: m.PolynomialLR(o, total_iters=4, power=0.5),
        8,
        "adam",
        1,
    ),
    "MultiplicativeLR": (lambda m, o: m.MultiplicativeLR(o, lambda e: 0.9), 10, "sgd", 1),
    "MultiplicativeLR(per group)": (
        lambda m, o: m.MultiplicativeLR(o, [lambda e: 0.95, lambda e: 1.0 - 0.02 * e]),
        12,
        "adam",
        2,
    ),
    "CyclicLR(triangular)": (_cyclic(step_size_up=3, step_size_down=5), 30, "sgd", 1),
    "CyclicLR(triangular2, adam)": (_cyclic(step_size_up=4, mode="triangular2"), 40, "adam", 1),
    "CyclicLR(exp_range)": (_cyclic(step_size_up=3, mode="exp_range", gamma=0.97), 30, "sgd", 1),
    "CyclicLR(scale_fn, iterations)": (
        _cyclic(
            step_size_up=2,
            step_size_down=3,
            scale_fn=lambda x: 1 / (1 + 0.1 * x),
            scale_mode="iterations",
        ),
        25,
        "sgd",
        1,
    ),
    "CyclicLR(scale_fn object, cycle)": (
        lambda m, o: m.CyclicLR(o, 0.01, 0.2, step_size_up=3, scale_fn=Halving()),
        24,
        "sgd",
        1,
    ),
    "CyclicLR(scale_fn, bad mode ignored)": (
        _cyclic(step_size_up=2, mode="nope", scale_fn=lambda x: 0.8**x),
        16,
        "sgd",
        1,
    ),
    "CyclicLR(per group, momentum lists)": (
        lambda m, o: m.CyclicLR(
            o,
            base_lr=[0.01, 0.02],
            max_lr=[0.1, 0.3],
            step_size_up=3,
            base_momentum=[0.8, 0.7],
            max_momentum=(0.95, 0.9),
        ),
        20,
        "sgd",
        2,
    ),
    "CyclicLR(no momentum cycle, adagrad)": (
        _cyclic(step_size_up=3, cycle_momentum=False),
        15,
        "adagrad",
        1,
    ),
    "Chained(Polynomial, Multiplicative)": (
        lambda m, o: m.ChainedScheduler(
            [m.PolynomialLR(o, total_iters=6, power=1.5), m.MultiplicativeLR(o, lambda e: 0.9)]
        ),
        10,
        "sgd",
        2,
    ),
    "Chained(ConstantLR, ExponentialLR)": (
        lambda m, o: m.ChainedScheduler(
            [m.ConstantLR(o, factor=0.1, total_iters=3), m.ExponentialLR(o, gamma=0.9)]
        ),
        10,
        "sgd",
        1,
    ),
    "Chained(LinearLR, CosineAnnealingLR)": (
        lambda m, o: m.ChainedScheduler(
            [
                m.LinearLR(o, start_factor=0.25, total_iters=4),
                m.CosineAnnealingLR(o, T_max=5, eta_min=0.01),
            ]
        ),
        24,
        "sgd",
        2,
    ),
    "Chained(StepLR, MultiStepLR)": (
        lambda m, o: m.ChainedScheduler(
            [m.StepLR(o, step_size=3, gamma=0.5), m.MultiStepLR(o, [2, 5, 5], gamma=0.8)]
        ),
        12,
        "adam",
        1,
    ),
    "Chained(ExponentialLR, CyclicLR)": (
        lambda m, o: m.ChainedScheduler(
            [m.ExponentialLR(o, gamma=0.9), m.CyclicLR(o, 0.01, 0.2, step_size_up=2)]
        ),
        12,
        "sgd",
        1,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_schedules_match_torch_at_every_step(name):
    make, steps, kind, groups = CASES[name]
    ours, theirs = _optimizers(kind, groups)
    got = _trace(ours, make(GS, ours), steps)
    want = _trace(theirs, make(TS, theirs), steps)
    assert len(np.unique(want[:, 0])) > 3  # the schedule moves: a wrong formula shows
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_cyclic_lr_reaches_its_bounds_and_keeps_adams_beta2():
    opt, _ = _optimizers("adam")
    sched = GS.CyclicLR(opt, base_lr=0.01, max_lr=0.2, step_size_up=2, base_momentum=0.85)
    trace = _trace(opt, sched, 8)
    np.testing.assert_allclose(trace[:, 0], [0.01, 0.105, 0.2, 0.105] * 2 + [0.01], rtol=1e-12)
    np.testing.assert_allclose(trace[:, 1], [0.9, 0.875, 0.85, 0.875] * 2 + [0.9], rtol=1e-12)
    betas = opt.param_groups[0]["betas"]
    assert isinstance(betas, tuple) and betas[1] == 0.99


@pytest.mark.parametrize(
    "name",
    ["CyclicLR(scale_fn object, cycle)", "CyclicLR(exp_range)", "PolynomialLR(power 2, 2 groups)",
     "MultiplicativeLR", "Chained(LinearLR, CosineAnnealingLR)",
     "Chained(ConstantLR, ExponentialLR)"],
)  # fmt: skip
def test_state_dict_round_trip_resumes_torchs_schedule(name):
    make, steps, kind, groups = CASES[name]
    half = steps // 2
    ours, theirs = _optimizers(kind, groups)
    sched = make(GS, ours)
    _trace(ours, sched, half)
    if name.startswith("CyclicLR(scale_fn object"):
        sched._scale_fn_custom.base = 0.25  # a callable object's attributes are saved
    state = pickle.loads(pickle.dumps(sched.state_dict()))  # lambdas are left out
    opt_state = ours.state_dict()
    fresh, _ = _optimizers(kind, groups)
    resumed = make(GS, fresh)  # built first, then the saved states loaded, as torch's docs
    fresh.load_state_dict(opt_state)
    resumed.load_state_dict(state)
    assert resumed.get_last_lr() == sched.get_last_lr()
    got = _trace(fresh, resumed, steps - half)

    theirs_sched = make(TS, theirs)
    _trace(theirs, theirs_sched, half)
    if name.startswith("CyclicLR(scale_fn object"):
        theirs_sched._scale_fn_custom.base = 0.25
    want = _trace(theirs, theirs_sched, steps - half)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_polynomial_step_with_an_epoch_uses_the_closed_form():
    ours, theirs = _optimizers("sgd")
    got, want = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for opt, m, out in ((ours, GS, got), (theirs, TS, want)):
            sched = m.PolynomialLR(opt, total_iters=6, power=2.0)
            for epoch in (3, 1, 5, 9, 0):
                sched.step(epoch)
                out.append(float(opt.param_groups[0]["lr"]))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[-1] == pytest.approx(0.1) and got[3] == 0.0


def _same_error(make: Any, kind: str = "sgd", groups: int = 1) -> type[BaseException]:
    """``make`` raises the same kind of error on gpunet's scheduler as on torch's."""
    ours, theirs = _optimizers(kind, groups)
    with warnings.catch_warnings():  # torch's note on step(epoch)
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(Exception) as want:
            make(TS, theirs)
    with pytest.raises(want.type) as got:
        make(GS, ours)
    assert str(got.value).split(" ")[:3] == str(want.value).split(" ")[:3]
    return want.type


def test_bad_arguments_fail_as_in_torch():
    assert _same_error(lambda m, o: m.CyclicLR(o, 0.01, 0.1, mode="cosine")) is ValueError
    assert _same_error(lambda m, o: m.CyclicLR(o, 0.01, 0.1), "adagrad") is ValueError
    assert _same_error(lambda m, o: m.CyclicLR(o, [0.01], 0.1), "sgd", 2) is ValueError
    assert _same_error(lambda m, o: m.CyclicLR(o, 0.01, 0.1, base_momentum=[0.8] * 3),
                       "sgd", 2) is ValueError  # fmt: skip
    assert _same_error(lambda m, o: m.MultiplicativeLR(o, 0.9)) is TypeError
    assert _same_error(lambda m, o: m.MultiplicativeLR(o, [lambda e: 1.0]), "sgd", 2) is ValueError
    assert _same_error(lambda m, o: m.ChainedScheduler([])) is ValueError
    assert _same_error(lambda m, o: m.ChainedScheduler([m.ReduceLROnPlateau(o)])) is ValueError
    assert _same_error(lambda m, o: m.ChainedScheduler([object()])) is AttributeError
    assert _same_error(lambda m, o: m.ChainedScheduler([m.ConstantLR(o), 1])) is TypeError

    def two_optimizers(m: Any, o: Any) -> Any:
        other = _optimizers("sgd")[0 if m is GS else 1]
        return m.ChainedScheduler([m.ExponentialLR(o, 0.9), m.ExponentialLR(other, 0.9)])

    assert _same_error(two_optimizers) is ValueError


@pytest.mark.parametrize("total_iters", [0, -2])
def test_polynomial_total_iters_not_positive_as_in_torch(total_iters):
    """torch builds it and holds the rate; its closed form at step(epoch) then divides
    by total_iters (0 raises ZeroDivisionError, -2 gives 0.0)."""
    ours, theirs = _optimizers("sgd")
    got = _trace(ours, GS.PolynomialLR(ours, total_iters=total_iters), 3)
    want = _trace(theirs, TS.PolynomialLR(theirs, total_iters=total_iters), 3)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[-1, 0] == pytest.approx(0.1)
    if total_iters == 0:
        assert _same_error(lambda m, o: m.PolynomialLR(o, total_iters=0).step(3)) is (
            ZeroDivisionError
        )
    else:
        fresh, _ = _optimizers("sgd")
        sched = GS.PolynomialLR(fresh, total_iters=-2)
        sched.step(3)
        assert sched.get_last_lr() == [0.0] == [fresh.param_groups[0]["lr"]]


def test_cyclic_momentum_drives_the_sgd_update():
    """The rate and momentum CyclicLR sets are what the next optimizer step uses."""
    w = gn.nn.Parameter(gn.ones(1))
    opt = gn.optim.SGD([w], lr=1.0, momentum=0.9)
    sched = GS.CyclicLR(opt, base_lr=0.1, max_lr=0.5, step_size_up=1, base_momentum=0.5,
                        max_momentum=0.6)  # fmt: skip
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.6)
    w.grad = np.ones(1, "float32")
    opt.step()  # lr 0.1, buffer 1
    sched.step()  # lr 0.5, momentum 0.5
    opt.step()  # buffer 0.5 * 1 + 1 = 1.5
    np.testing.assert_allclose(w.numpy(), [1.0 - 0.1 - 0.5 * 1.5], rtol=1e-6)


class Decay:
    """A callable object for MultiplicativeLR: its attributes are saved."""

    def __init__(self) -> None:
        self.factor = 0.9

    def __call__(self, epoch: int) -> float:
        return self.factor


def test_multiplicative_state_dict_keeps_a_callable_objects_attributes():
    traces, states = [], []
    for m, which in ((GS, 0), (TS, 1)):
        opt = _optimizers("sgd")[which]
        sched = m.MultiplicativeLR(opt, Decay())
        first = _trace(opt, sched, 3)
        sched.lr_lambdas[0].factor = 0.5
        states.append(sched.state_dict()["lr_lambdas"])
        fresh = _optimizers("sgd")[which]
        resumed = m.MultiplicativeLR(fresh, Decay())
        fresh.load_state_dict(opt.state_dict())
        resumed.load_state_dict(sched.state_dict())
        assert resumed.lr_lambdas[0].factor == 0.5
        traces.append(np.concatenate([first, _trace(fresh, resumed, 3)]))
    assert states[0] == states[1] == [{"factor": 0.5}]
    np.testing.assert_allclose(traces[0], traces[1], rtol=1e-12, atol=1e-15)
    assert GS.MultiplicativeLR(_optimizers("sgd")[0], lambda e: 0.9).state_dict()["lr_lambdas"] == [
        None
    ]
