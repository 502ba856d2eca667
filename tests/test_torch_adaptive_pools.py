"""nn.AdaptiveAvgPool1d/2d and nn.AdaptiveMaxPool1d/2d (and their F. forms) against
torch for any output size: PyTorch's windows (uneven and overlapping ones), outputs
larger than the input, None keeping an axis, unbatched inputs, ties and NaN, every
input gradient; and the errors."""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn
from gpunet.errors import InputValidationError, InvalidParameterError

torch = pytest.importorskip("torch")
F, TF = gn.nn.functional, torch.nn.functional

CASES = [
    ("AdaptiveAvgPool2d", (2, 3, 10, 7), (3, 4)),
    ("AdaptiveAvgPool2d", (2, 3, 14, 14), 7),  # VGG's, windows of 2
    ("AdaptiveAvgPool2d", (2, 3, 5, 5), (7, 7)),  # larger than the input: overlapping
    ("AdaptiveAvgPool2d", (2, 3, 10, 7), (None, 2)),
    ("AdaptiveAvgPool2d", (3, 6, 6), 1),  # unbatched (C, H, W)
    ("AdaptiveMaxPool2d", (2, 3, 10, 7), (3, 4)),
    ("AdaptiveMaxPool2d", (2, 3, 5, 5), (7, 7)),
    ("AdaptiveMaxPool2d", (2, 3, 9, 9), 1),
    ("AdaptiveAvgPool1d", (2, 3, 10), 3),
    ("AdaptiveAvgPool1d", (2, 3, 4), 6),
    ("AdaptiveMaxPool1d", (2, 3, 10), 4),
    ("AdaptiveMaxPool1d", (3, 10), 1),  # unbatched (C, L): a text CNN's max over time
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "name, shape, out", CASES, ids=[f"{c[0]}-{c[2]}-{len(c[1])}d" for c in CASES]
)
def test_adaptive_pools_match_torch(name, shape, out, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    X, tX = gn.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, ty = getattr(gn.nn, name)(out)(X), getattr(torch.nn, name)(out)(tX)
    tol = 1e-12 if dtype == "float64" else 1e-5
    assert y.dtype == np.dtype(dtype)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=tol, atol=tol)
    g = rng.standard_normal(tuple(ty.shape)).astype(dtype)
    (y * gn.tensor(g)).sum().backward()
    (ty * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(X.grad, tX.grad.numpy(), rtol=tol, atol=tol)
    fn = {
        "AdaptiveAvgPool2d": F.adaptive_avg_pool2d,
        "AdaptiveMaxPool2d": F.adaptive_max_pool2d,
        "AdaptiveAvgPool1d": F.adaptive_avg_pool1d,
        "AdaptiveMaxPool1d": F.adaptive_max_pool1d,
    }
    np.testing.assert_array_equal(fn[name](gn.tensor(x), out).numpy(), y.numpy())


def test_max_pool_ties_and_nan_send_the_gradient_where_torch_does():
    x = np.array([[[1.0, 3.0, 3.0, 2.0, np.nan, 0.0, 5.0, 5.0]]])
    X, tX = gn.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, ty = gn.nn.AdaptiveMaxPool1d(3)(X), torch.nn.AdaptiveMaxPool1d(3)(tX)
    np.testing.assert_array_equal(y.numpy(), ty.detach().numpy())  # NaN wins its window
    y.sum().backward()
    ty.sum().backward()
    np.testing.assert_array_equal(X.grad, tX.grad.numpy())


def test_errors():
    with pytest.raises(InvalidParameterError, match="tuple of 2"):
        gn.nn.AdaptiveAvgPool2d((1, 2, 3))
    with pytest.raises(InvalidParameterError, match="return_indices"):
        gn.nn.AdaptiveMaxPool2d(2, return_indices=True)
    with pytest.raises(InputValidationError, match=r"expects input \(N, C, H, W\)"):
        gn.nn.AdaptiveMaxPool2d(2)(gn.tensor(np.ones(4)))
