"""Getting data into ``fit``: host-side validation and conversion, once, then
device batches (slices, or gathers through a shuffled index on the device)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from gpunet import data
from gpunet import losses as losses_mod
from gpunet.errors import InputValidationError, InvalidParameterError

SPARSE = "sparse_categorical_crossentropy"


def int_param(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InvalidParameterError(
            f"The {name!r} parameter must be an int in the range [{low}, inf). "
            f"Got {value!r} instead."
        )
    return int(value)


class Batch:
    """One batch's device arrays. ``n`` rows are here; the loss is divided by
    ``denom``, the size of the global batch (``n`` unless training is distributed)."""

    __slots__ = ("denom", "n", "sw", "x", "y")

    def __init__(self, x: Any, y: Any, sw: Any, n: int, denom: int | None = None) -> None:
        self.x, self.y, self.sw, self.n = x, y, sw, n
        self.denom = n if denom is None else denom


class DataMixin:
    """Validation of ``x``/``y``/weights and batching, mixed into ``Model``."""

    if TYPE_CHECKING:
        ops: Any
        dtype: str
        compiled_loss: Any
        strategy: Any
        _n_outputs: int

        def _ensure_built(self, X: np.ndarray) -> None: ...

    # -- data --------------------------------------------------------------------------
    def _inputs(self, x: Any) -> np.ndarray:
        arr = data.as_float_array(x, name="X", dtype=self.dtype, ndim=None)
        if arr.ndim < 2:
            data.as_float_array(arr, name="X", dtype=self.dtype, ndim=2)
        self._ensure_built(arr)
        return arr

    def _targets(self, y: Any, n_out: int) -> np.ndarray:
        loss = self.compiled_loss
        if getattr(loss, "name", "") == SPARSE:
            y_arr = np.asarray(y)
            if y_arr.dtype.kind == "f":
                data.check_finite(y_arr, "y")
            return losses_mod.check_labels(y_arr, n_out, name=SPARSE)
        arr = data.as_float_array(y, name="y", dtype=self.dtype, ndim=None)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2 or arr.shape[1] != n_out:
            raise InputValidationError(
                f"y has {arr.shape[1] if arr.ndim == 2 else arr.shape} columns but the output "
                f"layer has {n_out} units"
                + (
                    "; one-hot encode y or use sparse_categorical_crossentropy"
                    if n_out > 1 and arr.shape[-1] == 1
                    else ""
                )
            )
        if getattr(loss, "name", "") in ("binary_crossentropy", "categorical_crossentropy"):
            if np.any((arr < 0) | (arr > 1)):
                raise InputValidationError(
                    f"{loss.name}: y must hold probabilities in [0, 1], got values in "
                    f"[{arr.min():g}, {arr.max():g}]"
                )
        return arr

    def _weights(self, y: np.ndarray, n: int, sample_weight: Any, class_weight: Any) -> Any:
        w = None if sample_weight is None else data.as_sample_weight(sample_weight, n)
        if class_weight is not None:
            labels = y if y.ndim == 1 else (np.argmax(y, 1) if y.shape[1] > 1 else y[:, 0].round())
            cw = np.ones(n)
            for cls, weight in dict(class_weight).items():
                cw[labels == cls] = float(weight)
            w = cw if w is None else w * cw
        return w

    def _prepare(
        self, x: Any, y: Any, sample_weight: Any = None, class_weight: Any = None
    ) -> tuple[np.ndarray, np.ndarray, Any]:
        X = self._inputs(x)
        if y is None:
            raise InputValidationError("y is required (targets for the loss)")
        data.check_consistent_length(X, np.asarray(y) if not hasattr(y, "shape") else y)
        Y = self._targets(y, self._n_outputs)
        return X, Y, self._weights(Y, len(X), sample_weight, class_weight)

    def _batches(
        self, X: Any, Y: Any, W: Any, batch_size: int, order: Any = None, shard: bool = True
    ) -> Iterator[Batch]:
        ops = self.ops
        n = int(X.shape[0])
        for g_start in range(0, n, batch_size):
            g_stop = min(g_start + batch_size, n)
            start, stop = self.strategy.local_rows(g_start, g_stop) if shard else (g_start, g_stop)
            if order is None:
                pick: Any = slice(start, stop)
                xb, yb = X[pick, ...], (None if Y is None else Y[pick, ...])
                wb = None if W is None else W[pick]
            else:
                idx = order[start:stop]
                xb, yb = ops.take_rows(X, idx), (None if Y is None else ops.take_rows(Y, idx))
                wb = None if W is None else ops.take_rows(W, idx)
            yield Batch(xb, yb, wb, stop - start, g_stop - g_start)
