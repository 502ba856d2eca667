"""The warm-up and cyclic schedules (LinearLR, ConstantLR, SequentialLR,
CosineAnnealingWarmRestarts, OneCycleLR) against torch.optim.lr_scheduler's,
stepped side by side: every rate, and OneCycleLR's momentum (SGD's ``momentum``,
Adam's ``beta1``), at every step."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import gpunet as gn
from gpunet.errors import InvalidParameterError

torch = pytest.importorskip("torch")
GS, TS = gn.optim.lr_scheduler, torch.optim.lr_scheduler


def _optimizers(kind: str) -> tuple[Any, Any]:
    ours, theirs = gn.nn.Parameter(gn.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    if kind == "adam":
        return gn.optim.Adam([ours], lr=0.1), torch.optim.Adam([theirs], lr=0.1)
    return (gn.optim.SGD([ours], lr=0.1, momentum=0.9),
            torch.optim.SGD([theirs], lr=0.1, momentum=0.9))  # fmt: skip


def _trace(opt: Any, sched: Any, steps: int) -> list[tuple[float, float]]:
    def state() -> tuple[float, float]:
        g = opt.param_groups[0]
        return float(g["lr"]), float(g["betas"][0] if "betas" in g else g["momentum"])

    out = [state()]
    with warnings.catch_warnings():  # torch's notes on step order and step(epoch)
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(steps):
            opt.step()
            sched.step()
            out.append(state())
    return out


CASES = {
    "LinearLR": (lambda m, o: m.LinearLR(o, start_factor=0.1, total_iters=4), 8, "sgd"),
    "ConstantLR": (lambda m, o: m.ConstantLR(o, factor=0.5, total_iters=3), 6, "sgd"),
    "WarmRestarts": (
        lambda m, o: m.CosineAnnealingWarmRestarts(o, 3, T_mult=2, eta_min=0.01),
        16,
        "sgd",
    ),
    "OneCycle(sgd)": (lambda m, o: m.OneCycleLR(o, max_lr=0.5, total_steps=20), 19, "sgd"),
    "OneCycle(adam, linear)": (
        lambda m, o: m.OneCycleLR(
            o, max_lr=0.5, epochs=4, steps_per_epoch=5, anneal_strategy="linear"
        ),
        19,
        "adam",
    ),
    "OneCycle(three phase)": (
        lambda m, o: m.OneCycleLR(o, max_lr=0.5, total_steps=30, three_phase=True, pct_start=0.25),
        29,
        "sgd",
    ),
    "SequentialLR(warm-up, cosine)": (
        lambda m, o: m.SequentialLR(
            o,
            [m.LinearLR(o, start_factor=0.2, total_iters=3), m.CosineAnnealingLR(o, T_max=6)],
            milestones=[3],
        ),
        10,
        "sgd",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_schedules_match_torch_at_every_step(name):
    make, steps, kind = CASES[name]
    ours, theirs = _optimizers(kind)
    got = _trace(ours, make(GS, ours), steps)
    want = _trace(theirs, make(TS, theirs), steps)
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-12, atol=1e-15)


def test_one_cycle_refuses_steps_past_its_total_and_bad_arguments():
    opt, _ = _optimizers("sgd")
    sched = GS.OneCycleLR(opt, max_lr=0.1, total_steps=3)
    for _ in range(3):
        sched.step()
    with pytest.raises(ValueError, match="Tried to step 4 times"):
        sched.step()
    with pytest.raises(InvalidParameterError, match="total_steps"):
        GS.OneCycleLR(opt, max_lr=0.1)
    with pytest.raises(InvalidParameterError, match="anneal_strategy"):
        GS.OneCycleLR(opt, max_lr=0.1, total_steps=5, anneal_strategy="step")
    with pytest.raises(InvalidParameterError, match="milestones"):
        GS.SequentialLR(opt, [GS.ConstantLR(opt), GS.ConstantLR(opt)], milestones=[])
    with pytest.raises(InvalidParameterError, match="T_0"):
        GS.CosineAnnealingWarmRestarts(opt, 0)


def test_one_cycle_drives_the_update_the_optimizer_makes():
    """The rate and momentum set in param_groups are what the next step uses."""
    w = gn.nn.Parameter(gn.ones(1))
    opt = gn.optim.SGD([w], lr=1.0, momentum=0.9)
    sched = GS.OneCycleLR(opt, max_lr=0.25, total_steps=10)
    w.grad = np.ones(1, "float32")
    lr, m = opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]
    opt.step()
    np.testing.assert_allclose(w.numpy(), [1.0 - lr], rtol=1e-6)  # first step: no momentum yet
    assert lr == pytest.approx(0.25 / 25) and m == pytest.approx(0.95)
    sched.step()
    assert opt.param_groups[0]["lr"] > lr and opt.param_groups[0]["momentum"] < m
