"""MultiHeadAttention and the position layers on every path: eager, functional models
with several inputs, fit on the CPU and the simulated device, save/load, summary();
the attention op's blocked path (memory linear in T), float16 softmax in float32,
and the bad-input table."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import gpunet as gn
from gpunet.backend.ops import Ops
from gpunet.errors import InputValidationError, InvalidParameterError

R = np.random.default_rng(0)
XS = R.normal(size=(32, 6, 4)).astype("float32")
YS = (XS.sum(axis=(1, 2)) > 0).astype("int64")


def _classifier(device="cpu", causal=False):
    gn.utils.set_random_seed(0)
    x = gn.Input(shape=(6, 4), name="x")
    h = gn.layers.MultiHeadAttention(2, 3, name="mha")(x, x, use_causal_mask=causal)
    h = gn.layers.Add()([x, h])
    h = gn.layers.LayerNormalization()(h)
    out = gn.layers.Dense(2)(gn.layers.GlobalAveragePooling1D()(h))
    model = gn.Model(x, out, device=device)
    model.compile(optimizer="adam", loss=gn.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_a_functional_attention_model_trains_saves_loads_and_shows_in_summary(tmp_path):
    model = _classifier()
    before = model.evaluate(XS, YS, verbose=0)
    model.fit(XS, YS, epochs=5, batch_size=8, verbose=0)
    assert model.evaluate(XS, YS, verbose=0) < before  # it learned
    path = tmp_path / "mha.gpunet"
    model.save(path)
    back = gn.models.load_model(path)
    np.testing.assert_array_equal(back.predict(XS), model.predict(XS))
    lines: list[str] = []
    back.summary(print_fn=lines.append)
    row = next(line for line in lines if "(MultiHeadAttention)" in line)
    # Keras' count: 3 * (4 * 2 * 3 + 2 * 3) + 2 * 3 * 4 + 4 = 118
    assert "118" in row and "(None, 6, 4)" in row


def test_an_attention_mask_input_is_part_of_the_graph_and_saves(tmp_path):
    x, m = gn.Input(shape=(5, 4), name="x"), gn.Input(shape=(5, 5), name="mask")
    y = gn.layers.MultiHeadAttention(2, 2)(x, x, attention_mask=m)
    model = gn.Model([x, m], y)
    xs = R.normal(size=(3, 5, 4)).astype("float32")
    mask = np.tril(np.ones((3, 5, 5), dtype="float32"))
    got = model.predict([xs, mask])
    layer = model.layers[-1] if model.layers[-1].name.startswith("multi") else model.layers[1]
    np.testing.assert_allclose(got, layer(xs, xs, attention_mask=mask > 0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(got, layer(xs, xs, use_causal_mask=True).numpy(), rtol=1e-6)
    model.save(tmp_path / "m.gpunet")
    back = gn.models.load_model(tmp_path / "m.gpunet")
    np.testing.assert_array_equal(back.predict([xs, mask]), got)


def test_causal_functional_model_runs_saves_and_loads_its_call_keywords(tmp_path):
    model = _classifier(causal=True)
    model.save(tmp_path / "causal.gpunet")
    back = gn.models.load_model(tmp_path / "causal.gpunet")
    node = next(n for n in back._nodes if n.layer.name == "mha")
    assert node.kwargs == {"use_causal_mask": True}
    np.testing.assert_array_equal(back.predict(XS), model.predict(XS))
    layer = next(la for la in model.layers if la.name == "mha")
    xs = XS[:4]
    h = layer(xs, xs, use_causal_mask=True).numpy()
    # position 0 sees only itself: changing later steps leaves it alone
    xs2 = xs.copy()
    xs2[:, 1:] += 1.0
    h2 = layer(xs2, xs2, use_causal_mask=True).numpy()
    np.testing.assert_allclose(h2[:, 0], h[:, 0], rtol=1e-6)
    assert not np.allclose(h2[:, 1:], h[:, 1:])
    assert model.predict(xs).shape == (4, 2)


def test_fit_on_the_simulated_device_matches_the_cpu():
    pytest.importorskip("array_api_strict")
    weights = {}
    for device in ("cpu", "sim"):
        model = _classifier(device, causal=True)
        model.fit(XS, YS, epochs=2, batch_size=8, verbose=0)
        weights[device] = model.get_weights()
    for a, b in zip(weights["cpu"], weights["sim"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_scores_are_rows_of_probabilities_with_masked_keys_at_zero():
    mha = gn.layers.MultiHeadAttention(3, 2)
    q, v = R.normal(size=(2, 4, 5)), R.normal(size=(2, 6, 5))
    vmask = np.array([[1, 1, 1, 1, 0, 0], [1] * 6], bool)
    y, scores = mha(q, v, value_mask=vmask, return_attention_scores=True)
    s = scores.numpy()
    assert y.shape == (2, 4, 5) and s.shape == (2, 3, 4, 6)
    np.testing.assert_allclose(s.sum(-1), 1.0, rtol=1e-6)
    assert np.all(s[0, :, :, 4:] == 0)


def test_dropout_acts_only_while_training():
    mha = gn.layers.MultiHeadAttention(2, 2, dropout=0.5)
    x = R.normal(size=(2, 5, 4))
    eval_out = mha(x, x, training=False).numpy()
    np.testing.assert_array_equal(eval_out, mha.eval()(x, x).numpy())
    mha.train()
    assert not np.allclose(mha(x, x, training=True).numpy(), eval_out)


# -- the op ----------------------------------------------------------------------------
def _reference(Q, K, V, scale, causal):
    S = Q @ np.swapaxes(K, -1, -2) * scale
    if causal:
        S = np.where(np.tri(S.shape[-2], S.shape[-1], dtype=bool), S, -np.inf)
    P = np.exp(S - S.max(-1, keepdims=True))
    return (P / P.sum(-1, keepdims=True)) @ V


def _peak(ops, T):
    Q = R.normal(size=(1, 1, T, 8))
    tracemalloc.start()
    O, _, cache = ops.attention(Q, Q, Q, scale=0.3, causal=True)
    ops.backprop_attention(O, cache)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_blocked_attention_memory_grows_linearly_in_T():
    ops = Ops()
    ops.attention_whole, ops.attention_chunk = 0, 32
    small, big = _peak(ops, 256), _peak(ops, 1024)
    assert big / small < 6  # T² would be 16x; the blocks are 32 x T
    whole = Ops()
    assert _peak(whole, 256) > 256 * 256 * 8  # the whole path keeps P


def test_blocked_and_whole_paths_agree_with_the_reference():
    blocked = Ops()
    blocked.attention_whole, blocked.attention_chunk = 0, 3
    Q, K, V = R.normal(size=(2, 3, 7, 4)), R.normal(size=(2, 3, 9, 4)), R.normal(size=(2, 3, 9, 5))
    for causal in (False, True):
        want = _reference(Q, K, V, 0.5, causal)
        for ops in (Ops(), blocked):
            np.testing.assert_allclose(ops.attention(Q, K, V, scale=0.5, causal=causal)[0], want,
                                       rtol=1e-12, atol=1e-12)  # fmt: skip


def test_float16_scores_take_the_softmax_in_float32():
    S = (R.normal(size=(3, 8, 8)) * 30).astype("float16")  # exp(30) overflows float16
    P = Ops().attention_softmax(S, causal=True, scale=1.0)
    assert P.dtype == np.float16 and np.all(np.isfinite(P))
    S64 = S.astype("float64")
    want = Ops().attention_softmax(S64, causal=True)
    np.testing.assert_allclose(P.astype("float64"), want, atol=1e-3)
    Q = R.normal(size=(1, 2, 8, 4)).astype("float16")
    O, _, cache = Ops().attention(Q, Q, Q, scale=0.5)
    dQ, dK, dV = Ops().backprop_attention(O, cache)
    assert O.dtype == dQ.dtype == dK.dtype == dV.dtype == np.float16
    Q64 = Q.astype("float64")
    np.testing.assert_allclose(O, _reference(Q64, Q64, Q64, 0.5, False), atol=5e-3)


# -- position layers -------------------------------------------------------------------
def test_position_embedding_is_its_rows_broadcast():
    pos = gn.layers.PositionEmbedding(10)
    x = np.zeros((2, 4, 3), dtype="float32")
    out = pos(x, start_index=2).numpy()
    E = pos.embeddings.numpy()
    np.testing.assert_array_equal(out, np.broadcast_to(E[2:6], (2, 4, 3)))
    with pytest.raises(InputValidationError, match="10 positions"):
        pos(np.zeros((1, 9, 3)), start_index=2)


def test_sine_position_encoding_is_vaswanis():
    T, d = 7, 6
    enc = gn.layers.SinePositionEncoding(dtype="float64")(np.zeros((1, T, d))).numpy()[0]
    pos, i = np.arange(T)[:, None], np.arange(d // 2)[None, :]
    angle = pos / 10000 ** (2 * i / d)
    np.testing.assert_allclose(enc[:, 0::2], np.sin(angle), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(enc[:, 1::2], np.cos(angle), rtol=1e-12, atol=1e-12)


def test_position_layers_save_and_load(tmp_path):
    gn.utils.set_random_seed(0)
    x = gn.Input(shape=(5, 4))
    h = gn.layers.Add()([x, gn.layers.PositionEmbedding(8)(x)])
    h = gn.layers.Add()([h, gn.layers.SinePositionEncoding(max_wavelength=100)(h)])
    model = gn.Model(x, gn.layers.Dense(1)(h))
    xs = R.normal(size=(2, 5, 4)).astype("float32")
    model.save(tmp_path / "pos.gpunet")
    back = gn.models.load_model(tmp_path / "pos.gpunet")
    np.testing.assert_array_equal(back.predict(xs), model.predict(xs))


# -- the bad-input table -----------------------------------------------------------------
def _mha(device, **kw):
    gn.utils.set_random_seed(0)
    layer = gn.layers.MultiHeadAttention(2, 3, **kw).to(device)
    layer(np.zeros((2, 4, 5), "float32"), np.zeros((2, 6, 5), "float32"))
    return layer


Q4, V6 = np.zeros((2, 4, 5), "float32"), np.zeros((2, 6, 5), "float32")
BAD = [
    ("attention_mask that does not broadcast",
     lambda d: _mha(d)(Q4, V6, attention_mask=np.ones((2, 4, 5), bool)),
     InputValidationError, ["attention_mask of shape (2, 4, 5)", "(2, 4, 6)"]),
    ("value_mask of the wrong length", lambda d: _mha(d)(Q4, V6, value_mask=np.ones((2, 5))),
     InputValidationError, ["value_mask must have shape (2, 6)", "(2, 5)"]),
    ("query features unlike the built kernel", lambda d: _mha(d)(np.zeros((2, 4, 3)), V6),
     InputValidationError, ["query has 3 features", "built for 5"]),
    ("causal mask, unequal lengths", lambda d: _mha(d)(Q4, V6, use_causal_mask=True),
     InputValidationError, ["use_causal_mask", "4 query and 6 key steps"]),
    ("key and value lengths differ", lambda d: _mha(d)(Q4, V6, np.zeros((2, 5, 5))),
     InputValidationError, ["key has 5 steps and value 6"]),
    ("2-D query", lambda d: _mha(d)(np.zeros((2, 5)), V6), InputValidationError,
     ["query must have shape (batch, T, features)", "(2, 5)"]),
    ("value missing", lambda d: _mha(d)(Q4), InputValidationError, ["value is missing"]),
    ("attention_axes=(1, 2)", lambda d: gn.layers.MultiHeadAttention(2, 3, attention_axes=(1, 2)),
     InvalidParameterError, ["attention_axes=(1, 2) is not supported"]),
    ("key_dim=0", lambda d: gn.layers.MultiHeadAttention(2, 0), InvalidParameterError,
     ["key_dim must be a positive int", "0"]),
    ("output_shape=(2, 3)", lambda d: gn.layers.MultiHeadAttention(2, 3, output_shape=(2, 3)),
     InvalidParameterError, ["output_shape must be an int", "(2, 3)"]),
    ("PositionEmbedding too short",
     lambda d: gn.layers.PositionEmbedding(3).to(d)(np.zeros((1, 5, 2))), InputValidationError,
     ["3 positions", "5 steps"]),
    ("SinePositionEncoding of 1-D input",
     lambda d: gn.layers.SinePositionEncoding().to(d)(np.zeros((4,))), InputValidationError,
     ["(batch, T, features)"]),
]  # fmt: skip


@pytest.mark.parametrize("device", ["cpu", "sim"])
@pytest.mark.parametrize(("run", "exc", "words"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_attention_input_is_named(device, run, exc, words):
    if device == "sim":
        pytest.importorskip("array_api_strict")
    with pytest.raises(exc) as info:
        run(device)
    message = str(info.value)
    assert all(w in message for w in words), message


def _padded(n, seed):
    """Sequences of 2..8 steps padded with loud noise; the label is whether the real
    steps' first feature has a positive mean. Only a model that masks the padding
    can tell."""
    r = np.random.default_rng(seed)
    T = 8
    lens = r.integers(2, T + 1, n)
    x = r.normal(size=(n, T, 4)).astype("float32")
    pad = np.arange(T)[None, :] >= lens[:, None]
    x[pad] = r.normal(3.0, 3.0, size=(int(pad.sum()), 4))
    y = np.array([x[i, : lens[i], 0].mean() > 0 for i in range(n)]).astype("int64")
    keep = np.broadcast_to((~pad)[:, None, :], (n, T, T)).astype("float32")
    return x, keep, y


def test_a_padded_sequence_task_is_learned_through_its_padding_mask():
    gn.utils.set_random_seed(0)
    x_in, m_in = gn.Input(shape=(8, 4)), gn.Input(shape=(8, 8))
    h = gn.layers.Dense(16)(x_in)
    a = gn.layers.MultiHeadAttention(2, 8)(h, h, attention_mask=m_in)
    out = gn.layers.Dense(2)(gn.layers.GlobalAveragePooling1D()(gn.layers.Add()([h, a])))
    model = gn.Model([x_in, m_in], out)
    model.compile(optimizer=gn.optimizers.Adam(3e-3), metrics=["accuracy"],
                  loss=gn.losses.SparseCategoricalCrossentropy(from_logits=True))  # fmt: skip
    x, m, y = _padded(512, 0)
    xv, mv, yv = _padded(256, 1)
    model.fit([x, m], y, epochs=15, batch_size=32, verbose=0)
    assert model.evaluate([xv, mv], yv, verbose=0)[1] > 0.9
    # the same weights without the mask see the noise: far worse
    assert model.evaluate([xv, np.ones_like(mv)], yv, verbose=0)[1] < 0.8


def test_only_known_call_flags_are_saved(tmp_path):
    x = gn.Input(shape=(4, 3))
    y = gn.layers.MultiHeadAttention(1, 2)(x, x, return_attention_scores=False, training=True)
    gn.Model(x, y).save(tmp_path / "ok.gpunet")  # training=True: a flag the file keeps
    back = gn.models.load_model(tmp_path / "ok.gpunet")
    assert back._nodes[0].kwargs == {"training": True}

    @gn.layers.spec.register
    class CallFlagProbe(gn.layers.Layer):
        def call(self, x, factor=1.0):
            return x * factor

    model = gn.Model(x, CallFlagProbe()(x, factor=2.0))
    with pytest.raises(InvalidParameterError, match="True/False values of"):
        model.save(tmp_path / "bad.gpunet")
