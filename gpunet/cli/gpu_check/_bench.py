"""Stage 4: fused vs unfused launch counts, the GPU rows of ``bench/``, and the
batch size from which the GPU beats the CPU.

* Launch counts: ``bench/_launches.py`` (an instrumented step on the CPU; no GPU
  needed), per workload; the check fails when fusing does not cut launches.
* GPU rows: ``bench/run.py --quick`` on workloads A, B, C, predict and the LeNet
  CNN step (L: ``gpunet_cuda`` against PyTorch CUDA in channels_last), limited to
  gpunet on cuda, plain CuPy, the CuPy GEMM bound and PyTorch CUDA (where
  installed), in one process (the worker processes ``bench/`` uses on the CPU
  keep OpenMP runtimes apart, which the GPU rows do not need). Its own JSON and
  Markdown land in ``OUT/bench/``.
* Crossover: ``gpunet.cli.quickbench`` times ``fit`` on cpu and cuda at growing batch
  sizes; the crossover is the smallest batch from which cuda wins at every size.
  Without a GPU only the CPU rows are timed, at a quick size.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from gpunet.cli.gpu_check import CHECKOUT, ROOT
from gpunet.cli.gpu_check._child import Context

GPU_IMPLS = ("gpunet_cuda", "cupy_plain", "gemm_bound_cupy", "torch_cuda",
             "torch_cuda_fused_adam", "gpunet_predict_cuda", "torch_predict_cuda")  # fmt: skip
CROSS_BATCHES = (8, 32, 128, 512, 2048)
BENCH_WORKLOADS = "A,B,C,P,L"


def run(ctx: Context) -> None:
    bench = ROOT / "bench"
    have_bench = CHECKOUT and (bench / "run.py").is_file()
    if have_bench:
        sys.path.insert(0, str(bench))
        _launch_counts(ctx, ("A", "B"))
    else:
        ctx.check("launch counts", "not run", f"no bench/ at {bench} (an installed wheel ships "
                  "none): run from a checkout")  # fmt: skip
    if not ctx.n_gpu:
        ctx.check("GPU rows of bench/ (A, B, C, predict, LeNet)", "not run", ctx.no_gpu())
    elif have_bench:
        _gpu_rows(ctx)
    else:
        ctx.check(
            "GPU rows of bench/ (A, B, C, predict, LeNet)",
            "not run",
            "no bench/: a checkout has it",
        )
    _crossover(ctx)
    if have_bench:
        _launch_counts(ctx, ("C",))


def _launch_counts(ctx: Context, keys: tuple[str, ...]) -> None:
    import _launches

    for key in keys:
        res = _launches.count(key)
        ctx.data.setdefault("launches", {})[key] = {
            c: {k: v for k, v in res[c].items() if k != "per_op"}
            for c in ("unfused", "fused", "hand_plain_cupy") if c in res
        }  # fmt: skip
        if "fused" not in res:
            ctx.check(f"launch counts {key}", "failed", res.get("fused_error", "no fused count"))
            continue
        f, u = res["fused"], res["unfused"]
        good = f["launches"] < u["launches"] and f["act_passes"] <= u["act_passes"]
        ctx.check(f"launch counts {key}", "ok" if good else "failed",
                  f"per step: fused {f['launches']} launches ({f['our_kernels']} ours), "
                  f"unfused {u['launches']}; activation passes {f['act_passes']} vs "
                  f"{u['act_passes']}; host syncs {f['host_syncs']}")  # fmt: skip


def _gpu_rows(ctx: Context) -> None:
    out = ctx.out / "bench"
    cmd = [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "-w", BENCH_WORKLOADS,
           "--impls", ",".join(GPU_IMPLS), "--same-process", "--no-launches", "--no-imports",
           "--retries", "0", "--out", str(out), "--label", "gpunet doctor --full"]  # fmt: skip
    limit = max(5.0, ctx.left() * 0.7)  # the crossover and C's count come after
    before = set(out.glob("*.json")) if out.is_dir() else set()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        why = f"bench/run.py did not finish in its {limit:.0f} s share of the budget"
        ctx.check("GPU rows of bench/ (A, B, C, predict, LeNet)", "not run", why)
        return
    new = sorted(set(out.glob("*.json")) - before)
    if proc.returncode != 0 or not new:
        tail = (proc.stdout + proc.stderr).strip()[-600:]
        ctx.check(
            "GPU rows of bench/ (A, B, C, predict, LeNet)",
            "failed",
            f"exit {proc.returncode}: {tail}",
        )
        return
    report = json.loads(new[-1].read_text())
    ctx.data["bench_report"] = str(new[-1])
    for key, res in report["workloads"].items():
        # P also times its CPU rows (bench/run.py has no filter for P): those are in its report
        ms = {n: round(r["ms_per_step"], 4) for n, r in res["impls"].items() if n in GPU_IMPLS}
        ctx.data.setdefault("ms_per_step", {})[key] = ms
        cells = ", ".join(f"{n} {v:.3g}" for n, v in ms.items())
        ratios = [r for r in res["ratios"] if r.get("value") is not None and "cuda" in r["ratio"]]
        extra = "; ".join(f"{r['ratio']} {r['value']:.2f}" for r in ratios[:3])
        errors = res.get("errors") or {}
        detail = f"ms/step: {cells}" + (f"; {extra}" if extra else "")
        if errors:
            detail += "; errors: " + "; ".join(f"{k}: {str(v)[:150]}" for k, v in errors.items())
        ctx.check(f"GPU rows {key} ({res['title']})", "failed" if errors else "ok", detail)


def _crossover(ctx: Context) -> None:
    from gpunet.cli import quickbench

    if not ctx.n_gpu:
        rows = quickbench.measure(["A", "B"], ["cpu"], batch_sizes=(32, 256), samples=256,
                                  repeats=1)  # fmt: skip
        ctx.data["cpu_rows"] = rows
        for r in rows:
            ok = "error" not in r
            ctx.check(f"CPU row {r['workload']} batch {r['batch']}", "ok" if ok else "failed",
                      f"{r['ms_per_step']['cpu']:.3g} ms/step (model.fit, float32)" if ok
                      else r["error"])  # fmt: skip
        ctx.check("crossover batch size (GPU beats CPU)", "not run", ctx.no_gpu())
        return
    for key in ("B", "A"):
        if ctx.left() < 15:
            ctx.check(f"crossover {key}", "not run", "the stage's share of the budget is spent")
            continue
        rows = quickbench.measure([key], ["cpu", "cuda"], batch_sizes=CROSS_BATCHES,
                                  samples=4096, repeats=3)  # fmt: skip
        ctx.data.setdefault("crossover_rows", {})[key] = rows
        bad = [r for r in rows if "error" in r]
        if bad:
            ctx.check(f"crossover {key}", "failed", bad[0]["error"])
            continue
        ctx.check(f"crossover {key}", "ok", crossover_text(rows))


def crossover_text(rows: list[dict[str, Any]]) -> str:
    """The smallest batch from which cuda wins at every larger batch, with the times.

    Example:
        >>> crossover_text([{"batch": 8, "ms_per_step": {"cpu": 1.0, "cuda": 2.0}},
        ...                 {"batch": 32, "ms_per_step": {"cpu": 3.0, "cuda": 2.0}}])
        'cuda faster from batch 32 (ms/step cpu/cuda: 8: 1/2, 32: 3/2)'
    """
    times = "; ".join(f"{r['batch']}: {r['ms_per_step']['cpu']:.3g}/{r['ms_per_step']['cuda']:.3g}"
                      for r in rows).replace("; ", ", ")  # fmt: skip
    at = None
    for r in reversed(rows):
        if r["ms_per_step"]["cuda"] >= r["ms_per_step"]["cpu"]:
            break
        at = r["batch"]
    head = f"cuda faster from batch {at}" if at else f"cpu faster at batch {rows[-1]['batch']}"
    return f"{head} (ms/step cpu/cuda: {times})"
