"""The only module that imports CuPy, and only when asked: ``import gpunet`` never
does. "CuPy installed" and "a GPU usable" are told apart, with the reason kept."""

from __future__ import annotations

from functools import cache
from types import ModuleType

INSTALL_HINT = (
    "install CuPy for your CUDA version: pip install 'gpunet[cuda12]' (or 'gpunet[cuda13]')"
)


@cache
def cupy_or_none() -> ModuleType | None:
    """The ``cupy`` module if it imports, else None (never raises)."""
    try:
        import cupy
    except Exception:  # ImportError, or a broken CUDA install raising at import
        return None
    return cupy


@cache
def gpu_count() -> tuple[int, str]:
    """``(number of usable CUDA devices, reason when 0)``."""
    cupy = cupy_or_none()
    if cupy is None:
        return 0, f"CuPy is not installed; {INSTALL_HINT}"
    try:
        n = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # no driver, or a driver older than the runtime
        return 0, f"CuPy is installed but no CUDA driver/device is usable ({exc})"
    if n == 0:
        return 0, "CuPy is installed but the CUDA runtime reports 0 devices"
    return n, ""
