"""Memory of ``fit``: growth over 1,000 steps, and the peak during one epoch of A
against parameters + optimizer state + one batch's activations.

    python bench/bench_memory.py          # table (runs in a fresh interpreter)
    pytest bench/bench_memory.py          # the same figures as benchmark extra_info

Both figures come from ``tracemalloc``, which sees every NumPy data buffer (NumPy
reports them to it), so they are exact for gpunet's arrays; the RSS figures
next to them also include the BLAS library's own work buffers and allocator
slack. Each measurement runs in a fresh interpreter so nothing else's
allocations are in it.

Definitions:
* growth = traced memory sampled every 50 steps from step 500 to 1,500 (the
  first 500 let buffers and caches settle), reduced to a least-squares slope: a
  leak grows linearly, while bounded caches (ctypes, interned strings) wobble
  by a few KiB and stop. "met" when the slope is under 16 KiB per 1,000 steps,
  i.e. 16 bytes a step: anything kept per step (a tensor, a graph node, a
  float in a list) is larger.
* peak = the traced high-water mark during model build + ``fit`` (one epoch of
  A, batch 256) minus the traced memory before the model existed. The data set
  itself is allocated before and not counted; a copy of it made by ``fit`` is.
* reference = parameters + Adam's two moments + one batch's activations (the
  input batch and every layer's output); gradients are listed apart.
"""

from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

GROWTH_LIMIT = 16 * 1024
PEAK_GOAL = 1.5


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _hwm() -> int:
    """Peak RSS since the last reset (``VmHWM``), or 0 where unavailable."""
    try:
        with open("/proc/self/status") as f:
            line = next(ln for ln in f if ln.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024
    except (OSError, StopIteration):
        return 0


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def growth(key: str = "B", steps: int = 1500, settle: int = 500, every: int = 50) -> dict[str, Any]:
    import _workloads as wl

    import gpunet as gn
    from gpunet.cli.quickbench import build_model

    w = wl.WORKLOADS[key]
    data = wl.make_data(w)
    import numpy as np

    # (step, traced bytes, RSS), preallocated: recording must not allocate itself
    marks = np.zeros(((steps - settle) // every + 1, 3), dtype=np.int64)
    taken = [0]

    class Probe(gn.callbacks.Callback):
        n = 0

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            Probe.n += 1
            # every 50 steps: the same point of A's 50-batch epoch each time, so
            # memory that comes and goes within an epoch does not look like growth
            if Probe.n >= settle and (Probe.n - settle) % every == 0:
                gc.collect()
                marks[taken[0]] = (Probe.n, tracemalloc.get_traced_memory()[0], _rss())
                taken[0] += 1
            if Probe.n >= steps:
                self.model.stop_training = True

    tracemalloc.start()
    model = build_model(w)
    epochs = math.ceil(steps / w.steps)
    model.fit(data.X, data.y, batch_size=w.batch, epochs=epochs, shuffle=True, verbose=0,
              callbacks=[Probe()])  # fmt: skip
    tracemalloc.stop()
    marks = marks[: taken[0]]
    xs = [float(m[0]) for m in marks]
    ys = [float(m[1]) for m in marks]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return {
        "workload": key,
        "steps": steps,
        "from_step": settle,
        "epochs": epochs,
        "traced_growth_bytes": int(marks[-1][1] - marks[0][1]),
        "traced_max_above_start": max(ys) - ys[0],
        "slope_bytes_per_step": slope,
        "per_1000_steps_bytes": 1000 * slope,
        "rss_growth_bytes": int(marks[-1][2] - marks[0][2]),
        "limit_bytes": GROWTH_LIMIT,
        "met": 1000 * slope < GROWTH_LIMIT,
    }


def peak_fit(key: str = "A") -> dict[str, Any]:
    import _workloads as wl

    import gpunet as gn
    from gpunet.cli.quickbench import build_model

    w = wl.WORKLOADS[key]
    data = wl.make_data(w)
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
    model = build_model(w)
    model.fit(
        data.X, data.y, batch_size=w.batch, epochs=1, shuffle=False, verbose=0, callbacks=[Probe()]
    )
    steps_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak = max(seen["setup_peak"], steps_peak) - base
    params = 4 * w.n_params
    acts = 4 * w.batch * sum(w.sizes)
    ref = params + 2 * params + acts
    return {
        "workload": key,
        "peak_bytes": peak,
        "reference_bytes": ref,
        "ratio": peak / ref,
        "goal": PEAK_GOAL,
        "met": peak / ref <= PEAK_GOAL,
        "params_bytes": params,
        "adam_state_bytes": 2 * params,
        "grads_bytes": params,
        "activations_bytes": acts,
        "persistent_bytes": seen["persistent"] - base,
        "step_working_set_bytes": steps_peak - seen["persistent"],
        "dataset_bytes": data.X.nbytes + data.y.nbytes,
        "rss_peak_bytes": _hwm() - rss0 if hwm_ok else None,
    }


def measure() -> dict[str, Any]:
    """Run both in a fresh interpreter and return their figures."""
    out = subprocess.run(
        [sys.executable, __file__, "--json"], check=True, capture_output=True, text=True
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def _mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:.2f} MiB"


def goal_lines(r: dict[str, Any]) -> list[str]:
    p = r["peak"]
    grown = ", ".join(f"{g['workload']} {g['per_1000_steps_bytes']:,.0f} B" for g in r["growth"])
    met = all(g["met"] for g in r["growth"])
    return [
        f"Memory: traced growth per 1,000 steps (fitted slope): {grown} (limit "
        f"{GROWTH_LIMIT:,} B); met: {'yes' if met else '**no**'}. "
        f"Peak during fit on {p['workload']} = "
        f"{p['ratio']:.2f}x params + Adam state + one batch's activations (goal <= "
        f"{p['goal']}); met: {'yes' if p['met'] else '**no**'}"
    ]


def markdown(r: dict[str, Any]) -> list[str]:
    p = r["peak"]
    lines = ["| figure | value |", "|---|---:|"]
    for g in r["growth"]:
        lines += [
            f"| growth of {g['workload']}, traced, steps {g['from_step']}-{g['steps']} | "
            f"slope {g['slope_bytes_per_step']:.1f} B/step; end - start "
            f"{g['traced_growth_bytes']:,} B, max above start "
            f"{g['traced_max_above_start']:,.0f} B |",
            f"| growth of {g['workload']}, RSS, same steps | {g['rss_growth_bytes']:,} B |",
        ]
    return [
        *lines,
        f"| peak during fit on {p['workload']} (traced) | {_mib(p['peak_bytes'])} |",
        f"| reference: params + Adam m, v + one batch's activations | "
        f"{_mib(p['reference_bytes'])} (= {_mib(p['params_bytes'])} + "
        f"{_mib(p['adam_state_bytes'])} + {_mib(p['activations_bytes'])}) |",
        f"| peak / reference | **{p['ratio']:.2f}** |",
        f"| persistent after step 1 (params, grads, state, ...) | {_mib(p['persistent_bytes'])} |",
        f"| working set of one step above that | {_mib(p['step_working_set_bytes'])} |",
        f"| gradients (not in the reference) | {_mib(p['grads_bytes'])} |",
        f"| the data set (allocated before, not counted) | {_mib(p['dataset_bytes'])} |",
        f"| peak RSS above start (incl. BLAS buffers) | {_mib(p['rss_peak_bytes'])} |",
    ]


# -- pytest-benchmark entry points: figures in extra_info, nothing timed is asserted ------
def test_memory_growth(benchmark: Any) -> None:
    r = benchmark.pedantic(lambda: measure()["growth"], rounds=1, iterations=1)
    benchmark.extra_info.update({g["workload"]: g for g in r})


def test_memory_peak_fit(benchmark: Any) -> None:
    r = benchmark.pedantic(lambda: measure()["peak"], rounds=1, iterations=1)
    benchmark.extra_info.update(r)


if __name__ == "__main__":
    if "--json" in sys.argv:
        # peak first: growth's 1,000 steps would otherwise raise the RSS baseline
        result = {"peak": peak_fit(), "growth": [growth("B"), growth("A")]}
        print(json.dumps(result))
    else:
        result = measure()
        print("\n".join([*goal_lines(result), "", *markdown(result)]))
