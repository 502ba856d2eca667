"""Machine details for the report: CPU model, BLAS libraries and their threads,
torch's build (MKL is linked statically, so threadpoolctl cannot see it), GPU
name and CuPy/CUDA versions, load average. Every probe is optional."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from typing import Any

import numpy as np

ENV_KEYS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "CUPY_TF32",
    "CUDA_VISIBLE_DEVICES",
)


def _lscpu() -> dict[str, str]:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    info = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in (
            "Model name",
            "CPU(s)",
            "Thread(s) per core",
            "Core(s) per socket",
            "Socket(s)",
            "Hypervisor vendor",
            "L2 cache",
            "L3 cache",
            "CPU max MHz",
        ):
            info[key.strip()] = value.strip()
    flags = next((ln for ln in out.splitlines() if ln.startswith("Flags:")), "")
    info["simd"] = " ".join(
        f for f in ("avx2", "avx512f", "avx512_fp16", "amx_tile") if f" {f}" in flags
    )
    return info


def blas_info() -> list[dict[str, Any]]:
    """threadpoolctl's view: each BLAS/OpenMP library loaded, version, threads."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"error": "threadpoolctl not installed"}]
    keys = (
        "user_api",
        "internal_api",
        "version",
        "num_threads",
        "architecture",
        "threading_layer",
        "filepath",
    )
    return [{k: lib.get(k) for k in keys} for lib in threadpool_info()]


def numpy_blas_threads() -> int | None:
    for lib in blas_info():
        if lib.get("user_api") == "blas" and "numpy" in str(lib.get("filepath", "")):
            return int(lib["num_threads"])
    return None


def torch_info() -> dict[str, Any]:
    try:
        import torch
    except ImportError as exc:
        return {"error": f"not installed ({exc})"}
    config = torch.__config__.show()
    picked = [
        ln.strip()
        for ln in config.splitlines()
        if any(
            k in ln
            for k in (
                "BLAS_INFO",
                "LAPACK_INFO",
                "CPU capability",
                "Intel(R) oneAPI Math Kernel",
                "oneDNN",
                "OpenMP",
            )
        )
    ]
    return {
        "version": torch.__version__,
        "num_threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "parallel": torch.__config__.parallel_info().splitlines()[:6],
        "config": picked,
        "cuda_available": torch.cuda.is_available(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def gpu_info() -> dict[str, Any]:
    """CuPy, CUDA runtime/driver versions and the device, or why there is none."""
    from gpunet.backend import _compat

    n, why = _compat.gpu_count()
    cupy = _compat.cupy_or_none()
    info: dict[str, Any] = {
        "gpus": n,
        "reason": why or None,
        "cupy": getattr(cupy, "__version__", None),
    }
    if cupy is None:
        return info
    rt = cupy.cuda.runtime
    try:
        info["cuda_runtime"] = rt.runtimeGetVersion()
        info["cuda_driver"] = rt.driverGetVersion()
    except Exception as exc:  # the bundled runtime answers even without a driver
        info["cuda_runtime_error"] = str(exc)
    if n:
        props = rt.getDeviceProperties(0)
        name = props["name"]
        info["device"] = name.decode() if isinstance(name, bytes) else name
        info["memory_gib"] = round(props["totalGlobalMem"] / 2**30, 1)
        info["compute_capability"] = f"{props['major']}.{props['minor']}"
    return info


def git_info() -> dict[str, Any]:
    """The commit measured, and whether the tree had local changes (figures from a
    dirty tree belong to no commit)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        rev = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--", "gpunet", "kernels"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {
        "commit": rev,
        "gpunet_or_kernels_modified": bool(dirty.strip()),
        "modified": dirty.split("\n")[:20],
    }


def machine(with_torch: bool = True) -> dict[str, Any]:
    try:
        import sklearn

        sk = sklearn.__version__
    except ImportError:
        sk = None
    import gpunet

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _lscpu(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "numpy": np.__version__,
        "blas": blas_info(),
        "gpunet": gpunet.__version__,
        "gpunet_path": os.path.dirname(gpunet.__file__),
        "torch": torch_info() if with_torch else None,
        "sklearn": sk,
        "gpu": gpu_info(),
        "env": {k: os.environ[k] for k in ENV_KEYS if k in os.environ},
        "loadavg_start": os.getloadavg(),
        "git": git_info(),
    }


def summary_lines(m: dict[str, Any]) -> list[str]:
    """A few human lines for the top of the markdown report."""
    cpu = m["cpu"]
    blas = [
        f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture')}, "
        f"{b.get('num_threads')} threads) {os.path.basename(str(b.get('filepath')))}"
        for b in m["blas"]
        if b.get("user_api") == "blas"
    ]
    t = m.get("torch") or {}
    gpu = m["gpu"]
    lines = [
        f"- CPU: {cpu.get('Model name', platform.processor())}, {m['cpu_count']} logical CPUs "
        f"({cpu.get('simd', '')}); Python {m['python']}, {m['platform']}",
        f"- NumPy {m['numpy']}; BLAS: {'; '.join(blas) or 'unknown'}",
        f"- torch: {t.get('version', t.get('error', '-'))}, {t.get('num_threads', '-')} threads; "
        + ", ".join(t.get("config", [])[:3]),
        f"- scikit-learn: {m['sklearn'] or 'not installed'}; gpunet {m['gpunet']}",
        f"- GPU: {gpu.get('device') or 'none'} (CuPy {gpu.get('cupy')}, CUDA runtime "
        f"{gpu.get('cuda_runtime')}, driver {gpu.get('cuda_driver')})"
        + (f"; {gpu['reason']}" if gpu.get("reason") else ""),
        f"- gpunet from {m['gpunet_path']}, commit {m['git'].get('commit') or 'unknown'}"
        + (
            " with uncommitted changes in gpunet/ or kernels/"
            if m["git"].get("gpunet_or_kernels_modified")
            else ""
        ),
        f"- load average at start / end: {m['loadavg_start'][0]:.2f} / "
        f"{m.get('loadavg_end', (float('nan'),))[0]:.2f}",
    ]
    return lines
