"""gn.nn.Transformer and gn.nn.TransformerDecoder against torch's with the same
weights (torch's state_dict loaded as it is): outputs and every gradient with a
causal float mask and padding masks, in both layouts; the causal-mask helper; a
small sequence-to-sequence model that learns; and the errors for bad inputs."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import gpunet as gn
from gpunet.errors import InputValidationError, InvalidParameterError

torch = pytest.importorskip("torch")
nn = gn.nn
TOL = {"rtol": 1e-9, "atol": 1e-10}


def _torch(cls: Any, *args: Any, **kw: Any) -> Any:
    with warnings.catch_warnings():  # torch's note that nested tensors are not used
        warnings.simplefilter("ignore", UserWarning)
        return cls(*args, **kw)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_matches_torch(batch_first, norm_first):
    kw = {"dim_feedforward": 24, "dropout": 0.0, "batch_first": batch_first,
          "norm_first": norm_first}  # fmt: skip
    theirs = _torch(torch.nn.Transformer, 8, 2, 2, 2, **kw, dtype=torch.float64)
    ours = nn.Transformer(8, 2, 2, 2, **kw, dtype="float64")
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    rng = np.random.default_rng(0)
    B, S, T = 2, 5, 4
    src = rng.normal(size=(B, S, 8) if batch_first else (S, B, 8))
    tgt = rng.normal(size=(B, T, 8) if batch_first else (T, B, 8))
    pad = np.zeros((B, S), bool)
    pad[1, -2:] = True  # the second source's last two steps are padding
    mask = nn.Transformer.generate_square_subsequent_mask(T, dtype="float64")
    tmask = torch.nn.Transformer.generate_square_subsequent_mask(T, dtype=torch.float64)
    np.testing.assert_array_equal(mask.numpy(), tmask.numpy())
    s_t, t_t = (torch.from_numpy(a).requires_grad_(True) for a in (src, tgt))
    s_g, t_g = gn.tensor(src, requires_grad=True), gn.tensor(tgt, requires_grad=True)
    masks_t = {"tgt_mask": tmask, "src_key_padding_mask": torch.from_numpy(pad),
               "memory_key_padding_mask": torch.from_numpy(pad)}  # fmt: skip
    masks_g = {"tgt_mask": mask, "src_key_padding_mask": pad, "memory_key_padding_mask": pad}
    y_t = theirs(s_t, t_t, **masks_t)
    y_g = ours(s_g, t_g, **masks_g)
    np.testing.assert_allclose(y_g.numpy(), y_t.detach().numpy(), **TOL)
    w = rng.normal(size=tuple(y_t.shape))
    (y_t * torch.from_numpy(w)).sum().backward()
    (y_g * gn.tensor(w)).sum().backward()
    np.testing.assert_allclose(s_g.grad, s_t.grad.numpy(), **TOL)
    np.testing.assert_allclose(t_g.grad, t_t.grad.numpy(), **TOL)
    theirs_p = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, theirs_p[name].grad.numpy(), err_msg=name, **TOL)


def test_decoder_stack_matches_torch_with_and_without_a_final_norm():
    layer_t = torch.nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, batch_first=True,
                                               dtype=torch.float64)  # fmt: skip
    layer_g = nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, batch_first=True, dtype="float64")
    layer_g.load_state_dict(layer_t.state_dict())
    rng = np.random.default_rng(1)
    tgt, mem = rng.normal(size=(3, 4, 8)), rng.normal(size=(3, 6, 8))
    for norm in (False, True):
        theirs = torch.nn.TransformerDecoder(
            layer_t, 3, torch.nn.LayerNorm(8, dtype=torch.float64) if norm else None
        )
        ours = nn.TransformerDecoder(layer_g, 3, nn.LayerNorm(8, dtype="float64") if norm else None)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        ours.load_state_dict(theirs.state_dict())
        causal = np.triu(np.ones((4, 4), bool), 1)
        want = theirs(torch.from_numpy(tgt), torch.from_numpy(mem),
                      tgt_mask=torch.from_numpy(causal), tgt_is_causal=True)  # fmt: skip
        got = ours(tgt, mem, tgt_mask=causal, tgt_is_causal=True)
        np.testing.assert_allclose(got.numpy(), want.detach().numpy(), **TOL)


def test_a_small_transformer_learns_to_copy_a_sequence():
    """Learned positions (without them no position of the memory can be found)."""
    gn.manual_seed(0)
    V, T, D = 6, 5, 16
    emb, pos, head = nn.Embedding(V, D), nn.Embedding(T, D), nn.Linear(D, V)
    model = nn.Transformer(D, 2, 1, 1, dim_feedforward=32, dropout=0.0, batch_first=True)
    params = [*emb.parameters(), *pos.parameters(), *model.parameters(), *head.parameters()]
    opt = gn.optim.Adam(params, lr=5e-3)
    rng = np.random.default_rng(2)
    mask = nn.Transformer.generate_square_subsequent_mask(T)
    losses = []
    for _ in range(100):
        seq = rng.integers(1, V, size=(16, T))
        tgt_in = np.concatenate([np.zeros((16, 1), int), seq[:, :-1]], axis=1)  # 0: start
        P = pos(np.arange(T))
        out = head(model(emb(seq) + P, emb(tgt_in) + P, tgt_mask=mask))
        loss = nn.functional.cross_entropy(out.reshape(-1, V), gn.tensor(seq.reshape(-1)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    assert np.mean(losses[:5]) > 1.5 and np.mean(losses[-5:]) < 0.1


def test_bad_transformer_inputs_name_the_mismatch():
    model = nn.Transformer(8, 2, 1, 1, dim_feedforward=16, batch_first=True)
    with pytest.raises(InputValidationError, match="batch number of src and tgt"):
        model(np.ones((2, 5, 8), "float32"), np.ones((3, 4, 8), "float32"))
    with pytest.raises(InputValidationError, match="d_model=8"):
        model(np.ones((2, 5, 8), "float32"), np.ones((2, 4, 6), "float32"))
    with pytest.raises(InvalidParameterError, match="TransformerDecoderLayer"):
        nn.TransformerDecoder(nn.TransformerEncoderLayer(8, 2), 2)
    with pytest.raises(InvalidParameterError, match="num_layers"):
        nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2), 0)
