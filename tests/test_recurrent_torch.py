"""gn.nn.RNN/LSTM/GRU against torch.nn.RNN/LSTM/GRU given the same state dict:
outputs, final states, and the gradients of the input, the initial states and every
parameter, over layers, directions, batch_first and unbatched inputs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gpunet as gn  # noqa: E402

torch.set_num_threads(1)
T, B, F, H = 5, 3, 4, 3

CONFIGS = [
    ("RNN", {}),
    ("RNN", {"nonlinearity": "relu", "bias": False}),
    ("LSTM", {}),
    ("LSTM", {"num_layers": 2, "bidirectional": True}),
    ("LSTM", {"batch_first": True, "bidirectional": True}),
    ("GRU", {}),
    ("GRU", {"num_layers": 2, "batch_first": True}),
    ("GRU", {"bidirectional": True, "bias": False}),
    ("RNN", {"num_layers": 2, "bidirectional": True}),
]


def _flat(out: object) -> list:
    seq, state = out  # (output, h_n) or (output, (h_n, c_n))
    return [seq, *(state if isinstance(state, tuple) else (state,))]


@pytest.mark.parametrize("with_hx", [False, True], ids=["zero_state", "hx"])
@pytest.mark.parametrize(("cls", "kw"), CONFIGS, ids=[f"{c}{k}" for c, k in CONFIGS])
def test_module_matches_torch(cls: str, kw: dict, with_hx: bool) -> None:
    r = np.random.default_rng(len(kw) + 3 * with_hx)
    t_mod = getattr(torch.nn, cls)(F, H, **kw).double()
    g_mod = getattr(gn.nn, cls)(F, H, dtype="float64", **kw)
    assert [k for k, _ in g_mod.named_parameters()] == [k for k, _ in t_mod.named_parameters()]
    for (k, tp), (_, gp) in zip(t_mod.named_parameters(), g_mod.named_parameters(), strict=True):
        assert tuple(tp.shape) == gp.shape, k
    g_mod.load_state_dict(t_mod.state_dict())
    shape = (B, T, F) if kw.get("batch_first") else (T, B, F)
    x = r.normal(size=shape)
    D = 2 if kw.get("bidirectional") else 1
    n_states = 2 if cls == "LSTM" else 1
    hx = [r.normal(size=(kw.get("num_layers", 1) * D, B, H)) for _ in range(n_states)]
    xt = torch.tensor(x, requires_grad=True)
    ht = [torch.tensor(h, requires_grad=True) for h in hx]
    gx = gn.tensor(x, dtype="float64", requires_grad=True)
    gh = [gn.tensor(h, dtype="float64", requires_grad=True) for h in hx]
    t_hx = (tuple(ht) if cls == "LSTM" else ht[0]) if with_hx else None
    g_hx = (tuple(gh) if cls == "LSTM" else gh[0]) if with_hx else None
    t_out, g_out = _flat(t_mod(xt, t_hx)), _flat(g_mod(gx, g_hx))
    projections = [r.normal(size=tuple(o.shape)) for o in t_out]
    sum((o * torch.tensor(p)).sum() for o, p in zip(t_out, projections, strict=True)).backward()
    total = None
    for o, p in zip(g_out, projections, strict=True):
        term = (o * gn.tensor(p, dtype="float64")).sum()
        total = term if total is None else total + term
    total.backward()
    for a, b in zip(g_out, t_out, strict=True):
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gx.grad, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    if with_hx:
        for g, t in zip(gh, ht, strict=True):
            np.testing.assert_allclose(g.grad, t.grad.numpy(), rtol=1e-9, atol=1e-12)
    for (k, tp), (_, gp) in zip(t_mod.named_parameters(), g_mod.named_parameters(), strict=True):
        np.testing.assert_allclose(np.asarray(gp.grad), tp.grad.numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=k)  # fmt: skip


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
def test_unbatched_input_matches_torch(cls: str) -> None:
    t_mod = getattr(torch.nn, cls)(F, H, bidirectional=True).double()
    g_mod = getattr(gn.nn, cls)(F, H, bidirectional=True, dtype="float64")
    g_mod.load_state_dict(t_mod.state_dict())
    x = np.random.default_rng(1).normal(size=(T, F))
    with torch.no_grad():
        t_out = _flat(t_mod(torch.tensor(x)))
    g_out = _flat(g_mod(x))
    for a, b in zip(g_out, t_out, strict=True):
        assert a.shape == tuple(b.shape)
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)


def test_inter_layer_dropout_is_off_in_eval_and_on_in_train() -> None:
    t_mod = torch.nn.LSTM(F, H, num_layers=2, dropout=0.5).double().eval()
    g_mod = gn.nn.LSTM(F, H, num_layers=2, dropout=0.5, dtype="float64")
    g_mod.load_state_dict(t_mod.state_dict())
    x = np.random.default_rng(2).normal(size=(T, B, F))
    with torch.no_grad():
        expected = t_mod(torch.tensor(x))[0].numpy()
    np.testing.assert_allclose(g_mod.eval()(x)[0].numpy(), expected, rtol=1e-10, atol=1e-12)
    assert not np.allclose(g_mod.train()(x)[0].numpy(), expected)


def test_repr_and_initialization_bounds() -> None:
    mod = gn.nn.GRU(4, 8, num_layers=2, batch_first=True, bidirectional=True)
    assert repr(mod) == repr(torch.nn.GRU(4, 8, num_layers=2, batch_first=True, bidirectional=True))
    for _, p in mod.named_parameters():
        values = p.numpy()
        assert np.abs(values).max() <= 1 / np.sqrt(8) and values.std() > 0.1
