"""Peak memory during ``fit`` of the LeNet model (issue 14) against parameters +
Adam state + one batch's activations and column buffers at the chunk size.

    python bench/bench_memory_lenet.py      # table (runs in a fresh interpreter)
    pytest bench/bench_memory_lenet.py      # the same figures as benchmark extra_info

As ``bench_memory.py``: ``tracemalloc`` sees every NumPy buffer, so the peak is exact
for gpunet's arrays; the data set is allocated before and not counted.

* peak = traced high-water mark during model build + ``fit`` (one epoch of 20
  batches of 128) minus the traced memory before the model existed;
* reference = parameters + Adam's two moments + one batch's activations (the
  input and every layer's output) + the im2col columns of both convolutions for
  one chunk of the batch (``MAX_COL_BYTES``; all 128 samples fit one chunk here).
  Gradients are listed apart. Goal: peak <= 2x reference.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

PEAK_GOAL = 2.0


def peak_fit() -> dict[str, Any]:
    import _lenet as L
    from bench_memory import _hwm, _reset_hwm, _rss

    import gpunet as gn
    from gpunet.backend._conv_ops import MAX_COL_BYTES

    w = L.LENET["L"]
    data = L.make_data(w)
    seen: dict[str, int] = {}

    class Probe(gn.callbacks.Callback):
        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            if batch == 1:  # after the first step: everything persistent exists
                cur, peak = tracemalloc.get_traced_memory()
                seen["setup_peak"], seen["persistent"] = peak, cur
                tracemalloc.reset_peak()

    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    hwm_ok = _reset_hwm()
    rss0 = _rss()
    model = L.GpunetLenet(w, data).model
    model.fit(data.X, data.y, batch_size=w.batch, epochs=1, shuffle=False, verbose=0,
              callbacks=[Probe()])  # fmt: skip
    steps_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak = max(seen["setup_peak"], steps_peak) - base
    B, f = w.batch, 4
    params = f * w.n_params
    per_sample = [L.H0 * L.H0, L.H1 * L.H1 * L.C1, (L.H1 // 2) ** 2 * L.C1, L.H2 * L.H2 * L.C2,
                  L.FLAT, L.D1, L.D2]  # fmt: skip
    acts = f * B * sum(per_sample)
    cols = 0
    for size, C in ((L.H1 * L.H1 * L.K * L.K, 1), (L.H2 * L.H2 * L.K * L.K, L.C1)):
        chunk = min(B, max(1, MAX_COL_BYTES // (size * C * f)))
        cols += f * chunk * size * C
    ref = 3 * params + acts + cols
    return {
        "workload": "L",
        "peak_bytes": peak,
        "reference_bytes": ref,
        "ratio": peak / ref,
        "goal": PEAK_GOAL,
        "met": peak / ref <= PEAK_GOAL,
        "params_bytes": params,
        "adam_state_bytes": 2 * params,
        "grads_bytes": params,
        "activations_bytes": acts,
        "columns_bytes": cols,
        "persistent_bytes": seen["persistent"] - base,
        "step_working_set_bytes": steps_peak - seen["persistent"],
        "dataset_bytes": data.X.nbytes + data.y.nbytes,
        "rss_peak_bytes": _hwm() - rss0 if hwm_ok else None,
    }


def measure() -> dict[str, Any]:
    """Run :func:`peak_fit` in a fresh interpreter and return its figures."""
    out = subprocess.run(
        [sys.executable, __file__, "--json"], check=True, capture_output=True, text=True
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def _mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:.2f} MiB"


def goal_lines(p: dict[str, Any]) -> list[str]:
    return [
        f"Memory (issue 14): peak during fit of the LeNet model = {p['ratio']:.2f}x params + "
        f"Adam state + one batch's activations and column buffers (goal <= {p['goal']}); "
        f"met: {'yes' if p['met'] else '**no**'}"
    ]


def markdown(p: dict[str, Any]) -> list[str]:
    return [
        "| figure | value |",
        "|---|---:|",
        f"| peak during fit of LeNet, batch 128 (traced) | {_mib(p['peak_bytes'])} |",
        f"| reference: params + Adam m, v + one batch's activations + columns | "
        f"{_mib(p['reference_bytes'])} (= {_mib(p['params_bytes'])} + "
        f"{_mib(p['adam_state_bytes'])} + {_mib(p['activations_bytes'])} + "
        f"{_mib(p['columns_bytes'])}) |",
        f"| peak / reference | **{p['ratio']:.2f}** |",
        f"| persistent after step 1 (params, grads, state, ...) | {_mib(p['persistent_bytes'])} |",
        f"| working set of one step above that | {_mib(p['step_working_set_bytes'])} |",
        f"| gradients (not in the reference) | {_mib(p['grads_bytes'])} |",
        f"| the data set (allocated before, not counted) | {_mib(p['dataset_bytes'])} |",
        f"| peak RSS above start (incl. BLAS buffers) | {_mib(p['rss_peak_bytes'])} |",
    ]


def test_memory_peak_fit_lenet(benchmark: Any) -> None:
    r = benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info.update(r)


if __name__ == "__main__":
    if "--json" in sys.argv:
        print(json.dumps(peak_fit()))
    else:
        result = measure()
        print("\n".join([*goal_lines(result), "", *markdown(result)]))
