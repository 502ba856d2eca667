"""``kernels/attention.cu`` built for the host by g++ and driven by gpunet's own
launchers (``FusedAttention``), against the NumPy reference ``Ops``: the fused masked
softmax and its backward, and the streaming attention kernels (online softmax,
log-sum-exp kept, the weights recomputed in the backward) on small tiles.

Masks broadcast over batch, heads or queries; causal with Tq < Tk; a row with every
key masked; NaN and +-1e4 scores; sizes over the lowered grid (3 blocks).
"""

from __future__ import annotations

import numpy as np
import pytest
from hostbuild import record_error

from gpunet.backend import _attention_kernels as ak
from gpunet.backend.cupy_ops import FusedOps
from gpunet.backend.ops import Ops

REF = Ops()
TOL = {"float16": (3e-3, 3e-3), "float32": (2e-5, 2e-6), "float64": (1e-12, 1e-13)}
MASKS = {
    "none": None,
    "padding (B, 1, 1, Tk)": (2, 1, 1, 9),
    "per query (1, 1, Tq, Tk)": (1, 1, 7, 9),
    "full (B, H, Tq, Tk)": (2, 3, 7, 9),
    "3-d (H, Tq, Tk)": (3, 7, 9),
}


def _check(what, got, want, dtype):
    rtol, atol = TOL[dtype]
    assert got.dtype == np.dtype(dtype) and got.shape == want.shape, what
    np.testing.assert_allclose(got.astype("float64"), want, rtol=rtol, atol=atol, err_msg=what)
    record_error(what, dtype, got, want)


@pytest.fixture
def fused(host) -> FusedOps:
    return FusedOps()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_softmax_and_backward_match_the_reference(host, fused, dtype, mask, causal):
    rng = np.random.default_rng(0)
    S = (rng.standard_normal((2, 3, 7, 9)) * 3).astype(dtype)
    keep = None if MASKS[mask] is None else rng.random(MASKS[mask]) > 0.3
    P = fused.attention_softmax(S, keep, scale=0.7, causal=causal)
    assert host.launches[-1][0] == f"gpunet_attn_softmax<{ak.CTYPE[dtype]}>"
    S64 = S.astype("float64")
    want = REF.attention_softmax(S64, keep, scale=0.7, causal=causal)
    _check(f"attn_softmax {mask}", P, want, dtype)
    dP = rng.standard_normal(S.shape).astype(dtype)
    dS = fused.backprop_attention_softmax(dP, P, keep, scale=0.7, causal=causal)
    assert host.launches[-1][0].startswith("gpunet_attn_softmax_bwd")
    want_dS = REF.backprop_attention_softmax(dP.astype("float64"), P.astype("float64"), keep,
                                             scale=0.7, causal=causal)  # fmt: skip
    _check(f"attn_softmax_bwd {mask}", dS, want_dS, dtype)


def test_softmax_edge_rows(host, fused):
    S = np.zeros((5, 6), dtype="float32")
    S[0] = [1e4, -1e4, 0, 1, 2, 3]  # far apart: one weight 1
    S[1, 2] = np.nan  # NaN: the kept weights are NaN, as the reference
    S[2] = np.inf
    keep = np.ones((5, 6), bool)
    keep[3] = False  # every key masked: all-zero weights (Keras)
    keep[4, ::2] = False
    P = fused.attention_softmax(S, keep)
    with np.errstate(invalid="ignore"):  # inf - inf in the reference, as in the kernel
        want = REF.attention_softmax(S, keep)
    np.testing.assert_array_equal(np.isnan(P), np.isnan(want))
    np.testing.assert_allclose(P, want, rtol=1e-6, atol=1e-7)
    assert np.all(P[3] == 0) and P[0, 0] == 1.0 and np.all(P[4, ::2] == 0)


def test_what_the_kernels_do_not_take_falls_back(host, fused):
    S = np.ones((2, 3), dtype="float32")
    before = len(host.launches)
    bias = np.ones((2, 3), "float32")
    got = fused.attention_softmax(S, bias=bias)  # an additive bias: the reference
    np.testing.assert_allclose(got, REF.attention_softmax(S, bias=bias))
    S5 = np.ones((1, 1, 1, 2, 3), dtype="float32")  # 5 axes: the reference
    np.testing.assert_allclose(fused.attention_softmax(S5), REF.attention_softmax(S5))
    assert len(host.launches) == before
    fused.attention_softmax(S)  # and the kernel for what it takes
    assert len(host.launches) == before + 1


STREAM = {
    "self, causal": ((2, 2, 100, 8), (2, 2, 100, 8), (2, 2, 100, 5), None, True),
    "cross Tq < Tk, causal": ((1, 3, 6, 4), (1, 3, 11, 4), (1, 3, 11, 32), None, True),
    "padding mask": ((2, 1, 7, 3), (2, 1, 9, 3), (2, 1, 9, 3), (2, 1, 1, 9), False),
    "full mask": ((2, 2, 5, 32), (2, 2, 6, 32), (2, 2, 6, 2), (2, 2, 5, 6), False),
}  # fmt: skip


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("name", list(STREAM))
def test_streaming_attention_matches_the_reference(host, fused, name, dtype):
    qs, ks, vs, ms, causal = STREAM[name]
    rng = np.random.default_rng(1)
    Q, K, V = (rng.standard_normal(s).astype(dtype) for s in (qs, ks, vs))
    keep = None if ms is None else rng.random(ms) > 0.3
    if keep is not None:
        keep[0, ..., 0, :] = False  # one query row with every key masked
    fused.attention_stream_from = 1
    O, P, cache = fused.attention(Q, K, V, keep, scale=0.4, causal=causal)
    assert cache.streamed and P is None and host.launches[-1][0].startswith("gpunet_attn_fwd")
    Q64, K64, V64 = (a.astype("float64") for a in (Q, K, V))
    O0, _, c0 = REF.attention(Q64, K64, V64, keep, scale=0.4, causal=causal)
    _check(f"attn_fwd {name}", O, O0, dtype)
    lse0 = REF._softmax_rows(Q64 @ np.swapaxes(K64, -1, -2), keep, 0.4, causal,
                             slice(0, qs[2]))[1][..., 0]  # fmt: skip
    kept_rows = np.isfinite(cache.lse) & (lse0 > -1e8)
    np.testing.assert_allclose(cache.lse[kept_rows], lse0[kept_rows], rtol=1e-4, atol=1e-4)
    dO = rng.standard_normal(O.shape).astype(dtype)
    grads = fused.backprop_attention(dO, cache)
    t = ak.CTYPE[dtype]
    names = [n for n, _, _ in host.launches[-2:]]
    assert names == [f"gpunet_attn_bwd_dq<{t}>", f"gpunet_attn_bwd_dkv<{t}>"]
    want = REF.backprop_attention(dO.astype("float64"), c0)
    for what, g, w in zip(("dQ", "dK", "dV"), grads, want, strict=True):
        _check(f"attn_bwd {what} {name}", g, w, dtype)


def test_streaming_is_not_used_below_its_length_or_for_what_it_cannot_take(host, fused):
    rng = np.random.default_rng(2)
    Q = rng.standard_normal((1, 2, 4, 8)).astype("float32")
    assert not fused.attention(Q, Q, Q, scale=1.0)[2].streamed  # 4 keys < 1024
    fused.attention_stream_from = 1
    assert not fused.attention(Q, Q, Q, scale=1.0, keep_probs=True)[2].streamed
    big = rng.standard_normal((1, 1, 4, 33)).astype("float32")  # head size over 32
    assert not fused.attention(big, big, big, scale=1.0)[2].streamed
    assert not fused.attention(Q.astype("float64"), Q, Q, scale=1.0)[2].streamed
    assert fused.attention(Q, Q, Q, scale=1.0)[2].streamed
