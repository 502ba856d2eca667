"""Interleaved timing and the ratios computed from it.

Method (as in the perf baselines): every implementation runs blocks of one
epoch (``steps`` batches); the order of implementations rotates by one each
repeat, so slow drift of a shared machine spreads over all of them. Before each
block: ``gc.collect()``, a 0.15 s sleep (lets the spinning OpenBLAS/OpenMP workers
of the previous library go idle) and ``warmup`` untimed steps; one untimed
burn-in block per implementation precedes the first repeat. A figure is the
median block time / steps; a ratio is taken between medians of the same run, and
also given as the median of the per-repeat ratios (``paired``).

Each block also records the share of the machine's CPUs that *other* processes
used while it ran (from /proc/stat): on a shared two-core machine a neighbour's
test run can slow a block 2-10x, and interleaving alone cannot undo that.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
import traceback
from collections.abc import Callable
from typing import Any

# (numerator, denominator, comparison, target): the goals of issue #4, as time ratios
GOALS: dict[str, list[tuple[str, str, str, float]]] = {
    "A": [
        ("gpunet", "gemm_bound_numpy", "<=", 1.25),
        ("gpunet", "torch_fused_adam", "<=", 1.0),
        ("sklearn", "gpunet", ">=", 2.0),
    ],
    "B": [
        ("gpunet", "torch", "<=", 0.2),
        ("gpunet", "numpy", "<=", 1.3),
        ("sklearn", "gpunet", ">=", 3.0),
        ("gpunet_train_on_batch", "gpunet", "<=", 1.5),  # issue 10: GAN/RL loops use it
    ],
    "C": [("gpunet", "gemm_bound_numpy", "<=", 1.10)],
    # issue 14: the LeNet step, at the machine's threads (L) and at 1 (L1)
    "L": [("gpunet", "torch_channels_last", "<=", 1.0), ("gpunet", "gemm_bound_numpy", "<=", 2.0)],
    "L1": [("gpunet", "torch_channels_last", "<=", 1.0), ("gpunet", "gemm_bound_numpy", "<=", 2.0)],
    # issue 16: the encoder block step and T=2048 attention, at 2 and 1 threads
    **{k: [("gpunet", "torch", "<=", 0.8)] for k in ("E", "E1")},
    **{
        k: [("gpunet", "torch", "<=", 1.5), ("gpunet_causal", "torch_causal", "<=", 1.5)]
        for k in ("S", "S1")
    },
    "P": [("gpunet_predict", "torch_predict", "<=", 1.0)],
}
# further ratios reported whenever both sides were measured
INFO = [
    ("gpunet", "torch"),
    ("gpunet", "torch_fused_adam"),
    ("gpunet", "numpy"),
    ("gpunet", "gemm_bound_numpy"),
    ("gpunet", "gemm_bound_torch"),
    ("gpunet_inner", "gpunet"),
    ("gpunet_train_on_batch", "gpunet"),
    ("gpunet_shuffled", "gpunet"),
    ("gpunet_inner", "numpy"),
    ("numpy", "gemm_bound_numpy"),
    ("torch", "gemm_bound_numpy"),
    ("torch_fused_adam", "gemm_bound_numpy"),
    ("gemm_bound_numpy", "gemm_bound_torch"),
    ("numpy", "torch"),
    ("sklearn", "torch"),
    ("sklearn", "numpy"),
    ("gpunet_predict", "numpy_predict"),
    ("gpunet_predict", "gemm_bound_fwd"),
    ("torch_predict", "numpy_predict"),
    ("torch_channels_last", "torch"),
    ("torch_channels_last", "gemm_bound_numpy"),
    ("gpunet_cuda", "cupy_plain"),
    ("gpunet_cuda", "torch_cuda"),
    ("gpunet_cuda", "torch_cuda_fused_adam"),
    ("gpunet_cuda", "gemm_bound_cupy"),
    ("cupy_plain", "gemm_bound_cupy"),
    ("gpunet", "gpunet_cuda"),
    ("gpunet_predict_cuda", "torch_predict_cuda"),
    ("gpunet_predict", "gpunet_predict_cuda"),
    ("gpunet_causal", "gemm_bound_numpy"),
    ("torch_causal", "gemm_bound_numpy"),
    ("gpunet_causal", "gpunet"),
]


def build(
    factories: dict[str, Callable[[], Any]], log: Callable[[str], Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Construct every implementation; one that fails is reported, not fatal."""
    impls, errors = {}, {}
    for name, make in factories.items():
        try:
            impls[name] = make()
        except Exception as exc:
            errors[name] = f"setup failed: {type(exc).__name__}: {exc}"
            log(f"  {name}: {errors[name]}")
    return impls, errors


def build_remote(
    names: list[str], start: Callable[[str], Any], log: Callable[[str], Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Start one worker process per implementation (all at once: their imports
    overlap), then wait for each to be built."""
    started, impls, errors = {n: start(n) for n in names}, {}, {}
    for name, remote in started.items():
        try:
            remote.wait_ready()
            impls[name] = remote
        except Exception as exc:
            errors[name] = f"setup failed: {exc}"
            log(f"  {name}: {errors[name]}")
    return impls, errors


def _busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy (all processes), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run_block(
    impl: Any, steps: int, warmup: int, sleep: float
) -> tuple[float, float, float | None]:
    """One timed block: seconds, this process's CPU share, and the share of the
    machine's CPUs that other processes used meanwhile (None where unknown)."""
    gc.collect()
    time.sleep(sleep)
    if warmup:
        impl.run(warmup)
        impl.sync()
    b0, c0, t0 = _busy_seconds(), os.times(), time.perf_counter()
    impl.run(steps)
    impl.sync()
    dt, c1, b1 = time.perf_counter() - t0, os.times(), _busy_seconds()
    own = c1.user - c0.user + c1.system - c0.system
    others = None if b0 is None or b1 is None else max(0.0, (b1 - b0 - own) / (dt * NCPU))
    return dt, own / dt, others


NCPU = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def interleave(
    impls: dict[str, Any],
    steps: int,
    warmup: int,
    repeats: int,
    *,
    sleep: float = 0.15,
    max_others: float = 1.0,
    retries: int = 0,
    burn_in: int = 0,
    log: Callable[[str], Any] = print,
) -> tuple[dict[str, list[float]], dict[str, dict[str, list[Any]]], dict[str, str]]:
    """Seconds per step of every block; per block the CPU share of this process
    and of *other* processes (a shared machine: a block during which others used
    more than ``max_others`` of the CPUs is run again, up to ``retries`` times,
    after a pause; the last attempt is kept either way); and the implementations
    that raised (their traceback's last line). ``burn_in`` untimed blocks per
    implementation come first: gpunet's first 50-step block of A was once 8x its
    later ones, which three warm-up steps did not absorb."""
    names = list(impls)
    times: dict[str, list[float]] = {n: [] for n in names}
    info: dict[str, dict[str, list[Any]]] = {
        n: {"own": [], "others": [], "tries": []} for n in names
    }
    errors: dict[str, str] = {}
    for name in names * burn_in:  # untimed: first-block costs (page faults, lazy setup)
        try:
            impl = impls[name]
            if hasattr(impl, "block"):
                impl.block(steps, warmup, sleep)
            else:
                run_block(impl, steps, warmup, sleep)
        except Exception as exc:
            errors[name] = f"failed in the burn-in block: {type(exc).__name__}: {exc}"
            log(f"  {name}: {errors[name]}")
    for r in range(repeats):
        k = r % len(names) if names else 0
        for name in names[k:] + names[:k]:
            if name in errors:
                continue
            try:
                for attempt in range(retries + 1):
                    impl = impls[name]
                    if hasattr(impl, "block"):  # a worker process times its own block
                        dt, own, others = impl.block(steps, warmup, sleep)
                    else:
                        dt, own, others = run_block(impl, steps, warmup, sleep)
                    if others is None or others <= max_others or attempt == retries:
                        break
                    time.sleep(2.0)  # let the other job finish or settle
            except Exception as exc:
                last = traceback.format_exc().strip().splitlines()[-1]
                errors[name] = f"failed in repeat {r + 1}: {type(exc).__name__}: {last}"
                log(f"  {name}: {errors[name]}")
                continue
            times[name].append(dt / steps)
            info[name]["own"].append(own)
            info[name]["others"].append(others)
            info[name]["tries"].append(attempt + 1)
        done = ", ".join(f"{n} {1e3 * times[n][-1]:.3g}" for n in names if times[n])
        log(f"  repeat {r + 1}/{repeats} ms/step: {done}")
    return times, info, errors


def summarize(
    times: dict[str, list[float]], info: dict[str, dict[str, list[Any]]], batch: int, flops: float
) -> dict[str, dict[str, Any]]:
    out = {}
    for name, ts in times.items():
        if not ts:
            continue
        med = statistics.median(ts)
        row = {
            "ms_per_step": 1e3 * med,
            "steps_per_s": 1.0 / med,
            "samples_per_s": batch / med,
            "blocks_ms": [1e3 * t for t in ts],
            "spread": (max(ts) - min(ts)) / med,
            "cpu_share": statistics.median(info[name]["own"]),
            "others_share": _median_known(info[name]["others"]),
            "blocks_others": info[name]["others"],
            "blocks_tries": info[name]["tries"],
        }
        if name.startswith("gemm_bound"):
            row["gflops"] = flops / med / 1e9
        out[name] = row
    return out


def _median_known(xs: list[Any]) -> float | None:
    known = [x for x in xs if x is not None]
    return statistics.median(known) if known else None


def ratio(times: dict[str, list[float]], a: str, b: str) -> dict[str, Any] | None:
    ta, tb = times.get(a) or [], times.get(b) or []
    if not ta or not tb:
        return None
    value = statistics.median(ta) / statistics.median(tb)
    paired = [x / y for x, y in zip(ta, tb, strict=False)]
    return {
        "ratio": f"{a}/{b}",
        "value": value,
        "paired_median": statistics.median(paired),
        "paired_min": min(paired),
        "paired_max": max(paired),
    }


def ratios(key: str, times: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Goal ratios first (with ``target`` and ``met``), then every INFO ratio measured."""
    out = []
    for a, b, op, target in GOALS.get(key, []):
        r = ratio(times, a, b) or {"ratio": f"{a}/{b}", "value": None}
        r["target"] = f"{op} {target}"
        if r["value"] is not None:
            r["met"] = r["value"] <= target if op == "<=" else r["value"] >= target
        out.append(r)
    seen = {r["ratio"] for r in out}
    for a, b in INFO:
        r = ratio(times, a, b)
        if r is not None and r["ratio"] not in seen:
            out.append(r)
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{digits}g}" if abs(x) < 1e5 else f"{x:,.0f}"
    return str(x)


def workload_markdown(key: str, res: dict[str, Any]) -> list[str]:
    spec = res["spec"]
    lines = [
        f"### {key}: {res['title']}",
        "",
        f"sizes {list(spec['sizes'])}, batch {spec['batch']}, loss {spec['loss']}, "
        f"{spec['n_params']:,} params, {spec['gemm_gflop']:.4g} GFLOP of GEMM per step; "
        f"{res['steps']} steps per block, {res['warmup']} warm-up steps, "
        f"{res['repeats']} interleaved repeats",
        "",
        "| impl | ms/step | steps/s | samples/s | GFLOP/s | blocks | spread | CPU (own) "
        "| CPU (others) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in res["impls"].items():
        lines.append(
            f"| {name} | **{fmt(row['ms_per_step'])}** | {fmt(row['steps_per_s'])} | "
            f"{fmt(row['samples_per_s'])} | {fmt(row.get('gflops'), 3)} | "
            f"{len(row['blocks_ms'])} | {row['spread']:.0%} | "
            f"{fmt(row['cpu_share'], 3)} | {_pct(row.get('others_share'))} |"
        )
    for name, err in res.get("errors", {}).items():
        lines.append(f"| {name} | unavailable: {err[:150]} | | | | | | | |")
    lines += [
        "",
        "| ratio (time a / time b) | value | paired median (min-max) | goal | met |",
        "|---|---:|---:|---:|---|",
    ]
    for r in res["ratios"]:
        met = {True: "yes", False: "**no**"}.get(r.get("met"), "") if "target" in r else ""
        paired = (
            (f"{fmt(r['paired_median'], 3)} ({fmt(r['paired_min'], 3)}-{fmt(r['paired_max'], 3)})")
            if r.get("value") is not None
            else "-"
        )
        lines.append(
            f"| {r['ratio']} | **{fmt(r['value'], 3)}** | {paired} | "
            f"{r.get('target', '')} | {met} |"
        )
    if res.get("same_function"):
        sf = ", ".join(f"{k} {v:.6g}" for k, v in res["same_function"].items())
        lines += ["", f"Loss of batch 0 at the shared initial weights (same function check): {sf}"]
    return [*lines, ""]


def goals_markdown(results: dict[str, Any]) -> list[str]:
    lines = ["| workload | goal (time ratio) | measured | met |", "|---|---|---:|---|"]
    for key, res in results.items():
        for r in res["ratios"]:
            if "target" in r:
                met = {True: "yes", False: "**no**"}.get(r.get("met"), "not measured")
                lines.append(
                    f"| {key} | {r['ratio']} {r['target']} | {fmt(r['value'], 3)} | {met} |"
                )
    return lines
