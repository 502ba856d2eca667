"""``optimizer.step(closure)`` as PyTorch's, for every optimizer, and LBFGS (which
needs it) against torch.optim.LBFGS on the same float64 problem: the losses and
weights of four steps (80 iterations), and the time-sequence example's loop."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import gpunet as gn
from gpunet.errors import InvalidParameterError

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta"])
def test_step_runs_the_closure_and_returns_its_loss(name):
    w = gn.nn.Parameter(gn.ones(3))
    opt = getattr(gn.optim, name)([w], lr=0.1)
    calls = []

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        calls.append(float(loss.item()))
        return loss

    with gn.no_grad():  # the closure records gradients even so, as in PyTorch
        loss = opt.step(closure)
    assert calls == [3.0] and float(loss.item()) == 3.0
    assert float(w.numpy().max()) < 1.0
    with pytest.raises(TypeError, match="step\\(when=flag\\)"):
        opt.step(True)


def _pair(lr: float, **kw):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = np.sin(X.sum(1, keepdims=True))
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    theirs = theirs.double()
    ours = gn.nn.Sequential(gn.nn.Linear(3, 8), gn.nn.Tanh(), gn.nn.Linear(8, 1)).double()
    ours.load_state_dict(theirs.state_dict())
    to = torch.optim.LBFGS(theirs.parameters(), lr=lr, **kw)
    go = gn.optim.LBFGS(ours.parameters(), lr=lr, **kw)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)

    def tc():
        to.zero_grad()
        loss = ((theirs(Xt) - yt) ** 2).mean()
        loss.backward()
        return loss

    def gc():
        go.zero_grad()
        loss = ((ours(X) - y) ** 2).mean()
        loss.backward()
        return loss

    return ours, theirs, (to, tc), (go, gc)


@pytest.mark.parametrize("kw", [{"lr": 0.8}, {"lr": 1.0, "history_size": 3, "max_iter": 7}])
def test_lbfgs_matches_torch_step_by_step(kw):
    ours, theirs, (to, tc), (go, gc) = _pair(**kw)
    first = float(gc().item())
    for _ in range(4):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            want = float(to.step(tc).detach())
        got = float(go.step(gc).item())
        assert got == pytest.approx(want, rel=1e-7)
        for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
            np.testing.assert_allclose(p.numpy(), q.detach().numpy(), rtol=1e-6, atol=1e-8)
    assert float(gc().item()) < 0.1 * first


def test_lbfgs_needs_a_closure_and_refuses_what_it_lacks():
    w = gn.nn.Parameter(gn.ones(2))
    opt = gn.optim.LBFGS([w])
    with pytest.raises(RuntimeError, match="needs a closure"):
        opt.step()
    with pytest.raises(InvalidParameterError, match="strong_wolfe"):
        gn.optim.LBFGS([w], line_search_fn="strong_wolfe")
    with pytest.raises(InvalidParameterError, match="parameter groups"):
        gn.optim.LBFGS([{"params": [w]}, {"params": [gn.nn.Parameter(gn.ones(1))]}])
