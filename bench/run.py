"""The benchmark suite of issue #4 as one standalone run.

    python bench/run.py --quick          # A, B and predict, 3 repeats, no C (~2 min here)
    python bench/run.py                  # A, B, C, predict, 9 repeats (5 for C), memory too
    python bench/run.py -w A,B --repeats 5
    python bench/run.py -w L,L1          # the LeNet CNN step (issue 14) at 2 and 1 threads
    python bench/run.py -w E,E1,S,S1     # encoder block and T=2048 attention (issue 16)

Writes ``bench/results/<timestamp>.json`` (machine details, every block time,
every ratio) and ``.md`` (the tables), and prints the markdown. Peers that are
not installed (torch, scikit-learn, CuPy/GPU) only lose their rows. All ratios
come from one run with interleaved implementations: compare ratios, not
absolute times, across runs on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `python bench/run.py` from anywhere

import _attention
import _gpunet as gp
import _lenet
import _machine
import _peers as pe
import _runner
import _worker
import _workloads as wl

RESULTS = Path(__file__).resolve().parent / "results"
TITLES = {
    "A": "mnist-mlp, softmax CE, Adam",
    "B": "small, sigmoid BCE, Adam",
    "C": "wide, softmax CE, Adam",
    "P": "predict on A (inference, batch 256)",
    "L": "LeNet CNN step, softmax CE, Adam (the machine's threads)",
    "L1": "LeNet CNN step, softmax CE, Adam (1 thread)",
    **_attention.TITLES,
}


def workload(key: str) -> Any:
    """The workload of ``key``: an MLP of quickbench's, the LeNet step (L, L1), or
    an attention workload (E, E1, S, S1)."""
    if key in _attention.ATTENTION:
        return _attention.ATTENTION[key]
    return _lenet.LENET[key] if key in _lenet.LENET else wl.WORKLOADS["A" if key == "P" else key]


def make_data(key: str, w: Any) -> wl.Data:
    if key in _attention.ATTENTION:
        return _attention.make_data(w)
    return _lenet.make_data(w) if key in _lenet.LENET else wl.make_data(w)


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def factories(
    key: str, w: wl.Workload, data: wl.Data, opts: argparse.Namespace, gpu: bool
) -> dict[str, Any]:
    """name -> zero-argument constructor of every implementation of this workload."""
    f: dict[str, Any] = {}
    torch, sk = opts.torch and _have("torch"), opts.sklearn and _have("sklearn")
    if key in _attention.ATTENTION:
        f = _attention.factories(key, w, data, torch)
        return {k: v for k, v in f.items() if not opts.impls or k in opts.impls}
    if key in _lenet.LENET:
        f = _lenet.factories(key, w, data, torch, gpu)
        return {k: v for k, v in f.items() if not opts.impls or k in opts.impls}
    if key == "P":
        f["gpunet_predict"] = lambda: gp.GpunetPredict(w, data)
        f["numpy_predict"] = lambda: wl.HandPredict(w, data)
        f["gemm_bound_fwd"] = lambda: wl.GemmBound(w, data, forward_only=True)
        if torch:
            f["torch_predict"] = lambda: pe.TorchPredict(w, data)
            if gpu:
                f["torch_predict_cuda"] = lambda: pe.TorchPredict(w, data, "cuda")
        if gpu:
            f["gpunet_predict_cuda"] = lambda: gp.GpunetPredict(w, data, "cuda")
        return f
    f["gpunet"] = lambda: gp.GpunetFit(w, data)
    f["gpunet_inner"] = lambda: gp.GpunetInner(w, data)
    f["gpunet_train_on_batch"] = lambda: gp.GpunetTrainOnBatch(w, data)
    if not opts.quick and key != "C":
        f["gpunet_shuffled"] = lambda: gp.GpunetFit(w, data, shuffle=True)
    f["numpy"] = lambda: wl.HandStep(w, data)
    f["gemm_bound_numpy"] = lambda: wl.GemmBound(w, data)
    if torch:
        f["gemm_bound_torch"] = lambda: pe.TorchGemmBound(w, data)
        f["torch"] = lambda: pe.TorchStep(w, data)
        f["torch_fused_adam"] = lambda: pe.TorchStep(w, data, fused=True)
    if sk and (key != "C" or opts.sklearn_c):
        f["sklearn"] = lambda: pe.SklearnEpoch(w, data)
    if gpu:
        import cupy

        f["gpunet_cuda"] = lambda: gp.GpunetFit(w, data, "cuda")
        f["cupy_plain"] = lambda: wl.HandStep(w, data, cupy)
        f["gemm_bound_cupy"] = lambda: wl.GemmBound(w, data, cupy)
        if torch:
            f["torch_cuda"] = lambda: pe.TorchStep(w, data, device="cuda")
            f["torch_cuda_fused_adam"] = lambda: pe.TorchStep(w, data, fused=True, device="cuda")
    if opts.impls:
        f = {k: v for k, v in f.items() if k in opts.impls}
    return f


def run_workload(key: str, opts: argparse.Namespace, gpu: bool, log: Any) -> dict[str, Any]:
    w = workload(key)
    repeats = opts.repeats or (min(3, w.repeats) if opts.quick else w.repeats)
    log(f"[{key}] {TITLES[key]}: {w.steps} steps x {repeats} repeats")
    if opts.same_process:
        impls, errors = _runner.build(factories(key, w, make_data(key, w), opts, gpu), log)
    else:
        names = list(factories(key, w, None, opts, gpu))  # type: ignore[arg-type]
        impls, errors = _runner.build_remote(
            names, lambda n: _worker.Remote(key, n, opts, gpu), log
        )
    same = {}
    for name, impl in impls.items():  # before any training: all at the shared init
        if hasattr(impl, "first_loss") and name in (
            "numpy",
            "torch",
            "torch_channels_last",
            "gpunet",
            "cupy_plain",
            "gpunet_cuda",
        ):
            try:
                same[name] = impl.first_loss()
            except Exception as exc:
                log(f"  first_loss of {name} failed: {exc}")
    times, info, failed = _runner.interleave(
        impls,
        w.steps,
        w.warmup,
        repeats,
        sleep=opts.sleep,
        max_others=opts.max_others,
        retries=opts.retries,
        burn_in=opts.burn_in,
        log=log,
    )
    errors.update(failed)
    for impl in impls.values():
        if isinstance(impl, _worker.Remote):
            impl.close()
    spec = {**asdict(w), "n_params": w.n_params, "gemm_gflop": w.gemm_flops() / 1e9}
    if key == "P":
        spec["gemm_gflop"] = w.gemm_flops() / 3 / 1e9  # forward only: 1/3 of the step's
    extra = {}
    sk = impls.get("sklearn")
    if sk is not None:
        extra["sklearn_dtype"] = sk.dtype
    return {
        "title": TITLES[key],
        "spec": spec,
        "steps": w.steps,
        "warmup": w.warmup,
        "repeats": repeats,
        "impls": _runner.summarize(times, info, w.batch, spec["gemm_gflop"] * 1e9),
        "ratios": _runner.ratios(key, times),
        "errors": errors,
        "same_function": same,
        **extra,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 repeats; A, B, P only by default")
    p.add_argument(
        "-w",
        "--workloads",
        help="comma list of A,B,C,P,L,L1,E,E1,S,S1 (default: A,B,C,P; quick: A,B,P)",
    )
    p.add_argument("--impls", type=lambda s: set(s.split(",")), help="only these rows")
    p.add_argument("--repeats", type=int)
    p.add_argument("--sleep", type=float, default=0.15, help="pause before each block (s)")
    p.add_argument(
        "--max-others",
        type=float,
        default=0.25,
        help="re-run a block during which other processes used more than this share of the CPUs",
    )
    p.add_argument("--burn-in", type=int, default=1, help="untimed blocks per row before timing")
    p.add_argument("--retries", type=int, default=3, help="re-runs per block (see --max-others)")
    p.add_argument(
        "--same-process",
        action="store_true",
        help="run every implementation in this process (default: one worker process each, "
        "since libraries that share an OpenMP runtime slow each other; see _worker.py)",
    )
    p.add_argument("--torch-threads", type=int, help="default: NumPy's BLAS thread count")
    p.add_argument("--no-torch", dest="torch", action="store_false")
    p.add_argument("--no-sklearn", dest="sklearn", action="store_false")
    p.add_argument("--sklearn-c", action="store_true", help="also time scikit-learn on C (slow)")
    p.add_argument("--no-launches", dest="launches", action="store_false")
    p.add_argument("--no-imports", dest="imports", action="store_false")
    p.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="memory growth/peak (default: on unless --quick)",
    )
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--label", default="", help="what is measured, e.g. a commit; in the report")
    opts = p.parse_args(argv)
    keys = (opts.workloads or ("A,B,P" if opts.quick else "A,B,C,P")).upper().split(",")
    log = print
    meta = _machine.machine(with_torch=False)
    meta["label"] = opts.label
    gpu = bool(meta["gpu"]["gpus"])
    if opts.torch and _have("torch"):
        meta["torch_threads"] = pe.torch_threads(
            opts.torch_threads or _machine.numpy_blas_threads()
        )
        meta["torch"] = _machine.torch_info()
    started = time.time()
    results = {k: run_workload(k, opts, gpu, log) for k in keys}
    report: dict[str, Any] = {"meta": meta, "argv": sys.argv, "workloads": results}
    if opts.launches:
        import _launches

        log("[launches] counting kernel launches per step (no GPU needed)")
        mlps = [k for k in keys if k in wl.WORKLOADS]
        report["launches"] = _launches.count_all(mlps or ["A", "B"])
    if opts.imports:
        import bench_import

        log("[imports] fresh-interpreter import timings")
        report["imports"] = bench_import.measure(repeats=5 if opts.quick else 9)
    if opts.memory if opts.memory is not None else not opts.quick:
        import bench_memory

        log("[memory] growth over 1,000 steps and peak during fit (tracemalloc)")
        report["memory"] = bench_memory.measure()
        if any(k in _lenet.LENET for k in keys):
            import bench_memory_lenet

            log("[memory] peak during fit of the LeNet model (tracemalloc)")
            report["memory_lenet"] = bench_memory_lenet.measure()
        if any(k in ("S", "S1") for k in keys):
            import bench_memory_attention

            log("[memory] peak of attention forward+backward at T = 1024..4096 (tracemalloc)")
            report["memory_attention"] = bench_memory_attention.measure()
    meta["loadavg_end"] = os.getloadavg()
    meta["wall_s"] = time.time() - started
    md = markdown(report)
    opts.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (opts.out / f"{stamp}.json").write_text(json.dumps(report, indent=1, default=str))
    (opts.out / f"{stamp}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    print(f"\nwrote {opts.out / stamp}.json and .md")
    return 0


def markdown(report: dict[str, Any]) -> list[str]:
    meta = report["meta"]
    lines = [
        f"# gpunet benchmarks, {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        *_machine.summary_lines(meta),
        f"- command: `{' '.join(report['argv'])}`; wall {meta['wall_s']:.0f} s",
        "",
        "## Goals of issue #4",
        "",
        *_runner.goals_markdown(report["workloads"]),
    ]
    if "imports" in report:
        import bench_import

        lines += ["", *bench_import.goal_lines(report["imports"])]
    if "memory" in report:
        import bench_memory

        lines += ["", *bench_memory.goal_lines(report["memory"])]
    if "memory_lenet" in report:
        import bench_memory_lenet

        lines += ["", *bench_memory_lenet.goal_lines(report["memory_lenet"])]
    if "memory_attention" in report:
        import bench_memory_attention

        lines += ["", *bench_memory_attention.goal_lines(report["memory_attention"])]
    lines += ["", "## Workloads", ""]
    for key, res in report["workloads"].items():
        lines += _runner.workload_markdown(key, res)
    if "launches" in report:
        import _launches

        lines += [
            "## GPU path: kernel launches and activation passes per step",
            "",
            *_launches.markdown(report["launches"]),
            "",
        ]
    if "imports" in report:
        lines += ["## Import", "", *bench_import.markdown(report["imports"]), ""]
    if "memory" in report:
        lines += ["## Memory", "", *bench_memory.markdown(report["memory"]), ""]
    if "memory_lenet" in report:
        lines += ["## Memory of the LeNet fit", "",
                  *bench_memory_lenet.markdown(report["memory_lenet"]), ""]  # fmt: skip
    if "memory_attention" in report:
        lines += ["## Memory of long attention", "",
                  *bench_memory_attention.markdown(report["memory_attention"]), ""]  # fmt: skip
    return lines


if __name__ == "__main__":
    sys.exit(main())
