"""SimpleRNN, LSTM, GRU and Bidirectional against Keras 3's own layers (torch backend)
given the same weights: outputs, states, and the gradients of the input and of every
weight, with and without masks."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover - keras imported elsewhere first
    pytest.skip("keras runs on another backend here", allow_module_level=True)

import gpunet as gn  # noqa: E402

torch.set_num_threads(1)
B, T, F, U = 3, 6, 4, 5
MASK = np.ones((B, T), bool)
MASK[0, 4:] = False  # trailing padding
MASK[1, :2] = False  # leading padding
MASK[2, 3] = False  # a hole


def _outputs(out: object) -> list:
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _compare(k_layer: object, g_layer: gn.layers.Layer, mask: np.ndarray | None, seed: int):
    r = np.random.default_rng(seed)
    x = r.normal(size=(B, T, F)).astype("float32")
    k_layer.build((B, T, F))
    weights = [(r.normal(size=tuple(w.shape)) * 0.5).astype("float32") for w in k_layer.weights]
    k_layer.set_weights(weights)
    xt = torch.tensor(x, requires_grad=True)
    k_out = _outputs(k_layer(xt, mask=None if mask is None else torch.tensor(mask)))
    projections = [r.normal(size=tuple(o.shape)).astype("float32") for o in k_out]
    sum((o * torch.tensor(p)).sum() for o, p in zip(k_out, projections, strict=True)).backward()

    g_layer.build((None, T, F))
    g_layer.built = True
    g_layer.set_weights(weights)  # Keras' layouts load as they are
    gx = gn.tensor(x, requires_grad=True)
    g_out = _outputs(g_layer(gx, mask=mask))
    assert len(g_out) == len(k_out)
    total = None
    for o, p in zip(g_out, projections, strict=True):
        term = (o * gn.tensor(p)).sum()
        total = term if total is None else total + term
    total.backward()
    for a, b in zip(g_out, k_out, strict=True):
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(gx.grad, xt.grad.numpy(), rtol=1e-4, atol=2e-6)
    for p, v in zip(g_layer.weights, k_layer.weights, strict=True):
        np.testing.assert_allclose(
            np.asarray(p.grad), v.value.grad.numpy(), rtol=1e-4, atol=4e-6, err_msg=p.name
        )


CONFIGS = [
    ("SimpleRNN", {}),
    ("SimpleRNN", {"return_sequences": True, "go_backwards": True}),
    ("LSTM", {}),
    ("LSTM", {"return_sequences": True, "return_state": True}),
    ("LSTM", {"go_backwards": True, "unit_forget_bias": False, "use_bias": False}),
    ("LSTM", {"activation": "relu", "recurrent_activation": "tanh"}),
    ("GRU", {}),
    ("GRU", {"return_sequences": True, "return_state": True}),
    ("GRU", {"reset_after": False, "return_sequences": True}),
    ("GRU", {"reset_after": False, "go_backwards": True}),
]


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize(("cls", "kw"), CONFIGS, ids=[f"{c}{k}" for c, k in CONFIGS])
def test_recurrent_layer_matches_keras(cls: str, kw: dict, masked: bool) -> None:
    k_layer = getattr(keras.layers, cls)(U, **kw)
    g_layer = getattr(gn.layers, cls)(U, **kw)
    _compare(k_layer, g_layer, MASK if masked else None, seed=len(cls) + len(kw))


BI = [
    ("LSTM", {"return_sequences": True}, "concat"),
    ("GRU", {}, "sum"),
    ("LSTM", {"return_sequences": True}, "mul"),
    ("SimpleRNN", {"return_sequences": True}, "ave"),
    ("GRU", {"return_sequences": True}, None),
    ("LSTM", {"return_state": True}, "concat"),
]


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize(("cls", "kw", "mode"), BI, ids=[f"{c}-{m}" for c, _, m in BI])
def test_bidirectional_matches_keras(cls: str, kw: dict, mode: str | None, masked: bool) -> None:
    k_layer = keras.layers.Bidirectional(getattr(keras.layers, cls)(U, **kw), merge_mode=mode)
    g_layer = gn.layers.Bidirectional(getattr(gn.layers, cls)(U, **kw), merge_mode=mode)
    _compare(k_layer, g_layer, MASK if masked else None, seed=7)


def test_initial_state_matches_keras() -> None:
    r = np.random.default_rng(3)
    x = r.normal(size=(B, T, F)).astype("float32")
    h0, c0 = (r.normal(size=(B, U)).astype("float32") for _ in range(2))
    k_layer, g_layer = (
        keras.layers.LSTM(U, return_sequences=True),
        gn.layers.LSTM(U, return_sequences=True),
    )
    k_layer.build((B, T, F))
    g_layer(x)
    g_layer.set_weights([v.value.detach().numpy() for v in k_layer.weights])
    k_out = k_layer(torch.tensor(x), initial_state=[torch.tensor(h0), torch.tensor(c0)])
    g_out = g_layer(x, initial_state=[h0, c0])
    np.testing.assert_allclose(g_out.numpy(), k_out.detach().numpy(), rtol=1e-5, atol=2e-6)


def test_default_initialization_follows_keras() -> None:
    """Orthogonal recurrent kernels, zero biases with the forget gate's at 1."""
    layer = gn.layers.LSTM(6)
    layer(np.zeros((1, 2, 3), "float32"))
    U_ = layer.recurrent_kernel.numpy()
    np.testing.assert_allclose(U_ @ U_.T, np.eye(6), atol=1e-5)
    np.testing.assert_array_equal(layer.bias.numpy(), np.r_[np.zeros(6), np.ones(6), np.zeros(12)])
    k = keras.layers.LSTM(6)
    k.build((1, 2, 3))
    np.testing.assert_array_equal(k.weights[2].value.detach().numpy(), layer.bias.numpy())
