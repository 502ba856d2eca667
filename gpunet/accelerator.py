"""``torch.accelerator``'s questions as ``gn.accelerator``, so the first lines of
PyTorch's quickstart read the same::

    device = gn.accelerator.current_accelerator().type if gn.accelerator.is_available() else "cpu"

gpunet's one accelerator is CUDA (through CuPy); ``gn.backends.mps`` says Apple's
is not there.

Example:
    >>> import gpunet as gn
    >>> gn.accelerator.current_accelerator() is None or gn.accelerator.is_available()
    True
"""

from __future__ import annotations

from gpunet import cuda


class AcceleratorDevice(str):
    """A device name (``"cuda"``) with ``torch.device``'s ``type`` (``str.index`` stays
    the string's method: no ``index`` attribute)."""

    @property
    def type(self) -> str:
        return self.split(":")[0]


def is_available() -> bool:
    return cuda.is_available()


def device_count() -> int:
    return cuda.device_count()


def current_accelerator(check_available: bool = False) -> AcceleratorDevice | None:
    """``"cuda"`` where a CUDA GPU is usable, else None (as PyTorch on a CPU machine)."""
    return AcceleratorDevice("cuda") if cuda.is_available() else None
