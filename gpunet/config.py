"""Global settings: the default float dtype and the fuzz factor of the losses.

Example:
    >>> import gpunet as gn
    >>> gn.config.floatx()
    'float32'
"""

from __future__ import annotations

_FLOATX = "float32"
_EPSILON = 1e-7
FLOAT_DTYPES = ("float16", "float32", "float64")


def floatx() -> str:
    """Return the default float dtype of new weights and inputs (``"float32"``)."""
    return _FLOATX


def set_floatx(value: str) -> None:
    """Set the default float dtype: ``"float32"`` (default), ``"float64"`` or ``"float16"``.

    Raises:
        InvalidParameterError: for any other name.
    """
    global _FLOATX
    from gpunet.errors import InvalidParameterError

    if value not in FLOAT_DTYPES:
        raise InvalidParameterError(
            f"unknown floatx {value!r}; expected one of {', '.join(FLOAT_DTYPES)}"
        )
    _FLOATX = str(value)


def epsilon() -> float:
    """Return the clip value used by losses on probabilities (``1e-7``, as Keras)."""
    return _EPSILON


def set_epsilon(value: float) -> None:
    """Set the clip value used by losses that take probabilities."""
    global _EPSILON
    _EPSILON = float(value)
