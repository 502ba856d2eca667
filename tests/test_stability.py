"""Stability suite: every activation and loss at edge inputs (±1e4, ±89, ±inf, NaN,
zero probabilities, all-equal logits, one class only), float32 and float64, against
values computed independently here with Python's ``math`` in double precision.

Finite inputs must give finite, exact-to-rounding results with no RuntimeWarning
(warnings are errors in this suite); non-finite inputs give the limits below.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import gpunet as gn
from gpunet.backend import get_ops
from gpunet.backend._activation_ops import ACTIVATIONS, SELU_ALPHA, SELU_SCALE

INF, NAN = math.inf, math.nan
EDGES = [-INF, -1e4, -100.0, -89.0, -1.0, -0.0, 0.0, 1e-8, 1.0, 89.0, 100.0, 1e4, INF, NAN]
RTOL = {"float32": 2e-6, "float64": 1e-12}


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _gelu(x):
    return -0.0 if x == -INF else 0.5 * x * math.erfc(-x / math.sqrt(2.0))


def _expm1(x):
    return -1.0 if x == -INF else math.expm1(x)


def _nan_safe(f):
    return lambda x: NAN if math.isnan(x) else f(x)


REFERENCE = {
    "linear": lambda x: x,
    "relu": _nan_safe(lambda x: max(x, 0.0)),
    "leaky_relu": _nan_safe(lambda x: x if x > 0 else 0.2 * x),
    "elu": _nan_safe(lambda x: x if x > 0 else _expm1(x)),
    "selu": _nan_safe(lambda x: SELU_SCALE * (x if x > 0 else SELU_ALPHA * _expm1(x))),
    "gelu": _nan_safe(_gelu),
    "swish": _nan_safe(lambda x: -0.0 if x == -INF else x * _sigmoid(x)),
    "silu": _nan_safe(lambda x: -0.0 if x == -INF else x * _sigmoid(x)),
    "sigmoid": _nan_safe(_sigmoid),
    "tanh": _nan_safe(math.tanh),
    "softplus": _nan_safe(lambda x: max(x, 0.0) + math.log1p(math.exp(-abs(x)))),
    "exponential": _nan_safe(lambda x: math.exp(x) if x < 709.0 else INF),
}
ELEMENTWISE = [a for a in ACTIVATIONS if a not in ("softmax", "log_softmax")]
# NOTE: x * cdf(x) at x = -inf is -inf * 0 = NaN in the reference Ops; the limit is 0
KNOWN_BAD: set[tuple[str, float]] = set()


def _close(got, want, dtype):
    if math.isnan(want):
        return math.isnan(got)
    if math.isinf(want) or want == 0:
        return got == want
    return abs(got - want) <= RTOL[dtype] * abs(want) + 1e-30


def test_every_activation_has_a_reference():
    assert set(ELEMENTWISE) == set(REFERENCE)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_activation_at_edge_inputs(name, dtype):
    ops = get_ops("cpu")
    for x in EDGES:
        if (name, x) in KNOWN_BAD:
            continue
        X = np.array([x], dtype=dtype)
        if math.isfinite(x):
            got = float(ops.activation(name, X)[0])  # any RuntimeWarning fails the test
        else:
            with np.errstate(invalid="ignore", over="ignore"):
                got = float(ops.activation(name, X)[0])
        with np.errstate(over="ignore"):  # beyond the dtype's range: its limit, inf
            want = float(np.asarray(REFERENCE[name](x), dtype=dtype))
        assert _close(got, want, dtype.name), (name, x, got, want)


@pytest.mark.parametrize("name", ["gelu", "swish", "silu"])
def test_activation_limit_at_minus_infinity(name):
    # x * cdf(x): -inf * 0 would be NaN; the limit and its gradient are 0
    ops = get_ops("cpu")
    with np.errstate(invalid="raise"):
        assert float(ops.activation(name, np.array([-INF]))[0]) == 0.0
        dx = ops.backprop_activation(name, np.array([1.0]), np.array([-INF]), np.array([0.0]))
    assert float(dx[0]) == 0.0


def _undefined(row):
    return any(math.isnan(v) for v in row) or INF in row or all(v == -INF for v in row)


def _softmax_ref(row):
    if _undefined(row):
        return [NAN] * len(row)
    m = max(row)
    e = [math.exp(v - m) for v in row]
    return [v / sum(e) for v in e]


def _log_softmax_ref(row):
    p = _softmax_ref(row)
    if math.isnan(p[0]):
        return p
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


ROWS = [[1e4, 0.0, -1e4], [5.0, 5.0, 5.0], [-1e4, -1e4], [1000.0, 1.0], [89.0, -89.0, 0.0],
        [-INF, 0.0, 0.0], [3.0], [INF, 0.0, 0.0], [-INF, -INF], [NAN, 0.0]]  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=str)
@pytest.mark.parametrize("name, ref", [("softmax", _softmax_ref),
                                       ("log_softmax", _log_softmax_ref)])  # fmt: skip
def test_softmax_rows(name, ref, row, dtype):
    X = np.array([row], dtype=dtype)
    finite = all(math.isfinite(v) for v in row)
    with np.errstate(**({} if finite else {"invalid": "ignore", "divide": "ignore"})):
        got = get_ops("cpu").activation(name, X)[0]
    if _undefined(row):  # NaN, +inf or only -inf: the row is flagged, never silently finite
        assert np.isnan(got).any(), (row, got)
        return
    want = np.asarray(ref(row), dtype=dtype)
    for g, w in zip(got.tolist(), want.tolist(), strict=True):
        assert _close(g, w, dtype.name), (row, got, want)


# -- losses ----------------------------------------------------------------------------
EPS = 1e-7


def _clip_log(p, dtype, one_minus=False):
    """-log of a probability clipped to [eps, 1 - eps] as the loss does it, in
    ``dtype`` (1 - eps rounds in float32: the cap is 15.94 there, 16.12 in float64)."""
    dt = np.dtype(dtype).type
    pc = min(max(dt(p), dt(EPS)), dt(1.0) - dt(EPS))
    return -math.log(float(dt(1.0) - pc) if one_minus else float(pc))


def _bce_logits(x, z):
    return max(x, 0.0) - x * z + math.log1p(math.exp(-abs(x)))


LOSS_CASES = [
    # (loss, from_logits/activation, y_true, input, expected loss)
    ("mse", None, [[0.0]], [[1e4]], 1e8),
    ("mse", None, [[1.0, -1.0]], [[-1e4, 1e4]], (10001.0**2 + 10001.0**2) / 2),
    ("mae", None, [[0.0]], [[-1e4]], 1e4),
    ("huber", None, [[0.0]], [[1e4]], 1e4 - 0.5),
    ("huber", None, [[0.0]], [[0.5]], 0.125),
    ("poisson", None, [[1.0]], [[0.0]], lambda dt: -math.log(float(np.dtype(dt).type(EPS)))),
    ("poisson", None, [[0.0]], [[1e4]], 1e4),
    ("binary_crossentropy", "logits", [[1.0]], [[-1e4]], 1e4),
    ("binary_crossentropy", "logits", [[0.0]], [[1e4]], 1e4),
    ("binary_crossentropy", "logits", [[1.0]], [[1e4]], 0.0),
    ("binary_crossentropy", "logits", [[1.0]], [[-200.0]], 200.0),
    ("binary_crossentropy", "logits", [[0.0]], [[50.0]], 50.0),
    ("binary_crossentropy", "logits", [[1.0]], [[0.0]], math.log(2.0)),
    ("binary_crossentropy", "sigmoid", [[1.0]], [[-1e4]], 1e4),  # fused: not capped
    ("binary_crossentropy", "probs", [[1.0]], [[0.0]], lambda dt: _clip_log(0.0, dt)),
    ("binary_crossentropy", "probs", [[0.0]], [[1.0]], lambda dt: _clip_log(1.0, dt, True)),
    ("binary_crossentropy", "probs", [[1.0]], [[1.0]], lambda dt: _clip_log(1.0, dt)),
    ("categorical_crossentropy", "logits", [[0.0, 0.0, 1.0]], [[1e4, 0.0, -1e4]], 2e4),
    ("categorical_crossentropy", "logits", [[1.0, 0.0, 0.0]], [[1e4, 0.0, -1e4]], 0.0),
    ("categorical_crossentropy", "logits", [[0.0, 1.0, 0.0]], [[5.0, 5.0, 5.0]], math.log(3)),
    ("categorical_crossentropy", "logits", [[1.0]], [[7.0]], 0.0),  # one class only
    ("categorical_crossentropy", "softmax", [[0.0, 1.0]], [[1e4, -1e4]], 2e4),
    ("categorical_crossentropy", "probs", [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]],
     lambda dt: _clip_log(0.0, dt)),
    ("categorical_crossentropy", "probs", [[0.0, 1.0]], [[0.25, 0.25]], math.log(2)),
    ("sparse_categorical_crossentropy", "logits", [2], [[1e4, 0.0, -1e4]], 2e4),
    ("sparse_categorical_crossentropy", "logits", [1], [[-3.0, -3.0, -3.0]], math.log(3)),
    ("sparse_categorical_crossentropy", "logits", [0], [[-1e4]], 0.0),  # one class only
    ("sparse_categorical_crossentropy", "probs", [0], [[0.0, 1.0]], lambda dt: _clip_log(0.0, dt)),
]  # fmt: skip
CLASSES = {"binary_crossentropy": gn.losses.BinaryCrossentropy,
           "categorical_crossentropy": gn.losses.CategoricalCrossentropy,
           "sparse_categorical_crossentropy": gn.losses.SparseCategoricalCrossentropy}  # fmt: skip


def _loss_of(name, mode, y_true, value, dtype):
    x = gn.tensor(np.array(value, dtype=dtype), requires_grad=True)
    if mode in ("logits", "probs"):
        loss = CLASSES[name](from_logits=mode == "logits")
        pred = x
    else:
        loss = gn.losses.get(name)
        pred = gn.activations.sigmoid(x) if mode == "sigmoid" else (
            gn.activations.softmax(x) if mode == "softmax" else x)  # fmt: skip
    out = loss(np.array(y_true), pred)
    out.backward()
    return float(out.numpy()), x.grad


@pytest.mark.parametrize(("name", "mode", "y_true", "value", "want"), LOSS_CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[3]}" for c in LOSS_CASES])  # fmt: skip
def test_loss_at_edge_inputs(name, mode, y_true, value, want, dtype):
    got, grad = _loss_of(name, mode, y_true, value, dtype)
    want = want(dtype) if callable(want) else want
    assert got == pytest.approx(want, rel=RTOL[dtype.name], abs=1e-12), (got, want)
    assert np.isfinite(np.asarray(grad)).all()


@pytest.mark.parametrize("x, z", [(-1e4, 1.0), (1e4, 0.0), (1e4, 1.0), (0.0, 1.0), (-89.0, 0.0)])
def test_sigmoid_cross_entropy_gradient_is_p_minus_y(x, z, dtype):
    _, grad = _loss_of("binary_crossentropy", "logits", [[z]], [[x]], dtype)
    assert float(np.asarray(grad)[0, 0]) == pytest.approx(_sigmoid(x) - z, abs=1e-7)
    assert _bce_logits(x, z) >= 0.0


def test_softmax_cross_entropy_gradient_at_extreme_logits(dtype):
    _, grad = _loss_of("categorical_crossentropy", "logits", [[0.0, 0.0, 1.0]],
                       [[1e4, 0.0, -1e4]], dtype)  # fmt: skip
    np.testing.assert_array_equal(np.asarray(grad), np.array([[1.0, 0.0, -1.0]], dtype=dtype))


@pytest.mark.parametrize("value", [[[NAN, 0.0, 0.0]], [[INF, 0.0, 0.0]], [[-INF, -INF, -INF]]])
def test_undefined_logits_give_a_nan_loss_that_fit_stops_on(value):
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        got, _ = _loss_of("categorical_crossentropy", "logits", [[1.0, 0.0, 0.0]], value,
                          np.dtype("float64"))  # fmt: skip
    assert math.isnan(got)
