"""pytest-benchmark entry points for the CPU rows of the suite.

    pytest bench/bench_cpu.py                       # A, B and predict (C: -m slow)
    pytest bench/bench_cpu.py -k "A and (gpunet or torch)" --benchmark-autosave
    pytest bench/bench_cpu.py --benchmark-compare   # against the last saved run

One round = one block of ``steps`` batches of the workload (an epoch), after
``warmup`` untimed steps; the implementations are exactly those of
``python bench/run.py``, each in its own worker process as there (a round
includes ~0.1 ms of pipe round trip). pytest-benchmark runs one implementation after another,
not interleaved, so on a shared machine take ratios from ``bench/run.py`` and use
this file for pytest-benchmark's history and comparisons. Timings are reported,
never asserted.
"""

from __future__ import annotations

import argparse
from typing import Any

import _worker
import _workloads as wl
import pytest
import run

TRAIN = [
    "gpunet",
    "gpunet_inner",
    "gpunet_train_on_batch",
    "gpunet_shuffled",
    "numpy",
    "gemm_bound_numpy",
    "gemm_bound_torch",
    "torch",
    "torch_fused_adam",
    "sklearn",
]
PREDICT = ["gpunet_predict", "numpy_predict", "gemm_bound_fwd", "torch_predict"]
CASES = [pytest.param(k, n, id=f"{k}-{n}") for k in ("A", "B") for n in TRAIN]
CASES += [
    pytest.param("C", n, id=f"C-{n}", marks=pytest.mark.slow) for n in TRAIN if n != "sklearn"
]
CASES += [pytest.param("P", n, id=f"P-{n}") for n in PREDICT]
OPTS = argparse.Namespace(torch=True, sklearn=True, quick=False, sklearn_c=False, impls=None)


def make(key: str, name: str) -> tuple[wl.Workload, Any]:
    """The implementation in its own worker process, as ``bench/run.py`` runs it
    (libraries sharing one OpenMP runtime slow each other: see _worker.py)."""
    w = wl.WORKLOADS["A" if key == "P" else key]
    if name not in run.factories(key, w, None, OPTS, gpu=False):  # type: ignore[arg-type]
        pytest.skip(f"{name} is not available here (peer not installed)")
    remote = _worker.Remote(key, name, OPTS, gpu=False)
    remote.wait_ready()
    return w, remote


@pytest.mark.parametrize(("key", "name"), CASES)
def test_cpu(benchmark: Any, key: str, name: str) -> None:
    w, impl = make(key, name)

    def setup() -> None:
        if w.warmup:
            impl.run(w.warmup)

    try:
        benchmark.group = f"{key}: {run.TITLES[key]}"
        benchmark.extra_info.update({"steps_per_round": w.steps, "batch": w.batch})
        benchmark.pedantic(impl.run, args=(w.steps,), setup=setup, rounds=w.repeats, iterations=1)
    finally:
        impl.close()
    med = benchmark.stats.stats.median
    benchmark.extra_info["ms_per_step"] = 1e3 * med / w.steps
    benchmark.extra_info["samples_per_s"] = w.steps * w.batch / med
