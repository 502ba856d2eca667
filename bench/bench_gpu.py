"""The GPU path: what can be counted without a GPU, and timings where one exists.

    pytest bench/bench_gpu.py      # launch counts everywhere; timings skip without a GPU

* ``test_launch_counts``: kernel launches and passes over activation memory per
  training step, fused (``FusedOps`` through the ``_kernels`` runner) versus
  unfused (the reference ``Ops``, i.e. plain CuPy) and the hand-written
  plain-CuPy step; see ``_launches.py`` for exactly what is counted. Runs on
  the CPU; the figures go to the benchmark's ``extra_info`` and stdout.
* ``test_gpu``: gpunet on cuda, plain CuPy without our kernels, the CuPy GEMM
  bound and PyTorch CUDA, one block of ``steps`` batches per round, synchronised
  at the end; ``cupyx.profiler.benchmark``'s GPU time of one block is added to
  ``extra_info`` for the CuPy rows. Skipped (not hidden) without CuPy and a GPU.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

import _launches
import _workloads as wl
import pytest
import run

from gpunet.backend import _compat

HAS_GPU = _compat.gpu_count()[0] > 0
needs_gpu = pytest.mark.skipif(
    not HAS_GPU, reason=f"needs CuPy + a CUDA GPU: {_compat.gpu_count()[1]}"
)
GPU_TRAIN = ["gpunet_cuda", "cupy_plain", "gemm_bound_cupy", "torch_cuda", "torch_cuda_fused_adam"]
OPTS = argparse.Namespace(torch=True, sklearn=False, quick=False, sklearn_c=False, impls=None)


@pytest.mark.parametrize("key", ["A", "B", "C"])
def test_launch_counts(benchmark: Any, key: str) -> None:
    result = benchmark.pedantic(_launches.count, args=(key,), rounds=1, iterations=1)
    benchmark.group = "launch counting (CPU)"
    for column in ("unfused", "fused", "hand_plain_cupy"):
        if column in result:
            benchmark.extra_info[column] = {
                k: v for k, v in result[column].items() if k != "per_op"
            }
    print("\n".join(_launches.markdown({key: result})))


@functools.cache
def data(key: str) -> wl.Data:
    return wl.make_data(wl.WORKLOADS[key])


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("name", [*GPU_TRAIN, "gpunet_predict_cuda", "torch_predict_cuda"])
@pytest.mark.parametrize("key", ["A", "B", pytest.param("C", marks=pytest.mark.slow)])
def test_gpu(benchmark: Any, key: str, name: str) -> None:
    predict = "predict" in name
    if predict and key != "A":
        pytest.skip("predict is benchmarked on A")
    w = wl.WORKLOADS[key]
    factory = run.factories("P" if predict else key, w, data(key), OPTS, gpu=True).get(name)
    if factory is None:
        pytest.skip(f"{name} is not available here")
    impl = factory()

    def block() -> None:
        impl.run(w.steps)
        impl.sync()

    benchmark.group = f"{key} on the GPU"
    benchmark.pedantic(
        block, setup=lambda: impl.run(max(w.warmup, 1)), rounds=w.repeats, iterations=1
    )
    benchmark.extra_info["ms_per_step"] = 1e3 * benchmark.stats.stats.median / w.steps
    if name in ("gpunet_cuda", "cupy_plain", "gemm_bound_cupy"):
        from cupyx.profiler import benchmark as cupy_benchmark

        res = cupy_benchmark(impl.run, (w.steps,), n_repeat=3, n_warmup=1)
        benchmark.extra_info["cupyx_gpu_ms_per_step"] = 1e3 * float(res.gpu_times.mean()) / w.steps
