"""MultiHeadAttention against Keras 3's (KERAS_BACKEND=torch) given the same weights:
outputs, attention scores and the gradients of inputs and weights, with masks,
causal masking and cross-attention of different lengths."""

from __future__ import annotations

import os

import numpy as np
import pytest

import gpunet as gn

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")
torch.set_num_threads(1)
if keras.backend.backend() != "torch":  # pragma: no cover - another test set it first
    pytest.skip("needs KERAS_BACKEND=torch", allow_module_level=True)

R = np.random.default_rng(0)


def _host(w):
    return w.value.detach().numpy()


def _pair(**kw):
    km = keras.layers.MultiHeadAttention(dtype="float64", **kw)
    gm = gn.layers.MultiHeadAttention(dtype="float64", **kw)
    return km, gm


def _run_keras(km, q, v, k=None, **call):
    ts = [torch.tensor(a, requires_grad=True) for a in (q, v, k) if a is not None]
    kq, kv = ts[0], ts[1]
    kk = ts[2] if len(ts) > 2 else None
    # with the scores Keras takes its explicit path: its fused one (torch's
    # scaled_dot_product_attention) loses ~1e-7 even in float64
    y, scores = km(kq, kv, kk, **{**call, "return_attention_scores": True})
    proj = torch.tensor(np.random.default_rng(1).normal(size=tuple(y.shape)))
    (y * proj).sum().backward()
    grads = [t.grad.numpy() for t in ts]
    wgrads = [w.value.grad.numpy() for w in km.weights]
    return y.detach().numpy(), scores, grads, wgrads, proj.numpy()


def _run_gn(gm, km, q, v, k=None, proj=None, **call):
    ts = [gn.tensor(a, dtype="float64", requires_grad=True) for a in (q, v, k) if a is not None]
    out = gm(ts[0], ts[1], ts[2] if len(ts) > 2 else None, **call)
    y, scores = out if isinstance(out, tuple) else (out, None)
    (y * gn.tensor(proj, dtype="float64")).sum().backward()
    return y.numpy(), scores, [t.grad for t in ts], [np.asarray(w.grad) for w in gm.weights]


CASES = {
    "self": ({"num_heads": 2, "key_dim": 3}, (2, 5, 6), None, None, {}),
    "cross, value_dim, key": (
        {"num_heads": 3, "key_dim": 2, "value_dim": 4, "output_shape": 5},
        (2, 4, 6), (2, 7, 3), (2, 7, 5), {},
    ),
    "causal": ({"num_heads": 2, "key_dim": 4}, (3, 6, 4), None, None, {"use_causal_mask": True}),
    "attention_mask 3d": (
        {"num_heads": 2, "key_dim": 3}, (2, 4, 6), (2, 5, 6), None,
        {"attention_mask": R.random((2, 4, 5)) > 0.3},
    ),
    "value_mask + causal, no bias": (
        {"num_heads": 1, "key_dim": 5, "use_bias": False}, (2, 5, 3), None, None,
        {"value_mask": np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool),
         "use_causal_mask": True},
    ),
    "key_mask, scores": (
        {"num_heads": 2, "key_dim": 2}, (2, 3, 4), (2, 6, 4), (2, 6, 3),
        {"key_mask": np.array([[1, 1, 0, 1, 1, 0], [1] * 6], bool),
         "return_attention_scores": True},
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_mha_matches_keras_forward_and_gradients(name):
    kw, qs, vs, ks, call = CASES[name]
    q = R.normal(size=qs)
    v = q if vs is None else R.normal(size=vs)
    k = None if ks is None else R.normal(size=ks)
    km, gm = _pair(**kw)
    km(torch.tensor(q), torch.tensor(v), None if k is None else torch.tensor(k))  # build
    gm(q, v, k)
    weights = [np.random.default_rng(2 + i).normal(0, 0.5, tuple(w.shape))
               for i, w in enumerate(km.weights)]  # fmt: skip
    for w, value in zip(km.weights, weights, strict=True):
        w.assign(torch.tensor(value))
    gm.set_weights(weights)  # Keras' order and layouts load as they are
    assert [w.shape for w in gm.get_weights()] == [w.shape for w in weights]
    ky, ks_, kg, kwg, proj = _run_keras(km, q, v, k, **call)
    gy, gs, gg, gwg = _run_gn(gm, km, q, v, k, proj, **call)
    np.testing.assert_allclose(gy, ky, rtol=1e-10, atol=1e-12)
    if gs is not None:
        np.testing.assert_allclose(gs.numpy(), ks_.detach().numpy(), rtol=1e-10, atol=1e-12)
    if vs is None:  # self-attention: one tensor, its gradient summed over the three uses
        kg, gg = [kg[0] + kg[1]], [gg[0] + gg[1]]
    for a, b in zip(gg, kg, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)
    for a, b in zip(gwg, kwg, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)


def test_mha_weight_names_and_order_match_keras():
    km, gm = _pair(num_heads=2, key_dim=3, value_dim=4)
    q, v = R.normal(size=(1, 2, 6)), R.normal(size=(1, 3, 8))
    km(torch.tensor(q), torch.tensor(v))
    gm(q, v)
    keras_names = [
        w.path.split("/", 1)[1].replace("attention_output", "output") for w in km.weights
    ]
    ours = [w.name.split("/", 1)[1].replace("_", "/") for w in gm.weights]
    assert ours == keras_names
    assert [tuple(w.shape) for w in km.weights] == [w.shape for w in gm.weights]


def test_query_keras_mask_masks_rows_as_keras():
    from keras.src import backend as kb

    km, gm = _pair(num_heads=2, key_dim=2)
    q = R.normal(size=(2, 4, 3))
    qmask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], bool)
    kq = torch.tensor(q)
    km(kq, kq)
    gm(q, q)
    gm.set_weights([_host(w) for w in km.weights])
    kb.set_keras_mask(kq, torch.tensor(qmask))  # Keras reads the query's mask from the tensor
    ky = km(kq, kq, return_attention_scores=True)[0].detach().numpy()
    # the tensor is query and value: Keras takes its mask for both
    gy = gm(q, q, query_mask=qmask, value_mask=qmask).numpy()
    np.testing.assert_allclose(gy, ky, rtol=1e-10, atol=1e-12)
