"""Stage 1: versions, GPUs, cuBLAS, TF32, the host build of the kernels, the NVRTC
compile of every instantiation, and (on a GPU) loading every one of them."""

from __future__ import annotations

import os
import time
from typing import Any

from gpunet.backend import _kernels
from gpunet.cli import doctor
from gpunet.cli.gpu_check._child import Context


def run(ctx: Context) -> None:
    rows, cupy = doctor.version_rows()
    ctx.data["versions"] = dict(rows)
    for label, value in rows:
        broken = any(w in value for w in ("not installed", "not loadable", "none installed"))
        ctx.check(label, "not run" if broken else "ok", value)
    if cupy is None or not ctx.n_gpu:
        ctx.check("GPUs", "not run", ctx.no_gpu())
        ctx.check("cuBLAS", "not run", ctx.no_gpu())
    else:
        gpus = doctor.gpu_rows(cupy)
        ctx.data["gpus"] = dict(gpus)
        ctx.check("GPUs", "ok", "; ".join(f"{k}: {v}" for k, v in gpus))
        _cublas(ctx, cupy)
    tf32 = os.environ.get("CUPY_TF32", "0") not in ("", "0")
    ctx.data["tf32"] = tf32
    on = "ON: float32 GEMMs round to 10-bit mantissas, the parity tests skip"
    ctx.check("TF32 (CUPY_TF32)", "ok", on if tf32 else "off: float32 GEMMs in full float32")
    _host_build(ctx)
    archs = _archs(cupy, ctx)
    for arch in archs:
        for file in _kernels.INSTANTIATIONS:
            if cupy is None:
                ctx.check(f"NVRTC {file} sm_{arch}", "not run", "needs CuPy")
                continue
            good, detail = doctor.compile_row(file, arch)
            ctx.check(f"NVRTC {file} sm_{arch}", "ok" if good else "failed", detail)
    if not ctx.n_gpu:
        ctx.check("precompile (load on the GPU)", "not run", ctx.no_gpu())
        return
    start = time.perf_counter()
    try:
        n = _kernels.precompile()
    except Exception as exc:
        ctx.check("precompile (load on the GPU)", "failed", f"{type(exc).__name__}: {exc}")
    else:
        took = time.perf_counter() - start
        ctx.check("precompile (load on the GPU)", "ok",
                  f"{n} instantiations compiled, loaded and cached ({took:.1f} s)")  # fmt: skip


def _archs(cupy: Any, ctx: Context) -> tuple[str, ...]:
    """The GPU's own architecture where there is one, else the ones CI compiles for."""
    if cupy is None or not ctx.n_gpu:
        return tuple(
            sorted(doctor.ARCHS, reverse=True)
        )  # the newest first: cut short, it counts most
    props = cupy.cuda.runtime.getDeviceProperties(0)
    return (f"{props['major']}{props['minor']}",)


def _cublas(ctx: Context, cupy: Any) -> None:
    try:
        from cupy_backends.cuda.libs import cublas

        v = cublas.getVersion(cupy.cuda.device.get_cublas_handle())
        ctx.check("cuBLAS", "ok", f"{v // 10000}.{v // 100 % 100}.{v % 100}")
    except Exception as exc:
        ctx.check("cuBLAS", "failed", f"{type(exc).__name__}: {exc}")


def _host_build(ctx: Context) -> None:
    from gpunet.backend import _host

    start = time.perf_counter()
    lib = _host.load()
    ok, why = _host.status()
    took = time.perf_counter() - start
    if lib is None:
        ctx.check("host build of the kernels", "not run", why)
    else:
        ctx.check("host build of the kernels", "ok" if ok else "failed", f"{why} ({took:.1f} s)")
