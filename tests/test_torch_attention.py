"""gn.nn attention against PyTorch given the same weights and inputs (float64):
F.scaled_dot_product_attention, nn.MultiheadAttention, nn.TransformerEncoderLayer,
nn.TransformerEncoder and nn.TransformerDecoderLayer; outputs and the gradients of
inputs and parameters."""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
R = np.random.default_rng(0)
TOL = {"rtol": 1e-9, "atol": 1e-11}


def _both(*arrays):
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    gs = [gn.tensor(a, dtype="float64", requires_grad=True) for a in arrays]
    return ts, gs


def _backward_both(t_out, g_out):
    proj = np.random.default_rng(1).normal(size=tuple(t_out.shape))
    (t_out * torch.tensor(proj)).sum().backward()
    (g_out * gn.tensor(proj, dtype="float64")).sum().backward()


SDPA = {
    "plain": ((2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 2), {}),
    "bool mask (L, S)": ((2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 2),
                         {"attn_mask": R.random((4, 6)) > 0.3}),
    "float mask": ((1, 2, 4, 3), (1, 2, 4, 3), (1, 2, 4, 3), {"attn_mask": R.normal(size=(4, 4))}),
    "causal": ((2, 1, 5, 4), (2, 1, 5, 4), (2, 1, 5, 3), {"is_causal": True}),
    "causal L < S (top-left)": ((1, 2, 3, 4), (1, 2, 5, 4), (1, 2, 5, 4), {"is_causal": True}),
    "scale, 3-d": ((2, 4, 3), (2, 5, 3), (2, 5, 2), {"scale": 0.7}),
}  # fmt: skip


@pytest.mark.parametrize("blocked", [False, True], ids=["whole", "blocked"])
@pytest.mark.parametrize("name", list(SDPA))
def test_sdpa_matches_torch(name, blocked, monkeypatch):
    qs, ks, vs, kw = SDPA[name]
    if blocked:  # query rows 2 at a time: the path long sequences take
        ops = gn.backend.get_ops("cpu")
        monkeypatch.setattr(ops, "attention_whole", 0)
        monkeypatch.setattr(ops, "attention_chunk", 2)
    (tq, tk, tv), (gq, gk, gv) = _both(R.normal(size=qs), R.normal(size=ks), R.normal(size=vs))
    tkw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    t_out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, **tkw)
    g_out = gn.nn.functional.scaled_dot_product_attention(gq, gk, gv, **kw)
    np.testing.assert_allclose(g_out.numpy(), t_out.detach().numpy(), **TOL)
    _backward_both(t_out, g_out)
    for g, t in ((gq, tq), (gk, tk), (gv, tv)):
        np.testing.assert_allclose(g.grad, t.grad.numpy(), **TOL)


def _mha_pair(E, H, batch_first, bias=True):
    theirs = torch.nn.MultiheadAttention(E, H, bias=bias, batch_first=batch_first,
                                         dtype=torch.float64)  # fmt: skip
    ours = gn.nn.MultiheadAttention(E, H, bias=bias, batch_first=batch_first, dtype="float64")
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


MHA = {
    "self, batch_first": (True, (3, 5, 8), None, {}),
    "cross (L, N, E), key padding": (
        False, (4, 2, 8), (6, 2, 8),
        {"key_padding_mask": np.array([[0, 0, 0, 1, 1, 0], [0] * 6], bool)},
    ),
    "bool attn_mask, per-head weights": (
        True, (2, 4, 8), None,
        {"attn_mask": np.triu(np.ones((4, 4), bool), 1), "average_attn_weights": False},
    ),
    "float attn_mask (N*H, L, S), no weights": (
        True, (2, 3, 8), (2, 5, 8),
        {"attn_mask": R.normal(size=(4, 3, 5)), "need_weights": False},
    ),
    "causal hint with its mask": (
        True, (2, 4, 8), None,
        {"attn_mask": np.triu(np.ones((4, 4), bool), 1), "is_causal": True,
         "need_weights": False},
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(MHA))
def test_multihead_attention_matches_torch(name):
    batch_first, qs, ks, kw = MHA[name]
    theirs, ours = _mha_pair(8, 2, batch_first)
    arrays = [R.normal(size=qs)] + ([] if ks is None else [R.normal(size=ks)])
    ts, gs = _both(*arrays)
    tq, tk = ts[0], ts[-1]
    gq, gk = gs[0], gs[-1]
    tkw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    t_out, t_w = theirs(tq, tk, tk, **tkw)
    g_out, g_w = ours(gq, gk, gk, **kw)
    np.testing.assert_allclose(g_out.numpy(), t_out.detach().numpy(), **TOL)
    assert (g_w is None) == (t_w is None)
    if t_w is not None:
        np.testing.assert_allclose(g_w.numpy(), t_w.detach().numpy(), **TOL)
    _backward_both(t_out, g_out)
    for g, t in zip(gs, ts, strict=True):
        np.testing.assert_allclose(g.grad, t.grad.numpy(), **TOL)
    t_params = dict(theirs.named_parameters())
    for key, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, t_params[key].grad.numpy(), **TOL, err_msg=key)


def _grads_match(ours, theirs):
    t_params = dict(theirs.named_parameters())
    names = [k for k, _ in ours.named_parameters()]
    assert names == list(t_params)
    for key, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, t_params[key].grad.numpy(), **TOL, err_msg=key)


ENC = [("relu", False, False), ("gelu", True, True), ("relu", True, False)]


@pytest.mark.parametrize("act,norm_first,batch_first", ENC)
def test_transformer_encoder_layer_matches_torch(act, norm_first, batch_first):
    kw = {"dim_feedforward": 16, "dropout": 0.0, "activation": act, "norm_first": norm_first,
          "batch_first": batch_first}  # fmt: skip
    theirs = torch.nn.TransformerEncoderLayer(8, 2, dtype=torch.float64, **kw)
    ours = gn.nn.TransformerEncoderLayer(8, 2, dtype="float64", **kw)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    shape = (3, 5, 8) if batch_first else (5, 3, 8)
    (ts,), (gs,) = _both(R.normal(size=shape))
    kpm = np.array([[0, 0, 0, 1, 1], [0] * 5, [0, 0, 0, 0, 1]], bool)
    t_out = theirs(ts, src_key_padding_mask=torch.tensor(kpm))
    g_out = ours(gs, src_key_padding_mask=kpm)
    np.testing.assert_allclose(g_out.numpy(), t_out.detach().numpy(), **TOL)
    _backward_both(t_out, g_out)
    np.testing.assert_allclose(gs.grad, ts.grad.numpy(), **TOL)
    _grads_match(ours, theirs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_post_norm_encoder_over_the_host_kernels_matches_torch(dtype):
    """At the encoder benchmark's width, above every host threshold: the residual sums
    formed inside the layer norms, self-attention head by head, bias and ReLU fused."""
    kw = {"dim_feedforward": 256, "dropout": 0.0, "batch_first": True}
    theirs = torch.nn.TransformerEncoderLayer(128, 4, dtype=getattr(torch, dtype), **kw)
    ours = gn.nn.TransformerEncoderLayer(128, 4, dtype=dtype, **kw)
    ours.load_state_dict(theirs.state_dict())
    x = R.normal(size=(4, 40, 128))
    ts = torch.tensor(x, dtype=getattr(torch, dtype), requires_grad=True)
    gs = gn.tensor(x.astype(dtype), requires_grad=True)
    t_out, g_out = theirs(ts), ours(gs)
    tol = TOL if dtype == "float64" else {"rtol": 2e-4, "atol": 2e-5}
    np.testing.assert_allclose(g_out.numpy(), t_out.detach().numpy(), **tol)
    _backward_both(t_out, g_out)
    np.testing.assert_allclose(gs.grad, ts.grad.numpy(), **tol)
    t_params = dict(theirs.named_parameters())
    for key, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, t_params[key].grad.numpy(), **tol, err_msg=key)


def test_a_layer_norm_subclass_in_a_block_runs_its_own_forward():
    """The fused residual norm is for gn.nn.LayerNorm itself; a subclass put in its
    place sees the sum, as in PyTorch."""
    seen = []

    class Spy(type(gn.nn.TransformerEncoderLayer(8, 2).norm1)):  # the blocks' LayerNorm
        def forward(self, x):
            seen.append(tuple(x.shape))
            return super().forward(x)

    layer = gn.nn.TransformerEncoderLayer(8, 2, 16, 0.0, batch_first=True, dtype="float64")
    x = R.normal(size=(2, 3, 8))
    want = layer(x).numpy()
    spy = Spy(8, dtype="float64")
    spy.load_state_dict(layer.norm1.state_dict())
    layer.norm1 = spy
    got = layer(x).numpy()
    assert seen == [(2, 3, 8)]
    np.testing.assert_allclose(got, want, rtol=1e-12)

    block = gn.nn.TransformerEncoderLayer(8, 2, 16, 0.0, batch_first=True)
    block.norm2 = gn.nn.Identity()  # any module in a norm's place, as PyTorch allows
    xs = gn.tensor(x.astype("float32"))
    h = block.norm1(xs + block.self_attn(xs, xs, xs)[0])
    want = (h + block.linear2(gn.nn.functional.relu(block.linear1(h)))).numpy()
    np.testing.assert_allclose(block(xs).numpy(), want, rtol=1e-6, atol=1e-6)


def test_transformer_encoder_stack_matches_torch_with_a_causal_mask():
    t_layer = torch.nn.TransformerEncoderLayer(8, 2, 16, 0.0, batch_first=True,
                                               dtype=torch.float64)  # fmt: skip
    theirs = torch.nn.TransformerEncoder(t_layer, 2, enable_nested_tensor=False)
    g_layer = gn.nn.TransformerEncoderLayer(8, 2, 16, 0.0, batch_first=True, dtype="float64")
    ours = gn.nn.TransformerEncoder(g_layer, 2)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    state = {k: v + 0.01 * torch.randn_like(v) for k, v in theirs.state_dict().items()}
    theirs.load_state_dict(state)  # the two layers differ, so their order is checked
    ours.load_state_dict(state)
    (ts,), (gs,) = _both(R.normal(size=(2, 6, 8)))
    causal = np.triu(np.ones((6, 6), bool), 1)
    t_out = theirs(ts, mask=torch.tensor(causal), is_causal=True)
    g_out = ours(gs, mask=causal, is_causal=True)
    np.testing.assert_allclose(g_out.numpy(), t_out.detach().numpy(), **TOL)
    _backward_both(t_out, g_out)
    np.testing.assert_allclose(gs.grad, ts.grad.numpy(), **TOL)
    _grads_match(ours, theirs)


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_decoder_layer_matches_torch(norm_first):
    kw = {"dim_feedforward": 12, "dropout": 0.0, "norm_first": norm_first}
    theirs = torch.nn.TransformerDecoderLayer(8, 2, dtype=torch.float64, **kw)
    ours = gn.nn.TransformerDecoderLayer(8, 2, dtype="float64", **kw)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    (tt, tm), (gt, gm) = _both(R.normal(size=(4, 2, 8)), R.normal(size=(7, 2, 8)))
    causal = np.triu(np.ones((4, 4), bool), 1)
    mkpm = np.array([[0] * 5 + [1, 1], [0] * 7], bool)
    t_out = theirs(tt, tm, tgt_mask=torch.tensor(causal),
                   memory_key_padding_mask=torch.tensor(mkpm))  # fmt: skip
    g_out = ours(gt, gm, tgt_mask=causal, memory_key_padding_mask=mkpm)
    np.testing.assert_allclose(g_out.numpy(), t_out.detach().numpy(), **TOL)
    _backward_both(t_out, g_out)
    for g, t in ((gt, tt), (gm, tm)):
        np.testing.assert_allclose(g.grad, t.grad.numpy(), **TOL)
    _grads_match(ours, theirs)


def test_torch_errors_are_kept():
    q = gn.tensor(R.normal(size=(1, 2, 3, 4)))
    with pytest.raises(gn.errors.InvalidParameterError, match="not both"):
        gn.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=np.ones((3, 3), bool),
                                                      is_causal=True)  # fmt: skip
    with pytest.raises(gn.errors.InputValidationError, match="does not broadcast"):
        gn.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=np.ones((2, 3), bool))
    mha = gn.nn.MultiheadAttention(8, 2, batch_first=True)
    x = np.ones((2, 3, 8), dtype="float32")
    with pytest.raises(gn.errors.InvalidParameterError, match="Need attn_mask"):
        mha(x, x, x, is_causal=True)
    with pytest.raises(gn.errors.InputValidationError, match="key_padding_mask must have shape"):
        mha(x, x, x, key_padding_mask=np.zeros((2, 4), bool))
    with pytest.raises(gn.errors.InputValidationError, match=r"\(L, N, 8\)"):
        mha(np.ones((2, 3, 6)), x, x)
    with pytest.raises(gn.errors.InvalidParameterError, match="divisible"):
        gn.nn.MultiheadAttention(10, 3)
    with pytest.raises(gn.errors.InvalidParameterError, match="activation"):
        gn.nn.TransformerEncoderLayer(8, 2, activation="tanh")


def test_a_transformer_trains_on_the_simulated_device_as_on_the_cpu():
    pytest.importorskip("array_api_strict")
    x = R.normal(size=(4, 6, 8)).astype("float32")
    y = R.normal(size=(4, 6, 8)).astype("float32")
    kpm = np.array([[0] * 4 + [1, 1], [0] * 6, [0] * 6, [0] * 5 + [1]], bool)
    causal = np.triu(np.ones((6, 6), bool), 1)
    losses = {}
    for device in ("cpu", "sim"):
        gn.utils.set_random_seed(3)
        enc = gn.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True).to(device)
        dec = gn.nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, batch_first=True).to(device)
        opt = gn.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-2)
        xt, yt = gn.tensor(x, device=device), gn.tensor(y, device=device)
        trace = []
        for _ in range(3):
            mem = enc(xt, src_key_padding_mask=kpm)
            out = dec(xt, mem, tgt_mask=causal, memory_key_padding_mask=kpm)
            loss = gn.nn.functional.mse_loss(out, yt)
            opt.zero_grad()
            loss.backward()
            opt.step()
            trace.append(loss.item())
        losses[device] = trace
    assert losses["cpu"][-1] < losses["cpu"][0]
    np.testing.assert_allclose(losses["sim"], losses["cpu"], rtol=1e-5)
