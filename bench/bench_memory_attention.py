"""Peak extra memory of long attention (issue 16): one forward + backward of
``scaled_dot_product_attention`` (batch 1, 4 heads, head dim 32, float32, full and
causal) at T = 1024, 2048, 4096, against the T x T scores it never holds whole.

    python bench/bench_memory_attention.py      # table (runs in fresh interpreters)

``tracemalloc`` sees every NumPy buffer (those of the worker threads too), so the
figure is exact for gpunet's arrays. The inputs (q, k, v and the output gradient)
are allocated before and not counted; the outputs and gradients (4 arrays of
T x 128 floats) are. Goal: the peak grows linearly in T (the blocked path keeps
``attention_chunk`` query rows of scores at a time), i.e. peak(4096) / peak(2048)
stays near 2 where the full scores would make it 4, and the peak stays far under
one T x T score array. Measured at 1 host thread and at 2 (heads split between
threads, each with its own blocks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

LENGTHS = (1024, 2048, 4096)
HEADS, DIM = 4, 32


def peak_step(T: int, causal: bool) -> dict[str, Any]:
    import numpy as np

    import gpunet as gn

    rng = np.random.default_rng(0)
    q, k, v = (gn.tensor(rng.standard_normal((1, HEADS, T, DIM), dtype=np.float32),
                         requires_grad=True) for _ in range(3))  # fmt: skip
    dO = gn.tensor(rng.standard_normal((1, HEADS, T, DIM), dtype=np.float32))
    sdpa = gn.nn.functional.scaled_dot_product_attention
    sdpa(q, k, v, is_causal=causal).backward(dO)  # warm: the kernels are built
    for t in (q, k, v):
        t.grad = None
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    sdpa(q, k, v, is_causal=causal).backward(dO)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    scores = 4 * HEADS * T * T
    return {"T": T, "causal": causal, "peak_bytes": peak, "scores_bytes": scores,
            "peak_over_scores": peak / scores}  # fmt: skip


def measure() -> dict[str, Any]:
    """Every length, full and causal, at 1 and 2 host threads, each in a fresh
    interpreter (GPUNET_NUM_THREADS, OPENBLAS_NUM_THREADS set)."""
    rows = []
    for threads in (1, 2):
        env = {**os.environ, "GPUNET_NUM_THREADS": str(threads),
               "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}  # fmt: skip
        out = subprocess.run([sys.executable, __file__, "--json"], check=True,
                             capture_output=True, text=True, env=env).stdout  # fmt: skip
        for row in json.loads(out.strip().splitlines()[-1]):
            rows.append({**row, "threads": threads})
    growth = {}
    for threads in (1, 2):
        for causal in (False, True):
            by_t = {r["T"]: r["peak_bytes"] for r in rows
                    if r["threads"] == threads and r["causal"] == causal}  # fmt: skip
            growth[f"{threads}:{causal}"] = by_t[4096] / by_t[2048]
    return {"rows": rows, "growth_2048_to_4096": growth,
            "met": all(g < 3.0 for g in growth.values())}  # fmt: skip


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def goal_lines(m: dict[str, Any]) -> list[str]:
    worst = max(m["growth_2048_to_4096"].values())
    return [
        f"Memory (issue 16): attention forward+backward peak grows {worst:.2f}x from T = 2048 "
        f"to 4096 (linear: 2x; the whole scores: 4x); met: {'yes' if m['met'] else '**no**'}"
    ]


def markdown(m: dict[str, Any]) -> list[str]:
    lines = [
        "| T | causal | host threads | peak extra (traced) | one T x T scores | peak / scores |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in m["rows"]:
        lines.append(f"| {r['T']} | {'yes' if r['causal'] else 'no'} | {r['threads']} | "
                     f"{_mib(r['peak_bytes'])} | {_mib(r['scores_bytes'])} | "
                     f"{r['peak_over_scores']:.3f} |")  # fmt: skip
    return lines


if __name__ == "__main__":
    if "--json" in sys.argv:
        print(json.dumps([peak_step(T, c) for T in LENGTHS for c in (False, True)]))
    else:
        result = measure()
        print("\n".join([*goal_lines(result), "", *markdown(result)]))
