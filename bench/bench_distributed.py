"""Data-parallel cost: time per step and the allreduce's share of it on 1, 2, ...
ranks, the allreduce bandwidth, and the scaling model built from them.

    python bench/bench_distributed.py                     # 1 and 2 ranks on the CPU
    python bench/bench_distributed.py --ranks 1,2,4 --device cuda   # one GPU a rank, NCCL
    python bench/bench_distributed.py --model-only --bus-gbs 100 --step-ms 5 --grad-mb 2.7

Each rank count is one ``mpiexec`` launch; runs alternate (1, 2, 1, 2, ...) so
drift of a shared machine hits both, and each figure is the median over runs.
On the CPU every rank runs one BLAS thread, so adding a rank adds one core. The
workloads keep the *global* batch fixed (strong scaling: ``fit`` splits it), so
the ideal step time on N ranks is 1/N of one rank's. On a 2-core machine the
ranks also share memory bandwidth and whatever else runs: read ratios, not
absolute times.

Scaling model (ring allreduce, as NCCL and MPI use for large messages): with
gradient bytes ``S``, per-step compute ``t_c`` on one device and the measured
bus bandwidth ``B`` and per-hop latency ``a``,

    t_allreduce(N) = 2 (N-1)/N * S / B + 2 (N-1) * a
    weak scaling   (batch per device fixed):  T(N) = t_c + t_allreduce(N)
    strong scaling (global batch fixed):      T(N) = t_c / N + t_allreduce(N)

and the efficiency is ``t_c / T(N)`` (weak) or ``t_c / (N T(N))`` (strong).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# (name, layer sizes, global batch, steps timed): A is bench's mnist-mlp; W a wider MLP
# whose gradient (23 MB in float32) makes the allreduce visible
WORKLOADS = [("A", (784, 512, 512, 10), 256, 30), ("W", (784, 2048, 2048, 10), 256, 6)]
SWEEP = [2**k for k in range(12, 27, 2)]  # bytes of float32 allreduced: 4 KiB .. 64 MiB


# -- worker: runs under mpiexec ---------------------------------------------------------
def _model(sizes: tuple[int, ...], device: str, strategy: Any) -> Any:
    import gpunet as gn

    gn.utils.set_random_seed(0)
    layers = [gn.layers.Dense(sizes[1], activation="relu", input_shape=(sizes[0],))]
    layers += [gn.layers.Dense(n, activation="relu") for n in sizes[2:-1]]
    layers.append(gn.layers.Dense(sizes[-1]))
    model = gn.Sequential(layers, device=device)
    model.compile(optimizer="adam", strategy=strategy,
                  loss=gn.losses.SparseCategoricalCrossentropy(from_logits=True))  # fmt: skip
    return model


def _time_fit(model: Any, strategy: Any, X: Any, y: Any, batch: int, steps: int) -> dict:
    """Seconds per step; of it, the wait for the slowest rank (a barrier put in
    front of the allreduce, for this measurement only) and the allreduce itself."""
    spent = {"wait": 0.0, "allreduce": 0.0}
    if strategy is not None:
        inner = strategy.reduce_gradients

        def timed(optimizer: Any, **kw: Any) -> None:
            t0 = time.perf_counter()
            model.ops.synchronize()
            strategy.comm.comm.Barrier()
            t1 = time.perf_counter()
            inner(optimizer, **kw)
            model.ops.synchronize()
            spent["wait"] += t1 - t0
            spent["allreduce"] += time.perf_counter() - t1

        strategy.reduce_gradients = timed
    model.fit(X[: 2 * batch], y[: 2 * batch], batch_size=batch, epochs=1, verbose=0)  # warm
    spent.update(wait=0.0, allreduce=0.0)
    start = time.perf_counter()
    model.fit(X, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
    model.ops.synchronize()
    total = time.perf_counter() - start
    if strategy is not None:
        del strategy.reduce_gradients
    return {"step_s": total / steps, "allreduce_s": spent["allreduce"] / steps,
            "wait_s": spent["wait"] / steps}  # fmt: skip


def _sweep(strategy: Any, ops: Any) -> list[dict]:
    reducer = strategy.reducer(ops)
    rows = []
    for nbytes in SWEEP:
        buf = ops.zeros((nbytes // 4,), "float32")
        times = []
        for _ in range(7 if nbytes < 2**22 else 3):
            strategy.comm.comm.Barrier()
            start = time.perf_counter()
            reducer.allreduce(ops, buf, "the benchmark")
            ops.synchronize()
            times.append(time.perf_counter() - start)
        rows.append({"bytes": nbytes, "s": statistics.median(times)})
    return rows


def worker(out: str, device: str, gpu_reduce: str) -> None:
    import gpunet as gn

    strategy = gn.distributed.MPIStrategy(gpu_reduce=gpu_reduce)
    if device == "cuda":
        device = strategy.device
    rng = np.random.default_rng(0)
    result: dict[str, Any] = {"size": strategy.size, "workloads": {}}
    for name, sizes, batch, steps in WORKLOADS:
        X = rng.standard_normal((batch * steps, sizes[0]), dtype=np.float32)
        y = rng.integers(0, sizes[-1], batch * steps)
        model = _model(sizes, device, strategy)
        row = _time_fit(model, strategy, X, y, batch, steps)
        row["grad_bytes"] = 4 * model.count_params()
        if strategy.size == 1:  # the same step without any strategy: its own overhead
            row["local_step_s"] = _time_fit(_model(sizes, device, None), None, X, y, batch,
                                            steps)["step_s"]  # fmt: skip
        result["workloads"][name] = row
    result["sweep"] = _sweep(strategy, gn.get_ops(device))
    if strategy.rank == 0:
        Path(out).write_text(json.dumps(result))


# -- driver -----------------------------------------------------------------------------
def launch(n: int, device: str, gpu_reduce: str) -> dict:
    mpiexec = Path(sys.executable).parent / "mpiexec"
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        cmd = [str(mpiexec if mpiexec.exists() else "mpiexec"), "-n", str(n), sys.executable,
               __file__, "--worker", out, "--device", device,
               "--gpu-reduce", gpu_reduce]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if device == "cpu":  # one core a rank: adding a rank adds one unit of compute
            env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        subprocess.run(cmd, check=True, env=env, timeout=1800)
        return dict(json.loads(Path(out).read_text()))


def fit_link(sweep: list[dict], n: int) -> tuple[float, float]:
    """Bus bandwidth (bytes/s) from the largest message and per-hop latency (s) from
    the smallest, in the ring model's terms, from the allreduce times of ``n`` ranks."""
    small, large = sweep[0], sweep[-1]
    hop = small["s"] / (2 * (n - 1))
    return 2 * (n - 1) / n * large["bytes"] / large["s"], hop


def t_allreduce(n: int, grad_bytes: float, bus: float, hop: float) -> float:
    return 0.0 if n == 1 else 2 * (n - 1) / n * grad_bytes / bus + 2 * (n - 1) * hop


def model_table(t_c: float, grad_bytes: float, bus: float, hop: float) -> list[str]:
    lines = ["| N | t_allreduce ms | weak: step ms | weak eff. | strong: step ms | strong eff. |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for n in (1, 2, 4, 8, 16, 64, 256):
        t_ar = t_allreduce(n, grad_bytes, bus, hop)
        weak, strong = t_c + t_ar, t_c / n + t_ar
        lines.append(f"| {n} | {1e3 * t_ar:.2f} | {1e3 * weak:.2f} | {t_c / weak:.0%} | "
                     f"{1e3 * strong:.2f} | {t_c / (n * strong):.0%} |")  # fmt: skip
    return lines


def _grid(bus: float) -> list[float]:
    return [round(bus / 1e9, 1), 25.0, 100.0, 400.0]


def report(runs: dict[int, list[dict]], device: str) -> str:
    ranks = sorted(runs)
    med = lambda xs: statistics.median(xs)  # noqa: E731
    out = [f"## Data-parallel steps ({device}; global batch fixed; median of "
           f"{min(len(v) for v in runs.values())} runs)", "",
           "| workload | grad MB | ranks | ms/step | allreduce share | wait for slowest rank "
           "| speed-up vs 1 rank |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, *_ in WORKLOADS:
        base = med([r["workloads"][name]["step_s"] for r in runs[ranks[0]]])
        for n in ranks:
            rows = [r["workloads"][name] for r in runs[n]]
            step = med([r["step_s"] for r in rows])
            share = med([r["allreduce_s"] / r["step_s"] for r in rows])
            wait = med([r["wait_s"] / r["step_s"] for r in rows])
            mb = rows[0]["grad_bytes"] / 1e6
            out.append(f"| {name} | {mb:.1f} | {n} | {1e3 * step:.1f} | {share:.1%} | "
                       f"{wait:.1%} | {base / step:.2f} |")  # fmt: skip
        if 1 in runs:
            local = med([r["workloads"][name]["local_step_s"] for r in runs[1]])
            one = med([r["workloads"][name]["step_s"] for r in runs[1]])
            out.append(f"| {name} | | 1, no strategy | {1e3 * local:.1f} | | | "
                       f"MPIStrategy(size 1) / none: {one / local:.2f} |")  # fmt: skip
    top = max(ranks)
    if top > 1:
        sweep = [dict(r, s=med([run["sweep"][i]["s"] for run in runs[top]]))
                 for i, r in enumerate(runs[top][0]["sweep"])]  # fmt: skip
        bus, hop = fit_link(sweep, top)
        out += ["", f"## Allreduce on {top} ranks (float32, in place)", "",
                "| bytes | ms | algbw GB/s | busbw GB/s |", "|---|---|---|---|"]  # fmt: skip
        for r in sweep:
            alg = r["bytes"] / r["s"] / 1e9
            out.append(f"| {r['bytes']:,} | {1e3 * r['s']:.3f} | {alg:.2f} | "
                       f"{alg * 2 * (top - 1) / top:.2f} |")  # fmt: skip
        out += ["", f"Ring model inputs: bus bandwidth B = {bus / 1e9:.2f} GB/s (largest "
                f"message), per-hop latency a = {1e6 * hop:.1f} us (smallest)."]  # fmt: skip
        for name, *_ in WORKLOADS:
            w = runs[1][0]["workloads"][name] if 1 in runs else runs[top][0]["workloads"][name]
            t_c = med([r["workloads"][name]["step_s"] for r in runs.get(1, runs[top])])
            out += ["", f"### Model for {name}: t_c = {1e3 * t_c:.1f} ms, "
                    f"S = {w['grad_bytes'] / 1e6:.1f} MB, with the B and a above", ""]  # fmt: skip
            out += model_table(t_c, w["grad_bytes"], bus, hop)
        out += ["", "### Weak-scaling efficiency on 8 devices, by step time and bus bandwidth",
                "(the per-hop latency measured here; the first column is this machine's B)", "",
                "| workload | t_c | " + " | ".join(f"B = {b:g} GB/s" for b in _grid(bus)) + " |",
                "|---|---|" + "---|" * len(_grid(bus))]  # fmt: skip
        for name, *_ in WORKLOADS:
            S = runs[top][0]["workloads"][name]["grad_bytes"]
            for t_c in (1e-3, 5e-3, 20e-3):
                cells = [t_c / (t_c + t_allreduce(8, S, b * 1e9, hop)) for b in _grid(bus)]
                out.append(f"| {name} ({S / 1e6:.1f} MB) | {1e3 * t_c:g} ms | "
                           + " | ".join(f"{c:.0%}" for c in cells) + " |")  # fmt: skip
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", default="1,2", help="rank counts, e.g. 1,2,4")
    p.add_argument("--repeats", type=int, default=3, help="launches per rank count")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--gpu-reduce", default="nccl", choices=["nccl", "mpi", "host"])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--model-only", action="store_true", help="print the model for given inputs")
    p.add_argument("--bus-gbs", type=float, default=100.0, help="bus bandwidth, GB/s")
    p.add_argument("--hop-us", type=float, default=5.0, help="per-hop latency, us")
    p.add_argument("--step-ms", type=float, default=5.0, help="compute time of a step")
    p.add_argument("--grad-mb", type=float, default=2.7, help="gradient size, MB")
    args = p.parse_args()
    if args.worker:
        worker(args.worker, args.device, args.gpu_reduce)
        return
    if args.model_only:
        t_c, S, B, a = args.step_ms / 1e3, args.grad_mb * 1e6, args.bus_gbs * 1e9, args.hop_us / 1e6
        print("\n".join(model_table(t_c, S, B, a)))
        return
    ranks = [int(n) for n in args.ranks.split(",")]
    runs: dict[int, list[dict]] = {n: [] for n in ranks}
    for _ in range(args.repeats):
        for n in ranks:
            runs[n].append(launch(n, args.device, args.gpu_reduce))
    print(report(runs, args.device))


if __name__ == "__main__":
    main()
