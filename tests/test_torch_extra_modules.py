"""gn.nn's ReLU6, Hardtanh, Mish, PReLU, GroupNorm, InstanceNorm1d/2d, PixelShuffle,
PixelUnshuffle and the padding modules against torch.nn's, in float64 with the same
weights: outputs, input gradients and weight gradients, at edge values (the
bounds of Hardtanh/ReLU6, exact zeros for PReLU, reflect padding as wide as it
goes)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gpunet as gn
from gpunet.errors import InputValidationError, InvalidParameterError

torch = pytest.importorskip("torch")
nn, NF = gn.nn, gn.nn.functional
TOL = {"rtol": 1e-10, "atol": 1e-12}


def _compare(ours: Any, theirs: Any, x: np.ndarray) -> None:
    if hasattr(theirs, "state_dict") and list(theirs.state_dict()):
        assert list(ours.state_dict()) == list(theirs.state_dict())
        with torch.no_grad():
            for p in theirs.parameters():
                p.copy_(torch.from_numpy(np.random.default_rng(9).normal(size=tuple(p.shape))))
        ours.load_state_dict(theirs.state_dict())
    xt = torch.from_numpy(x).requires_grad_(True)
    xg = gn.tensor(x, requires_grad=True)
    yt, yg = theirs(xt), ours(xg)
    np.testing.assert_allclose(yg.numpy(), yt.detach().numpy(), **TOL)
    w = np.random.default_rng(1).normal(size=tuple(yt.shape))
    (yt * torch.from_numpy(w)).sum().backward()
    (yg * gn.tensor(w)).sum().backward()
    np.testing.assert_allclose(xg.grad, xt.grad.numpy(), **TOL)
    if not hasattr(theirs, "named_parameters"):
        return
    theirs_p = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, theirs_p[name].grad.numpy(), err_msg=name, **TOL)


def _edges(shape: tuple[int, ...]) -> np.ndarray:
    x = np.random.default_rng(0).normal(0.0, 4.0, size=shape)
    flat = x.reshape(-1)
    flat[:6] = [0.0, 6.0, -1.0, 1.0, 2.5, -2.0]  # the bounds and kinks themselves
    return x


@pytest.mark.parametrize(
    "make",
    [lambda m: m.ReLU6(), lambda m: m.Hardtanh(), lambda m: m.Hardtanh(-2.0, 2.5),
     lambda m: m.Mish(), lambda m: m.PReLU(), lambda m: m.PReLU(3, init=0.1)],
)  # fmt: skip
def test_activations_match_torch_at_their_edges(make):
    ours, theirs = make(nn), make(torch.nn)
    if isinstance(theirs, torch.nn.PReLU):
        theirs, ours = theirs.double(), ours.double()
    _compare(ours, theirs, _edges((2, 3, 4)))


@pytest.mark.parametrize(
    "make,shape",
    [(lambda m, **k: m.GroupNorm(2, 6, **k), (2, 6, 5)),
     (lambda m, **k: m.GroupNorm(3, 6, affine=False, **k), (2, 6, 2, 3)),
     (lambda m, **k: m.GroupNorm(1, 4, eps=1e-3, **k), (3, 4)),
     (lambda m, **k: m.InstanceNorm2d(3, **k), (2, 3, 4, 5)),
     (lambda m, **k: m.InstanceNorm2d(3, affine=True, **k), (2, 3, 4, 5)),
     (lambda m, **k: m.InstanceNorm1d(4, affine=True, **k), (2, 4, 7))],
)  # fmt: skip
def test_group_and_instance_norms_match_torch(make, shape):
    ours, theirs = make(nn, dtype="float64"), make(torch.nn, dtype=torch.float64)
    x = np.random.default_rng(2).normal(1.0, 3.0, size=shape)
    _compare(ours, theirs, x)


@pytest.mark.parametrize("r", [2, 3])
def test_pixel_shuffle_and_unshuffle_match_torch_and_invert(r):
    x = np.random.default_rng(3).normal(size=(2, 2 * r * r, 3, 4))
    _compare(nn.PixelShuffle(r), torch.nn.PixelShuffle(r), x)
    y = np.random.default_rng(4).normal(size=(2, 3, 2 * r, 3 * r))
    _compare(nn.PixelUnshuffle(r), torch.nn.PixelUnshuffle(r), y)
    back = nn.PixelShuffle(r)(nn.PixelUnshuffle(r)(gn.tensor(y)))  # float64 kept
    np.testing.assert_array_equal(back.numpy(), y)


@pytest.mark.parametrize(
    "name,padding,shape",
    [("ZeroPad2d", (1, 2, 0, 3), (1, 2, 3, 4)), ("ConstantPad1d", (2, 1.5), (2, 3, 4)),
     ("ReflectionPad2d", (3, 1, 2, 2), (1, 2, 3, 4)), ("ReflectionPad1d", 3, (2, 2, 4)),
     ("ReplicationPad2d", 2, (1, 2, 3, 4)), ("ReplicationPad1d", (0, 5), (2, 2, 3))],
)  # fmt: skip
def test_padding_modules_match_torch(name, padding, shape):
    x = np.random.default_rng(5).normal(size=shape)
    args = padding if name == "ConstantPad1d" else (padding,)  # (padding, value)
    _compare(getattr(nn, name)(*args), getattr(torch.nn, name)(*args), x)
    assert nn.ConstantPad2d(1, 3.5)(np.zeros((1, 1, 2, 2))).numpy()[0, 0, 0, 0] == 3.5


def test_functional_spellings_match_torch():
    TF = torch.nn.functional
    x = _edges((3, 5))
    for ours, theirs in [(NF.relu6, TF.relu6), (NF.hardtanh, TF.hardtanh), (NF.mish, TF.mish),
                         (NF.logsigmoid, TF.logsigmoid), (NF.softsign, TF.softsign)]:  # fmt: skip
        _compare(lambda a, f=ours: f(a), lambda a, f=theirs: f(a), x)
    x4 = np.random.default_rng(6).normal(size=(1, 1, 3, 3))
    _compare(lambda a: NF.pad(a, (2, 2, 1, 1), mode="reflect"),
             lambda a: TF.pad(a, (2, 2, 1, 1), mode="reflect"), x4)  # fmt: skip


def test_bad_arguments_and_inputs_are_named():
    with pytest.raises(InvalidParameterError, match="divisible by num_groups"):
        nn.GroupNorm(4, 6)
    with pytest.raises(InvalidParameterError, match="track_running_stats"):
        nn.InstanceNorm2d(3, track_running_stats=True)
    with pytest.raises(InvalidParameterError, match="padding must be an int or 4 ints"):
        nn.ReflectionPad2d((1, 2))
    with pytest.raises(InputValidationError, match=r"GroupNorm\(2, 6\) expects input \(N, 6, \*\)"):
        nn.GroupNorm(2, 6)(np.ones((2, 4, 3)))
    with pytest.raises(InputValidationError, match=r"PixelShuffle\(2\) expects \(N, C\*4, H, W\)"):
        nn.PixelShuffle(2)(np.ones((1, 3, 2, 2)))
    with pytest.raises(InputValidationError, match=r"PReLU\(3\) expects 3 channels"):
        nn.PReLU(3)(np.ones((2, 4)))
    with pytest.raises(ValueError, match="smaller than the axis"):
        nn.ReflectionPad1d(4)(np.ones((1, 1, 4)))
    with pytest.raises(NotImplementedError, match="'constant', 'reflect' and 'replicate'"):
        NF.pad(gn.ones(1, 1, 3), (1, 1), mode="circular")
