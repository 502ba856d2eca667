"""Stage 5: device out-of-memory, a second GPU, NCCL over two ranks.

* Out of memory: a batch whose activations exceed the free device memory must
  raise ``OutOfMemoryError`` (with the batch-size hint), give CuPy's cached blocks
  back, and leave the model usable: a small fit right after it must work.
* ``cuda:1``: where a second GPU exists, the same fit on cuda:0 and cuda:1 gives
  the same weights, and the parameters live on device 1.
* NCCL: ``mpiexec -n 2`` ranks (one GPU each) sum a buffer with the real
  ``NcclReducer`` and train one data-parallel fit, ending with equal weights.
  NCCL refuses two ranks on one GPU, so with one GPU it runs one NCCL rank, and
  two ranks sharing the GPU through the host reducer.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from gpunet.cli.gpu_check import child_env
from gpunet.cli.gpu_check._child import Context


def run(ctx: Context) -> None:
    if not ctx.n_gpu:
        for name in ("out-of-memory raises and recovers", "cuda:1"):
            ctx.check(name, "not run", ctx.no_gpu())
        _nccl(ctx)
        return
    _guarded(ctx, "out-of-memory raises and recovers", oom_check)
    if ctx.n_gpu < 2:
        ctx.check("cuda:1", "not run", f"one GPU only ({ctx.n_gpu} found)")
    else:
        _guarded(ctx, "cuda:1", _second_gpu)
    _nccl(ctx)


def _guarded(ctx: Context, name: str, fn: Any) -> None:
    try:
        status, detail = fn()
    except Exception as exc:
        status, detail = "failed", f"{type(exc).__name__}: {str(exc)[:300]}"
    ctx.check(name, status, detail)


def oom_check() -> tuple[str, str]:
    """Run out of memory on cuda:0 on purpose; ``("ok" | "failed", what happened)``."""
    import gpunet as gn
    from gpunet.backend import _compat
    from gpunet.errors import OutOfMemoryError

    cupy = _compat.cupy_or_none()
    assert cupy is not None
    pool = cupy.get_default_memory_pool()
    free, _ = cupy.cuda.runtime.memGetInfo()
    units = 1 << 16
    rows = int(free // (units * 4)) + 1024  # one batch of activations exceeds the device
    gn.utils.set_random_seed(0)
    model = gn.Sequential([gn.layers.Dense(units, input_shape=(1,)), gn.layers.Dense(1)],
                          device="cuda")  # fmt: skip
    model.compile(optimizer="sgd", loss="mse")
    X = np.ones((rows, 1), "float32")
    try:
        model.fit(X, X, batch_size=rows, epochs=1, verbose=0)
    except OutOfMemoryError as exc:
        message = str(exc)
    else:
        return "failed", f"a batch of {rows} rows x {units} units fitted in {free / 2**30:.0f} GiB"
    del X
    if "smaller batch_size" not in message:
        return "failed", f"the message gives no hint: {message[:200]}"
    leftover = pool.free_bytes()
    small = np.ones((64, 1), "float32")
    hist = model.fit(small, small, batch_size=32, epochs=1, verbose=0)
    loss = hist.history["loss"][-1]
    if leftover or not np.isfinite(loss):
        return "failed", f"after the error: {leftover} cached bytes kept, next fit loss {loss}"
    return "ok", (f"batch {rows} x {units} raised OutOfMemoryError ({message[:120]}...); "
                  f"cache emptied; a fit after it: loss {loss:.3g}")  # fmt: skip


def _second_gpu() -> tuple[str, str]:
    import gpunet as gn

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((256, 12)).astype("float32"), rng.integers(0, 3, 256)
    weights = {}
    for dev in ("cuda:0", "cuda:1"):
        gn.utils.set_random_seed(0)
        model = gn.Sequential([gn.layers.Dense(32, activation="relu", input_shape=(12,)),
                               gn.layers.Dense(3, activation="softmax")], device=dev)  # fmt: skip
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(X, y, epochs=2, batch_size=32, verbose=0, shuffle=False)
        where = {p.device for p in model.weights}
        if where != {dev}:
            return "failed", f"fit on {dev} left parameters on {sorted(where)}"
        weights[dev] = model.get_weights()
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(*weights.values(), strict=True))
    return ("ok" if diff <= 1e-6 else "failed"), f"cuda:0 vs cuda:1 weights differ by {diff:.1e}"


def _mpiexec() -> str | None:
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


def _nccl(ctx: Context) -> None:
    name = "NCCL over 2 ranks"
    mpiexec = _mpiexec()
    if importlib.util.find_spec("mpi4py") is None or mpiexec is None:
        ctx.check(name, "not run", "needs mpi4py and mpiexec (pip install 'gpunet[mpi]')")
        return
    if not ctx.n_gpu:
        ctx.check(name, "not run", ctx.no_gpu())
        # the same ranks on the CPU: the MPI path and this check's own script
        _mpi_job(ctx, mpiexec, "MPI over 2 ranks (cpu, host reducer)", 2, "host")
        return
    try:
        from gpunet.distributed._strategy import nccl_modules

        nccl_modules()
    except Exception as exc:
        ctx.check(name, "not run", str(exc))
        return
    if ctx.n_gpu >= 2:
        _mpi_job(ctx, mpiexec, f"{name}: gpu_reduce=nccl", 2, "nccl")
        return
    ctx.data["nccl_note"] = "one GPU: NCCL refuses two ranks on one device"
    _mpi_job(ctx, mpiexec, "NCCL, 1 rank (one GPU: NCCL refuses 2 ranks on it)", 1, "nccl", 2)
    _mpi_job(ctx, mpiexec, "2 ranks sharing the GPU, gpu_reduce=host", 2, "host")


def _mpi_job(ctx: Context, mpiexec: str, label: str, ranks: int, reduce: str,
             share: int = 1) -> None:  # fmt: skip
    cmd = [
        mpiexec,
        "-n",
        str(ranks),
        sys.executable,
        "-m",
        "gpunet.cli.gpu_check._nccl_rank",
        reduce,
    ]
    env = child_env(OMP_NUM_THREADS="1")
    limit = max(5.0, ctx.left() / share - 1)
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                              timeout=limit)  # fmt: skip
    except subprocess.TimeoutExpired:
        ctx.check(label, "failed", f"did not end within {limit:.0f} s (a hang)")
        return
    res = _last_json(proc.stdout)
    if proc.returncode != 0 or res is None:
        tail = (proc.stdout + proc.stderr).strip()[-500:]
        ctx.check(label, "failed", f"exit {proc.returncode}: {tail}")
        return
    good = res["sum_error"] == 0 and res["weights_agree"]
    ctx.check(label, "ok" if good else "failed",
              f"allreduce of {res['n']} floats exact: {res['sum_error'] == 0}; fit on "
              f"{res['devices']}: equal weights on every rank: {res['weights_agree']}")  # fmt: skip


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                out: dict[str, Any] = json.loads(line)
                return out
            except ValueError:
                return None
    return None
