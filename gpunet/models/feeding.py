"""Getting data into ``fit``: host-side validation and conversion, once, then
device batches (slices, or gathers through a shuffled index on the device).

A dataset that fits in the device's free memory is copied there once; a larger
one stays on the host and each batch is gathered there and streamed up (through
pinned memory on a GPU)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from gpunet import losses as losses_mod
from gpunet.autograd import Tensor
from gpunet.errors import InputValidationError, InvalidParameterError, NonFiniteError
from gpunet.models import multi_io
from gpunet.models import validation as data

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


class HostData:
    """A dataset left in host memory because it does not fit on the device:
    ``_batches`` uploads it one batch at a time."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)


class _Rows:
    """Rows ``sel`` of an array: sliced, gathered by ``fn`` on the device, or gathered
    on the host and uploaded (``host``), for every array of a batch alike."""

    __slots__ = ("fn", "host", "sel")

    def __init__(self, fn: Any, sel: Any, host: bool = False) -> None:
        self.fn, self.sel, self.host = fn, sel, host

    def __call__(self, A: Any) -> Any:
        if self.fn is None:
            return A[self.sel, ...]
        return self.fn(A.array if self.host else A, self.sel)


class DataMixin:
    """Validation of ``x``/``y``/weights, batching, and the reads ``fit`` makes from
    the device, mixed into ``Model``."""

    _nonfinite_flag: Any = None  # device-side "every loss of this epoch was finite"
    _finite_steps: Any = None  # device-side count of this epoch's steps before a bad one
    _seq_out = False  # the output is a sequence, (batch, time, units): targets per step

    if TYPE_CHECKING:
        ops: Any
        dtype: str
        compiled_loss: Any
        strategy: Any
        stop_training: bool
        _n_outputs: int

        def _ensure_built(self, X: np.ndarray) -> None: ...
        def check_input(self, inputs: Any) -> None: ...
        @property
        def input_dtype(self) -> str: ...
        @property
        def output_dtype(self) -> str: ...

    # -- data --------------------------------------------------------------------------
    def _inputs(self, x: Any) -> Any:
        if multi_io.several(self, "inputs") or multi_io.several(self, "outputs"):
            return multi_io.inputs(self, x)  # a list of arrays, in the model's order
        x = multi_io.single(self, x, "inputs")
        arr = data.as_float_array(x, name="X", dtype=self.input_dtype, ndim=None)
        if arr.ndim < 2:
            data.as_float_array(arr, name="X", dtype=self.input_dtype, ndim=2)
        self._ensure_built(arr)
        # checked once here: the graph-free training step calls no layer to check it
        self.check_input(Tensor(self.ops.asarray(arr[:1]), self.ops))
        return arr

    def _targets(self, y: Any, n_out: int, loss: Any = None, name: str = "y",
                 seq: bool | None = None) -> np.ndarray:  # fmt: skip
        """``y`` validated and shaped for ``loss`` (the compiled one by default)."""
        loss = self.compiled_loss if loss is None else loss
        seq = self._seq_out if seq is None else seq  # (batch, time, units): per step
        if getattr(loss, "name", "") == SPARSE:
            y_arr = np.asarray(y)
            if y_arr.dtype.kind == "f":
                data.check_finite(y_arr, name)
            return losses_mod.check_labels(y_arr, n_out, name=SPARSE, sequence=seq)
        arr = data.as_float_array(y, name=name, dtype=self.output_dtype, ndim=None)
        if seq and arr.ndim == 2 and n_out == 1:  # (batch, time) for (batch, time, 1)
            arr = arr[..., None]
        if seq and arr.ndim == 3 and arr.shape[-1] == n_out:
            B, arr = len(arr), arr.reshape(-1, n_out)  # validated as rows, one per step
            return self._targets(arr, n_out, loss, name, seq=False).reshape(B, -1, n_out)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2 or arr.shape[1] != n_out:
            raise InputValidationError(
                f"{name} has {arr.shape[1] if arr.ndim == 2 else arr.shape} columns but the "
                f"output layer has {n_out} units"
                + (
                    "; one-hot encode y or use sparse_categorical_crossentropy"
                    if n_out > 1 and arr.shape[-1] == 1
                    else ""
                )
            )
        if getattr(loss, "name", "") in ("binary_crossentropy", "categorical_crossentropy"):
            if ((arr < 0) | (arr > 1)).any():
                raise InputValidationError(
                    f"{loss.name}: {name} must hold probabilities in [0, 1], got values in "
                    f"[{arr.min():g}, {arr.max():g}]"
                )
        return arr

    def _weights(self, y: np.ndarray, n: int, sample_weight: Any, class_weight: Any) -> Any:
        if self._seq_out and np.ndim(sample_weight) == 2 and class_weight is None:
            return data.as_step_weight(sample_weight, y.shape[:2])  # one per step (Keras)
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
        if multi_io.several(self, "inputs") or multi_io.several(self, "outputs"):
            return multi_io.prepare(self, x, y, sample_weight, class_weight)  # type: ignore[no-any-return]
        X = self._inputs(x)
        y = multi_io.single(self, y, "outputs")
        if y is None:
            raise InputValidationError("y is required (targets for the loss)")
        data.check_consistent_length(X, np.asarray(y) if not hasattr(y, "shape") else y)
        Y = self._targets(y, self._n_outputs)
        return X, Y, self._weights(Y, len(X), sample_weight, class_weight)

    def _weights_on(self, xp: Any) -> Any:
        """Sample weights as arrays of the output dtype, by ``xp.asarray`` (NumPy's or ops')."""
        return lambda W: xp.asarray(W, dtype=self.output_dtype)

    def _to_device(self, X: np.ndarray, Y: Any = None, W: Any = None) -> tuple[Any, Any, Any]:
        """``X, Y, W`` on the device when they fit in its free memory (copied once),
        else wrapped as ``HostData`` for ``_batches`` to stream batch by batch."""
        ops = self.ops
        arrays = [X, Y, None if W is None else multi_io.each(W, self._weights_on(np))]
        put = ops.asarray
        if not ops.fits_in_memory(sum(A.nbytes for A in multi_io.flatten(arrays) if A is not None)):
            put = HostData
        return tuple(None if a is None else multi_io.each(a, put) for a in arrays)  # type: ignore[return-value]

    def _batches(
        self, X: Any, Y: Any, W: Any, batch_size: int, order: Any = None, shard: bool = True
    ) -> Iterator[Batch]:
        """Batches of ``X, Y, W``; ``order`` is a host permutation of the rows, moved
        to the device once so the gathers happen there (unless the data streams)."""
        ops = self.ops
        n, several = multi_io.rows(X), isinstance(X, list) or isinstance(Y, list)
        stream = isinstance(multi_io.flatten(X)[0], HostData)
        if order is not None and not stream and isinstance(order, np.ndarray):
            order = ops.asarray(order)
        for g_start in range(0, n, batch_size):
            g_stop = min(g_start + batch_size, n)
            start, stop = self.strategy.local_rows(g_start, g_stop) if shard else (g_start, g_stop)
            if several:  # lists of arrays: the same rows of each
                if stream:
                    rows = slice(start, stop) if order is None else order[start:stop]
                    take: Any = _Rows(ops.upload_rows, rows, host=True)
                else:
                    take = _Rows(*((None, slice(start, stop)) if order is None else
                                   (ops.take_rows, order[start:stop])))  # fmt: skip
                xb, yb, wb = (None if A is None else multi_io.each(A, take) for A in (X, Y, W))
            elif stream:  # gather the rows on the host, upload only them
                rows = slice(start, stop) if order is None else order[start:stop]
                xb, yb, wb = (None if A is None else ops.upload_rows(A.array, rows)
                              for A in (X, Y, W))  # fmt: skip
            elif order is None:
                pick: Any = slice(start, stop)
                xb, yb = X[pick, ...], (None if Y is None else Y[pick, ...])
                wb = None if W is None else W[pick]
            else:
                idx = order[start:stop]
                xb, yb = ops.take_rows(X, idx), (None if Y is None else ops.take_rows(Y, idx))
                wb = None if W is None else ops.take_rows(W, idx)
            yield Batch(xb, yb, wb, stop - start, g_stop - g_start)

    # -- reading the device ----------------------------------------------------------
    def _loss_finite(self, total: Any) -> bool:
        """Whether the loss is finite, read at once where that is free (host arrays).
        On a device the check stays there, folded into one flag that ``_fit_loop``
        reads once per epoch, so the batch loop never waits for the device."""
        ops = self.ops
        if ops.reads_are_free:
            return bool(ops.is_finite_scalar(total.data))
        ok = ops.all_finite(total.data)
        flag = self._nonfinite_flag
        if flag is not None:  # (NumPy's ufuncs return 0-d results as scalars: keep arrays)
            ok = ops.xp.asarray(ops.xp.logical_and(flag, ok))
        flag = self._nonfinite_flag = ok
        # counts steps while the flag holds: the first bad batch's index, on the device
        steps = ops.xp.astype(flag, ops.dtype("int32"))
        self._finite_steps = steps if self._finite_steps is None else self._finite_steps + steps
        return True

    def _check_epoch_finite(self, epoch: int, on_nan: str, batch_at: Any = None) -> None:
        """Read the device-side flag of ``_loss_finite``: one host read per epoch.

        Every update from the first non-finite loss on was skipped on the device
        (``optimizer.step(when=flag)``), so the weights are the last finite ones.
        """
        flag, self._nonfinite_flag = self._nonfinite_flag, None
        steps, self._finite_steps = self._finite_steps, None
        if flag is None or self.ops.to_host(flag):
            return
        if on_nan == "stop":
            self.stop_training = True
            return
        batch = int(self.ops.to_host(steps))
        layer = ""
        if batch_at is not None:
            layer = "; " + self._first_nonfinite_layer(batch_at(batch))  # type: ignore[attr-defined]
        raise NonFiniteError(
            f"loss became NaN or infinite at epoch {epoch + 1}, batch {batch + 1} on "
            f"{self.ops.device} (a device is read once per epoch, so the batch loop never "
            f"waits){layer}; that step and the rest of the epoch left the weights unchanged, "
            "so they are the last finite ones (pass on_nan='stop' to end training quietly, "
            "'ignore' to go on)"
        )
