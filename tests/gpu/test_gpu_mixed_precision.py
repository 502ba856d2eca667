"""On a real GPU: mixed-precision fits reach the CPU's accuracy, the loss scale stays on
the device, and the bfloat16 / loss-scale kernels match the reference. SKIPPED elsewhere."""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn
from gpunet.backend import _compat
from gpunet.backend.ops import Ops

HAS_GPU = _compat.gpu_count()[0] > 0
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not HAS_GPU, reason=f"needs CuPy + a CUDA GPU: {_compat.gpu_count()[1]}"),
]


@pytest.fixture(autouse=True)
def _reset_policy():
    yield
    gn.mixed_precision.set_global_policy(None)


def _fit(device, policy):
    sk = pytest.importorskip("sklearn.datasets")
    d = sk.load_digits()
    X, y = (d.data / 16.0).astype("float32"), d.target
    gn.mixed_precision.set_global_policy(policy)
    gn.utils.set_random_seed(0)
    model = gn.Sequential([gn.layers.Dense(128, activation="relu", input_shape=(64,)),
                           gn.layers.Dense(10, activation="softmax")], device=device)  # fmt: skip
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(X[:1400], y[:1400], epochs=15, batch_size=32, verbose=0)
    return float((model.predict(X[1400:]).argmax(1) == y[1400:]).mean()), model


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_a_mixed_fit_on_the_gpu_reaches_float32_accuracy(policy):
    base, _ = _fit("cpu", "float32")
    acc, model = _fit("cuda", policy)
    assert acc >= base - 0.01
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, gn.optimizers.LossScaleOptimizer)
        assert model.optimizer.dynamic_scale >= 1.0


def test_the_loss_scale_kernels_match_the_reference_on_the_gpu():
    gpu, ref = gn.get_ops("cuda"), Ops()
    rng = np.random.default_rng(0)
    G = (rng.standard_normal(3 * 2**20 + 5) * 2**12).astype("float32")
    G[12345] = np.inf
    for ops, arr in ((gpu, gpu.asarray(G)), (ref, G.copy())):
        scale, found = ops.full((), 3.0 * 2**11, "float32"), ops.zeros((), "int32")
        counter, ok = ops.zeros((), "int32"), ops.full((), True, "bool")
        ops.unscale_check(arr, scale, found)
        ops.update_scale(scale, counter, found, ok, growth=2.0, backoff=0.5, interval=2)
        out = [ops.to_numpy(a) for a in (arr, scale, counter, ok)]
        if ops is gpu:
            got = out
    for a, b in zip(got, out, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("compute", ["float16", "bfloat16"])
def test_half_gemms_on_the_gpu_are_the_simulated_devices_model(compute):
    # cublasGemmEx, half in/out, float32 accumulation: the simulated device's model,
    # up to the order of the float32 sums (a half ulp at the output at most)
    import cupy

    from gpunet.backend.strict_ops import StrictOps

    gpu, sim = gn.get_ops("cuda"), StrictOps()
    rng = np.random.default_rng(0)
    A = rng.standard_normal((512, 768)).astype("float32")
    B = rng.standard_normal((768, 256)).astype("float32")
    seen = []
    real = cupy.matmul

    def spy(a, b, *args, **kw):
        seen.append((a.dtype.name, b.dtype.name))
        return real(a, b, *args, **kw)

    cupy.matmul = spy
    try:
        got = gpu.to_numpy(gpu.lowp_matmul(gpu.asarray(A), gpu.asarray(B), compute))
    finally:
        cupy.matmul = real
    want = sim.to_numpy(sim.lowp_matmul(sim.asarray(A), sim.asarray(B), compute))
    if compute == "float16":
        assert seen == [("float16", "float16")]
    ulp = 2.0**-10 if compute == "float16" else 2.0**-7
    np.testing.assert_allclose(got, want, rtol=ulp, atol=ulp)
