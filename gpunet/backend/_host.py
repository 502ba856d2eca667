"""The host build of ``kernels/``: ``host.cpp`` compiled once with the system C++
compiler, cached on disk, called through ctypes by ``NumpyOps``. Its loops run on
a thread pool of its own (``set_num_threads``), safe to call from several Python
threads at once.

Nothing here is required: without a compiler (or with ``GPUNET_HOST_KERNELS=0``)
``load()`` returns None and NumPy does the same work, with the same results to
rounding. ``status()`` says which it is and why.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

# a wheel ships the sources as gpunet/kernels/, a checkout has <repo>/kernels/
_HERE = Path(__file__).resolve()
KERNEL_DIR = next(
    (p for p in (_HERE.parents[1] / "kernels", _HERE.parents[2] / "kernels") if p.is_dir()),
    _HERE.parents[2] / "kernels",
)
SOURCE = "host.cpp"
# -fopenmp-simd: the vectorization hints of the loops, no OpenMP runtime (see host.cpp)
FLAGS = [
    "-O3",
    "-march=native",
    "-fno-math-errno",
    "-fopenmp-simd",
    "-pthread",
    "-shared",
    "-fPIC",
    "-std=c++17",
]
# glibc's vector math library (x86-64): expf/tanhf in SIMD loops, which the recurrent
# cells' gates are made of; a build without it is tried when it is missing
MVEC = ["-DGPUNET_LIBMVEC", "-lmvec"]
# Activation codes of host.cpp's enum Act
ACT_CODES = {
    "linear": 0,
    "relu": 1,
    "leaky_relu": 2,
    "sigmoid": 3,
    "tanh": 4,
    "gelu": 5,
    "swish": 7,
    "silu": 7,
}
_status = {"reason": "not loaded yet"}

_p, _i, _d, _ll = ctypes.c_void_p, ctypes.c_int, ctypes.c_double, ctypes.c_longlong
SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "bias_act": (_i, [_p, _p, _p, _ll, _ll, _i, _d]),
    "act_bwd": (_i, [_p, _p, _p, _p, _p, _ll, _ll, _i, _d]),
    "softmax_xent": (None, [_p, _p, _p, _p, _p, _ll, _ll, _d, _p, _d]),
    "sigmoid_bce": (None, [_p, _p, _p, _p, _ll, _ll, _d, _p, _d]),
    "sq_err": (None, [_p, _p, _p, _p, _ll, _d]),  # G, total (double), P, Y, n, scale
    "adam": (None, [_p, _p, _p, _p, _ll, _d, _d, _d, _d, _d]),
    "sgd": (None, [_p, _p, _p, _ll, _d, _d, _d, _d, _i, _d]),
    # pooling: pointers, then (B, H, W, C, OH, OW, KH, KW, SH, SW, PT, PL) [, include_pad]
    "max_pool2d": (None, [_p, _p, _p, *[_ll] * 12]),
    "backprop_max_pool2d": (None, [_p, _p, _p, *[_ll] * 12]),
    "avg_pool2d": (None, [_p, _p, *[_ll] * 12, _i]),
    "backprop_avg_pool2d": (None, [_p, _p, *[_ll] * 12, _i]),
    # out, in, then N H W C Ho Wo kh kw sh sw pt pl dh dw (conv.cuh's ConvGeo)
    "im2col": (None, [_p, _p, *[_ll] * 14]),
    "col2im": (None, [_p, _p, *[_ll] * 14]),
    "lstm_step": (None, [_p, _p, _p, _p, _p, _p, _ll, _ll]),
    "lstm_backward": (None, [_p, _p, _p, _p, _p, _p, _p, _p, _ll, _ll]),
    "gru_step": (None, [_p, _p, _p, _p, _p, _ll, _ll]),
    "gru_backward": (None, [_p, _p, _p, _p, _p, _p, _p, _p, _ll, _ll]),
    "attn_softmax": (None, [_p, _p, _p, *[_ll] * 8, _i, _d]),
    "attn_softmax_bwd": (None, [_p, _p, _p, _ll, _ll, _d]),
    # ..., causal, scale, serial (1: on the calling thread, which runs a group of heads)
    "attn_block_fwd": (None, [_p, _p, _p, _p, *[_ll] * 9, _i, _d, _i]),
    "attn_block_bwd": (None, [_p, _p, _p, _p, _p, _p, _p, *[_ll] * 9, _i, _d, _i]),
    "lstm_step_keep": (None, [_p, _p, _p, _p, _p, _p, _p, _ll, _ll]),
    "lstm_backward_act": (None, [_p, _p, _p, _p, _p, _p, _p, _p, _ll, _ll]),
    "layernorm": (None, [_p, _p, _p, _p, _p, _p, _p, _ll, _ll, _d]),  # Y Xhat inv X R g b
    "layernorm_bwd": (None, [_p, _p, _p, _p, _p, _p, _p, _ll, _ll]),
    # out, P, Y5, keep, B, L, H, dh, sb, sh, sq, sk, causal, scale, split (over BLAS)
    "self_attn_fwd": (None, [_p, _p, _p, _p, *[_ll] * 8, _i, _d, _i]),
    "self_attn_bwd": (None, [_p, _p, _p, _p, *[_ll] * 4, _d, _i]),
    "pool_gemm": (None, [_p, _p, _p, _ll, _ll, _ll, _i, _i, _ll, _ll]),
}


def cache_dir() -> Path:
    root = os.environ.get("GPUNET_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gpunet"
    )
    return Path(root)


def _cpu_fingerprint() -> str:
    # -march=native code must not be reused on another CPU (shared home dirs)
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))][:2]
    except OSError:
        lines = []
    return platform.machine() + "".join(lines)


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


def _build(cxx: str) -> Path:
    if platform.machine() in ("x86_64", "AMD64") and platform.libc_ver()[0] == "glibc":
        try:
            return _build_with(cxx, MVEC)
        except (OSError, subprocess.SubprocessError):
            pass
    return _build_with(cxx, [])


def _build_with(cxx: str, extra: list[str]) -> Path:
    sources = [*sorted(KERNEL_DIR.glob("*.cu*")), KERNEL_DIR / SOURCE]
    digest = hashlib.sha256()
    for src in sources:
        digest.update(src.name.encode() + src.read_bytes())
    digest.update(" ".join([cxx, *FLAGS, *extra]).encode() + _cpu_fingerprint().encode())
    target = cache_dir() / f"host-{digest.hexdigest()[:20]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".host-", suffix=".so")
    os.close(fd)
    try:  # compile to a temp name, then rename: ranks compiling at once never clash
        subprocess.run(
            [cxx, *FLAGS, "-I", str(KERNEL_DIR), str(KERNEL_DIR / SOURCE), "-o", tmp, *extra],
            check=True,
            capture_output=True,
            timeout=300,
        )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


class HostKernels:
    """The compiled functions, ``f32`` and ``f64`` variants, e.g. ``k.adam["f32"]``."""

    def __init__(self, lib: ctypes.CDLL, path: Path) -> None:
        self.path, self.lib = path, lib
        self.blas = False  # NumPy's cblas_?gemm handed over (set_blas): self_attn_*
        self.spin = 0  # us the pool's threads spin between jobs (set_spin)
        lib.gpunet_host_set_threads.argtypes = [ctypes.c_int]
        lib.gpunet_host_set_threads.restype = None
        lib.gpunet_host_threads.restype = ctypes.c_int
        for name, (restype, argtypes) in SIGNATURES.items():
            table = {}
            for suffix in ("f32", "f64"):
                fn = getattr(lib, f"gpunet_{name}_{suffix}")
                fn.restype, fn.argtypes = restype, argtypes
                table[suffix] = fn
            setattr(self, name, table)

    @property
    def threads(self) -> int:
        """Threads of the pool (the calling thread included)."""
        return int(self.lib.gpunet_host_threads())

    def set_threads(self, n: int) -> None:
        self.lib.gpunet_host_set_threads(max(1, int(n)))

    def set_spin(self, us: int) -> None:
        """How long (us) the pool's threads spin for the next job before they sleep."""
        self.lib.gpunet_host_set_spin.argtypes = [ctypes.c_longlong]
        self.lib.gpunet_host_set_spin(int(us))
        self.spin = int(us)

    def set_blas(self, gemm: tuple[int, int, bool] | None) -> None:
        """Hand the kernels ``(sgemm, dgemm, wide)`` (``_blas_threads.cblas_gemm``)."""
        self.blas = gemm is not None and all(gemm[:2])
        if self.blas and gemm is not None:
            self.lib.gpunet_set_blas.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
            self.lib.gpunet_set_blas(gemm[0], gemm[1], int(gemm[2]))


# glibc's malloc hands every block over its mmap threshold (128 KiB, adapting up to
# 32 MiB) back to the OS on free, and trims the top of the heap past 128 KiB: a conv
# step's column and output buffers (tens of MiB for LeNet) were then fresh pages each
# step, zeroed by page faults that took a third of it (40 -> 27 ms at 2 threads).
# Thresholds raised to the column budget (_conv_ops.MAX_COL_BYTES) keep them in the
# heap for reuse. glibc reads MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ itself:
# a value set there wins; GPUNET_MALLOPT=0 leaves malloc as it is.
_MALLOPT = ((-3, "MALLOC_MMAP_THRESHOLD_", 64 << 20), (-1, "MALLOC_TRIM_THRESHOLD_", 128 << 20))


def _keep_heap() -> bool:
    """Raise glibc's mmap and trim thresholds (see ``_MALLOPT``); False where not done."""
    if platform.system() != "Linux" or os.environ.get("GPUNET_MALLOPT", "1") == "0":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    for param, env, value in _MALLOPT:
        if env not in os.environ:
            mallopt(param, value)
    return True


@cache
def load() -> HostKernels | None:
    """The host kernels, or None (then ``status()`` says why)."""
    if os.environ.get("GPUNET_HOST_KERNELS", "1") == "0":
        _status["reason"] = "disabled by GPUNET_HOST_KERNELS=0"
        return None
    cxx = _compiler()
    if cxx is None:
        _status["reason"] = "no C++ compiler found (set CXX or install g++)"
        return None
    try:
        path = _build(cxx)
        kernels = HostKernels(ctypes.CDLL(str(path)), path)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        _status["reason"] = f"host build failed: {exc} {detail.decode(errors='replace')[:500]}"
        return None
    kernels.set_threads(default_threads())
    _keep_heap()
    from gpunet.backend import _blas_threads  # its pool and OpenBLAS's: one at a time

    _blas_threads.nap_openblas_workers()
    kernels.set_blas(_blas_threads.cblas_gemm())
    kernels.set_spin(spin_us())
    blas = "NumPy's cblas for attention" if kernels.blas else "no cblas found"
    _status["reason"] = f"compiled with {cxx}, {kernels.threads} threads, {blas} ({path})"
    return kernels


# After a job the pool's workers, and the caller waiting for them, spin this long before
# they sleep (GPUNET_POOL_SPIN_US): a sleeping thread took 60-160 us to wake on a virtual
# CPU, paid by every product and pass of a step. GNU OpenMP spins about as long.
SPIN_US = 300


def spin_us() -> int:
    value = os.environ.get("GPUNET_POOL_SPIN_US", "").strip()
    return int(value) if value.isdigit() else SPIN_US


def default_threads() -> int:
    """``GPUNET_NUM_THREADS``, else ``OMP_NUM_THREADS``, else the CPUs this process may use."""
    for var in ("GPUNET_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def set_num_threads(n: int) -> None:
    """Threads of the host kernels (the BLAS library keeps its own setting).

    Example:
        >>> from gpunet.backend import _host
        >>> _host.set_num_threads(1)
        >>> _host.set_num_threads(_host.default_threads())
    """
    kernels = load()
    if kernels is not None:
        kernels.set_threads(int(n))


def status() -> tuple[bool, str]:
    """``(available, explanation)`` for ``gpunet doctor``."""
    return load() is not None, _status["reason"]
