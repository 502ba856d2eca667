"""The fused recurrent cells (kernels/rnn.cu, rnn.cuh) inside whole recurrences: the
CUDA launchers over the host-built kernels (``FusedOps``, what ``device="cuda"`` runs)
and the host build in ``NumpyOps``, each against the reference ``Ops`` through time,
with masks, go_backwards, initial states and both GRU forms; float16 storage too."""

from __future__ import annotations

import numpy as np
import pytest

from gpunet.backend import _host, _rnn_fused
from gpunet.backend.cupy_ops import FusedOps
from gpunet.backend.numpy_ops import NumpyOps
from gpunet.backend.ops import Ops
from gpunet.layers import _recurrence

REF = Ops()
B, T, F, U = 5, 7, 3, 13  # B * U > the lowered grid of the host runner: grid striding
CELLS = [("lstm", True), ("gru", True), ("gru", False)]


def _weights(kind: str, reset_after: bool, rng: np.random.Generator) -> tuple:
    G = _recurrence.GATES[kind] * U
    b = rng.standard_normal((2, G) if kind == "gru" and reset_after else (G,))
    return rng.standard_normal((F, G)) * 0.5, rng.standard_normal((U, G)) * 0.5, b


def _run(ops, kind, reset_after, masked, backwards, dtype="float64"):
    rng = np.random.default_rng(3)
    cell = _recurrence.Cell(kind, U, reset_after=reset_after, go_backwards=backwards,
                            return_sequences=True)  # fmt: skip
    X = rng.standard_normal((B, T, F))
    W, Uk, b = _weights(kind, reset_after, rng)
    s0 = [rng.standard_normal((B, U)) for _ in range(cell.n_states)]
    mask = np.ones((B, T), bool)
    mask[0, 4:], mask[1, :2], mask[2, 3] = False, False, False
    cast = [a.astype(dtype) for a in (X, W, Uk, b, *s0)]
    Y, S, back = _recurrence.run(ops, cell, *cast[:4], cast[4:], mask if masked else None)
    dY = rng.standard_normal(Y.shape).astype(dtype)
    dS = [rng.standard_normal((B, U)).astype(dtype) for _ in S]
    dX, dW, dU, db, d0 = back(dY, dS, True)
    return [np.asarray(a, dtype="float64") for a in (Y, *S, dX, dW, dU, db, *d0)]


@pytest.mark.parametrize("backwards", [False, True], ids=["forwards", "go_backwards"])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize(("kind", "reset_after"), CELLS, ids=["lstm", "gru", "gru_v1"])
def test_cuda_launchers_over_the_host_build_match_the_reference(
    host, kind, reset_after, masked, backwards
):
    got = _run(FusedOps(), kind, reset_after, masked, backwards)
    want = _run(REF, kind, reset_after, masked, backwards)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-12)
    names = [n for n, _, _ in host.launches]
    assert names.count(f"gpunet_{kind}_step<double>") == T
    assert names.count(f"gpunet_{kind}_backward<double>") == T


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize(("kind", "reset_after"), CELLS, ids=["lstm", "gru", "gru_v1"])
def test_host_build_in_numpy_ops_matches_the_reference(kind, reset_after, masked):
    ops = NumpyOps()
    if ops.host is None:
        pytest.skip(f"no host build of kernels/: {_host.status()[1]}")
    calls: list[str] = []
    real = ops.host

    class Counting:
        def __getattr__(self, name):
            table = getattr(real, name)
            if name not in ("lstm_step", "lstm_step_keep", "lstm_backward",
                            "lstm_backward_act", "gru_step", "gru_backward"):  # fmt: skip
                return table
            return {s: (lambda *a, f=f, s=s: calls.append(f"{name}_{s}") or f(*a))
                    for s, f in table.items()}  # fmt: skip

    ops.host = Counting()
    for dtype, tol in (("float64", 1e-11), ("float32", 2e-4)):
        calls.clear()
        got = _run(ops, kind, reset_after, masked, False, dtype)
        want = _run(REF, kind, reset_after, masked, False)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol)
        suffix = "f64" if dtype == "float64" else "f32"
        # the whole-loop steps (the LSTM's keep the gates' activations for its backward)
        step, back = ("lstm_step_keep", "lstm_backward_act") if kind == "lstm" else (
            f"{kind}_step", f"{kind}_backward")  # fmt: skip
        assert calls.count(f"{step}_{suffix}") == T
        assert calls.count(f"{back}_{suffix}") == T


def test_other_activations_take_the_reference_path(host):
    rng = np.random.default_rng(0)
    Z, c = rng.standard_normal((2, 4 * U)), rng.standard_normal((2, U))
    fused = FusedOps()
    for act, rec in (("relu", "sigmoid"), ("tanh", "tanh")):
        np.testing.assert_allclose(fused.lstm_step(Z, c, None, None, act, rec),
                                   REF.lstm_step(Z, c, None, None, act, rec))  # fmt: skip
    assert not [n for n, _, _ in host.launches if "lstm" in n]  # the activations are fused


def test_float16_storage_computes_in_float32(host):
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((B, 4 * U)).astype("float16")
    c, h = (rng.standard_normal((B, U)).astype("float16") for _ in range(2))
    m = (rng.random((B, 1)) > 0.3).astype("float16")
    got = _rnn_fused.lstm_step(Z, c, h, m)
    want = REF.lstm_step(*(a.astype("float64") for a in (Z, c, h, m)))
    for g, w in zip(got, want, strict=True):
        assert g.dtype == np.float16
        np.testing.assert_allclose(g.astype("float64"), w, rtol=2e-3, atol=2e-3)
    Zx, Zh = (rng.standard_normal((B, 3 * U)).astype("float16") for _ in range(2))
    dh = rng.standard_normal((B, U)).astype("float16")
    got = _rnn_fused.gru_backward(dh, Zx, Zh, h, m)
    want = REF.backprop_gru_step(*(a.astype("float64") for a in (dh, Zx, Zh, h, m)))
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.astype("float64"), w, rtol=5e-3, atol=5e-3)
