"""``Ops``: the reference backend. Every op is written once against ``self.xp``
with array-API vocabulary (``xp.astype``, ``xp.matmul``, no ``out=``), so the same
code runs on NumPy, CuPy and the strict simulated device. It defines "correct";
faster backends override an op only to be faster, and tests hold them to it.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy

from gpunet import random as grandom
from gpunet.backend._activation_ops import NEEDS_X, ActivationOps
from gpunet.backend._amp_ops import AmpOps
from gpunet.backend._attention_ops import AttentionOps
from gpunet.backend._conv_ops import ConvOps
from gpunet.backend._embed_ops import EmbeddingOps
from gpunet.backend._loss_ops import LossOps
from gpunet.backend._norm_ops import NormOps
from gpunet.backend._optim_ops import OptimizerOps
from gpunet.backend._pool_ops import PoolOps
from gpunet.backend._rnn_ops import RecurrentOps
from gpunet.errors import OutOfMemoryError

Array = Any


class Ops(
    ActivationOps,
    ConvOps,
    LossOps,
    NormOps,
    OptimizerOps,
    PoolOps,
    EmbeddingOps,
    RecurrentOps,
    AttentionOps,
    AmpOps,
):
    """Reference backend over ``xp`` (NumPy unless a subclass says otherwise).

    Example:
        >>> import numpy as np
        >>> from gpunet.backend.ops import Ops
        >>> Ops().relu(np.array([-1.0, 2.0]))
        array([0., 2.])
    """

    name = "numpy"
    xp: ModuleType = numpy
    device = "cpu"
    accum_dtype = "float32"  # running sums of metrics (float64 where it is free)
    # capabilities, asked instead of the device's name, so every device-only path
    # also runs in tests on the host build and the simulated device:
    is_host = True  # arrays are host NumPy arrays (NumPy data may mix in freely)
    reads_are_free = True  # a value read back costs nothing: check the loss per batch
    # (else a device flag guards the update, and the host reads it once per epoch)

    def __init__(self) -> None:
        self.device_kw: dict[str, Any] = {}  # extra kwargs for creation functions
        self.host_syncs = 0  # device->host reads through to_numpy/to_host
        self._dtypes: dict[str, Any] = {}  # name -> dtype (numpy.dtype(name) costs ~10 us)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} device={self.device!r}>"

    # -- creation and transfer --------------------------------------------------
    def asarray(self, X: Any, dtype: Any = None) -> Array:
        """Put host data (or an array of this device) on this device."""
        if dtype is not None:
            dtype = self.dtype(dtype)
        return self.xp.asarray(X, dtype=dtype, **self.device_kw)

    def to_numpy(self, X: Array) -> numpy.ndarray:
        """Copy to a host NumPy array (a synchronising read on a device)."""
        self.host_syncs += 1
        return numpy.asarray(X)

    def to_host(self, X: Array) -> Any:
        """A 0-d device value as a Python float (counted as one host sync)."""
        return float(self.to_numpy(X))

    def dtype(self, name: Any) -> Any:
        """The dtype object of this namespace for ``name`` (``"float32"`` ...)."""
        if not isinstance(name, str):
            return name
        hit = self._dtypes.get(name)
        if hit is None:
            hit = self._dtypes[name] = getattr(self.xp, numpy.dtype(name).name)
        return hit

    def zeros(self, shape: Any, dtype: Any = "float32") -> Array:
        return self.xp.zeros(shape, dtype=self.dtype(dtype), **self.device_kw)

    def empty(self, shape: Any, dtype: Any = "float32") -> Array:
        return self.xp.empty(shape, dtype=self.dtype(dtype), **self.device_kw)

    def full(self, shape: Any, value: float, dtype: Any = "float32") -> Array:
        return self.xp.full(shape, value, dtype=self.dtype(dtype), **self.device_kw)

    def arange(self, n: int, dtype: Any = "int64") -> Array:
        return self.xp.arange(n, dtype=self.dtype(dtype), **self.device_kw)

    def assign(self, dst: Array, src: Any) -> None:
        """Write ``src`` into ``dst`` in place (keeps views into flat buffers valid)."""
        dst[...] = src

    def iadd(self, dst: Array, src: Array) -> None:
        """``dst += src`` in place."""
        dst[...] = dst + src

    def copy(self, X: Array) -> Array:
        return self.xp.asarray(X, copy=True)

    def synchronize(self) -> None:
        """Wait for queued device work (nothing to wait for on the host)."""

    def random_uniform(self, shape: tuple[int, ...], dtype: Any) -> Array:
        """Uniform [0, 1) draws from the seeded ``dropout`` stream."""
        draws = grandom.generator("dropout").random(shape, dtype=numpy.dtype(dtype))
        return self.asarray(draws)

    def take_rows(self, X: Array, idx: Array) -> Array:
        """``X[idx]`` for an integer index array on this device."""
        return self.xp.take(X, idx, axis=0)

    def is_finite_scalar(self, X: Array) -> bool:
        """Whether a one-element array is finite, read on the host (a sync on a device)."""
        return bool(self.to_host(self.all_finite(X)))

    def all_finite(self, X: Array) -> Array:
        """A 0-d boolean array: no NaN or inf in ``X`` (stays on the device)."""
        return self.xp.asarray(self.xp.all(self.xp.isfinite(X)))

    # -- memory and data movement ---------------------------------------------------
    def fits_in_memory(self, nbytes: int) -> bool:
        """Whether a dataset of ``nbytes`` may live on this device whole (else
        ``fit`` streams it batch by batch with :meth:`upload_rows`)."""
        return True

    def upload_rows(self, X: numpy.ndarray, rows: Any) -> Array:
        """Rows ``rows`` (a slice or a host index array) of host array ``X``, on this device."""
        return self.asarray(X[rows])

    def free_memory(self) -> None:
        """Give cached device memory back (called after an out-of-memory error)."""

    def is_out_of_memory(self, exc: BaseException) -> bool:
        """Whether ``exc`` means this device ran out of memory."""
        return isinstance(exc, MemoryError) and not isinstance(exc, OutOfMemoryError)

    @contextlib.contextmanager
    def oom_guard(self, batch_size: int | None = None) -> Iterator[None]:
        """Turn running out of memory inside the block into ``OutOfMemoryError``
        with a hint, after freeing what the failed work had allocated."""
        try:
            yield
        except Exception as exc:
            if not self.is_out_of_memory(exc):
                raise
            # the traceback's frames hold the failed step's arrays: drop them first
            traceback.clear_frames(exc.__traceback__)
            what = f"{type(exc).__name__}: {exc}"
            del exc
            self.free_memory()
            hint = f" (now {batch_size})" if batch_size else ""
            raise OutOfMemoryError(
                f"out of memory on {self.device} ({what}); try a smaller batch_size{hint}, "
                "or a smaller model"
            ) from None

    # -- linear algebra -----------------------------------------------------------
    def gemm(
        self, A: Array, B: Array, *, trans1: bool = False, trans2: bool = False,
        out: Array | None = None,
    ) -> Array:  # fmt: skip
        """``op(A) @ op(B)`` where ``op`` transposes the last two axes on request;
        into ``out`` when given (a weight's slot of the flat gradient buffer)."""
        xp = self.xp
        if trans1:
            A = xp.matrix_transpose(A)
        if trans2:
            B = xp.matrix_transpose(B)
        if out is None:
            return self.matmul(A, B)
        self.assign(out, self.matmul(A, B))
        return out

    def dense(
        self, X: Array, W: Array, b: Array | None, activation: str = "linear", **kw: Any
    ) -> tuple[Array, Array | None]:
        """Fused ``activation(X @ W + b)``. Returns ``(Y, Z)``: the output, and the
        pre-activation ``Z`` when the activation's backward needs it (else None)."""
        Z = self.gemm(X, W)
        if b is not None:
            Z = Z + b
        Y = self.activation(activation, Z, **kw)
        return Y, (Z if activation in NEEDS_X else None)

    def backprop_dense(
        self,
        dY: Array,
        X: Array,
        W: Array,
        Z: Array | None,
        Y: Array,
        activation: str = "linear",
        *,
        need_dX: bool = True,
        need_db: bool = True,
        dW_out: Array | None = None,
        db_out: Array | None = None,
        **kw: Any,
    ) -> tuple[Array | None, Array, Array | None]:
        """Returns ``(dX, dW, db)``; ``dX`` is None unless ``need_dX``. ``dW`` and
        ``db`` are written into ``dW_out``/``db_out`` when given (gradient buffers)."""
        dZ = self.backprop_activation(activation, dY, Z, Y, **kw)
        dW = self.gemm(X, dZ, trans1=True)
        db = self.xp.sum(dZ, axis=0) if need_db else None
        if dW_out is not None:
            self.assign(dW_out, dW)
            dW = dW_out
        if db is not None and db_out is not None:
            self.assign(db_out, db)
            db = db_out
        dX = self.gemm(dZ, W, trans2=True) if need_dX else None
        return dX, dW, db

    def sum_to_shape(self, dY: Array, shape: tuple[int, ...]) -> Array:
        """Undo broadcasting: sum ``dY`` down to ``shape``."""
        xp = self.xp
        if tuple(dY.shape) == tuple(shape):
            return dY
        lead = dY.ndim - len(shape)
        if lead:
            dY = xp.sum(dY, axis=tuple(range(lead)))
        axes = tuple(i for i, n in enumerate(shape) if n == 1 and dY.shape[i] != 1)
        if axes:
            dY = xp.sum(dY, axis=axes, keepdims=True)
        return dY

    # -- dropout ----------------------------------------------------------------
    def dropout_mask(self, shape: tuple[int, ...], rate: float, dtype: Any) -> Array:
        """Inverted-dropout mask: 0 with probability ``rate``, else ``1/(1-rate)``."""
        keep = self.random_uniform(shape, dtype) >= rate
        return self.xp.astype(keep, self.dtype(dtype)) * (1.0 / (1.0 - rate))
