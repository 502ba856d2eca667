"""Layers with several outputs in functional models: ``LSTM(return_state=True)``,
``Bidirectional`` states, ``MultiHeadAttention(return_attention_scores=True)``, and
``initial_state=`` given symbolic tensors, as in Keras' character-level seq2seq
example (keras.io, lstm_seq2seq): training, the inference models that share the
trained layers, saving, summary, errors, and Keras 3 (torch backend) as the oracle."""

from __future__ import annotations

import os

import numpy as np
import pytest

import gpunet as gn
from gpunet.errors import InputValidationError, InvalidParameterError

N_ENC, N_DEC, LATENT = 5, 6, 16


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    torch = pytest.importorskip("torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":  # pragma: no cover - keras imported elsewhere first
        pytest.skip("keras runs on another backend here")
    torch.set_num_threads(1)
    return keras, torch


def seq2seq(k, latent=LATENT):
    """The keras.io example, written against module ``k`` (gpunet or keras)."""
    encoder_inputs = k.Input(shape=(None, N_ENC))
    encoder = k.layers.LSTM(latent, return_state=True)
    encoder_outputs, state_h, state_c = encoder(encoder_inputs)  # noqa: RUF059 (keras.io's)
    encoder_states = [state_h, state_c]
    decoder_inputs = k.Input(shape=(None, N_DEC))
    decoder_lstm = k.layers.LSTM(latent, return_sequences=True, return_state=True)
    decoder_outputs, _, _ = decoder_lstm(decoder_inputs, initial_state=encoder_states)
    decoder_dense = k.layers.Dense(N_DEC, activation="softmax")
    decoder_outputs = decoder_dense(decoder_outputs)
    model = k.Model([encoder_inputs, decoder_inputs], decoder_outputs)
    # the inference models reuse the trained layers
    encoder_model = k.Model(encoder_inputs, encoder_states)
    decoder_state_input_h = k.Input(shape=(latent,))
    decoder_state_input_c = k.Input(shape=(latent,))
    decoder_states_inputs = [decoder_state_input_h, decoder_state_input_c]
    decoder_outputs, state_h, state_c = decoder_lstm(
        decoder_inputs, initial_state=decoder_states_inputs
    )
    decoder_outputs = decoder_dense(decoder_outputs)
    decoder_model = k.Model(
        [decoder_inputs] + decoder_states_inputs,  # noqa: RUF005 (as keras.io writes it)
        [decoder_outputs, state_h, state_c],
    )
    return model, encoder_model, decoder_model, (encoder, decoder_lstm, decoder_dense)


def copy_task(n, seed=0, t_enc=6):
    """Decode the source's first tokens (a start token first): the decoder has to read
    them from the encoder's states, its only link to the source."""
    r = np.random.default_rng(seed)
    src = r.integers(0, N_ENC, (n, t_enc))
    start = N_DEC - 1
    tgt = np.concatenate([np.full((n, 1), start), src[:, :3]], axis=1)  # start, 3 tokens
    eye_e, eye_d = np.eye(N_ENC, dtype="float32"), np.eye(N_DEC, dtype="float32")
    enc_in, dec_in = eye_e[src], eye_d[tgt]
    dec_target = np.concatenate([dec_in[:, 1:], eye_d[np.full((n, 1), start)]], axis=1)
    return enc_in, dec_in, dec_target


@pytest.mark.slow
def test_seq2seq_learns_and_its_inference_models_share_the_trained_layers():
    gn.utils.set_random_seed(0)
    model, encoder_model, decoder_model, _ = seq2seq(gn)
    enc_in, dec_in, dec_target = copy_task(512)
    model.compile(optimizer=gn.optimizers.RMSprop(learning_rate=0.01),
                  loss="categorical_crossentropy", metrics=["accuracy"])  # fmt: skip
    hist = model.fit([enc_in, dec_in], dec_target, batch_size=64, epochs=15,
                     validation_split=0.2, verbose=0).history  # fmt: skip
    assert hist["loss"][-1] < 0.6 * hist["loss"][0], hist["loss"]
    assert hist["val_accuracy"][-1] > 0.7, hist["val_accuracy"]
    # the inference models: one decoding step from the encoder's states gives what the
    # training model gives at the first step (the same trained weights, shared)
    states = encoder_model.predict(enc_in[:8], verbose=0)
    assert isinstance(states, list) and [s.shape for s in states] == [(8, LATENT)] * 2
    probs, h, c = decoder_model.predict([dec_in[:8, :1], *states], verbose=0)
    full = model.predict([enc_in[:8], dec_in[:8]], verbose=0)
    np.testing.assert_allclose(probs[:, 0], full[:, 0], rtol=1e-5, atol=1e-6)
    # greedy decoding with the states fed back, as the keras.io example does
    tok, decoded = dec_in[:64, :1], []
    h, c = encoder_model.predict(enc_in[:64], verbose=0)
    for _ in range(3):
        probs, h, c = decoder_model.predict([tok, h, c], verbose=0)
        ids = probs[:, -1].argmax(-1)
        decoded.append(ids)
        tok = np.eye(N_DEC, dtype="float32")[ids][:, None]
    truth = dec_target[:64, :3].argmax(-1)
    assert (np.stack(decoded, 1) == truth).mean() > 0.6  # chance: 1 in 5


def _kpredict(model, x):
    """Keras' model on host arrays, as host arrays (one, or a list)."""
    import torch

    with torch.no_grad():
        out = model([torch.tensor(a) for a in x] if isinstance(x, list) else torch.tensor(x))
    return [o.numpy() for o in out] if isinstance(out, (list, tuple)) else out.numpy()


def _copy_weights(g_layers, k_layers):
    for g, k in zip(g_layers, k_layers, strict=True):
        k.set_weights(g.get_weights())


def test_seq2seq_matches_keras_outputs_and_gradients():
    keras, torch = _keras()
    gn.utils.set_random_seed(1)
    g_model, g_enc, g_dec, g_layers = seq2seq(gn, latent=5)
    k_model, k_enc, k_dec, k_layers = seq2seq(keras, latent=5)
    _copy_weights(g_layers, k_layers)
    enc_in, dec_in, _ = copy_task(3, seed=2)
    np.testing.assert_allclose(g_model.predict([enc_in, dec_in], verbose=0),
                               _kpredict(k_model, [enc_in, dec_in]),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    for a, b in zip(g_enc.predict(enc_in, verbose=0), _kpredict(k_enc, enc_in),
                    strict=True):  # fmt: skip
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    r = np.random.default_rng(3)
    h0, c0 = (r.normal(size=(3, 5)).astype("float32") for _ in range(2))
    # a loss that reads all three outputs of the decoder model, states included
    proj = [r.normal(size=s).astype("float32") for s in [(3, 4, N_DEC), (3, 5), (3, 5)]]
    k_in = [torch.tensor(a, requires_grad=True) for a in (dec_in, h0, c0)]
    k_outs = k_dec(k_in)
    sum((o * torch.tensor(p)).sum() for o, p in zip(k_outs, proj, strict=True)).backward()
    g_in = [gn.tensor(a, requires_grad=True) for a in (dec_in, h0, c0)]
    g_outs = g_dec(g_in)
    assert isinstance(g_outs, list) and len(g_outs) == 3
    total = sum(((o * gn.tensor(p)).sum() for o, p in zip(g_outs, proj, strict=True)),
                gn.tensor(np.float32(0)))  # fmt: skip
    total.backward()
    for a, b in zip(g_outs, k_outs, strict=True):
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)
    for a, b in zip(g_in, k_in, strict=True):  # into the state inputs too
        np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=1e-4, atol=1e-6)
    # the training model: the encoder learns only through initial_state
    for layer in g_layers:
        for p in layer.weights:
            p.zero_grad()
    for v in k_model.trainable_weights:
        v.value.grad = None
    k_y = k_model([torch.tensor(enc_in), torch.tensor(dec_in)])
    (k_y * torch.tensor(proj[0])).sum().backward()
    g_y = g_model([gn.tensor(enc_in), gn.tensor(dec_in)])
    (g_y * gn.tensor(proj[0])).sum().backward()
    for g, k in zip(g_layers, k_layers, strict=True):
        for p, v in zip(g.weights, k.weights, strict=True):
            np.testing.assert_allclose(np.asarray(p.grad), v.value.grad.numpy(),
                                       rtol=1e-4, atol=1e-6, err_msg=p.name)  # fmt: skip
    assert np.abs(np.asarray(g_layers[0].kernel.grad)).sum() > 0  # the encoder learns


def test_unused_outputs_get_no_gradient_and_the_used_ones_do():
    x = gn.Input(shape=(None, 3))
    out, h, c = gn.layers.LSTM(4, return_state=True, return_sequences=True)(x)
    model = gn.Model(x, [out, h, c])
    X = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    only_c = gn.Model(x, c)
    xt = gn.tensor(X, requires_grad=True)
    only_c(xt).sum().backward()
    g_c = np.array(xt.grad)
    xt2 = gn.tensor(X, requires_grad=True)
    _, _, c2 = model(xt2)
    c2.sum().backward()  # out and h unused: the same gradient as the model of c alone
    np.testing.assert_allclose(xt2.grad, g_c, rtol=1e-6, atol=1e-7)
    assert np.abs(g_c).sum() > 0


def test_bidirectional_states_in_a_functional_model_match_keras():
    keras, _ = _keras()
    r = np.random.default_rng(4)
    X = r.normal(size=(2, 5, 3)).astype("float32")

    def build(k):
        x = k.Input(shape=(None, 3))
        bi = k.layers.Bidirectional(k.layers.LSTM(4, return_state=True))
        out, fh, fc, bh, bc = bi(x)
        dense = k.layers.Dense(2)
        y = dense(k.layers.Concatenate()([out, fc, bc]))
        return k.Model(x, [y, fh, bh]), bi, dense

    g_model, g_bi, g_dense = build(gn)
    k_model, k_bi, k_dense = build(keras)
    _copy_weights([g_bi, g_dense], [k_bi, k_dense])
    g_out, k_out = g_model.predict(X, verbose=0), _kpredict(k_model, X)
    assert len(g_out) == 3
    for a, b in zip(g_out, k_out, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert [t.shape for t in g_bi.output] == [(None, 8), *[(None, 4)] * 4]


def test_attention_scores_as_a_model_output_match_keras():
    keras, _ = _keras()
    r = np.random.default_rng(5)
    Q, V = r.normal(size=(2, 4, 6)).astype("float32"), r.normal(size=(2, 3, 6)).astype("float32")

    def build(k):
        q, v = k.Input(shape=(None, 6)), k.Input(shape=(None, 6))
        mha = k.layers.MultiHeadAttention(num_heads=2, key_dim=3)
        out, scores = mha(q, v, return_attention_scores=True)
        return k.Model([q, v], [k.layers.Dense(2)(out), scores]), mha

    g_model, _ = build(gn)
    k_model, _ = build(keras)
    _kpredict(k_model, [Q, V])  # builds Keras' layers
    for g, k in zip(g_model.layers, [lay for lay in k_model.layers if lay.weights],
                    strict=True):  # fmt: skip
        k.set_weights(g.get_weights())
    g_out, k_out = g_model.predict([Q, V], verbose=0), _kpredict(k_model, [Q, V])
    assert [a.shape for a in g_out] == [(2, 4, 2), (2, 2, 4, 3)]
    for a, b in zip(g_out, k_out, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    path = os.path.join(_tmp(), "mha.gpunet")  # the scores flag is saved with the call
    g_model.save(path)
    loaded = gn.models.load_model(path)
    for a, b in zip(loaded.predict([Q, V], verbose=0), g_out, strict=True):
        np.testing.assert_array_equal(a, b)


def _tmp() -> str:
    import tempfile

    return tempfile.mkdtemp()


def test_save_load_round_trip_gives_identical_predictions(tmp_path):
    gn.utils.set_random_seed(2)
    model, encoder_model, decoder_model, _ = seq2seq(gn, latent=4)
    enc_in, dec_in, target = copy_task(16, seed=5)
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy")
    model.fit([enc_in, dec_in], target, epochs=1, batch_size=8, verbose=0)
    states = encoder_model.predict(enc_in, verbose=0)
    for m, x in ((model, [enc_in, dec_in]), (encoder_model, enc_in),
                 (decoder_model, [dec_in, *states])):  # fmt: skip
        path = str(tmp_path / f"{m.name}.gpunet")
        m.save(path)
        loaded = gn.models.load_model(path)
        want, got = m.predict(x, verbose=0), loaded.predict(x, verbose=0)
        want, got = (want, got) if isinstance(want, list) else ([want], [got])
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)
    # the loaded training model trains on from where it was
    loaded = gn.models.load_model(str(tmp_path / f"{model.name}.gpunet"))
    loaded.fit([enc_in, dec_in], target, epochs=1, batch_size=8, verbose=0)


def test_summary_lists_every_output_of_a_call_and_what_it_reads():
    _, _, decoder_model, (_, decoder_lstm, _) = seq2seq(gn, latent=4)
    lines: list[str] = []
    decoder_model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    row = next(line for line in text.splitlines() if line.startswith(decoder_lstm.name + " "))
    assert "(None, None, 4), (None, 4), (None, 4)" in row
    names = [t.name for t in decoder_model.inputs]
    assert all(n in row for n in names), row  # the states are read too


def test_wrong_number_of_outputs_is_pythons_unpacking_error():
    x = gn.Input(shape=(None, 3))
    with pytest.raises(ValueError, match="too many values to unpack"):
        _out, _h = gn.layers.LSTM(4, return_state=True)(x)  # LSTM gives 3


def test_non_symbolic_initial_state_names_the_layer_and_the_shape():
    x = gn.Input(shape=(None, 3))
    lstm = gn.layers.LSTM(4, name="decoder")
    with pytest.raises(InvalidParameterError, match=r"'decoder'.*initial_state.*\(2, 4\)"):
        lstm(x, initial_state=[np.zeros((2, 4), "float32")] * 2)


@pytest.mark.parametrize(
    ("shapes", "match"),
    [([(5,), (4,)], r"'decoder' expects initial states of shape \(None, 4\), got "
                    r"\(None, 5\) \(state 0 of the LSTM\)"),
     ([(4,)], r"'decoder' takes 2 initial state\(s\), got 1 \(LSTM's states are \[h, c\]\)")],
)  # fmt: skip
def test_states_of_the_wrong_shape_name_the_layer_and_the_shape(shapes, match):
    x = gn.Input(shape=(None, 3))
    states = [gn.Input(shape=s) for s in shapes]
    with pytest.raises(InputValidationError, match=match):
        gn.layers.LSTM(4, name="decoder")(x, initial_state=states)


def test_bidirectional_initial_state_of_the_wrong_count_is_named():
    x = gn.Input(shape=(None, 3))
    bi = gn.layers.Bidirectional(gn.layers.GRU(4), name="bi")
    with pytest.raises(InvalidParameterError, match=r"'bi' takes 2 initial states"):
        bi(x, initial_state=[gn.Input(shape=(4,))])
    out = bi(x, initial_state=[gn.Input(shape=(4,)), gn.Input(shape=(4,))])
    assert out.shape == (None, 8)


@pytest.mark.parametrize(
    ("cls", "kw"),
    [("LSTM", {}), ("GRU", {}), ("GRU", {"reset_after": False})],
    ids=["LSTM", "GRU", "GRU(reset_after False)"],
)
def test_recurrent_dropout_takes_one_mask_per_gate_as_keras_3(cls, kw):
    """With ``recurrent_dropout`` Keras 3's LSTM and GRU cells draw a mask per gate for
    the state (and for the inputs); given the same masks both give the same outputs and
    gradients while training, and gpunet's draws differ between gates."""
    keras, torch = _keras()
    B, T, F, U = 3, 5, 4, 3
    r = np.random.default_rng(6)
    x = r.normal(size=(B, T, F)).astype("float32")
    G = 4 if cls == "LSTM" else 3

    def mask(width):
        return ((r.random((B, width)) > 0.4) / 0.6).astype("float32")

    dps, rdps = [mask(F) for _ in range(G)], [mask(U) for _ in range(G)]
    k_layer = getattr(keras.layers, cls)(U, dropout=0.4, recurrent_dropout=0.4, **kw)
    g_layer = getattr(gn.layers, cls)(U, dropout=0.4, recurrent_dropout=0.4, **kw)
    k_layer.build((B, T, F))
    g_layer.build((None, T, F))
    g_layer.built = True
    weights = [(r.normal(size=tuple(w.shape)) * 0.5).astype("float32") for w in k_layer.weights]
    k_layer.set_weights(weights)
    g_layer.set_weights(weights)
    k_layer.cell.get_dropout_mask = lambda _: [torch.tensor(m) for m in dps]
    k_layer.cell.get_recurrent_dropout_mask = lambda _: [torch.tensor(m) for m in rdps]
    drawn = g_layer._dropout(g_layer.ops, x, True)
    assert [tuple(m.shape) for m in drawn] == [(B, G * F), (B, G * U)]
    assert not np.array_equal(drawn[1][:, :U], drawn[1][:, U : 2 * U])  # not one shared mask
    g_layer._dropout = lambda ops, X, training: (np.concatenate(dps, 1), np.concatenate(rdps, 1))
    xt = torch.tensor(x, requires_grad=True)
    k_out = k_layer(xt, training=True)
    proj = r.normal(size=tuple(k_out.shape)).astype("float32")
    (k_out * torch.tensor(proj)).sum().backward()
    gx = gn.tensor(x, requires_grad=True)
    g_out = g_layer(gx, training=True)
    (g_out * gn.tensor(proj)).sum().backward()
    np.testing.assert_allclose(g_out.numpy(), k_out.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gx.grad, xt.grad.numpy(), rtol=1e-4, atol=1e-6)
    for p, v in zip(g_layer.weights, k_layer.weights, strict=True):
        np.testing.assert_allclose(np.asarray(p.grad), v.value.grad.numpy(),
                                   rtol=1e-4, atol=1e-6, err_msg=p.name)  # fmt: skip


def _seq2seq_doc(tmp_path):
    from gpunet.saving import _container

    _, _, decoder_model, _ = seq2seq(gn, latent=4)
    path = tmp_path / "m.gpunet"
    decoder_model.save(path)
    return _container.read(path)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda c: c["nodes"][0].pop("n_outputs"), r"output shape .* is not valid for 1 output"),
        (lambda c: c["nodes"][0].update(n_outputs=2), "is not valid for 2 output"),
        (lambda c: c["nodes"][0].update(n_outputs=1), "n_outputs"),
        (lambda c: c["nodes"][0].update(initial_state=[7]), "neither an input nor an earlier"),
        (lambda c: c["nodes"][0].update(initial_state=[-2]), r"initial state\(s\), got 1"),
        (lambda c: c["nodes"][1].update(args=[3]), "neither an input nor an earlier call"),
        (lambda c: c.update(outputs=[0, 1, 4]), "neither an input nor an earlier call"),
    ],
    ids=["no_count", "wrong_count", "count_1", "state_ref", "state_count", "arg_ref", "out_ref"],
)
def test_hostile_multi_output_graphs_are_rejected(tmp_path, edit, match):
    """A file's output counts and state references are checked before anything is built
    (references count outputs: the LSTM's three are 0, 1, 2, the Dense's is 3)."""
    import json

    from gpunet.errors import ModelFileError
    from gpunet.saving import _container

    doc, tensors = _seq2seq_doc(tmp_path)
    cfg = doc["model"]["config"]
    assert cfg["nodes"][0]["n_outputs"] == 3 and cfg["outputs"] == [3, 1, 2]
    edit(cfg)
    bad = _container.pack(json.loads(json.dumps(doc)), tensors)
    with pytest.raises(ModelFileError, match=match):
        gn.models.load_model(bad)


def test_masks_flow_through_a_multi_output_call():
    """Embedding(mask_zero) -> LSTM(return_state): the sequence output keeps the mask,
    the states carry none, and the graph gives what the eager calls give."""
    ids = gn.Input(shape=(None,), dtype="int32")
    emb = gn.layers.Embedding(7, 3, mask_zero=True)
    lstm = gn.layers.LSTM(4, return_sequences=True, return_state=True)
    seq, h, c = lstm(emb(ids))
    assert seq._keras_mask is not None and h._keras_mask is None and c._keras_mask is None
    pooled = gn.layers.GlobalAveragePooling1D()(seq)  # reads the mask
    model = gn.Model(ids, [pooled, h, c])
    X = np.array([[3, 1, 0, 0], [2, 5, 6, 1]], dtype="int32")
    got = model.predict(X, verbose=0)
    e_seq, e_h, e_c = lstm(emb(X))
    want = [gn.layers.GlobalAveragePooling1D()(e_seq, mask=X != 0).numpy(), e_h.numpy(),
            e_c.numpy()]  # fmt: skip
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got[1][0], lstm(emb(X[:1, :2]))[1].numpy()[0], rtol=1e-5)


def test_a_model_of_several_outputs_is_a_layer_of_several_outputs():
    _, encoder_model, _, _ = seq2seq(gn, latent=4)
    x = gn.Input(shape=(None, N_ENC))
    h, c = encoder_model(x)  # a functional model called on symbolic tensors
    outer = gn.Model(x, gn.layers.Concatenate()([h, c]))
    enc_in = copy_task(3)[0]
    want = np.concatenate(encoder_model.predict(enc_in, verbose=0), axis=1)
    np.testing.assert_allclose(outer.predict(enc_in, verbose=0), want, rtol=1e-6)


def test_bidirectional_without_merge_gives_two_outputs():
    x = gn.Input(shape=(5, 3))
    fwd, bwd = gn.layers.Bidirectional(gn.layers.GRU(2), merge_mode=None)(x)
    model = gn.Model(x, [fwd, bwd])
    X = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    out = model.predict(X, verbose=0)
    assert [o.shape for o in out] == [(2, 2), (2, 2)]
    assert not np.allclose(out[0], out[1])
