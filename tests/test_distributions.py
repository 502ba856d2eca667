"""gn.distributions.Categorical and Normal against torch.distributions: log_prob and
entropy values and gradients (float64), broadcasting of values against the batch,
sampling frequencies and moments, the reparameterized gradient, and the
REINFORCE loop of PyTorch's reinforcement-learning example learning a bandit."""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn
from gpunet.errors import InvalidParameterError

torch = pytest.importorskip("torch")
D, TD = gn.distributions, torch.distributions
TOL = {"rtol": 1e-10, "atol": 1e-12}


@pytest.mark.parametrize("by", ["probs", "logits"])
def test_categorical_log_prob_and_entropy_match_torch(by):
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.1, 2.0, size=(4, 5)) if by == "probs" else rng.normal(size=(4, 5))
    raw[0, 1] = 0.0  # a zero probability / a zero logit
    ours_in = gn.tensor(raw, requires_grad=True)
    theirs_in = torch.from_numpy(raw).requires_grad_(True)
    m, t = D.Categorical(**{by: ours_in}), TD.Categorical(**{by: theirs_in})
    v = np.array([3, 0, 4, 2])
    for got, want in [(m.log_prob(gn.tensor(v)), t.log_prob(torch.from_numpy(v))),
                      (m.entropy(), t.entropy())]:  # fmt: skip
        np.testing.assert_allclose(got.numpy(), want.detach().numpy(), **TOL)
    (m.log_prob(gn.tensor(v)).sum() + m.entropy().sum()).backward()
    (t.log_prob(torch.from_numpy(v)).sum() + t.entropy().sum()).backward()
    np.testing.assert_allclose(ours_in.grad, theirs_in.grad.numpy(), **TOL)
    np.testing.assert_allclose(m.probs.numpy(), t.probs.detach().numpy(), **TOL)
    both = np.array([[1], [2]])  # (2, 1) against the batch (4,): broadcast to (2, 4)
    want = t.log_prob(torch.from_numpy(both)).detach().numpy()
    np.testing.assert_allclose(m.log_prob(gn.tensor(both)).numpy(), want, **TOL)


def test_categorical_samples_follow_the_probabilities():
    gn.manual_seed(1)
    p = np.array([[0.1, 0.6, 0.3], [0.0, 0.0, 1.0]])
    s = D.Categorical(probs=gn.tensor(p)).sample((20000,))
    assert s.shape == (20000, 2) and s.dtype == np.int64
    freq = np.stack([np.bincount(s.numpy()[:, i], minlength=3) / 20000 for i in range(2)])
    np.testing.assert_allclose(freq, p, atol=0.015)
    assert D.Categorical(logits=gn.tensor([0.0, 5.0])).sample().shape == ()
    m, t = D.Categorical(probs=gn.tensor(p)), TD.Categorical(probs=torch.from_numpy(p))
    np.testing.assert_array_equal(m.mean.numpy(), t.mean.numpy())  # NaN, as torch
    np.testing.assert_array_equal(m.variance.numpy(), t.variance.numpy())


def test_normal_matches_torch_and_rsample_carries_the_gradient():
    rng = np.random.default_rng(2)
    loc, scale, x = (
        rng.normal(size=(3, 4)),
        rng.uniform(0.5, 2.0, size=(1, 4)),
        rng.normal(size=(3, 4)),
    )
    lg, sg = gn.tensor(loc, requires_grad=True), gn.tensor(scale, requires_grad=True)
    lt, st = (
        torch.from_numpy(loc).requires_grad_(True),
        torch.from_numpy(scale).requires_grad_(True),
    )
    m, t = D.Normal(lg, sg), TD.Normal(lt, st)
    (m.log_prob(gn.tensor(x)).sum() + m.entropy().sum()).backward()
    (t.log_prob(torch.from_numpy(x)).sum() + t.entropy().sum()).backward()
    np.testing.assert_allclose(m.log_prob(gn.tensor(x)).numpy(),
                               t.log_prob(torch.from_numpy(x)).detach().numpy(), **TOL)  # fmt: skip
    np.testing.assert_allclose(m.entropy().numpy(), t.entropy().detach().numpy(), **TOL)
    np.testing.assert_allclose(lg.grad, lt.grad.numpy(), **TOL)
    np.testing.assert_allclose(sg.grad, st.grad.numpy(), **TOL)
    gn.manual_seed(3)
    draws = D.Normal(gn.tensor(2.0), gn.tensor(0.5)).sample((20000,)).numpy()
    assert abs(draws.mean() - 2.0) < 0.02 and abs(draws.std() - 0.5) < 0.02
    lg.grad = sg.grad = None
    z = m.rsample((2,))  # d z / d loc = 1, d z / d scale = eps
    assert z.shape == (2, 3, 4) and z.requires_grad
    z.sum().backward()
    np.testing.assert_allclose(lg.grad, np.full((3, 4), 2.0))
    assert not m.sample().requires_grad


def test_bad_distribution_arguments_are_named():
    with pytest.raises(InvalidParameterError, match="Either `probs` or `logits`"):
        D.Categorical()
    with pytest.raises(InvalidParameterError, match="scale must be positive"):
        D.Normal(gn.tensor([0.0]), gn.tensor([0.0]))


def test_reinforce_learns_the_best_arm_of_a_bandit():
    """The loop of PyTorch's REINFORCE example: sample an action from a Categorical
    policy, then descend ``-log_prob * reward``."""
    gn.manual_seed(4)
    policy = gn.nn.Linear(1, 3)
    opt = gn.optim.Adam(policy.parameters(), lr=0.05)
    rewards = np.array([0.1, 1.0, 0.3])
    state = gn.ones(8, 1)
    for _ in range(150):
        m = D.Categorical(logits=policy(state))
        action = m.sample()
        reward = gn.tensor(rewards[action.numpy()], dtype="float32")
        loss = -(m.log_prob(action) * (reward - reward.mean())).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    probs = D.Categorical(logits=policy(state)).probs.numpy()[0]
    assert probs.argmax() == 1 and probs[1] > 0.8
