"""The host's blocked attention split between threads (backend/_attention_host.py):
the groups of heads give the results of one thread, with masks, causal limits and
biases that broadcast or not, from threads calling at once; what cannot be split
runs on one thread."""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import numpy as np
import pytest
from at_once import run_threads

from gpunet.backend import _attention_host, _blas_threads, _host
from gpunet.backend.numpy_ops import NumpyOps
from gpunet.backend.ops import Ops


def _ops(split_from: int, threads: int = 2, whole: bool = False) -> Any:
    """NumpyOps on the blocked path at these sizes (32 query rows a block), or with
    the whole scores."""
    ops = NumpyOps()
    if ops.host is None:
        pytest.skip(f"no host kernels: {_host.status()[1]}")
    if not _blas_threads.available():
        pytest.skip("threadpoolctl cannot limit the BLAS threads: the split is off")
    ops.attention_whole, ops.attention_chunk = (1 << 40 if whole else 0), 32
    ops.attention_split_from = split_from
    ops.host = _Threads(ops.host, threads)
    return ops


class _Threads:
    """The host build seen with ``threads`` threads (the pool itself is left alone),
    recording the ``serial`` argument of each block kernel call."""

    def __init__(self, kernels: Any, threads: int) -> None:
        self._kernels, self.threads = kernels, threads
        self.serial: list[int] = []

    def __getattr__(self, name: str) -> Any:
        table = getattr(self._kernels, name)
        if not name.startswith("attn_block_"):
            return table

        def wrap(fn: Any) -> Any:
            def call(*args: Any) -> Any:
                self.serial.append(args[-1])
                return fn(*args)

            return call

        return {suffix: wrap(fn) for suffix, fn in table.items()}


def _inputs(lead: tuple[int, ...], T: int, d: int, dtype: str, seed: int = 0) -> list[Any]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((*lead, T, d)).astype(dtype) for _ in range(4)]


def _step(ops: Any, Q: Any, K: Any, V: Any, dO: Any, mask: Any, causal: bool,
          bias: Any = None) -> list[Any]:  # fmt: skip
    O, _, cache = ops.attention(Q, K, V, mask, scale=0.4, causal=causal, bias=bias)
    return [O, *ops.backprop_attention(dO, cache)]


def _spy_groups(ops: Any) -> list[int]:
    """Records the number of groups of each split of ``ops``."""
    seen: list[int] = []
    run = ops._in_groups

    def spy(parts: list[slice], fn: Any) -> list[Any]:
        seen.append(len(parts))
        return run(parts, fn)

    ops._in_groups = spy
    return seen


CASES = [  # lead axes, T, mask shape (None: no mask), causal, with a bias
    ((1, 4), 160, None, False, False),  # blocks of 2 heads over HOST_MIN: the kernels
    ((2, 3), 70, None, True, False),
    ((3, 2), 65, (3, 1, 1, 65), False, False),  # key padding, split along the batch
    ((2, 2), 64, (2, 2, 64, 64), True, False),  # a full mask, split with it
    ((5,), 40, (40, 40), False, True),  # 3 axes, a mask and a bias shared by all
]


@pytest.mark.parametrize("whole", [False, True], ids=["blocked", "whole"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-T{c[1]}-{c[2]}-{c[3]}")
def test_split_groups_give_the_results_of_one_thread(case, dtype, whole):
    lead, T, mshape, causal, with_bias = case
    Q, K, V, dO = _inputs(lead, T, 8, dtype)
    rng = np.random.default_rng(1)
    mask = None if mshape is None else rng.random(mshape) > 0.3
    bias = rng.standard_normal((T, T)).astype(dtype) if with_bias else None
    split, serial = _ops(0, whole=whole), _ops(1 << 62, whole=whole)
    seen = _spy_groups(split)
    got = _step(split, Q, K, V, dO, mask, causal, bias)
    assert seen == [2, 2], "forward and backward each split in two groups"
    want = _step(serial, Q, K, V, dO, mask, causal, bias)
    assert set(split.host.serial) <= {1} and set(serial.host.serial) <= {0}
    if lead == (1, 4) and not whole:
        assert split.host.serial and serial.host.serial, "the block kernels ran"
    ref = _step(Ops(), *(a.astype("float64") for a in (Q, K, V, dO)), mask, causal,
                None if bias is None else bias.astype("float64"))  # fmt: skip
    tol = 1e-5 if dtype == "float32" else 1e-12
    for name, g, w, r in zip(("O", "dQ", "dK", "dV"), got, want, ref, strict=True):
        assert g.shape == w.shape == r.shape and g.dtype == np.dtype(dtype), name
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol, err_msg=name)
        np.testing.assert_allclose(g, r, rtol=20 * tol, atol=20 * tol, err_msg=name)


def test_more_threads_than_heads_and_uneven_groups():
    Q, K, V, dO = _inputs((1, 3), 50, 4, "float32")
    ops = _ops(0, threads=8)
    seen = _spy_groups(ops)
    got = _step(ops, Q, K, V, dO, None, True)
    assert seen == [3, 3], "no more groups than heads"
    want = _step(_ops(1 << 62), Q, K, V, dO, None, True)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


def test_dropout_is_not_split_and_keeps_its_draws():
    Q, K, V, dO = _inputs((2, 2), 40, 4, "float32")
    ops = _ops(0, whole=True)
    seen = _spy_groups(ops)
    O, _, cache = ops.attention(Q, K, V, None, scale=0.4, dropout=0.3)
    ops.backprop_attention(dO, cache)
    assert seen == [] and cache.D is not None  # one mask drawn from the one generator
    np.testing.assert_allclose(O, np.matmul(cache.P * cache.D, V), rtol=1e-6, atol=1e-6)


def test_what_cannot_be_split_runs_on_one_thread():
    Q, K, V, dO = _inputs((2, 2), 40, 4, "float32")
    ops = _ops(0)
    seen = _spy_groups(ops)
    shared = K[:1, :1]  # keys broadcast along the leading axes: no axis is whole
    got = _step(ops, Q, shared, V[:1, :1], dO, None, False)
    assert seen == []
    assert got[2].shape == shared.shape  # dK summed over the axes K broadcast along
    want = _step(Ops(), Q, shared, V[:1, :1], dO, None, False)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    one = _ops(0, threads=1)
    seen = _spy_groups(one)
    _step(one, Q, K, V, dO, None, False)
    assert seen == [], "one host thread: no split"
    small = _ops(1 << 62)
    seen = _spy_groups(small)
    _step(small, Q, K, V, dO, None, False)
    assert seen == [], "below attention_split_from: no split"


def test_threads_calling_at_once_get_the_results_of_lone_calls():
    ops = _ops(0)
    inputs = [_inputs((2, 2), 60, 8, "float32", seed) for seed in range(4)]
    alone = [_step(ops, *a, None, bool(i % 2)) for i, a in enumerate(inputs)]

    def work(i: int) -> list[Any]:
        return [_step(ops, *inputs[i], None, bool(i % 2)) for _ in range(3)][-1]

    results = run_threads([(work, (i,)) for i in range(4)])
    for i, want in enumerate(alone):
        for g, w in zip(results[i], want, strict=True):
            np.testing.assert_array_equal(g, w)


def test_a_group_failing_raises_in_the_caller():
    ops = _ops(0)

    def boom(part: slice) -> Any:
        raise RuntimeError(f"group {part}")

    with pytest.raises(RuntimeError, match="group"):
        ops._in_groups([slice(0, 1), slice(1, 2)], boom)
    assert not _attention_host._serial(), "the caller's thread is not left marked serial"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_splits_on_threads_of_its_own():
    ops = _ops(0)
    Q, K, V, dO = _inputs((1, 2), 40, 4, "float32")
    want = _step(ops, Q, K, V, dO, None, False)  # the parent's pool exists now
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(_child_step, (Q, K, V, dO)).get(timeout=60)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


def _child_step(Q: Any, K: Any, V: Any, dO: Any) -> list[Any]:
    ops = _ops(0)
    seen = _spy_groups(ops)
    out = _step(ops, Q, K, V, dO, None, False)
    assert seen == [2, 2]
    return out


def _edge_scores(dtype: str) -> tuple[Any, Any]:
    """(2, 2, 64, 64) scores (over HOST_MIN) with edge rows, and a mask keeping most keys."""
    rng = np.random.default_rng(3)
    S = rng.standard_normal((2, 2, 64, 64)) * 3
    keep = rng.random((2, 1, 64, 64)) > 0.2
    S[0, 0, 0] = np.linspace(-200.0, 0.0, 64)  # exponents through the underflow
    S[0, 0, 1, :2] = [1e4, -1e4]  # far apart: one weight 1
    S[0, 0, 2, 5] = np.nan  # NaN kept: the row's kept weights are NaN
    S[0, 0, 3, :] = -np.inf  # inf - inf: NaN, as the reference
    S[0, 0, 4, 7] = np.inf
    S[0, 0, 5] = -1e30
    S[0, 0, 6] = np.linspace(-40.0, 40.0, 64)
    keep[0, 0, 7] = False  # every key masked: all-zero weights
    keep[0, 0, 8, 9], S[0, 0, 8, 9] = False, np.nan  # NaN where masked: not read
    keep[0, 0, 2, 5] = True
    return S.astype(dtype), keep


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_host_softmax_rows_at_edge_values(dtype, masked, causal):
    """The host's vectorized rows (its own float exp: underflow to 0, 2 ulp) against
    the reference on edge rows, whole and in blocks (lse kept, weights recomputed)."""
    ops = NumpyOps()
    if ops.host is None:
        pytest.skip(f"no host kernels: {_host.status()[1]}")
    S, keep = _edge_scores(dtype)
    m = keep if masked else None
    ref = Ops()
    S64 = S.astype("float64")
    rtol, atol = (3e-6, 1e-30) if dtype == "float32" else (1e-13, 1e-300)
    with np.errstate(invalid="ignore", over="ignore"):
        want = ref.attention_softmax(S64, m, scale=0.5, causal=causal)
        got = ops.attention_softmax(S, m, scale=0.5, causal=causal)
        assert got.dtype == S.dtype
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
        rows = slice(16, 48)
        P, lse = ops.attention_block(S[..., rows, :], m, 0.5, causal, rows, None)  # whole mask
        P0, lse0 = ref.attention_block(S64[..., rows, :], m, 0.5, causal, rows, None)
        np.testing.assert_allclose(P, P0, rtol=rtol, atol=atol)
        np.testing.assert_allclose(lse, lse0, rtol=rtol)
        S0 = S.copy()
        S0[0, 0, :10] = 0.0  # the block backward on finite rows (lse of the forward)
        dP = np.random.default_rng(4).standard_normal(S.shape).astype(dtype)
        Sb = S0[..., :32, :]
        P, lse = ops.attention_block(Sb, None, 0.5, causal, slice(0, 32), None)
        D = np.sum(P * dP[..., :32, :], axis=-1, keepdims=True)
        got_b = ops.backprop_attention_block(Sb, dP[..., :32, :], lse, D, None, 0.5, causal,
                                             slice(0, 32), None)  # fmt: skip
        want_b = ref.backprop_attention_block(Sb.astype("float64"), dP[..., :32, :], lse, D,
                                              None, 0.5, causal, slice(0, 32), None)  # fmt: skip
        for g, w in zip(got_b, want_b, strict=True):
            np.testing.assert_allclose(
                g, w, rtol=rtol * 10, atol=1e-6 if dtype == "float32" else 1e-12
            )
    if dtype == "float32" and not masked and not causal:
        assert got[0, 0, 0, 0] == 0.0  # exp(-100) in float32: 0, not subnormal


def _self_step(ops: Any, Y5: Any, dO: Any, mask: Any, causal: bool) -> list[Any]:
    out, P, cache = ops.self_attention(Y5, mask, scale=0.4, causal=causal, keep_probs=True)
    return [out, P, ops.backprop_self_attention(dO, cache)]


def _by_heads_ops() -> Any:
    ops = NumpyOps()
    if ops.host is None or not ops.host.blas:
        pytest.skip(f"no host kernels over NumPy's BLAS: {_host.status()[1]}")
    return ops


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("mask", [None, (3, 1, 1, 50), (1, 4, 50, 50), (50, 50)], ids=str)
def test_self_attention_by_heads_matches_the_python_groups(mask, split):
    """The host's head-by-head self-attention (over NumPy's cblas) against the same
    products and rows run from Python (``host.blas`` off), heads split or not."""
    ops = _by_heads_ops()
    rng = np.random.default_rng(5)
    Y5 = rng.standard_normal((3, 50, 3, 4, 16)).astype("float32")
    dO = rng.standard_normal((3, 50, 4, 16)).astype("float32")
    keep = None if mask is None else rng.random(mask) > 0.3
    ops.attention_split_from = 1 if split else 1 << 40
    for causal in (False, True):
        got = _self_step(ops, Y5, dO, keep, causal)
        ops.host.blas = False
        try:
            want = _self_step(ops, Y5, dO, keep, causal)
        finally:
            ops.host.blas = True
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)


def test_self_attention_by_heads_from_threads_at_once():
    ops = _by_heads_ops()
    ops.attention_split_from = 1
    rng = np.random.default_rng(6)
    inputs = [(rng.standard_normal((2, 40, 3, 4, 8)).astype("float32"),
               rng.standard_normal((2, 40, 4, 8)).astype("float32")) for _ in range(4)]  # fmt: skip
    alone = [_self_step(ops, Y5, dO, None, bool(i % 2)) for i, (Y5, dO) in enumerate(inputs)]

    def work(i: int) -> list[Any]:
        return [_self_step(ops, *inputs[i], None, bool(i % 2)) for _ in range(5)][-1]

    results = run_threads([(work, (i,)) for i in range(4)])
    for i, want in enumerate(alone):
        for g, w in zip(results[i], want, strict=True):
            np.testing.assert_array_equal(g, w)


def test_cblas_of_numpys_openblas_is_found_with_its_integer_width():
    found = _blas_threads.cblas_gemm()
    if not _blas_threads._openblas_paths():
        assert found is None
        pytest.skip("NumPy's BLAS here is not OpenBLAS")
    assert found is not None and all(found[:2])
    config = np.show_config(mode="dicts")["Build Dependencies"]["blas"]  # type: ignore[index]
    built = config.get("openblas configuration")  # NumPy's record of the library it built with
    if built:
        assert found[2] == ("USE64BITINT" in built)
    os.environ["GPUNET_HOST_BLAS"] = "0"
    try:
        assert _blas_threads.cblas_gemm() is None
    finally:
        del os.environ["GPUNET_HOST_BLAS"]
