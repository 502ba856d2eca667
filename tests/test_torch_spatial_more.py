"""nn.MaxPool1d / AvgPool1d / AdaptiveAvgPool1d, nn.Upsample / F.interpolate and
nn.Dropout1d / Dropout2d against torch: outputs and input gradients (pools and
upsampling), and for channel dropout the rule itself: whole channels zeroed at
rate p, the rest scaled by 1 / (1 - p), identity in eval."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gpunet as gn
from gpunet.errors import InputValidationError, InvalidParameterError

torch = pytest.importorskip("torch")
nn, NF = gn.nn, gn.nn.functional


def _same(ours: Any, theirs: Any, x: np.ndarray) -> None:
    xt = torch.from_numpy(x).requires_grad_(True)
    xg = gn.tensor(x, requires_grad=True)
    yt, yg = theirs(xt), ours(xg)
    np.testing.assert_allclose(yg.numpy(), yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    w = np.random.default_rng(0).normal(size=tuple(yt.shape))
    (yt * torch.from_numpy(w)).sum().backward()
    (yg * gn.tensor(w)).sum().backward()
    np.testing.assert_allclose(xg.grad, xt.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "name,args",
    [("MaxPool1d", (3,)), ("MaxPool1d", (3, 2, 1)), ("AvgPool1d", (2,)),
     ("AvgPool1d", (3, 1, 1)), ("AdaptiveAvgPool1d", (1,))],
)  # fmt: skip
def test_1d_pools_match_torch(name, args):
    x = np.random.default_rng(1).permutation(2 * 3 * 11).reshape(2, 3, 11) * 0.1  # no ties
    _same(getattr(nn, name)(*args), getattr(torch.nn, name)(*args), x)


def test_functional_pools_and_interpolate_match_torch():
    TF = torch.nn.functional
    x3 = np.random.default_rng(2).normal(size=(2, 3, 8))
    x4 = np.random.default_rng(3).normal(size=(2, 3, 4, 5))
    _same(lambda a: NF.max_pool1d(a, 2), lambda a: TF.max_pool1d(a, 2), x3)
    _same(lambda a: NF.avg_pool1d(a, 4, 2), lambda a: TF.avg_pool1d(a, 4, 2), x3)
    _same(lambda a: NF.adaptive_avg_pool1d(a, 1), lambda a: TF.adaptive_avg_pool1d(a, 1), x3)
    _same(lambda a: NF.adaptive_avg_pool2d(a, 1), lambda a: TF.adaptive_avg_pool2d(a, 1), x4)
    _same(lambda a: NF.interpolate(a, scale_factor=2), lambda a: TF.interpolate(a, scale_factor=2),
          x4)  # fmt: skip
    _same(lambda a: NF.interpolate(a, size=(8, 15)), lambda a: TF.interpolate(a, size=(8, 15)), x4)


@pytest.mark.parametrize("kw", [{"scale_factor": 3}, {"scale_factor": (2, 1)}, {"size": (8, 10)}])
def test_upsample_module_matches_torch(kw):
    x = np.random.default_rng(4).normal(size=(1, 2, 4, 5))
    _same(nn.Upsample(**kw), torch.nn.Upsample(**kw), x)


@pytest.mark.parametrize("cls,shape", [("Dropout2d", (64, 32, 3, 3)), ("Dropout1d", (64, 32, 5)),
                                       ("Dropout1d", (32, 5))])  # fmt: skip
def test_channel_dropout_zeroes_whole_channels_at_rate_p(cls, shape):
    gn.manual_seed(0)
    layer = getattr(nn, cls)(0.3)
    x = gn.tensor(np.ones(shape, "float32"), requires_grad=True)
    y = layer(x)
    lead = 2 if len(shape) == max(layer.RANKS) else 1  # (N, C, ...), or unbatched (C, ...)
    per_channel = y.numpy().reshape(*shape[:lead], -1)
    assert (per_channel.std(axis=-1) == 0).all()  # one value per channel
    values = np.unique(per_channel)
    np.testing.assert_allclose(values, [0.0, 1 / 0.7], rtol=1e-6)
    dropped = float((per_channel[..., 0] == 0).mean())
    assert 0.2 < dropped < 0.4
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, y.numpy())  # the mask, as the gradient
    layer.eval()
    np.testing.assert_array_equal(layer(x).numpy(), x.numpy())
    assert getattr(nn, cls)(1.0)(x).numpy().max() == 0.0  # p = 1: all dropped, as torch


def test_bad_arguments_and_inputs_are_named():
    with pytest.raises(InvalidParameterError, match="MaxPool1d kernel_size"):
        nn.MaxPool1d(0)
    with pytest.raises(InvalidParameterError, match="output_size must be an int >= 1"):
        nn.AdaptiveAvgPool1d(0)
    with pytest.raises(InvalidParameterError, match="between 0 and 1"):
        nn.Dropout2d(1.5)
    with pytest.raises(InvalidParameterError, match="mode 'nearest'"):
        nn.Upsample(scale_factor=2, mode="bilinear")
    with pytest.raises(InvalidParameterError, match="exactly one"):
        nn.Upsample()
    with pytest.raises(InputValidationError, match=r"MaxPool1d expects input \(N, C, L\)"):
        nn.MaxPool1d(2)(np.ones((2, 3), "float32"))
    with pytest.raises(InputValidationError, match="whole multiple"):
        nn.Upsample(size=(5, 5))(np.ones((1, 1, 2, 2), "float32"))
    with pytest.raises(InputValidationError, match=r"Dropout2d expects input \(N, C, H, W\)"):
        nn.Dropout2d()(np.ones((2, 3), "float32"))
