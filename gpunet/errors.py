"""One exception hierarchy for everything gpunet raises on purpose.

Each class also derives from the built-in exception a Python user would catch
(``ValueError``, ``MemoryError``, ...), so ``except ValueError`` keeps working.

Example:
    >>> import gpunet as gn
    >>> issubclass(gn.errors.InputValidationError, ValueError)
    True
"""

from __future__ import annotations


class GpunetError(Exception):
    """Base class of every error gpunet raises deliberately."""


class InputValidationError(GpunetError, ValueError):
    """Data given to ``fit``/``predict``/``evaluate`` or to a layer is unusable."""


class InvalidParameterError(GpunetError, ValueError):
    """A hyperparameter or constructor argument is out of range or unknown."""


class NotCompiledError(GpunetError, RuntimeError):
    """``fit``/``evaluate`` was called before ``compile``."""


class DeviceError(GpunetError, RuntimeError):
    """The requested device is unknown or unusable on this machine."""


class NonFiniteError(GpunetError, FloatingPointError):
    """Training produced a NaN or infinite loss or weight."""


class OutOfMemoryError(GpunetError, MemoryError):
    """The device ran out of memory; a smaller ``batch_size`` usually helps."""


class ModelFileError(GpunetError, ValueError):
    """A model or weights file is malformed, hostile or does not match the model."""


class DistributedError(GpunetError, RuntimeError):
    """Ranks of a distributed run disagree or one of them failed."""
