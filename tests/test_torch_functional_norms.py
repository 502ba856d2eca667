"""F.layer_norm, F.batch_norm and F.embedding against torch.nn.functional with the same
inputs and weights: outputs, every gradient, the running statistics batch norm moves,
embedding's padding row and max_norm renormalization, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn
from gpunet.errors import InputValidationError

torch = pytest.importorskip("torch")
F, TF = gn.nn.functional, torch.nn.functional


def _pair(a: np.ndarray, grad: bool = True) -> tuple[object, object]:
    return gn.tensor(a, requires_grad=grad), torch.tensor(a, requires_grad=grad)


def _backward(y: object, ty: object, seed: int) -> None:
    g = np.random.default_rng(seed).standard_normal(tuple(ty.shape))  # type: ignore[attr-defined]
    (y * gn.tensor(g)).sum().backward()  # type: ignore[operator]
    (ty * torch.tensor(g)).sum().backward()  # type: ignore[operator]


def _close(a: object, t: object, tol: float = 1e-12) -> None:
    want = t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)  # type: ignore[union-attr]
    got = a.numpy() if hasattr(a, "numpy") else np.asarray(a)  # type: ignore[union-attr]
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("shape", [(5,), (4, 5)], ids=["1 axis", "2 axes"])
@pytest.mark.parametrize("affine", ["both", "weight", "none"])
def test_layer_norm_matches_torch(shape, affine):
    rng = np.random.default_rng(1)
    x, tx = _pair(rng.standard_normal((3, 4, 5)) * 3 + 1)
    w = _pair(rng.standard_normal(shape)) if affine != "none" else (None, None)
    b = _pair(rng.standard_normal(shape)) if affine == "both" else (None, None)
    y = F.layer_norm(x, shape, w[0], b[0], eps=1e-3)
    ty = TF.layer_norm(tx, shape, w[1], b[1], eps=1e-3)
    _close(y, ty)
    _backward(y, ty, 2)
    _close(x.grad, tx.grad)
    for mine, theirs in (w, b):
        if mine is not None:
            _close(mine.grad, theirs.grad)


def test_layer_norm_in_float32_and_its_errors():
    x = np.random.default_rng(3).standard_normal((6, 8)).astype("float32")
    y = F.layer_norm(gn.tensor(x), [8])
    assert y.dtype == np.float32
    _close(y, TF.layer_norm(torch.tensor(x), [8]), tol=2e-6)
    with pytest.raises(InputValidationError, match=r"normalized_shape \[4\].*\(6, 8\)"):
        F.layer_norm(gn.tensor(x), (4,))
    with pytest.raises(InputValidationError, match="weight must have shape"):
        F.layer_norm(gn.tensor(x), (8,), gn.tensor(np.ones(7, "float32")))


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (2, 3, 4, 2)], ids=["2d", "3d", "4d"])
def test_batch_norm_training_matches_torch_and_moves_the_running_stats(shape):
    rng = np.random.default_rng(4)
    x, tx = _pair(rng.standard_normal(shape) * 2 + 0.5)
    w, tw = _pair(rng.standard_normal(3))
    b, tb = _pair(rng.standard_normal(3))
    rm, rv = rng.standard_normal(3), rng.random(3) + 0.5
    grm, grv = gn.tensor(rm.copy()), gn.tensor(rv.copy())
    trm, trv = torch.tensor(rm.copy()), torch.tensor(rv.copy())
    y = F.batch_norm(x, grm, grv, w, b, training=True, momentum=0.3, eps=1e-4)
    ty = TF.batch_norm(tx, trm, trv, tw, tb, training=True, momentum=0.3, eps=1e-4)
    _close(y, ty)
    _close(grm, trm)  # the unbiased variance moves running_var, as PyTorch
    _close(grv, trv)
    _backward(y, ty, 5)
    for mine, theirs in ((x, tx), (w, tw), (b, tb)):
        _close(mine.grad, theirs.grad)


def test_batch_norm_eval_uses_the_running_stats():
    rng = np.random.default_rng(6)
    x, tx = _pair(rng.standard_normal((5, 3, 4)))
    rm, rv = rng.standard_normal(3), rng.random(3) + 0.5
    y = F.batch_norm(x, gn.tensor(rm), gn.tensor(rv))
    ty = TF.batch_norm(tx, torch.tensor(rm), torch.tensor(rv))
    _close(y, ty)
    _backward(y, ty, 7)
    _close(x.grad, tx.grad)
    y2 = F.batch_norm(gn.tensor(x.numpy()), None, None, training=True)  # batch stats only
    _close(y2, TF.batch_norm(torch.tensor(x.numpy()), None, None, training=True))
    with pytest.raises(RuntimeError, match="evaluation mode"):
        F.batch_norm(x, None, None)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(gn.tensor(np.ones((1, 3))), None, None, training=True)
    with pytest.raises(InputValidationError, match=r"running_mean must have shape \(3,\)"):
        F.batch_norm(x, gn.tensor(np.zeros(4)), gn.tensor(np.ones(3)))


def test_embedding_matches_torch_with_its_padding_row():
    rng = np.random.default_rng(8)
    W, tW = _pair(rng.standard_normal((7, 4)))
    ids = np.array([[1, 3, 3], [6, 0, 1]])
    for pad in (3, -4, None):  # -4 is row 3: the padding row is counted from the end
        W.grad, tW.grad = None, None
        y = F.embedding(gn.tensor(ids), W, padding_idx=pad)
        ty = TF.embedding(torch.tensor(ids), tW, padding_idx=pad)
        _close(y, ty)
        _backward(y, ty, 9)
        _close(W.grad, tW.grad)
        assert (np.abs(W.grad[3]).sum() == 0) == (pad is not None)


def test_embedding_max_norm_renormalizes_the_looked_up_rows_in_place():
    rng = np.random.default_rng(10)
    W0 = rng.standard_normal((6, 3)) * 3
    ids = np.array([0, 2, 2, 5])
    W, tW = gn.tensor(W0.copy()), torch.tensor(W0.copy())
    for p in (2.0, 1.0):
        y = F.embedding(gn.tensor(ids), W, max_norm=1.5, norm_type=p)
        ty = TF.embedding(torch.tensor(ids), tW, max_norm=1.5, norm_type=p)
        _close(y, ty)
        _close(W, tW)  # rows 1, 3 and 4 were not looked up: left as they were
    np.testing.assert_array_equal(W.numpy()[[1, 3, 4]], W0[[1, 3, 4]])


def test_embedding_errors_name_the_bad_value():
    W = gn.tensor(np.zeros((4, 2)))
    with pytest.raises(InputValidationError, match=r"id 4, outside the range \[0, 4\)"):
        F.embedding(gn.tensor([1, 4]), W)
    with pytest.raises(InputValidationError, match="padding_idx must be within"):
        F.embedding(gn.tensor([1]), W, padding_idx=4)
    with pytest.raises(InputValidationError, match="weight must be 2-D"):
        F.embedding(gn.tensor([1]), gn.tensor(np.zeros(4)))


def test_a_weight_of_another_dtype_is_refused_as_torch_does():
    """A float64 weight (gn.tensor of a NumPy array) beside a float32 input: torch
    raises; here it would have turned the input's results and gradients float64."""
    x = gn.tensor(np.ones((2, 3, 4), "float32"), requires_grad=True)
    w64 = gn.tensor(np.ones(4))
    with pytest.raises(InputValidationError, match="weight is float64 but the input is float32"):
        F.layer_norm(x, (4,), w64)
    with pytest.raises(RuntimeError):
        TF.layer_norm(torch.ones(2, 3, 4), (4,), torch.ones(4, dtype=torch.float64))
    with pytest.raises(InputValidationError, match="bias is float64"):
        F.batch_norm(x, None, None, None, gn.tensor(np.zeros(3)), training=True)
    with pytest.raises(InputValidationError, match="conv1d: weight is float64"):
        F.conv1d(x, gn.tensor(np.ones((2, 3, 2))))
    W = gn.tensor(np.ones((5, 2), "float32"))
    with pytest.raises(InputValidationError, match="per_sample_weights is float64"):
        F.embedding_bag(gn.tensor([1, 2]), W, gn.tensor([0]), mode="sum",
                        per_sample_weights=gn.tensor(np.ones(2)))  # fmt: skip
