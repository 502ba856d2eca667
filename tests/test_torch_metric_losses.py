"""PairwiseDistance, MarginRankingLoss, TripletMarginLoss and CosineEmbeddingLoss (and
their functional forms) against torch with the same inputs: values under every
reduction, the gradients of every input, swap, p-norms, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn

torch = pytest.importorskip("torch")
F, TF = gn.nn.functional, torch.nn.functional


def _both(*arrays: np.ndarray) -> tuple[list[object], list[object]]:
    return ([gn.tensor(a, requires_grad=True) for a in arrays],
            [torch.tensor(a, requires_grad=True) for a in arrays])  # fmt: skip


def _agree(fn, tfn, arrays, consts=(), **kw):
    mine, theirs = _both(*arrays)
    y = fn(*mine, *[gn.tensor(c) for c in consts], **kw)
    ty = tfn(*theirs, *[torch.tensor(c) for c in consts], **kw)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = np.random.default_rng(1).standard_normal(tuple(ty.shape))
    (y * gn.tensor(g)).sum().backward()
    (ty * torch.tensor(g)).sum().backward()
    for a, t in zip(mine, theirs, strict=True):
        np.testing.assert_allclose(a.grad, t.grad.numpy(), rtol=1e-10, atol=1e-12)


rng = np.random.default_rng(0)
X1, X2, X3 = (rng.standard_normal((6, 5)) for _ in range(3))
Y = np.array([1.0, -1.0, 1.0, -1.0, -1.0, 1.0])


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("keepdim", [False, True])
def test_pairwise_distance_matches_torch(p, keepdim):
    _agree(F.pairwise_distance, TF.pairwise_distance, [X1, X2], p=p, keepdim=keepdim)
    m = gn.nn.PairwiseDistance(p=p, keepdim=keepdim)(gn.tensor(X1), gn.tensor(X2))
    t = torch.nn.PairwiseDistance(p=p, keepdim=keepdim)(torch.tensor(X1), torch.tensor(X2))
    np.testing.assert_allclose(m.numpy(), t.numpy(), rtol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_margin_ranking_loss_matches_torch(reduction):
    a, b = X1[:, 0], X2[:, 0]
    _agree(F.margin_ranking_loss, TF.margin_ranking_loss, [a, b], [Y], margin=0.3,
           reduction=reduction)  # fmt: skip
    mod = gn.nn.MarginRankingLoss(margin=0.3, reduction=reduction)
    tmod = torch.nn.MarginRankingLoss(margin=0.3, reduction=reduction)
    got = mod(gn.tensor(a), gn.tensor(b), gn.tensor(Y)).numpy()
    np.testing.assert_allclose(got, tmod(*map(torch.tensor, (a, b, Y))).numpy(), rtol=1e-12)


@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("p", [1.0, 2.0])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_triplet_margin_loss_matches_torch(swap, p, reduction):
    neg = X3 * 0.3 + X1 * 0.7  # near the anchor: some triplets inside the margin
    _agree(F.triplet_margin_loss, TF.triplet_margin_loss, [X1, X2, neg], margin=2.0, p=p,
           swap=swap, reduction=reduction)  # fmt: skip
    got = gn.nn.TripletMarginLoss(margin=2.0, p=p, swap=swap)(*map(gn.tensor, (X1, X2, neg)))
    want = torch.nn.TripletMarginLoss(margin=2.0, p=p, swap=swap)(*map(torch.tensor, (X1, X2, neg)))
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cosine_embedding_loss_matches_torch(reduction):
    y = Y.copy()
    y[2] = 0.0  # neither 1 nor -1: no loss there, as ATen's where()
    _agree(F.cosine_embedding_loss, TF.cosine_embedding_loss, [X1, X2], [y], margin=0.2,
           reduction=reduction)  # fmt: skip
    got = gn.nn.CosineEmbeddingLoss(margin=0.2)(*map(gn.tensor, (X1, X2, y)))
    want = torch.nn.CosineEmbeddingLoss(margin=0.2)(*map(torch.tensor, (X1, X2, y)))
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        gn.nn.MarginRankingLoss(reduction="avg")
    with pytest.raises(ValueError, match="margin must be greater than 0"):
        F.triplet_margin_loss(gn.tensor(X1), gn.tensor(X2), gn.tensor(X3), margin=0.0)


def test_integer_targets_keep_a_float32_loss_float32():
    a = gn.tensor(np.array([0.2, 0.5], "float32"), requires_grad=True)
    b = gn.tensor(np.array([0.4, 0.1], "float32"))
    y = gn.tensor(np.array([1, -1]))  # int64, as torch.tensor([1, -1])
    loss = F.margin_ranking_loss(a, b, y, margin=0.1)
    loss.backward()
    want = TF.margin_ranking_loss(torch.tensor([0.2, 0.5]), torch.tensor([0.4, 0.1]),
                                  torch.tensor([1, -1]), margin=0.1)  # fmt: skip
    assert loss.dtype == np.float32 and a.grad.dtype == np.float32
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    cos = F.cosine_embedding_loss(a.reshape(1, 2), b.reshape(1, 2), gn.tensor(np.array([-1])))
    assert cos.dtype == np.float32
