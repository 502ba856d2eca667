"""nn.Bilinear / F.bilinear against torch with the same weights (outputs and every
gradient, batched and 3-d inputs), and F.gumbel_softmax by its definition: soft samples
that are distributions, hard ones one-hot with the soft gradient, and argmax
frequencies equal to softmax(logits) (the Gumbel-max trick) under a fixed seed."""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn
from gpunet.errors import InputValidationError, InvalidParameterError

torch = pytest.importorskip("torch")
F, TF = gn.nn.functional, torch.nn.functional


@pytest.mark.parametrize("lead", [(6,), (2, 3)], ids=["2d", "3d"])
@pytest.mark.parametrize("bias", [True, False])
def test_bilinear_matches_torch(lead, bias):
    ref = torch.nn.Bilinear(3, 4, 5, bias=bias).double()
    mine = gn.nn.Bilinear(3, 4, 5, bias=bias, dtype="float64")
    mine.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    assert sorted(mine.state_dict()) == sorted(ref.state_dict())
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((*lead, 3)), rng.standard_normal((*lead, 4))
    A, B = gn.tensor(a, requires_grad=True), gn.tensor(b, requires_grad=True)
    tA, tB = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    y, ty = mine(A, B), ref(tA, tB)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(tuple(ty.shape))
    (y * gn.tensor(g)).sum().backward()
    (ty * torch.tensor(g)).sum().backward()
    for got, want in ((A.grad, tA.grad), (B.grad, tB.grad), (mine.weight.grad, ref.weight.grad)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-12)
    if bias:
        np.testing.assert_allclose(mine.bias.grad, ref.bias.grad.numpy(), rtol=1e-12)
    fresh = gn.nn.Bilinear(4, 2, 3)
    assert np.abs(fresh.weight.numpy()).max() <= 0.5 and fresh.weight.numpy().std() > 0.1


def test_bilinear_errors():
    m = gn.nn.Bilinear(3, 4, 5)
    with pytest.raises(InputValidationError, match=r"weight \(out, in1, in2\) of shape"):
        m(gn.tensor(np.ones((2, 3), "float32")), gn.tensor(np.ones((2, 5), "float32")))
    with pytest.raises(InvalidParameterError, match="in2_features must be an int >= 1"):
        gn.nn.Bilinear(3, 0, 5)


def test_gumbel_softmax_samples_follow_the_softmax():
    gn.manual_seed(0)
    logits = np.log(np.array([0.1, 0.2, 0.7]))
    x = gn.tensor(np.tile(logits, (20000, 1)))
    soft = F.gumbel_softmax(x, tau=0.5).numpy()
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-12)
    freq = np.bincount(soft.argmax(axis=1), minlength=3) / len(soft)
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.7], atol=0.015)  # ~4 standard errors


def test_hard_gumbel_softmax_is_one_hot_with_the_soft_gradient():
    logits = np.random.default_rng(1).standard_normal((4, 5))
    a = gn.tensor(logits, requires_grad=True)
    gn.manual_seed(2)
    hard = F.gumbel_softmax(a, tau=0.7, hard=True, dim=1)
    b = gn.tensor(logits, requires_grad=True)
    gn.manual_seed(2)
    soft = F.gumbel_softmax(b, tau=0.7, dim=1)
    np.testing.assert_array_equal(hard.numpy().sum(axis=1), np.ones(4))
    assert set(np.unique(hard.numpy())) == {0.0, 1.0}
    np.testing.assert_array_equal(hard.numpy().argmax(1), soft.numpy().argmax(1))
    w = gn.tensor(np.arange(20.0).reshape(4, 5))
    (hard * w).sum().backward()
    (soft * w).sum().backward()
    np.testing.assert_allclose(a.grad, b.grad, rtol=1e-12, atol=1e-14)
    t = torch.tensor(logits, requires_grad=True)
    assert TF.gumbel_softmax(t, hard=True).sum(dim=-1).tolist() == [1.0] * 4  # (same shape rule)
    with pytest.raises(InvalidParameterError, match="tau must be > 0"):
        F.gumbel_softmax(a, tau=0.0)
