"""Devices and their backends: ``get_ops("cpu" | "cuda" | "cuda:N" | "auto" | "sim")``.

One ``Ops`` object per device. Layers, losses and optimizers reach arrays only
through it, so adding a device means adding a backend here, never editing layers.

Example:
    >>> from gpunet.backend import get_ops
    >>> get_ops("cpu").device
    'cpu'
"""

from __future__ import annotations

import re
from typing import Any

from gpunet.backend import _compat
from gpunet.backend.ops import Ops
from gpunet.errors import DeviceError

__all__ = ["Ops", "available_devices", "get_ops", "parse_device"]

_CACHE: dict[str, Ops] = {}
_DEVICE_RE = re.compile(r"^(cpu|cuda|gpu|auto|sim)(?::(\d+))?$")


def parse_device(device: Any) -> str:
    """Normalise a device spec to ``"cpu"``, ``"cuda:N"`` or ``"sim"``.

    Raises:
        DeviceError: for an unknown spec, or ``"cuda"`` on a machine without a
            usable GPU (the message says why and how to install CuPy).
    """
    if isinstance(device, Ops):
        return device.device
    if device is None:
        return "cpu"
    if isinstance(device, int) and not isinstance(device, bool):
        device = "cpu" if device < 0 else f"cuda:{device}"
    spec = str(device).strip().lower()
    match = _DEVICE_RE.match(spec)
    if match is None:
        raise DeviceError(f"unknown device {device!r}; expected 'cpu', 'cuda', 'cuda:N' or 'auto'")
    kind, index = match.group(1), int(match.group(2) or 0)
    if kind == "cpu" or kind == "sim":
        return kind
    n, why = _compat.gpu_count()
    if kind == "auto":
        return "cuda:0" if n else "cpu"
    if n == 0:
        raise DeviceError(f"device {device!r} is not available: {why}")
    if index >= n:
        raise DeviceError(f"device {device!r} does not exist: found {n} CUDA device(s)")
    return f"cuda:{index}"


def get_ops(device: Any = None) -> Ops:
    """The backend object of ``device`` (created once, then cached)."""
    if isinstance(device, Ops):
        return device
    name = parse_device(device)
    ops = _CACHE.get(name)
    if ops is None:
        ops = _CACHE[name] = _create(name)
    return ops


def _create(name: str) -> Ops:
    if name == "cpu":
        from gpunet.backend.numpy_ops import NumpyOps

        return NumpyOps()
    if name == "sim":
        from gpunet.backend.strict_ops import StrictOps

        return StrictOps()
    from gpunet.backend.cupy_ops import CupyOps

    return CupyOps(int(name.split(":")[1]))


def available_devices() -> list[str]:
    """Devices usable on this machine, e.g. ``['cpu', 'cuda:0']``."""
    n, _ = _compat.gpu_count()
    return ["cpu"] + [f"cuda:{i}" for i in range(n)]
