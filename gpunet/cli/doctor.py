"""``gpunet doctor``: what this machine can run, and whether it runs it right.

Prints the versions (NumPy, CuPy, the CUDA runtime and driver, NVRTC), the GPUs
found, which ops run fused or generic on each device and dtype, a compile check
of every kernel instantiation, and, where a GPU exists, a tiny CPU-vs-GPU fit
with its parity figures. Without a GPU it says why there is none and what to
install. ``--precompile`` also compiles and loads every kernel on the GPU, which
fills CuPy's on-disk cache so the first ``fit`` does not wait for NVRTC.

Example:
    >>> from gpunet.cli import doctor
    >>> doctor.fused_ops_table()[1]
    ('dense + relu', 'float16 float32 float64 bfloat16')
"""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from typing import Any

import numpy as np

from gpunet.backend import _compat, _kernels

ARCHS = ("80", "90")
# (what a user writes, the activation or op name) for the table of fused ops
_DENSE = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "swish", "elu", "softplus")
_LOSSES = (
    ("softmax + sparse xent", "sparse_softmax_xent"),
    ("softmax + categorical xent", "softmax_xent"),
    ("sigmoid + binary xent", "sigmoid_bce"),
    ("Adam / AdamW update", "adam"),
    ("SGD update", "sgd"),
)
PARITY_RTOL = 1e-4  # float32 CPU vs GPU after a few steps, TF32 off


def _line(label: str, value: str) -> None:
    print(f"  {label:<26} {value}")


def fused_ops_table() -> list[tuple[str, str]]:
    """``(op, dtypes that run fused on CUDA)``; an empty string means generic CuPy."""
    names = {n.partition("<")[0]: n for n in _kernels.INSTANTIATIONS["fused.cu"]}
    assert names  # the table is derived from the instantiation list, not kept by hand
    dtypes = " ".join(_kernels.CTYPE)
    rows = []
    for act in _DENSE:
        spec = _kernels.fused_activation(act, {})
        rows.append((f"dense + {act}", dtypes if spec is not None else ""))
    for label, kernel in _LOSSES:
        listed = any(n.startswith(f"gpunet_{kernel}<") for f in _kernels.INSTANTIATIONS.values()
                     for n in f)  # fmt: skip
        rows.append((label, dtypes if listed else ""))
    return rows


def version_rows() -> tuple[list[tuple[str, str]], Any]:
    """``([(what, version)], cupy or None)``: gpunet, Python, NumPy, CuPy, CUDA, NVRTC."""
    import gpunet

    rows = [
        ("gpunet", gpunet.__version__),
        ("Python", f"{platform.python_version()} ({sys.executable})"),
        ("NumPy", np.__version__),
    ]
    cupy = _compat.cupy_or_none()
    if cupy is None:
        rows.append(("CuPy", f"not installed: {_compat.INSTALL_HINT}"))
        return rows, None
    rows.append(("CuPy", cupy.__version__))
    rt = cupy.cuda.runtime
    v = rt.runtimeGetVersion()
    rows.append(("CUDA runtime", f"{v // 1000}.{v % 1000 // 10}"))
    try:
        d = rt.driverGetVersion()
        rows.append(("CUDA driver", f"{d // 1000}.{d % 1000 // 10}" if d else "none installed"))
    except Exception as exc:  # pragma: no cover - depends on the machine
        rows.append(("CUDA driver", f"unusable ({exc})"))
    try:
        major, minor = cupy.cuda.nvrtc.getVersion()
        archs = cupy.cuda.nvrtc.getSupportedArchs()
        rows.append(("NVRTC", f"{major}.{minor} (sm_{min(archs)} to sm_{max(archs)})"))
    except Exception as exc:
        rows.append(("NVRTC", f"not loadable ({exc}); pip install nvidia-cuda-nvrtc-cu12"))
    return rows, cupy


def _versions() -> Any:
    print("versions")
    rows, cupy = version_rows()
    for label, value in rows:
        _line(label, value)
    return cupy


def gpu_rows(cupy: Any) -> list[tuple[str, str]]:
    """``[("cuda:N", "name, sm_XY, memory")]`` for every usable GPU."""
    n, _ = _compat.gpu_count()
    rows = []
    for i in range(n):
        props = cupy.cuda.runtime.getDeviceProperties(i)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        mem = props["totalGlobalMem"] / 2**30
        rows.append((f"cuda:{i}", f"{name}, sm_{props['major']}{props['minor']}, {mem:.0f} GiB"))
    return rows


def _gpus(cupy: Any) -> int:
    n, why = _compat.gpu_count()
    print("devices")
    _line("cpu", "yes")
    if not n:
        _line("cuda", f"none: {why}")
        return 0
    for label, value in gpu_rows(cupy):
        _line(label, value)
    return n


def _ops_report() -> None:
    print("ops on cuda: one fused kernel each (dense: after the cuBLAS GEMM), else generic CuPy")
    for op, dtypes in fused_ops_table():
        _line(op, f"fused {dtypes}" if dtypes else "generic (all dtypes)")
    try:
        from gpunet.backend import _host

        ok, why = _host.status()
        _line("cpu fast path", ("host kernels: " if ok else "NumPy only: ") + why)
    except ImportError:  # pragma: no cover - a build without the host kernels
        pass


def compile_row(file: str, arch: str) -> tuple[bool, str]:
    """NVRTC-compile every instantiation of ``file`` for ``sm_<arch>`` (no GPU needed):
    ``(True, sizes, registers, spills, seconds)`` or ``(False, the error)``."""
    names = _kernels.INSTANTIATIONS[file]
    start = time.perf_counter()
    try:
        res = _kernels.compile_offline(file, arch, extra=("--ptxas-options=-v",))
    except Exception as exc:
        return False, str(exc)[:400]
    took = time.perf_counter() - start
    regs = max(int(r) for r in re.findall(r"Used (\d+) registers", res.log))
    spills = len(re.findall(r"[1-9]\d* bytes spill", res.log))
    return True, (f"{len(res.lowered)}/{len(names)} instantiations OK "
                  f"({res.cubin_bytes / 1024:.0f} KiB, <= {regs} registers, "
                  f"{spills} spills, {took:.1f} s)")  # fmt: skip


def _compile_check(cupy: Any, n_gpus: int, precompile: bool) -> bool:
    print("kernel compile check (NVRTC, no GPU needed)")
    if cupy is None:
        _line("skipped", "needs CuPy")
        return True
    ok = True
    for file in _kernels.INSTANTIATIONS:
        for arch in ARCHS:
            good, detail = compile_row(file, arch)
            ok = ok and good
            _line(f"{file} sm_{arch}", detail if good else f"FAILED: {detail}")
    if precompile:
        if n_gpus:
            start = time.perf_counter()
            count = _kernels.precompile()
            took = time.perf_counter() - start
            _line("precompile", f"{count} instantiations loaded on the GPU, cached ({took:.1f} s)")
        else:
            _line("precompile", "skipped: loading kernels needs a GPU")
    return ok


def parity_fit(device: str = "cuda", epochs: int = 3) -> dict[str, float]:
    """Train one tiny model on the CPU and on ``device`` from the same seed.

    Returns the largest relative loss difference over the epochs, the largest
    weight difference, and the seconds each took.
    """
    import gpunet as gn

    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 20)).astype("float32")
    y = (X[:, :3].sum(1) > 0).astype("int64") + (X[:, 3] > 1)
    out: dict[str, Any] = {}
    for dev in ("cpu", device):
        gn.utils.set_random_seed(0)
        model = gn.Sequential(
            [
                gn.layers.Dense(32, activation="relu", input_shape=(20,)),
                gn.layers.Dense(3, activation="softmax"),
            ],
            device=dev,
        )
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        start = time.perf_counter()
        hist = model.fit(X, y, epochs=epochs, batch_size=32, verbose=0, shuffle=False)
        out[dev] = (np.array(hist.history["loss"]), model.get_weights(),
                    time.perf_counter() - start)  # fmt: skip
    (l0, w0, t0), (l1, w1, t1) = out["cpu"], out[device]
    return {
        "loss_rel_diff": float(np.max(np.abs(l1 - l0) / np.abs(l0))),
        "weight_abs_diff": float(max(np.max(np.abs(a - b)) for a, b in zip(w0, w1, strict=True))),
        "cpu_s": t0,
        "device_s": t1,
    }


def run(precompile: bool = False) -> int:
    """Print the report; returns 0 when every check that could run passed, else 1."""
    print("gpunet doctor")
    cupy = _versions()
    n_gpus = _gpus(cupy) if cupy is not None else _gpus(None)
    _ops_report()
    ok = _compile_check(cupy, n_gpus, precompile)
    tf32 = os.environ.get("CUPY_TF32", "0") not in ("", "0")
    print(f"parity fit (tiny model, same seed, cpu vs cuda:0, TF32 {'ON' if tf32 else 'off'})")
    if not n_gpus:
        _line("skipped", "no GPU; the CPU path needs no check here")
    else:
        p = parity_fit("cuda")
        good = p["loss_rel_diff"] <= PARITY_RTOL
        ok = ok and good
        _line("loss", f"max relative difference {p['loss_rel_diff']:.1e} "
              f"({'OK' if good else 'TOO LARGE'}, limit {PARITY_RTOL:g})")  # fmt: skip
        _line("weights", f"max abs difference {p['weight_abs_diff']:.1e}")
        _line("time", f"cpu {p['cpu_s']:.2f} s, cuda {p['device_s']:.2f} s "
              "(tiny models are often faster on the CPU: see README, GPU)")  # fmt: skip
    print("result: " + ("OK" if ok else "PROBLEMS FOUND (see above)"))
    return 0 if ok else 1
