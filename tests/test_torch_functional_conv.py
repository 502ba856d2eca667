"""F.conv1d/conv2d/conv_transpose1d/conv_transpose2d and nn.ConvTranspose1d against
torch with the same inputs and weights: outputs and the gradients of input, weight
and bias across strides, padding (ints and 'same'), dilation, groups and
output_padding; and the errors, which name the bad shape."""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn
from gpunet.errors import InputValidationError, InvalidParameterError

torch = pytest.importorskip("torch")
F, TF = gn.nn.functional, torch.nn.functional

CASES = [
    ("conv2d", (2, 4, 7, 6), (6, 2, 3, 2), {"stride": (2, 1), "padding": 1, "dilation": (1, 2),
                                            "groups": 2}),
    ("conv2d", (2, 3, 6, 6), (4, 3, 3, 3), {"padding": "same"}),
    ("conv2d", (1, 3, 5, 5), (2, 3, 5, 5), {}),  # the kernel covers the input: 1 x 1 out
    ("conv1d", (2, 4, 9), (6, 4, 3), {"stride": 2, "padding": 2}),
    ("conv1d", (2, 4, 9), (4, 1, 3), {"groups": 4, "dilation": 3}),  # depthwise
    ("conv_transpose2d", (2, 4, 5, 5), (4, 3, 3, 3), {"stride": 2, "padding": 1,
                                                      "output_padding": 1}),
    ("conv_transpose1d", (2, 4, 5), (4, 6, 3), {"stride": 3, "groups": 2}),
]  # fmt: skip


@pytest.mark.parametrize(
    "name, xs, ws, kw", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
@pytest.mark.parametrize("with_bias", [True, False])
def test_functional_convolutions_match_torch(name, xs, ws, kw, with_bias):
    rng = np.random.default_rng(0)
    out_ch = ws[1] * kw.get("groups", 1) if "transpose" in name else ws[0]
    arrays = [rng.standard_normal(xs), rng.standard_normal(ws)]
    if with_bias:
        arrays.append(rng.standard_normal(out_ch))
    mine = [gn.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    y, ty = getattr(F, name)(*mine, **kw), getattr(TF, name)(*theirs, **kw)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(tuple(ty.shape))
    (y * gn.tensor(g)).sum().backward()
    (ty * torch.tensor(g)).sum().backward()
    for a, t in zip(mine, theirs, strict=True):
        np.testing.assert_allclose(a.grad, t.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_conv_transpose1d_module_on_torch_weights():
    ref = torch.nn.ConvTranspose1d(4, 6, 3, stride=2, padding=1, output_padding=1).double()
    mine = gn.nn.ConvTranspose1d(4, 6, 3, stride=2, padding=1, output_padding=1, dtype="float64")
    mine.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((2, 4, 7))
    X, tX = gn.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, ty = mine(X), ref(tX)
    assert tuple(y.shape) == tuple(ty.shape) == (2, 6, 14)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    y.sum().backward()
    ty.sum().backward()
    np.testing.assert_allclose(X.grad, tX.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mine.weight.grad, ref.weight.grad.numpy(), rtol=1e-12)


def test_input_without_grad_and_the_errors():
    x, w = gn.tensor(np.ones((1, 3, 5, 5))), gn.tensor(np.ones((2, 3, 3, 3)), requires_grad=True)
    F.conv2d(x, w).sum().backward()  # no input gradient asked for
    np.testing.assert_allclose(w.grad, np.full((2, 3, 3, 3), 9.0))
    with pytest.raises(InputValidationError, match=r"conv2d\(3, 2\) expects input .* C = 3"):
        F.conv2d(gn.tensor(np.ones((1, 4, 5, 5))), w)
    with pytest.raises(InputValidationError, match="weight must be 4-D"):
        F.conv2d(x, gn.tensor(np.ones((2, 3, 3))))
    with pytest.raises(InputValidationError, match=r"bias must have shape \(2,\)"):
        F.conv2d(x, w, gn.tensor(np.ones(3)))
    with pytest.raises(InvalidParameterError, match="stride must be an int >= 1"):
        F.conv2d(x, w, stride=0)
    with pytest.raises(InputValidationError, match="empty output"):
        F.conv2d(gn.tensor(np.ones((1, 3, 2, 2))), w)


def test_groups_and_output_padding_are_checked_as_the_modules_do():
    x = gn.tensor(np.ones((1, 4, 4, 4)))
    with pytest.raises(
        InputValidationError, match=r"\(3, 2, 3, 3\) has 3 out_channels .* groups=2"
    ):
        F.conv2d(x, gn.tensor(np.ones((3, 2, 3, 3))), groups=2)
    with pytest.raises(InvalidParameterError, match=r"output_padding .* smaller than stride"):
        F.conv_transpose1d(gn.tensor(np.ones((1, 2, 5))), gn.tensor(np.ones((2, 3, 3))),
                           output_padding=1)  # fmt: skip
    with pytest.raises(RuntimeError):
        TF.conv_transpose1d(torch.ones(1, 2, 5), torch.ones(2, 3, 3), output_padding=1)
