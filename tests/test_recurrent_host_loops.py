"""The host build's whole time loops (``_rnn_host_loop``) against the step-at-a-time
recurrence they replace, and the BLAS thread limit around them."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from gpunet.backend import _blas_threads, _host, get_ops
from gpunet.layers import _recurrence

pytestmark = pytest.mark.skipif(_host.load() is None, reason="no host kernel build")


class _StepOps:
    """The CPU ops with the whole-loop fast path switched off."""

    def __init__(self, ops: object) -> None:
        self._ops = ops

    def __getattr__(self, name: str) -> object:
        return getattr(self._ops, name)

    def recurrent_loops(self, *args: object) -> None:
        return None


CASES = [
    ("lstm", {}),
    ("lstm", {"return_sequences": True}),
    ("lstm", {"go_backwards": True, "return_sequences": True}),
    ("gru", {}),
    ("gru", {"return_sequences": True, "zero_output": True}),
]


@pytest.mark.parametrize("masked", [False, True], ids=["plain", "masked"])
@pytest.mark.parametrize("dropout", [False, True], ids=["", "rdp"])
@pytest.mark.parametrize(("kind", "kw"), CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_host_loops_match_the_step_ops(kind, kw, dtype, masked, dropout):
    rng = np.random.default_rng(3)
    B, T, F, n = 3, 5, 4, 6
    G = _recurrence.GATES[kind]
    dt = np.dtype(dtype)
    X = rng.standard_normal((B, T, F)).astype(dt)
    W = (rng.standard_normal((F, G * n)) * 0.5).astype(dt)
    U = (rng.standard_normal((n, G * n)) * 0.5).astype(dt)
    b = rng.standard_normal((2, G * n) if kind == "gru" else (G * n,)).astype(dt)
    mask = rng.random((B, T)) > 0.3 if masked else None
    rdp = (rng.random((B, n)) > 0.4).astype(dt) * 2 if dropout else None
    s0 = [rng.standard_normal((B, n)).astype(dt) for _ in range(2 if kind == "lstm" else 1)]
    cell = _recurrence.Cell(kind, n, **kw)
    dY = rng.standard_normal((B, T, n) if cell.return_sequences else (B, n)).astype(dt)
    ds = [rng.standard_normal((B, n)).astype(dt) for _ in s0]
    ops = get_ops("cpu")
    assert ops.recurrent_loops(cell, X, U, X, None) is not None  # the fast path is taken
    out = []
    for o in (ops, _StepOps(ops)):
        Y, states, back = _recurrence.run(o, cell, X, W, U, b, list(s0), mask, None, rdp)
        ds_in = [d.copy() for d in ds]
        grads = back(dY, ds_in, True)
        for d, d_in in zip(ds, ds_in, strict=True):  # the caller's arrays stay unchanged
            np.testing.assert_array_equal(d, d_in)
        out.append([Y, *states, *grads[:4], *grads[4]])
    tol = 1e-5 if dtype == "float32" else 1e-12
    for fast, ref in zip(*out, strict=True):
        np.testing.assert_allclose(fast, ref, rtol=tol, atol=tol)


def test_one_blas_thread_is_shared_and_restored():
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads() -> list[int]:
        return [
            i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"
        ]

    before = blas_threads()
    if not before:
        pytest.skip("no BLAS library that threadpoolctl can see")
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with _blas_threads.one_blas_thread():
            inside.set()
            release.wait(5)

    worker = threading.Thread(target=hold)
    worker.start()
    inside.wait(5)
    with _blas_threads.one_blas_thread():  # a second holder, leaving first
        assert blas_threads() == [1] * len(before)
    assert blas_threads() == [1] * len(before)  # still held by the worker
    release.set()
    worker.join()
    assert blas_threads() == before
