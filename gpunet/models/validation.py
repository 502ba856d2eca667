"""Validation of user data on the host, before any device work, so every device
fails the same way with a message that names the offending value (scikit-learn's
wording where it has one)."""

from __future__ import annotations

from typing import Any

import numpy as np

from gpunet.errors import InputValidationError


def as_float_array(
    X: Any, *, name: str = "X", dtype: Any = "float32", ndim: int | None = 2
) -> np.ndarray:
    """``X`` as a finite float array of ``dtype``, or a clear error.

    Raises:
        InputValidationError: for strings, complex numbers, NaN/inf (or values too
            large for ``dtype``), empty arrays and the wrong number of dimensions.
    """
    if (  # the common case, a float ndarray of the dtype already: only what can fail
        type(X) is np.ndarray
        and X.dtype.kind == "f"
        and X.dtype == dtype
        and (ndim is None or X.ndim == ndim)
        and X.ndim >= 1
        and X.shape[0] > 0
        and (X.ndim != 2 or X.shape[1] > 0)
    ):
        check_finite(X, name)
        return X
    if hasattr(X, "__cuda_array_interface__") or (
        hasattr(X, "__dlpack_device__") and not isinstance(X, np.ndarray)
    ):
        X = _to_host(X)
    try:
        arr = np.asarray(X)
    except ValueError as exc:  # ragged lists
        raise InputValidationError(f"{name} could not be converted to an array: {exc}") from None
    if arr.dtype.kind == "c":
        raise InputValidationError(f"Complex data not supported in {name}")
    if arr.dtype.kind in "OUSV":
        if arr.dtype.kind == "O":
            arr = np.where(np.vectorize(lambda v: v is None, otypes=[bool])(arr), np.nan, arr)
        try:
            arr = arr.astype(np.float64)
        except (ValueError, TypeError) as exc:
            raise InputValidationError(f"{name}: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise InputValidationError(f"{name} has unsupported dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        if arr.ndim == 1 and ndim == 2:
            raise InputValidationError(
                f"Expected 2D array, got 1D array instead: {name} of shape {arr.shape}. "
                "Reshape your data either using array.reshape(-1, 1) if your data has a "
                "single feature or array.reshape(1, -1) if it contains a single sample."
            )
        raise InputValidationError(
            f"Found array with dim {arr.ndim}, while dim {ndim} is required for {name} "
            f"(shape {arr.shape})"
        )
    if arr.ndim >= 1 and arr.shape[0] == 0:
        raise InputValidationError(
            f"Found array with 0 sample(s) (shape={arr.shape}) while a minimum of 1 is required."
        )
    if arr.ndim == 2 and arr.shape[1] == 0:
        raise InputValidationError(
            f"Found array with 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required."
        )
    check_finite(arr, name)
    with np.errstate(over="ignore"):  # reported below, by name
        out = arr.astype(dtype, copy=False)
    if out is not arr and out.dtype.kind == "f" and not np.isfinite(out).all():
        raise InputValidationError(
            f"Input {name} contains infinity or a value too large for "
            f"dtype({np.dtype(dtype).name!r})."
        )
    return out


def check_finite(arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind != "f" or np.isfinite(arr).all():
        return
    nan = np.isnan(arr)
    if nan.any():
        where = np.argwhere(nan)[0]
        at = f" (first at row {where[0]}" + (f", column {where[1]})" if len(where) > 1 else ")")
        raise InputValidationError(f"Input {name} contains NaN{at}.")
    raise InputValidationError(
        f"Input {name} contains infinity or a value too large for dtype({arr.dtype.name!r})."
    )


def check_consistent_length(*arrays: Any) -> None:
    lengths = [len(a) for a in arrays if a is not None]
    if len(set(lengths)) > 1:
        raise InputValidationError(
            f"Found input variables with inconsistent numbers of samples: {lengths}"
        )


def as_sample_weight(w: Any, n: int) -> np.ndarray:
    arr = as_float_array(w, name="sample_weight", dtype=np.float64, ndim=1)
    if arr.shape[0] != n:
        raise InputValidationError(f"sample_weight has {arr.shape[0]} entries, expected {n}")
    if np.any(arr < 0):
        raise InputValidationError("sample_weight contains negative values")
    return arr


def as_step_weight(w: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Sample weights of a sequence output, one per step: ``(samples, steps)``."""
    arr = as_float_array(w, name="sample_weight", dtype=np.float64, ndim=2)
    if arr.shape != tuple(shape):
        raise InputValidationError(
            f"sample_weight has shape {arr.shape}; a sequence output takes one weight per "
            f"sample, or one per step: shape {tuple(shape)}"
        )
    if np.any(arr < 0):
        raise InputValidationError("sample_weight contains negative values")
    return arr


def _to_host(X: Any) -> np.ndarray:
    get = getattr(X, "get", None)  # CuPy arrays
    if callable(get):
        return np.asarray(get())
    return np.from_dlpack(X)
