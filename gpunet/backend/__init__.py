"""Devices and their backends: ``get_ops("cpu" | "cuda" | "cuda:N" | "auto" | "sim")``.

One ``Ops`` object per device. Layers, losses and optimizers reach arrays only
through it, so adding a device means registering a backend here
(:func:`register_device`: a name pattern and a factory), never editing layers.

Example:
    >>> from gpunet.backend import get_ops
    >>> get_ops("cpu").device
    'cpu'
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from gpunet.backend import _compat
from gpunet.backend.ops import Ops
from gpunet.errors import DeviceError

__all__ = ["Ops", "available_devices", "get_ops", "parse_device", "register_device"]

_CACHE: dict[str, Ops] = {}
# name pattern -> (normalise: match -> canonical name, create: canonical name -> Ops)
_DEVICES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str], Callable[[str], Ops]]] = []


def register_device(
    pattern: str, normalise: Callable[[re.Match[str]], str], create: Callable[[str], Ops]
) -> None:
    """Make device names matching ``pattern`` (a regex over the whole lower-cased
    spec) resolve to ``normalise(match)`` and create their backend with ``create``."""
    _DEVICES.append((re.compile(pattern), normalise, create))


def _cpu(name: str) -> Ops:
    from gpunet.backend.numpy_ops import NumpyOps

    return NumpyOps()


def _sim(name: str) -> Ops:
    from gpunet.backend.strict_ops import StrictOps

    return StrictOps(index=int(name.partition(":")[2] or 0))


def _cuda(name: str) -> Ops:
    from gpunet.backend.cupy_ops import CupyOps

    return CupyOps(int(name.split(":")[1]))


def _gpu_name(match: re.Match[str]) -> str:
    spec, index = match.group(0), int(match.group(2) or 0)
    n, why = _compat.gpu_count()
    if match.group(1) == "auto":
        return "cuda:0" if n else "cpu"
    if n == 0:
        raise DeviceError(f"device {spec!r} is not available: {why}")
    if index >= n:
        raise DeviceError(f"device {spec!r} does not exist: found {n} CUDA device(s)")
    return f"cuda:{index}"


register_device(r"cpu", lambda m: "cpu", _cpu)
register_device(r"sim(?::([01]))?", lambda m: "sim" if not m.group(1) or m.group(1) == "0"
                else "sim:1", _sim)  # fmt: skip
register_device(r"(cuda|gpu|auto)(?::(\d+))?", _gpu_name, _cuda)


def parse_device(device: Any) -> str:
    """Normalise a device spec to ``"cpu"``, ``"cuda:N"``, ``"sim"`` or ``"sim:1"``.

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
    for pattern, normalise, _ in _DEVICES:
        match = pattern.fullmatch(spec)
        if match is not None:
            return normalise(match)
    raise DeviceError(f"unknown device {device!r}; expected 'cpu', 'cuda', 'cuda:N' or 'auto'")


def get_ops(device: Any = None) -> Ops:
    """The backend object of ``device`` (created once, then cached)."""
    if isinstance(device, Ops):
        return device
    name = parse_device(device)
    ops = _CACHE.get(name)
    if ops is None:
        for pattern, _, create in _DEVICES:
            if pattern.fullmatch(name):
                ops = _CACHE[name] = create(name)
                break
    return ops  # type: ignore[return-value]


def available_devices() -> list[str]:
    """Devices usable on this machine, e.g. ``['cpu', 'cuda:0']``."""
    n, _ = _compat.gpu_count()
    return ["cpu"] + [f"cuda:{i}" for i in range(n)]
