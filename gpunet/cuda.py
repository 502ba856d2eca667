"""``torch.cuda``'s questions as ``gn.cuda``: whether a CUDA GPU is usable
(``is_available``), how many (``device_count``), seeding and synchronizing; so
``device = "cuda" if gn.cuda.is_available() else "cpu"`` reads as in PyTorch.

Example:
    >>> import gpunet as gn
    >>> gn.cuda.device_count() >= 0
    True
"""

from __future__ import annotations

from typing import Any

from gpunet.backend import _compat


def device_count() -> int:
    """CUDA devices CuPy can use here (0 without CuPy, a driver or a GPU)."""
    return int(_compat.gpu_count()[0])


def is_available() -> bool:
    return device_count() > 0


def manual_seed(seed: int) -> None:
    """gpunet's streams are one for every device: ``gn.manual_seed``."""
    from gpunet.tensor_functions import manual_seed as seed_all

    seed_all(seed)


manual_seed_all = manual_seed


def synchronize(device: Any = None) -> None:
    """Wait for the work queued on ``device`` (the current CUDA device by default)."""
    if not is_available():
        raise RuntimeError("gn.cuda.synchronize: no usable CUDA device")
    from gpunet.backend import get_ops

    ops = get_ops("cuda" if device is None else device)
    ops.xp.cuda.get_current_stream().synchronize()
