"""nn.EmbeddingBag and F.embedding_bag against torch with the same weights: every mode
with offsets (an empty bag among them), 2-D bags, include_last_offset, padding ids
left out, per-sample weights, the weight's gradient, the module on its own weights,
a text classifier as PyTorch's tutorial builds it, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn
from gpunet.errors import InputValidationError, InvalidParameterError

torch = pytest.importorskip("torch")
F, TF = gn.nn.functional, torch.nn.functional
W0 = np.random.default_rng(0).standard_normal((10, 3))
IDS = np.array([1, 2, 4, 5, 4, 3, 2, 9, 4])
OFFSETS = np.array([0, 4, 4, 6])  # the second bag is empty


def _agree(kw_gn, kw_torch=None, ids=IDS, offsets=OFFSETS, psw=None):
    kw_torch = kw_gn if kw_torch is None else kw_torch
    W, tW = gn.tensor(W0, requires_grad=True), torch.tensor(W0, requires_grad=True)
    off = None if offsets is None else (gn.tensor(offsets), torch.tensor(offsets))
    extra = {} if psw is None else {"per_sample_weights": psw}
    y = F.embedding_bag(gn.tensor(ids), W, None if off is None else off[0],
                        **kw_gn, **{k: gn.tensor(v) for k, v in extra.items()})  # fmt: skip
    ty = TF.embedding_bag(torch.tensor(ids), tW, None if off is None else off[1],
                          **kw_torch, **{k: torch.tensor(v) for k, v in extra.items()})  # fmt: skip
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-13, atol=1e-15)
    g = np.random.default_rng(1).standard_normal(tuple(ty.shape))
    (y * gn.tensor(g)).sum().backward()
    (ty * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(W.grad, tW.grad.numpy(), rtol=1e-13, atol=1e-15)
    return y


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("padding_idx", [None, 4, -6])
def test_modes_with_offsets_and_padding_match_torch(mode, padding_idx):
    y = _agree({"mode": mode, "padding_idx": padding_idx})
    assert not y.numpy()[1].any()  # the empty bag: zeros in every mode


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_2d_bags_and_include_last_offset_match_torch(mode):
    _agree({"mode": mode}, ids=IDS[:8].reshape(2, 4), offsets=None)
    _agree({"mode": mode, "include_last_offset": True}, ids=IDS, offsets=np.array([0, 3, 7]))


def test_per_sample_weights_scale_the_rows_in_sum_mode():
    psw = np.random.default_rng(2).random(IDS.size)
    _agree({"mode": "sum"}, psw=psw)
    with pytest.raises(InvalidParameterError, match="only supported for mode='sum'"):
        F.embedding_bag(gn.tensor(IDS), gn.tensor(W0), gn.tensor(OFFSETS), mode="mean",
                        per_sample_weights=gn.tensor(psw))  # fmt: skip


def test_module_on_torch_weights_and_its_state_dict():
    ref = torch.nn.EmbeddingBag(10, 3, mode="max", padding_idx=2)
    mine = gn.nn.EmbeddingBag(10, 3, mode="max", padding_idx=2, dtype="float32")
    mine.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    assert sorted(mine.state_dict()) == sorted(ref.state_dict()) == ["weight"]
    y = mine(gn.tensor(IDS), gn.tensor(OFFSETS))
    ty = ref(torch.tensor(IDS), torch.tensor(OFFSETS))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-6)
    fresh = gn.nn.EmbeddingBag(10, 3, padding_idx=2)
    assert not fresh.weight.numpy()[2].any() and fresh.weight.numpy().std() > 0.5  # N(0, 1)


def test_text_classifier_as_the_pytorch_tutorial_learns():
    """EmbeddingBag(mean) -> Linear over flat token ids and offsets: two classes told
    apart by which half of the vocabulary their tokens come from."""
    gn.manual_seed(0)
    rng = np.random.default_rng(3)
    emb, fc = gn.nn.EmbeddingBag(20, 8, mode="mean"), gn.nn.Linear(8, 2)
    opt = gn.optim.SGD([*emb.parameters(), *fc.parameters()], lr=0.5)
    losses = []
    for _ in range(60):
        labels = rng.integers(0, 2, 16)
        lengths = rng.integers(1, 6, 16)
        ids = np.concatenate(
            [rng.integers(0, 10, n) + 10 * c for n, c in zip(lengths, labels, strict=True)]
        )
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        loss = F.cross_entropy(fc(emb(gn.tensor(ids), gn.tensor(offsets))), gn.tensor(labels))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.3 < np.mean(losses[:5])


def test_errors_name_the_bad_value():
    W = gn.tensor(W0)
    with pytest.raises(InputValidationError, match="start at 0"):
        F.embedding_bag(gn.tensor(IDS), W, gn.tensor([1, 3]))
    with pytest.raises(InputValidationError, match="past the input"):
        F.embedding_bag(gn.tensor(IDS), W, gn.tensor([0, 30]))
    with pytest.raises(InputValidationError, match="1-D with offsets"):
        F.embedding_bag(gn.tensor(IDS), W)
    with pytest.raises(InputValidationError, match="offsets must be None for 2-D"):
        F.embedding_bag(gn.tensor(IDS[:8].reshape(2, 4)), W, gn.tensor([0, 1]))
    with pytest.raises(InputValidationError, match="id 10, outside"):
        F.embedding_bag(gn.tensor([10]), W, gn.tensor([0]))
    with pytest.raises(InvalidParameterError, match="mode must be one of"):
        gn.nn.EmbeddingBag(10, 3, mode="median")


def test_padding_idx_out_of_range_is_refused():
    with pytest.raises(InputValidationError, match=r"padding_idx must be within \[-10, 10\)"):
        F.embedding_bag(gn.tensor(IDS), gn.tensor(W0), gn.tensor(OFFSETS), padding_idx=12)
