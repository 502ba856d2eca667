"""Host builds of ``kernels/*.cu``: the same text CuPy compiles, built by g++.

``HostRunner`` is a ``gpunet.backend._kernels.Runner`` over NumPy arrays: with it
installed, gpunet's own launchers (argument order, scalar types, grid sizes) run
the kernels on the CPU. Every launch is checked against the kernel's C signature,
which catches argument mix-ups that would silently corrupt memory on a GPU.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from gpunet.backend import _kernels

SHIM = Path(__file__).with_name("host_grid_shim.h")
CXX = shutil.which("g++")
FLAGS = ("-O2", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-pthread")
# GPUNET_HOST_SANITIZE=1: AddressSanitizer + UBSan build (the process needs the
# runtimes preloaded and PYTHONMALLOC=malloc; see test_host_sanitizers.py)
SANITIZE = ("-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
            "-fno-sanitize-recover=undefined")  # fmt: skip
if os.environ.get("GPUNET_HOST_SANITIZE") == "1":
    FLAGS = (*FLAGS[1:], *SANITIZE)


def host_source(file: str) -> str:
    """The C++ translation unit: shim, the expanded kernel source, C entry points."""
    return translation_unit(_kernels.source(file), _kernels.INSTANTIATIONS[file])


def translation_unit(text: str, names: tuple[str, ...]) -> str:
    """Kernel source ``text`` with the shim and entry points for instantiations ``names``.

    A source that calls ``__syncthreads()`` runs block-cooperatively (each thread of a
    block its own std::thread, passing the turn at barriers: host_grid_shim.h); every
    other one (block, thread) after another, which is much faster.
    """
    run = "gpunet_host_run_block" if "__syncthreads()" in text else "gpunet_host_run"
    calls = "".join(
        f"    case {i}: {run}(&{ne}, grid, block, args); return 0;\n" for i, ne in enumerate(names)
    )
    sigs = "".join(
        f"    case {i}: return gpunet_host_signature_of(&{ne}, out);\n"
        for i, ne in enumerate(names)
    )
    return (
        f'#include "{SHIM}"\n{text}\n'
        'extern "C" int gpunet_host_call(int id, unsigned grid, unsigned block, void** args) {\n'
        f"  switch (id) {{\n{calls}  }}\n  return -1;\n}}\n"
        'extern "C" int gpunet_host_signature(int id, char* out) {\n'
        f"  switch (id) {{\n{sigs}  }}\n  return -1;\n}}\n"
    )


def build(file: str, extra_flags: tuple[str, ...] = (), text: str | None = None) -> Path:
    """Compile ``file`` for the host once per source text (cached in the temp dir);
    ``text``: a translation unit to build under that name instead of ``file``'s."""
    assert CXX is not None, "the host kernel tests need g++"
    text = host_source(file) if text is None else text
    key = hashlib.sha256((text + SHIM.read_text() + " ".join(FLAGS + extra_flags)).encode())
    out_dir = Path(tempfile.gettempdir()) / f"gpunet-host-{key.hexdigest()[:16]}"
    lib = out_dir / f"{Path(file).stem}.so"
    if lib.exists():
        return lib
    out_dir.mkdir(parents=True, exist_ok=True)
    src = out_dir / f"{Path(file).stem}.cpp"
    src.write_text(text)
    tmp = out_dir / f".{os.getpid()}.so"
    out = subprocess.run([CXX, *FLAGS, *extra_flags, "-o", str(tmp), str(src)],
                         capture_output=True, text=True)  # fmt: skip
    if out.returncode:  # the first errors, not only the exit status
        raise RuntimeError(f"g++ failed on {src}:\n{out.stderr[:4000]}")
    tmp.replace(lib)  # atomic: parallel test runs never load a half-written library
    return lib


class HostRunner:
    """Runs launches on the host build; records them as ``(name, grid, block)``."""

    xp = np

    def __init__(self, extra_flags: tuple[str, ...] = ()) -> None:
        self.extra_flags = extra_flags
        self.libs: dict[str, Any] = {}
        self.launches: list[tuple[str, int, int]] = []

    def lib(self, file: str) -> Any:
        if file not in self.libs:
            lib = ctypes.CDLL(str(build(file, self.extra_flags)))
            lib.gpunet_host_call.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                             ctypes.POINTER(ctypes.c_void_p)]  # fmt: skip
            lib.gpunet_host_signature.argtypes = [ctypes.c_int, ctypes.c_char_p]
            self.libs[file] = lib
        return self.libs[file]

    def signature(self, file: str, name: str) -> list[str]:
        buf = ctypes.create_string_buffer(512)
        idx = _kernels.INSTANTIATIONS[file].index(name)
        n = self.lib(file).gpunet_host_signature(idx, buf)
        codes = buf.value.decode().split()
        assert len(codes) == n
        return codes

    def launch(self, file: str, name: str, grid: int, block: int, args: tuple[Any, ...]) -> None:
        sig = self.signature(file, name)
        assert len(sig) == len(args), f"{name}: {len(args)} arguments for {len(sig)} parameters"
        holders = [
            _holder(name, i, code, a) for i, (code, a) in enumerate(zip(sig, args, strict=True))
        ]
        argv = (ctypes.c_void_p * len(args))(*[h.ctypes.data for h in holders])
        idx = _kernels.INSTANTIATIONS[file].index(name)
        assert grid >= 1 and block >= 1
        assert self.lib(file).gpunet_host_call(idx, grid, block, argv) == 0
        self.launches.append((name, grid, block))


def _holder(name: str, i: int, code: str, a: Any) -> np.ndarray:
    """A buffer holding argument ``a`` as the kernel reads it: pointer or scalar bytes."""
    where = f"{name} argument {i}"
    if isinstance(a, np.ndarray):
        assert code == "p8", f"{where}: an array for a parameter of type {code}"
        assert a.flags.c_contiguous, f"{where}: a non-contiguous array"
        return np.array([a.ctypes.data], dtype=np.uintp)
    assert isinstance(a, np.generic), f"{where}: {type(a).__name__} has no exact C type"
    if code == "p8":  # only the null pointer may be passed as a number
        assert a.dtype == np.uint64 and int(a) == 0, f"{where}: a number for a pointer"
        return np.array(a)
    kind = {"f": "f", "i": "i", "u": "u"}[code[0]]
    assert (a.dtype.kind, a.dtype.itemsize) == (kind, int(code[1])), (
        f"{where}: {a.dtype} passed for a parameter of type {code}"
    )
    return np.array(a)


class _PoisonNumpy:
    """NumPy, except that new arrays start as NaN (or -1 for integers), so an
    element a kernel forgot to write cannot pass for a right answer."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def _poison(a: np.ndarray) -> np.ndarray:
        a[...] = np.nan if a.dtype.kind == "f" else -1
        return a

    def empty(self, shape: Any, dtype: Any = float) -> np.ndarray:
        return self._poison(np.empty(shape, dtype=dtype))

    def empty_like(self, a: Any, dtype: Any = None) -> np.ndarray:
        return self._poison(np.empty_like(a, dtype=dtype))


class PoisonRunner(HostRunner):
    """A ``HostRunner`` whose kernel outputs start poisoned."""

    xp = _PoisonNumpy()


ERRORS: dict[tuple[str, str], float] = {}


def record_error(what: str, dtype: str, got: np.ndarray, expected: np.ndarray) -> None:
    """Keep the largest ``|got - expected| / max(1, |expected|)`` per (comparison, dtype),
    over the elements where both are finite: absolute near 0, relative for large values."""
    g, e = got.astype("float64").ravel(), np.asarray(expected, dtype="float64").ravel()
    both = np.isfinite(g) & np.isfinite(e)
    err = np.abs(g[both] - e[both]) / np.maximum(1.0, np.abs(e[both]))
    key = (what.split(" (")[0], dtype)
    ERRORS[key] = max(ERRORS.get(key, 0.0), float(err.max()) if err.size else 0.0)
