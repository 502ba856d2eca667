"""gn.nn.LayerNorm, BatchNorm1d and BatchNorm2d against torch.nn's, with the same
weights and inputs: outputs, every gradient, running statistics, parameter and
state_dict names, and PyTorch state_dicts loading as they are."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gpunet as gn
from gpunet.errors import InputValidationError, InvalidParameterError

torch = pytest.importorskip("torch")
nn = gn.nn


def _pair(ours: Any, theirs: Any, rng: np.random.Generator) -> None:
    """Random weights in torch's module, loaded into ours by its state_dict."""
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.from_numpy(rng.normal(size=tuple(p.shape))))
    ours.load_state_dict(theirs.state_dict())


def _compare(ours: Any, theirs: Any, x: np.ndarray, tol: float) -> None:
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = theirs(xt)
    w = np.random.default_rng(7).normal(size=tuple(yt.shape)).astype(x.dtype)
    (yt * torch.from_numpy(w)).sum().backward()
    xg = gn.tensor(x, requires_grad=True)
    y = ours(xg)
    assert y.dtype == x.dtype
    (y * gn.tensor(w)).sum().backward()
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(xg.grad, xt.grad.numpy(), rtol=tol, atol=tol)
    theirs_named = dict(theirs.named_parameters())
    ours_named = dict(ours.named_parameters())
    assert sorted(ours_named) == sorted(theirs_named)
    for name, p in ours_named.items():
        np.testing.assert_allclose(p.grad, theirs_named[name].grad.numpy(), rtol=tol, atol=tol)


CONFIGS = [((4,), {}), (((3, 4),), {}), ((4,), {"elementwise_affine": False}),
           ((4,), {"bias": False}), (([2, 3, 4],), {"eps": 1e-3})]  # fmt: skip


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("args,kw", CONFIGS)
def test_layer_norm_matches_torch(args, kw, dtype):
    rng = np.random.default_rng(0)
    theirs = torch.nn.LayerNorm(*args, **kw, dtype=getattr(torch, dtype))
    ours = nn.LayerNorm(*args, **kw, dtype=dtype)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert (ours.weight is None) == (theirs.weight is None)
    assert (ours.bias is None) == (theirs.bias is None)
    _pair(ours, theirs, rng)
    x = rng.normal(2.0, 3.0, size=(2, 2, 3, 4)).astype(dtype)
    _compare(ours, theirs, x, 2e-5 if dtype == "float32" else 1e-12)


@pytest.mark.parametrize("shape", [(16, 3), (8, 3, 5)])
def test_batch_norm1d_matches_torch_in_training_and_eval(shape):
    rng = np.random.default_rng(1)
    theirs, ours = torch.nn.BatchNorm1d(3, momentum=0.3), nn.BatchNorm1d(3, momentum=0.3)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert len(ours.parameters()) == len(list(theirs.parameters())) == 2
    _pair(ours, theirs, rng)
    for _ in range(2):  # the running statistics move twice
        _compare(ours, theirs, rng.normal(1.0, 2.0, size=shape).astype("float32"), 3e-5)
    theirs_state = theirs.state_dict()
    for name, value in ours.state_dict().items():
        np.testing.assert_allclose(value.numpy(), theirs_state[name].numpy(), rtol=1e-5)
    assert int(ours.num_batches_tracked.numpy()) == 2
    ours.eval(), theirs.eval()
    _compare(ours, theirs, rng.normal(size=shape).astype("float32"), 3e-5)


def test_batch_norm2d_counts_batches_and_keeps_buffers_out_of_parameters():
    ours, theirs = nn.BatchNorm2d(2), torch.nn.BatchNorm2d(2)
    assert len(ours.parameters()) == len(list(theirs.parameters())) == 2
    x = np.random.default_rng(2).normal(size=(3, 2, 4, 4)).astype("float32")
    _compare(ours, theirs, x, 3e-5)
    assert int(ours.num_batches_tracked.numpy()) == 1


def test_a_model_trains_with_torch_norms_and_saves_their_state(tmp_path):
    gn.manual_seed(3)
    rng = np.random.default_rng(3)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.LayerNorm(8),
                          nn.Linear(8, 1))  # fmt: skip
    opt = gn.optim.SGD(model.parameters(), lr=0.1)
    X, y = rng.normal(size=(64, 6)).astype("float32"), rng.normal(size=(64, 1)).astype("float32")
    losses = []
    for _ in range(30):
        loss = nn.functional.mse_loss(model(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    assert losses[-1] < 0.7 * losses[0]
    gn.save(model.state_dict(), tmp_path / "m.pt")
    again = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.LayerNorm(8),
                          nn.Linear(8, 1))  # fmt: skip
    again.load_state_dict(gn.load(tmp_path / "m.pt"))
    model.eval(), again.eval()
    np.testing.assert_array_equal(again(X).numpy(), model(X).numpy())


def test_a_state_dict_of_the_keras_names_still_loads():
    """gn.nn.LayerNorm and BatchNorm1d once saved gamma/beta/moving_* keys."""
    rng = np.random.default_rng(4)
    names = ("0.gamma", "0.beta", "1.gamma", "1.beta", "1.moving_mean", "1.moving_variance")
    old = {k: rng.uniform(1, 2, 3) for k in names}
    model = nn.Sequential(nn.LayerNorm(3), nn.BatchNorm1d(3))
    result = model.load_state_dict({k: v.astype("float32") for k, v in old.items()}, strict=False)
    assert result.unexpected_keys == [] and result.missing_keys == ["1.num_batches_tracked"]
    np.testing.assert_allclose(model[0].weight.numpy(), old["0.gamma"], rtol=1e-6)
    np.testing.assert_allclose(model[1].running_var.numpy(), old["1.moving_variance"], rtol=1e-6)
    with pytest.raises(RuntimeError, match="Missing key"):  # strict: the new buffer is missing
        nn.BatchNorm1d(3).load_state_dict({"gamma": old["1.gamma"], "beta": old["1.beta"]})


def test_bad_norm_arguments_and_inputs_name_what_is_wrong():
    with pytest.raises(InvalidParameterError, match="normalized_shape"):
        nn.LayerNorm(0)
    with pytest.raises(InvalidParameterError, match="normalized_shape"):
        nn.LayerNorm("abc")
    with pytest.raises(InvalidParameterError, match="affine=False"):
        nn.BatchNorm1d(3, affine=False)
    with pytest.raises(InvalidParameterError, match="momentum=None"):
        nn.BatchNorm1d(3, momentum=None)
    shapes = r"LayerNorm\(\[3, 4\]\).*\(\*, 3, 4\).*\(2, 4, 3\)"
    with pytest.raises(InputValidationError, match=shapes):
        nn.LayerNorm((3, 4))(np.ones((2, 4, 3), "float32"))
    with pytest.raises(InputValidationError, match=r"BatchNorm1d\(3\).*\(N, 3\) or \(N, 3, L\)"):
        nn.BatchNorm1d(3)(np.ones((2, 4), "float32"))
    with pytest.raises(InputValidationError, match="BatchNorm1d"):
        nn.BatchNorm1d(3)(np.ones((2, 3, 4, 5), "float32"))
