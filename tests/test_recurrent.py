"""SimpleRNN, LSTM, GRU and Bidirectional through every path: the graph-free step,
save/load, summary(), the simulated device, the functional API, the masking rules
(a padded sequence gives what its unpadded part gives) and the bad-input table."""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn
from gpunet.engine import step
from gpunet.errors import InputValidationError, InvalidParameterError

L = gn.layers
RNG = np.random.default_rng(0)
X = RNG.normal(size=(24, 6, 3)).astype("float32")
Y = RNG.normal(size=(24, 2)).astype("float32")


def _model(device: str = "cpu") -> gn.Sequential:
    gn.utils.set_random_seed(0)
    model = gn.Sequential(
        [L.Bidirectional(L.GRU(4, return_sequences=True), input_shape=(6, 3)),
         L.SimpleRNN(3, return_sequences=True, go_backwards=True),
         L.LSTM(5, dropout=0.1, recurrent_dropout=0.2, recurrent_regularizer="l2"),
         L.Dense(2)], device=device,
    )  # fmt: skip
    model.compile(optimizer="adam", loss="mse")
    return model


def _fitted(fast: bool, device: str = "cpu") -> gn.Sequential:
    model = _model(device)
    model.use_fastpath = fast
    model.fit(X, Y, epochs=2, batch_size=8, verbose=0)
    return model


def test_recurrent_stack_trains_on_the_graph_free_step_as_on_the_graph():
    fast, graph = _fitted(True), _fitted(False)
    assert fast._step_plan is not None and graph._step_plan is None
    assert not np.allclose(fast.get_weights()[0], _model().get_weights()[0])  # it learned
    for a, b in zip(fast.get_weights(), graph.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_simulated_device_matches_the_cpu():
    pytest.importorskip("array_api_strict")
    cpu, sim = _fitted(True), _fitted(True, "sim")
    for a, b in zip(cpu.get_weights(), sim.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    lstm = gn.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    expected = lstm(X[:4])[0].numpy()
    np.testing.assert_allclose(lstm.to("sim")(X[:4])[0].numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "layer",
    [L.GRU(4, reset_after=False, go_backwards=True, kernel_regularizer=gn.regularizers.L2(0.1)),
     L.LSTM(3, unit_forget_bias=False, activation="relu", recurrent_initializer="orthogonal"),
     L.Bidirectional(L.SimpleRNN(2), merge_mode="ave")],
    ids=["GRU", "LSTM", "Bidirectional"],
)  # fmt: skip
def test_save_load_round_trip(tmp_path, layer):
    model = gn.Sequential([layer, L.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "rnn.gpunet")
    back = gn.models.load_model(tmp_path / "rnn.gpunet")
    assert type(back.layers[0]) is type(layer)
    assert back.layers[0].get_config() == layer.get_config()
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    back.fit(X, Y, epochs=1, batch_size=8, verbose=0)  # training continues


def test_summary_shows_output_shapes_and_parameter_counts():
    lines: list[str] = []
    _model().summary(print_fn=lines.append)
    text = "\n".join(lines)
    # Keras' counts: GRU(4) on 3 features, reset_after: 3*(3*4 + 4*4 + 2*4) per direction
    assert "(Bidirectional)" in text and "(None, 6, 8)" in text and "216" in text
    assert "(SimpleRNN)" in text and "(None, 6, 3)" in text and "36" in text
    assert "(LSTM)" in text and "(None, 5)" in text and str(4 * (3 * 5 + 5 * 5 + 5)) in text


def test_functional_model_with_recurrent_layers():
    inp = gn.Input((6, 3))
    h = L.LSTM(4, return_sequences=True)(inp)
    out = L.Dense(1)(L.GRU(2)(h))
    model = gn.Model(inp, out)
    assert model.predict(X).shape == (24, 1)
    out, h, c = L.LSTM(4, return_state=True)(inp)  # one symbolic tensor per output
    assert [t.shape for t in (out, h, c)] == [(None, 4)] * 3


@pytest.mark.parametrize("cls", ["SimpleRNN", "LSTM", "GRU"])
def test_a_padded_sequence_gives_what_its_real_steps_give(cls):
    """Trailing padding: the last output and the states are those of the unpadded
    sequence; a sequence output repeats the last real output over the padding."""
    layer = getattr(L, cls)(4, return_sequences=True, return_state=True)
    lengths = [6, 4, 1]
    mask = np.arange(6)[None, :] < np.array(lengths)[:, None]
    seq, *states = layer(X[:3], mask=mask)
    for i, n in enumerate(lengths):
        ref_seq, *ref_states = layer(X[i : i + 1, :n])
        np.testing.assert_allclose(seq.numpy()[i, :n], ref_seq.numpy()[0], rtol=1e-5, atol=1e-6)
        pad = np.broadcast_to(ref_seq.numpy()[0, -1], (6 - n, 4))
        np.testing.assert_allclose(seq.numpy()[i, n:], pad, rtol=1e-5, atol=1e-6)
        for s, r in zip(states, ref_states, strict=True):
            np.testing.assert_allclose(s.numpy()[i], r.numpy()[0], rtol=1e-5, atol=1e-6)


def test_compute_mask_passes_sequence_masks_only():
    mask = np.ones((2, 6), bool)
    assert L.LSTM(2, return_sequences=True).compute_mask(None, mask) is mask
    assert L.LSTM(2).compute_mask(None, mask) is None
    assert L.GRU(2, return_sequences=True, return_state=True).compute_mask(None, mask) == [
        mask, None
    ]  # fmt: skip
    assert L.Bidirectional(L.LSTM(2, return_sequences=True), merge_mode=None).compute_mask(
        None, mask
    ) == [mask, mask]


def test_unroll_is_accepted_and_changes_nothing():
    a, b = L.GRU(3), L.GRU(3, unroll=True)
    a(X)
    b(X)
    b.set_weights(a.get_weights())
    np.testing.assert_array_equal(a(X).numpy(), b(X).numpy())


DEVICES = ["cpu", pytest.param("sim", marks=pytest.mark.filterwarnings("error"))]


def _built(cls: str, device: str, **kw):
    layer = getattr(L, cls)(4, name="rec", **kw).to(device)
    layer(np.zeros((2, 6, 3), "float32"))
    return layer


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("cls", "kw", "call", "error", "message"),
    [
        ("LSTM", {}, lambda m: m(np.zeros((2, 3), "float32")), InputValidationError,
         r"layer 'rec' expects input of shape \(batch, time, 3\), got shape \(2, 3\)"),
        ("GRU", {}, lambda m: m(np.zeros((2, 6, 5), "float32")), InputValidationError,
         r"layer 'rec' expects 3 features per step .* got shape \(2, 6, 5\)"),
        ("SimpleRNN", {}, lambda m: m(np.zeros((2, 6, 3), "float32"), mask=np.ones((2, 5), bool)),
         InputValidationError,
         r"layer 'rec' got a mask of shape \(2, 5\) for an input of shape \(2, 6, 3\); "
         r"expected a boolean mask of shape \(2, 6\) \(batch, time\)"),
        ("LSTM", {}, lambda m: m(np.zeros((2, 6, 3), "float32"), initial_state=[np.zeros((2, 4))]),
         InputValidationError, r"layer 'rec' takes 2 initial state\(s\), got 1"),
        ("GRU", {}, lambda m: m(np.zeros((2, 6, 3), "float32"), initial_state=np.zeros((3, 4))),
         InputValidationError,
         r"layer 'rec' expects initial states of shape \(2, 4\), got \(3, 4\)"),
        ("LSTM", {}, lambda m: m(np.zeros((2, 0, 3), "float32")), InvalidParameterError,
         r"at least 1 time step, got \(2, 0, 3\)"),
    ],
    ids=["rank", "features", "mask_shape", "state_count", "state_shape", "empty"],
)  # fmt: skip
def test_bad_input_names_the_layer_and_the_shapes(device, cls, kw, call, error, message):
    if device == "sim":
        pytest.importorskip("array_api_strict")
    layer = _built(cls, device, **kw)
    with pytest.raises(error, match=message):
        call(layer)
    assert layer(np.zeros((2, 6, 3), "float32")).shape == (2, 4)  # still usable


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: L.LSTM(0), r"LSTM units must be a positive int, got 0"),
        (lambda: L.GRU(3, dropout=1.5), r"GRU dropout must be in \[0, 1\), got 1.5"),
        (lambda: L.SimpleRNN(3, activation=lambda x: x), r"activation of .* must be an activation"),
        (lambda: L.Bidirectional(L.Dense(3)), r"Bidirectional wraps a SimpleRNN, LSTM or GRU"),
        (lambda: L.Bidirectional(L.LSTM(3), merge_mode="max"), r"merge_mode must be one of"),
        (lambda: gn.nn.LSTM(3, 0), r"LSTM hidden_size must be an int >= 1, got 0"),
        (lambda: gn.nn.RNN(3, 2, nonlinearity="sigmoid"), r"nonlinearity must be 'tanh' or"),
    ],
    ids=["units", "dropout", "activation", "wrap", "merge", "hidden", "nonlinearity"],
)
def test_bad_arguments_are_refused_clearly(make, message):
    with pytest.raises(InvalidParameterError, match=message):
        make()


def test_torch_module_bad_input():
    lstm = gn.nn.LSTM(3, 4, batch_first=True)
    with pytest.raises(InputValidationError, match=r"LSTM\(3, 4\) expects input of shape "
                       r"\(batch, seq, 3\) or \(seq, 3\), got \(2, 6, 5\)"):  # fmt: skip
        lstm(np.zeros((2, 6, 5), "float32"))
    with pytest.raises(InputValidationError, match=r"hidden states of shape \(1, 2, 4\), got"):
        lstm(np.zeros((2, 6, 3), "float32"), (np.zeros((1, 3, 4)), np.zeros((1, 3, 4))))


def test_the_step_plans_recurrent_models_and_not_multi_output_ones():
    assert step.plan(_model()) is not None
    model = gn.Sequential([L.LSTM(2, return_state=True, input_shape=(6, 3))])
    assert not model.runs_on_arrays
