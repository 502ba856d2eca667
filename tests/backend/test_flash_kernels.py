"""``kernels/flash.cu`` (tiled attention through shared memory) built for the host by
g++, run block-cooperatively by the shim, and driven by gpunet's own launchers
(``FusedAttention``), against the NumPy reference ``Ops`` in float64.

Small tiles: lengths that are not a multiple of the tile, several blocks per head
and more blocks than the lowered grid (3: the block loop strides), cross attention
(Tq != Tk) with causal, padding, per-query and full masks, a row with every key
masked, head sizes of both template bounds (32, 64), NaN and large scores; forward,
the log-sum-exp and all three gradients, in float16, bfloat16, float32 and float64,
over outputs that start poisoned (NaN); float64 finite differences. No GPU has run
these kernels.
"""

from __future__ import annotations

import numpy as np
import pytest
from hostbuild import record_error

from gpunet.backend import _flash_kernels as fk
from gpunet.backend.cupy_ops import FusedOps
from gpunet.backend.ops import Ops

REF = Ops()
# bfloat16's atol: the backward reads O as stored (8 significant bits), and
# Dsum = rowsum(dO * O) over 64 columns carries that rounding into dQ and dK
TOL = {"float16": (3e-3, 3e-3), "bfloat16": (2e-2, 6e-2), "float32": (2e-5, 2e-6),
       "float64": (1e-12, 1e-13)}  # fmt: skip
DTYPES = ["float16", "float32", "float64"]
try:  # NumPy's bfloat16 comes from ml_dtypes (optional)
    import ml_dtypes

    DTYPES.append("bfloat16")
except ImportError:  # pragma: no cover - visible as the skip of test_bfloat16_is_run
    ml_dtypes = None
CASES = {  # Q, K, V shapes, mask shape, causal
    "self causal, 100 rows": ((2, 2, 100, 8), (2, 2, 100, 8), (2, 2, 100, 5), None, True),
    "cross Tq < Tk, causal, head 40": ((1, 3, 6, 40), (1, 3, 75, 40), (1, 3, 75, 3), None,
                                       True),
    "cross Tq > Tk, padding mask": ((2, 1, 70, 3), (2, 1, 9, 3), (2, 1, 9, 3), (2, 1, 1, 9),
                                    False),
    "per-query mask, 3-d": ((2, 3, 33, 16), (2, 3, 40, 16), (2, 3, 40, 32), (3, 33, 40),
                            True),
    "full mask, head 64": ((1, 2, 20, 64), (1, 2, 37, 64), (1, 2, 37, 64), (1, 2, 20, 37),
                           False),
}  # fmt: skip


def _dtype(name: str):
    return ml_dtypes.bfloat16 if name == "bfloat16" else np.dtype(name)


def _check(what, got, want, dtype):
    rtol, atol = TOL[dtype]
    assert got.dtype == _dtype(dtype) and got.shape == want.shape, what
    np.testing.assert_allclose(got.astype("float64"), want, rtol=rtol, atol=atol, err_msg=what)
    record_error(what, dtype, got, want)


@pytest.fixture
def fused(host) -> FusedOps:
    ops = FusedOps()
    ops.attention_flash_from = 1
    return ops


def _run(host, fused, Q, K, V, keep, causal, scale=0.4):
    """The tiled forward and backward, with the launches they must make."""
    dtype = Q.dtype.name
    O, P, cache = fused.attention(Q, K, V, keep, scale=scale, causal=causal)
    D = fk.head_bound(dtype, max(Q.shape[3], V.shape[3]))
    name = f"<{fk.CTYPE[dtype]}, {D}>"
    R = fk.rows_per_block(dtype, D)
    assert isinstance(cache, fk.TiledCache) and P is None
    assert host.launches[-1] == (f"gpunet_flash_fwd{name}", min(3, Q.shape[0] * Q.shape[1]
                                 * -(-Q.shape[2] // R)), R)  # fmt: skip
    rng = np.random.default_rng(5)
    dO = rng.standard_normal(O.shape).astype(Q.dtype)
    grads = fused.backprop_attention(dO, cache)
    assert [n for n, _, _ in host.launches[-2:]] == [f"gpunet_flash_bwd_dq{name}",
                                                     f"gpunet_flash_bwd_dkv{name}"]  # fmt: skip
    return O, cache, dO, grads


def _reference(Q, K, V, keep, causal, dO, scale=0.4):
    Q64, K64, V64 = (a.astype("float64") for a in (Q, K, V))
    O0, _, c0 = REF.attention(Q64, K64, V64, keep, scale=scale, causal=causal)
    lse0 = REF._softmax_rows(Q64 @ np.swapaxes(K64, -1, -2), keep, scale, causal,
                             slice(0, Q.shape[2]))[1][..., 0]  # fmt: skip
    return O0, lse0, REF.backprop_attention(dO.astype("float64"), c0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CASES))
def test_tiled_attention_matches_the_reference(host, fused, name, dtype):
    qs, ks, vs, ms, causal = CASES[name]
    rng = np.random.default_rng(1)
    Q, K, V = (rng.standard_normal(s).astype(_dtype(dtype)) for s in (qs, ks, vs))
    keep = None if ms is None else rng.random(ms) > 0.3
    if keep is not None:
        keep[..., 0, :] = False  # a query row with every key masked: zeros, as the reference
    O, cache, dO, grads = _run(host, fused, Q, K, V, keep, causal)
    O0, lse0, want = _reference(Q, K, V, keep, causal, dO)
    _check(f"flash_fwd {name}", O, O0, dtype)
    if keep is not None:
        assert np.all(O[..., 0, :] == 0)
    assert cache.lse.dtype == ("float64" if dtype == "float64" else "float32")
    np.testing.assert_allclose(cache.lse, lse0, rtol=1e-12 if dtype == "float64" else 1e-5)
    for what, g, w in zip(("dQ", "dK", "dV"), grads, want, strict=True):
        _check(f"flash_bwd {what} {name}", g, w, dtype)


def test_bfloat16_is_run():
    # visible when ml_dtypes is missing: the bfloat16 host runs then skip
    pytest.importorskip("ml_dtypes", reason="bfloat16 host runs need ml_dtypes (optional)")
    assert "bfloat16" in DTYPES


def test_nan_and_large_scores_as_the_reference(host, fused):
    rng = np.random.default_rng(3)
    Q, K, V = (rng.standard_normal((1, 2, 70, 8)) for _ in range(3))
    Q[0, 0, 5, 2] = np.nan  # one query row NaN
    Q[0, 1] *= 300.0  # scores of +-1e4 in the other head
    K[0, 0, 66, 1] = np.nan  # a key in the last, partial tile: every row of head 0 NaN
    O, _, dO, grads = _run(host, fused, Q, K, V, None, False, scale=1.0)
    with np.errstate(invalid="ignore"):
        O0, _, want = _reference(Q, K, V, None, False, dO, scale=1.0)
    np.testing.assert_array_equal(np.isnan(O), np.isnan(O0))
    assert np.isnan(O[0, 0]).all() and np.isfinite(O[0, 1]).all()
    np.testing.assert_allclose(O[0, 1], O0[0, 1], rtol=1e-12, atol=1e-12)
    for g, w in zip(grads, want, strict=True):
        assert np.isnan(g[0, 0]).any()
        np.testing.assert_allclose(g[0, 1], w[0, 1], rtol=1e-9, atol=1e-9)


def test_gradients_match_finite_differences(host, fused):
    # of the kernels' own forward, in float64
    rng = np.random.default_rng(4)
    Q, K = (rng.standard_normal((1, 1, 5, 3)) for _ in range(2))
    V = rng.standard_normal((1, 1, 5, 2))
    keep = rng.random((1, 1, 1, 5)) > 0.2
    W = rng.standard_normal((1, 1, 5, 2))

    def loss(q, k, v):
        return float((fused.attention(q, k, v, keep, scale=0.7, causal=True)[0] * W).sum())

    _, _, cache = fused.attention(Q, K, V, keep, scale=0.7, causal=True)
    grads = fused.backprop_attention(W, cache)
    for which, g in enumerate(grads):
        args = [Q, K, V]
        num = np.zeros_like(args[which])
        for idx in np.ndindex(num.shape):
            plus, minus = [a.copy() for a in args], [a.copy() for a in args]
            plus[which][idx] += 1e-6
            minus[which][idx] -= 1e-6
            num[idx] = (loss(*plus) - loss(*minus)) / 2e-6
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)


def test_tiled_kernels_only_from_their_length_and_for_what_they_take(host, fused):
    rng = np.random.default_rng(2)
    Q = rng.standard_normal((1, 2, 4, 8)).astype("float32")
    fused.attention_flash_from = 1024
    assert not isinstance(fused.attention(Q, Q, Q, scale=1.0)[2], fk.TiledCache)
    fused.attention_flash_from = 1
    assert isinstance(fused.attention(Q, Q, Q, scale=1.0)[2], fk.TiledCache)
    assert not isinstance(fused.attention(Q, Q, Q, scale=1.0, keep_probs=True)[2],
                          fk.TiledCache)  # fmt: skip
    big = rng.standard_normal((1, 1, 4, 65)).astype("float32")  # head size over 64
    assert not isinstance(fused.attention(big, big, big, scale=1.0)[2], fk.TiledCache)
    V = rng.standard_normal((1, 2, 4, 65)).astype("float32")  # value head over 64
    assert not isinstance(fused.attention(Q, Q, V, scale=1.0)[2], fk.TiledCache)
    assert fk.bound(Q.astype("float64"), Q, Q, None) is None  # mixed dtypes
    assert fk.bound(np.swapaxes(Q, 1, 2), Q, Q, None) is None  # not C-contiguous
    assert fk.bound(Q, Q[..., :0, :], Q[..., :0, :], None) is None  # no keys
    assert fk.bound(Q, Q, Q[..., :3, :], None) is None  # K and V lengths differ
