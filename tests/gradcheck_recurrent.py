"""Gradient-check cases of the recurrent layers: through time at several lengths, with
masks, ``go_backwards``, ``return_state``, initial states, dropout and Bidirectional
(registered in gradcheck_cases.all_cases)."""

from __future__ import annotations

from typing import Any

import numpy as np
from gradcheck_cases import Case

import gpunet as gn
from gpunet import functional as F

F64: dict[str, Any] = {"dtype": "float64", "bias_initializer": "random_normal"}


def _mask(B: int, T: int) -> np.ndarray:
    m = np.ones((B, T), bool)
    m[0, T - 2 :] = False  # trailing padding
    if B > 1:
        m[1, :1] = False  # leading padding
    return m


def _seq(layer: Any, mask: Any = None, training: bool = True) -> Any:
    return lambda x: layer(x, mask=mask, training=training)


def _stated(layer: Any, n: int, mask: Any = None) -> Any:
    """The outputs and final states of ``layer`` from given initial states, side by side."""

    def fn(x: Any, *states: Any) -> Any:
        outs = layer(x, initial_state=list(states), mask=mask)
        flat = [o.reshape(o.shape[0], -1) for o in outs]
        return F.concat(flat, axis=1)

    return fn


def recurrent_cases() -> list[Case]:
    r = np.random.default_rng(21)
    L = gn.layers
    X1, X4, X6 = (r.normal(size=(2, T, 2)) for T in (1, 4, 6))
    h0, c0 = r.normal(size=(2, 3)), r.normal(size=(2, 3))
    m4, m6 = _mask(2, 4), _mask(2, 6)
    cases: list[Case] = []

    def add(name: str, layer: Any, inputs: list[np.ndarray], fn: Any, **kw: Any) -> None:
        cases.append(Case(f"layer:{name}", inputs, fn, layer=layer, **kw))

    layer: Any
    layer = L.SimpleRNN(3, return_sequences=True, **F64)
    add("SimpleRNN(sequences, T 4)", layer, [X4], _seq(layer))
    layer = L.SimpleRNN(3, go_backwards=True, kernel_regularizer="l2", **F64)
    add("SimpleRNN(go_backwards, mask, l2)", layer, [X6], _seq(layer, m6))
    layer = L.SimpleRNN(3, return_state=True, **F64)
    add("SimpleRNN(return_state, initial_state)", layer, [X4, h0], _stated(layer, 1))
    layer = L.LSTM(3, **F64)
    add("LSTM(T 1)", layer, [X1], _seq(layer))
    layer = L.LSTM(3, **F64)
    add("LSTM(last, T 6)", layer, [X6], _seq(layer))
    layer = L.LSTM(3, return_sequences=True, go_backwards=True, **F64)
    add("LSTM(sequences, go_backwards, mask)", layer, [X4], _seq(layer, m4))
    layer = L.LSTM(3, return_sequences=True, zero_output_for_mask=True, **F64)
    add("LSTM(zero_output_for_mask)", layer, [X6], _seq(layer, m6))
    layer = L.LSTM(3, return_sequences=True, return_state=True, **F64)
    add("LSTM(return_state, initial_state, mask)", layer, [X4, h0, c0], _stated(layer, 2, m4))
    layer = L.LSTM(3, dropout=0.3, recurrent_dropout=0.4, use_bias=False, dtype="float64")
    add("LSTM(dropout, recurrent_dropout, no bias)", layer, [X4], _seq(layer), reseed=True)
    layer = L.LSTM(3, activation="relu", recurrent_activation="tanh", **F64)
    add("LSTM(relu, tanh gates)", layer, [X4 + 3.0], _seq(layer))
    layer = L.GRU(3, return_sequences=True, **F64)
    add("GRU(sequences, mask)", layer, [X6], _seq(layer, m6))
    layer = L.GRU(3, reset_after=False, go_backwards=True, **F64)
    add("GRU(reset_after False, go_backwards, mask)", layer, [X6], _seq(layer, m6))
    layer = L.GRU(3, reset_after=False, return_sequences=True, recurrent_dropout=0.3, **F64)
    add("GRU(reset_after False, recurrent_dropout)", layer, [X4], _seq(layer), reseed=True)
    layer = L.GRU(3, return_state=True, **F64)
    add("GRU(return_state, initial_state)", layer, [X4, h0], _stated(layer, 1))
    layer = L.GRU(3, return_sequences=True, dropout=0.3, recurrent_dropout=0.3, **F64)
    add("GRU(dropout, recurrent_dropout: a mask per gate)", layer, [X4], _seq(layer),
        reseed=True)  # fmt: skip
    layer = L.GRU(3, dtype="float64")
    add("GRU(eval, T 1)", layer, [X1], _seq(layer, training=False))
    for mode in ("concat", "sum", "mul", "ave"):
        layer = L.Bidirectional(L.LSTM(2, return_sequences=True, **F64), merge_mode=mode)
        add(f"Bidirectional(LSTM sequences, {mode}, mask)", layer, [X4], _seq(layer, m4))
    layer = L.Bidirectional(L.GRU(2, **F64), merge_mode=None)
    add("Bidirectional(GRU, merge None)", layer, [X4],
        lambda x: F.concat(layer(x), axis=1))  # fmt: skip
    layer = L.Bidirectional(L.SimpleRNN(3, return_state=True, **F64))
    add("Bidirectional(SimpleRNN, return_state, initial_state)", layer, [X4, h0, c0],
        _stated(layer, 2, m4))  # fmt: skip
    nn = gn.nn
    Xt = r.normal(size=(4, 2, 2))  # (seq, batch, features)
    for name, mod in [
        ("RNN(relu, 2 layers)", nn.RNN(2, 2, num_layers=2, nonlinearity="relu", dtype="float64")),
        ("LSTM(bidirectional)", nn.LSTM(2, 2, bidirectional=True, dtype="float64")),
        ("GRU(batch_first, 2 layers)", nn.GRU(2, 2, num_layers=2, batch_first=True,
                                              dtype="float64")),
    ]:  # fmt: skip
        add_t = Case(f"torch:nn.{name}", [Xt], lambda x, m=mod: _torch_flat(m(x)), layer=mod)
        cases.append(add_t)
    return cases


def _torch_flat(out: Any) -> Any:
    seq, state = out
    states = state if isinstance(state, tuple) else (state,)
    return F.concat([seq.reshape(-1), *[s.reshape(-1) for s in states]], axis=0)
