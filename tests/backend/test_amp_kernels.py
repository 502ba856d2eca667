"""``kernels/amp.cu`` (unscale + finiteness check, the scale update) built for the host
and driven by the launchers of ``gpunet.backend._amp_ops``, against the reference, in
float16, bfloat16 (NumPy's through ml_dtypes, optional), float32 and float64."""

from __future__ import annotations

import numpy as np
import pytest

from gpunet.backend import _amp_ops
from gpunet.backend.ops import Ops

REF = Ops()
DTYPES = ["float16", "float32", "float64"]
try:
    import ml_dtypes  # noqa: F401

    DTYPES.append("bfloat16")
except ImportError:  # pragma: no cover
    pass


def test_bfloat16_kernels_run_on_the_host():
    # visible when ml_dtypes is missing: the bfloat16 host runs then skip
    pytest.importorskip("ml_dtypes", reason="bfloat16 host runs need ml_dtypes (optional)")
    assert "bfloat16" in DTYPES


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 7, 5000])  # 5000 > 3 blocks of 256: grid striding
@pytest.mark.parametrize("bad", [None, np.inf, -np.inf, np.nan])
def test_unscale_matches_the_reference(host, dtype, n, bad):
    rng = np.random.default_rng(n)
    G = (rng.standard_normal(n) * 2.0**12).astype(dtype)
    if bad is not None and n:
        G[n // 2] = bad
    scale = np.asarray(3.0 * 2.0**11, "float32")  # not a power of two: inv = 1 / s rounds
    got, want = G.copy(), G.astype("float64" if dtype == "float64" else "float32")
    found, ref_found = np.zeros((), "int32"), np.zeros((), "int32")
    _amp_ops.unscale(got, scale, found)
    REF.unscale_check(want, scale, ref_found)
    assert int(found) == int(ref_found) == int(bad is not None and n > 0)
    expected = want.astype(dtype)  # float math, rounded once to the storage dtype
    np.testing.assert_array_equal(got.astype("float64"), expected.astype("float64"))
    assert [n for n, _, _ in host.launches] == ([f"gpunet_unscale<{_ctype(dtype)}>"] if n else [])


def _ctype(dtype: str) -> str:
    from gpunet.backend import _kernels

    return _kernels.CTYPE[dtype]


def test_the_scale_update_matches_the_reference_over_a_sequence(host):
    founds = [0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0]
    k = [np.full((), 2.0**15, "float32"), np.zeros((), "int32"), np.zeros((), "int32"),
         np.ones((), bool)]  # fmt: skip
    r = [a.copy() for a in k]
    seen = []
    for f in founds:
        k[2][...] = f
        r[2][...] = f
        _amp_ops.update_scale(*k, 2.0, 0.5, 3)
        REF.update_scale(*r, growth=2.0, backoff=0.5, interval=3)
        for a, b in zip(k, r, strict=True):
            assert a.dtype == b.dtype and a == b
        seen.append((float(k[0]), int(k[1]), bool(k[3])))
        assert int(k[2]) == 0  # found is reset for the next step
    assert seen[:4] == [(2.0**15, 1, True), (2.0**15, 2, True), (2.0**14, 0, False),
                        (2.0**14, 1, True)]  # fmt: skip
    assert seen[5] == (2.0**15, 0, True)  # three clean steps: doubled
    assert seen[-2:] == [(2.0**14, 0, True), (2.0**14, 1, True)]  # halved twice, grew


def test_the_scale_never_grows_to_infinity(host):
    scale, counter = np.full((), np.finfo("float32").max, "float32"), np.zeros((), "int32")
    found, ok = np.zeros((), "int32"), np.ones((), bool)
    _amp_ops.update_scale(scale, counter, found, ok, 2.0, 0.5, 1)
    assert scale == np.finfo("float32").max and counter == 0 and ok


def test_the_fused_loss_scale_optimizer_step_runs_the_kernels(host):
    import gpunet as gn
    from gpunet.backend.cupy_ops import FusedOps

    fused = FusedOps()
    G = np.array([1.0, np.inf, 2.0], "float32")
    scale, found = fused.full((), 4.0, "float32"), fused.zeros((), "int32")
    counter, ok = fused.zeros((), "int32"), fused.full((), True, "bool")
    fused.unscale_check(G, scale, found)
    fused.update_scale(scale, counter, found, ok, growth=2.0, backoff=0.5, interval=2)
    assert float(scale) == 2.0 and not bool(ok)
    names = [n for n, _, _ in host.launches]
    assert names == ["gpunet_unscale<float>", "gpunet_update_scale<float>"]
    assert gn.optimizers.LossScaleOptimizer  # the optimizer that makes these two calls
