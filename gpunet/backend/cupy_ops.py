"""``CupyOps``: the CUDA backend.

``FusedOps`` routes the elementwise work around the matrix products to the
kernels of ``kernels/`` (bias + activation, activation backward, the fused
cross-entropies, in-place optimizer updates). Every override checks dtype and
layout first and otherwise returns the reference ``Ops`` result, so any dtype or
layout the kernels do not take still gets the right answer. ``FusedOps`` knows no
CuPy: launches go through ``_kernels.runner()``, which the tests point at host
builds of the same kernels.

``CupyOps`` adds the device: creation and transfer on GPU ``index``, counted
host reads, a seeded CuPy generator, pinned streaming and out-of-memory handling.
"""

from __future__ import annotations

import functools
import inspect
import types
from numbers import Real
from typing import Any

import numpy

from gpunet import random as grandom
from gpunet.backend import _compat, _conv_fast, _kernels
from gpunet.backend import _pool_kernels as _pk
from gpunet.backend._activation_ops import NEEDS_X
from gpunet.backend._amp_ops import FusedAmpOps
from gpunet.backend._attention_kernels import FusedAttention
from gpunet.backend._rnn_fused import FusedRecurrentOps
from gpunet.backend.ops import Ops
from gpunet.errors import DeviceError

Array = Any
DATA_FRACTION = 0.5  # of free device memory a resident dataset may take; the rest
# is left for weights, activations, gradients and CuPy's pool


class FusedOps(FusedAmpOps, FusedRecurrentOps, FusedAttention, Ops):
    """Ops that run as one fused kernel each, with the reference as fallback."""

    reads_are_free = False  # device kernels: the loss is checked by a device flag (also
    # over the host build, so tests run the guarded path the GPU runs)
    lowp_gemm = True  # a mixed policy's GEMMs as half GEMMs: tensor cores

    # -- low-precision GEMMs ------------------------------------------------------------
    def lowp_matmul(self, A: Array, B: Array, compute: str) -> Array:
        """``A @ B`` as a ``compute`` GEMM, widened to float32. float16: a float16 matmul,
        which CuPy runs as ``cublasGemmEx`` (half in and out, ``CUBLAS_COMPUTE_32F``,
        tensor-op algorithm): float32 accumulation, one rounding at the output. bfloat16
        through ``ml_dtypes`` the same where CuPy takes it (see ``_bf16``), else the
        reference's float32 arithmetic rounded alike."""
        xp = self.xp
        low = self.dtype("float16") if compute == "float16" else _bf16(xp)
        if low is None:
            return super().lowp_matmul(A, B, compute)
        with numpy.errstate(over="ignore"):  # overflow to inf is what loss scaling detects
            A, B = (X if X.dtype == low else xp.astype(X, low) for X in (A, B))
        return xp.astype(xp.matmul(A, B), self.dtype("float32"))

    # -- dense layer and activations -------------------------------------------------
    def dense(
        self, X: Array, W: Array, b: Array | None, activation: str = "linear", **kw: Any
    ) -> tuple[Array, Array | None]:
        spec = _kernels.fused_activation(activation, kw)
        if spec is None or _kernels.fast_dtype(X, W, b) is None:
            return super().dense(X, W, b, activation, **kw)
        # the GEMM output is ours: bias and activation overwrite it in one pass
        Z = self.gemm(X, W)
        return _kernels.bias_act(Z, b, *spec, keep_z=activation in NEEDS_X)  # type: ignore[no-any-return]

    def _act(self, name: str, X: Array, kw: dict[str, Any]) -> Array | None:
        spec = _kernels.fused_activation(name, kw)
        if spec is None or _kernels.fast_dtype(X) is None:
            return None
        return _kernels.activation(X, *spec)

    def _backprop(self, name: str, dY: Array, X: Array, Y: Array, kw: dict[str, Any]) -> Any:
        spec = _kernels.fused_activation(name, kw)
        saved = X if name in NEEDS_X else Y
        if spec is None or saved is None or _kernels.fast_dtype(dY, saved) is None:
            return None
        if tuple(dY.shape) != tuple(saved.shape):
            return None
        return _kernels.backprop_act(dY, X, Y, *spec)

    def relu(self, X: Array) -> Array:
        Y = self._act("relu", X, {})
        return super().relu(X) if Y is None else Y

    def backprop_relu(self, dY: Array, X: Array | None, Y: Array) -> Array:
        dX = self._backprop("relu", dY, X, Y, {})
        return super().backprop_relu(dY, X, Y) if dX is None else dX

    def leaky_relu(self, X: Array, *, alpha: float = 0.2) -> Array:
        Y = self._act("leaky_relu", X, {"alpha": alpha})
        return super().leaky_relu(X, alpha=alpha) if Y is None else Y

    def backprop_leaky_relu(
        self, dY: Array, X: Array | None, Y: Array, *, alpha: float = 0.2
    ) -> Array:
        dX = self._backprop("leaky_relu", dY, X, Y, {"alpha": alpha})
        return super().backprop_leaky_relu(dY, X, Y, alpha=alpha) if dX is None else dX

    def sigmoid(self, X: Array) -> Array:
        Y = self._act("sigmoid", X, {})
        return super().sigmoid(X) if Y is None else Y

    def backprop_sigmoid(self, dY: Array, X: Array | None, Y: Array) -> Array:
        dX = self._backprop("sigmoid", dY, X, Y, {})
        return super().backprop_sigmoid(dY, X, Y) if dX is None else dX

    def tanh(self, X: Array) -> Array:
        Y = self._act("tanh", X, {})
        return super().tanh(X) if Y is None else Y

    def backprop_tanh(self, dY: Array, X: Array | None, Y: Array) -> Array:
        dX = self._backprop("tanh", dY, X, Y, {})
        return super().backprop_tanh(dY, X, Y) if dX is None else dX

    def gelu(self, X: Array, *, approximate: bool = False) -> Array:
        Y = self._act("gelu", X, {"approximate": approximate})
        return super().gelu(X, approximate=approximate) if Y is None else Y

    def backprop_gelu(
        self, dY: Array, X: Array | None, Y: Array, *, approximate: bool = False
    ) -> Array:
        dX = self._backprop("gelu", dY, X, Y, {"approximate": approximate})
        return super().backprop_gelu(dY, X, Y, approximate=approximate) if dX is None else dX

    def swish(self, X: Array) -> Array:
        Y = self._act("swish", X, {})
        return super().swish(X) if Y is None else Y

    def backprop_swish(self, dY: Array, X: Array | None, Y: Array) -> Array:
        dX = self._backprop("swish", dY, X, Y, {})
        return super().backprop_swish(dY, X, Y) if dX is None else dX

    # -- fused losses ----------------------------------------------------------------
    def _loss_ready(self, Z: Array, T: Array, scale: Any, *, labels: bool = False) -> bool:
        if Z.ndim != 2:
            return False
        s = None if isinstance(scale, Real) else scale
        if s is not None and tuple(s.shape) != (Z.shape[0],):
            return False
        if labels:
            ok_labels = T.dtype.name in _kernels.LABEL_CTYPE and T.flags.c_contiguous
            return ok_labels and tuple(T.shape) == (Z.shape[0],) and bool(_kernels.fast_dtype(Z, s))
        return tuple(T.shape) == tuple(Z.shape) and bool(_kernels.fast_dtype(Z, T, s))

    def softmax_cross_entropy(
        self, Z: Array, T: Array, *, scale: Any, label_smoothing: float = 0.0
    ) -> tuple[Array, Array]:
        if not self._loss_ready(Z, T, scale):
            return super().softmax_cross_entropy(Z, T, scale=scale, label_smoothing=label_smoothing)
        return _kernels.softmax_xent(Z, T, _scalar(scale), label_smoothing)

    def sparse_softmax_cross_entropy(
        self, Z: Array, labels: Array, *, scale: Any, label_smoothing: float = 0.0
    ) -> tuple[Array, Array]:
        if not self._loss_ready(Z, labels, scale, labels=True):
            return super().sparse_softmax_cross_entropy(
                Z, labels, scale=scale, label_smoothing=label_smoothing
            )
        return _kernels.sparse_softmax_xent(Z, labels, _scalar(scale), label_smoothing)

    def sigmoid_cross_entropy(
        self, Z: Array, T: Array, *, scale: Any, label_smoothing: float = 0.0
    ) -> tuple[Array, Array]:
        if not self._loss_ready(Z, T, scale):
            return super().sigmoid_cross_entropy(Z, T, scale=scale, label_smoothing=label_smoothing)
        return _kernels.sigmoid_bce(Z, T, _scalar(scale), label_smoothing)

    # -- optimizer updates, in place -----------------------------------------------------
    def adam(
        self, P: Array, G: Array, M: Array, V: Array,
        *, lr_t: float, beta1: float, beta2: float, eps: float, decay: float = 0.0,
        ok: Array | None = None, step: Any = None,
    ) -> tuple[Array, Array, Array]:  # fmt: skip
        kw = {"lr_t": lr_t, "beta1": beta1, "beta2": beta2, "eps": eps, "decay": decay,
              "ok": ok, "step": step}  # fmt: skip
        if _kernels.fast_dtype(P, G, M, V) is None or not _same_shape(P, G, M, V):
            return super().adam(P, G, M, V, **kw)
        _kernels.adam(P, G, M, V, **kw)
        return P, M, V

    def sgd(
        self, P: Array, G: Array, Vel: Array | None,
        *, lr: float, momentum: float = 0.0, nesterov: bool = False, decay: float = 0.0,
        dampening: float = 0.0, lr_in_buffer: bool = True, ok: Array | None = None,
    ) -> tuple[Array, Array | None]:  # fmt: skip
        kw: dict[str, Any] = {"dampening": dampening, "lr_in_buffer": lr_in_buffer, "ok": ok}
        if _kernels.fast_dtype(P, G, Vel) is None or not _same_shape(P, G, Vel):
            return super().sgd(P, G, Vel, lr=lr, momentum=momentum, nesterov=nesterov,
                               decay=decay, **kw)  # fmt: skip
        _kernels.sgd(P, G, Vel, lr=lr, momentum=momentum, nesterov=nesterov, decay=decay,
                     **kw)  # fmt: skip
        return P, Vel

    # -- pooling: kernels/pool.cu (_pool_kernels.py), channels-last -------------------
    def _pool_input(self, X: Array) -> Array | None:
        if X.ndim != 4 or X.dtype.name not in _kernels.CTYPE:
            return None
        return self.xp.ascontiguousarray(X)  # a channels_first layer hands a transposed view

    def max_pool2d(
        self, X: Array, *, pool: tuple[int, int], strides: tuple[int, int], padding: str
    ) -> tuple[Array, Any]:
        Xc = self._pool_input(X)
        if Xc is None:
            return super().max_pool2d(X, pool=pool, strides=strides, padding=padding)
        return _pk.cuda_max_pool2d(Xc, pool, strides, padding)

    def backprop_max_pool2d(self, dY: Array, saved: Any) -> Array:
        dYc = self._pool_input(dY)
        if dYc is None or saved[0].dtype.name != "int32" or not saved[0].flags.c_contiguous:
            return super().backprop_max_pool2d(dY, saved)
        return _pk.cuda_backprop_max_pool2d(dYc, saved)

    def avg_pool2d(
        self, X: Array, *, pool: tuple[int, int], strides: tuple[int, int], padding: str
    ) -> tuple[Array, Any]:
        Xc = self._pool_input(X)
        if Xc is None:
            return super().avg_pool2d(X, pool=pool, strides=strides, padding=padding)
        return _pk.cuda_avg_pool2d(Xc, pool, strides, padding)

    def backprop_avg_pool2d(self, dY: Array, saved: Any) -> Array:
        dYc = self._pool_input(dY)
        if dYc is None:
            return super().backprop_avg_pool2d(dY, saved)
        return _pk.cuda_backprop_avg_pool2d(dYc, saved)

    # -- convolution: _conv_fast over kernels/conv.cu, GEMMs in cuBLAS ---------------------
    def conv2d(self, X: Array, W: Array, b: Array | None, **kw: Any) -> tuple[Array, Any]:
        if _kernels.fast_dtype(W, b) is None or X.dtype != W.dtype:
            return super().conv2d(X, W, b, **kw)
        return _conv_fast.conv2d(self, self.xp.ascontiguousarray(X), W, b, **kw)

    def backprop_conv2d(
        self, dY: Array, saved: Any, *, need_dX: bool = True, need_db: bool = True
    ) -> tuple[Array | None, Array, Array | None]:
        X, W = saved[0], saved[1]
        if _kernels.fast_dtype(X, W) is None or dY.dtype != W.dtype:
            return super().backprop_conv2d(dY, saved, need_dX=need_dX, need_db=need_db)
        return _conv_fast.backprop_conv2d(self, dY, saved, need_dX=need_dX, need_db=need_db)

    def _im2col(self, X: Array, k: tuple[int, int], geo: Any) -> Array:
        if _kernels.fast_dtype(X) is None:
            return super()._im2col(X, k, geo)
        return _kernels.im2col(X, k, geo)

    def _col2im(self, dcols: Array, shape: tuple[int, ...], k: tuple[int, int], geo: Any) -> Array:
        if _kernels.fast_dtype(dcols) is None:
            return super()._col2im(dcols, shape, k, geo)
        return _kernels.col2im(dcols, shape, k, geo)

    def bias_activation(
        self, Z: Array, b: Array | None, activation: str = "linear", **kw: Any
    ) -> tuple[Array, Array | None]:
        """``(Y, Z + b or None)`` of the GEMM output ``Z`` (M, F) in one launch."""
        spec = _kernels.fused_activation(activation, kw)
        if spec is None or Z.ndim != 2 or _kernels.fast_dtype(Z, b) is None:
            return super().bias_activation(Z, b, activation, **kw)
        return _kernels.bias_act(Z, b, *spec, keep_z=activation in NEEDS_X)  # type: ignore[no-any-return]

    def backprop_bias_activation(
        self, dY: Array, Zb: Array | None, Y: Array, activation: str = "linear", *,
        need_db: bool = True, **kw: Any,
    ) -> tuple[Array, Array | None]:  # fmt: skip
        """``(dZ, db)`` of :meth:`bias_activation`: one launch and the bias sum."""
        spec = _kernels.fused_activation(activation, kw)
        saved = Zb if spec is not None and spec[0] in _kernels.NEEDS_X else Y
        if spec is None or saved is None or _kernels.fast_dtype(dY, saved) is None:
            return super().backprop_bias_activation(dY, Zb, Y, activation, need_db=need_db, **kw)
        dZ = dY if spec[0] == "Linear" else _kernels.backprop_act(dY, Zb, Y, *spec)
        return dZ, (self.xp.sum(dZ, axis=0) if need_db else None)


_BF16: dict[Any, Any] = {}  # namespace -> the bfloat16 dtype its matmul takes, or None


def _bf16(xp: Any) -> Any:
    """ml_dtypes' bfloat16 where ``xp`` is CuPy and its matmul takes it (CuPy 14 maps it
    to ``CUDA_R_16BF`` with ``CUBLAS_COMPUTE_32F``), else None: NumPy's matmul of it is
    not cuBLAS' (it answers in float32, rounded otherwise), an older CuPy refuses it."""
    if xp not in _BF16:
        _BF16[xp] = None
        if xp is not numpy:
            try:
                import ml_dtypes
                from cupy._core import _routines_linalg

                dt = numpy.dtype(ml_dtypes.bfloat16)
                _routines_linalg.to_compute_type_index(dt)  # TypeError where not taken
                _BF16[xp] = dt
            except (ImportError, TypeError, AttributeError):
                pass
    return _BF16[xp]


def refuse_bfloat16(op: str, X: Any, dtype: Any = None) -> None:
    """Raise a ``DeviceError`` naming ``op`` if ``X`` or ``dtype`` is bfloat16: the CUDA
    backend holds bfloat16 values in float32 arrays (its kernels and GEMMs take them so).

    Example:
        >>> refuse_bfloat16("asarray", numpy.zeros(2, "float32"))  # float32: fine
    """
    if "bfloat16" in f"{dtype} {getattr(X, 'dtype', '')}":
        raise DeviceError(
            f"{op}: bfloat16 arrays are not taken on 'cuda' (CuPy's bfloat16 is experimental "
            "and most ops here do not take it); give float32 data and use the "
            "'mixed_bfloat16' policy or gn.autocast(dtype=\"bfloat16\"): they keep bfloat16 "
            "values in float32 arrays and run the GEMMs in bfloat16"
        )


def _scalar(scale: Any) -> Any:
    return float(scale) if isinstance(scale, Real) else scale


def _same_shape(*arrays: Array | None) -> bool:
    return len({tuple(a.shape) for a in arrays if a is not None}) == 1


def _on_own_device(cls: type) -> type:
    """Class decorator: every public method runs with the backend's own GPU current.

    CuPy launches on the *current* device; without this, two models on ``cuda:0`` and
    ``cuda:1`` in one process would launch each other's work on whichever was current.
    """
    cls._own_methods = frozenset(vars(cls))  # type: ignore[attr-defined]  # its real overrides
    for name in dir(cls):
        fn = inspect.getattr_static(cls, name)
        if name.startswith("__") or not isinstance(fn, types.FunctionType):
            continue

        def run(self: Any, *args: Any, _fn: Any = fn, **kwargs: Any) -> Any:
            dev = self.__dict__.get("_dev")  # None while __init__ is still running
            if dev is None:
                return _fn(self, *args, **kwargs)
            with dev:
                return _fn(self, *args, **kwargs)

        wrapped = functools.wraps(fn)(run)
        wrapped._device_wrapper = True  # type: ignore[attr-defined]
        setattr(cls, name, wrapped)
    return cls


@_on_own_device
class CupyOps(FusedOps):
    """The backend of CUDA device ``index`` (``"cuda:N"``).

    NOTE: CuPy launches on the *current* device, so creating the backend of GPU
    ``index`` makes it current; the overrides here also enter it explicitly.
    """

    name = "cupy"
    accum_dtype = "float64"  # a running sum costs the same in float64 on a GPU

    def __init__(self, index: int = 0) -> None:
        super().__init__()
        cupy = _compat.cupy_or_none()
        if cupy is None:
            raise DeviceError(f"device 'cuda:{index}' needs CuPy: {_compat.INSTALL_HINT}")
        self.xp = cupy
        self.index = int(index)
        self.device = f"cuda:{self.index}"
        self.is_host = False
        self._dev = cupy.cuda.Device(self.index)
        self._dev.use()
        self._rng: Any = None
        self._rng_epoch = -1
        self._stager = _PinnedStager(cupy)

    # -- creation and transfer ---------------------------------------------------------
    def asarray(self, X: Any, dtype: Any = None) -> Array:
        refuse_bfloat16("asarray", X, dtype)
        with self._dev:
            return self.xp.asarray(X, dtype=None if dtype is None else numpy.dtype(dtype))

    def to_numpy(self, X: Array) -> numpy.ndarray:
        if isinstance(X, numpy.ndarray):
            return X
        self.host_syncs += 1  # a blocking device->host copy
        return self.xp.asnumpy(X)  # type: ignore[no-any-return]

    def synchronize(self) -> None:
        self._dev.synchronize()

    def random_uniform(self, shape: tuple[int, ...], dtype: Any) -> Array:
        # drawn on the device, so dropout masks never cross the bus; the generator
        # is reseeded from the host "dropout" stream whenever the global seed changes
        if self._rng is None or self._rng_epoch != grandom.seed_epoch():
            seed = int(grandom.generator("dropout").integers(2**63))
            with self._dev:
                self._rng = self.xp.random.default_rng(seed)
            self._rng_epoch = grandom.seed_epoch()
        dt = numpy.dtype(dtype)
        with self._dev:
            draws = self._rng.random(shape, dtype=dt if dt.itemsize >= 4 else numpy.float32)
            return draws if draws.dtype == dt else self.xp.astype(draws, dt)

    # -- memory and data movement ------------------------------------------------------
    def fits_in_memory(self, nbytes: int) -> bool:
        with self._dev:
            free, _total = self.xp.cuda.runtime.memGetInfo()
        free += self.xp.get_default_memory_pool().free_bytes()
        return nbytes <= DATA_FRACTION * free

    def upload_rows(self, X: numpy.ndarray, rows: Any) -> Array:
        with self._dev:
            return self._stager.upload(X, rows)

    def free_memory(self) -> None:
        self._stager.release()
        self.xp.get_default_memory_pool().free_all_blocks()
        self.xp.get_default_pinned_memory_pool().free_all_blocks()

    def is_out_of_memory(self, exc: BaseException) -> bool:
        # cuBLAS and the runtime report allocation failures with their own types
        text = str(exc)
        return super().is_out_of_memory(exc) or any(
            s in text for s in ("cudaErrorMemoryAllocation", "CUBLAS_STATUS_ALLOC_FAILED")
        )


class _PinnedStager:
    """Host->device copies of gathered batches through a ring of pinned buffers.

    The host gathers batch rows into a pinned (page-locked) buffer and the copy
    runs asynchronously on the current stream, ordered before the batch's kernels.
    A buffer is refilled only after the copy issued from it ``RING`` uploads ago
    has finished: the host then runs at most a few batches ahead of the device,
    and nothing is read back.
    """

    RING = 8

    def __init__(self, cupy: Any) -> None:
        self.cupy = cupy
        self.slots: list[Any] = [None] * self.RING  # (pinned memory, event)
        self.k = 0

    def upload(self, X: numpy.ndarray, rows: Any) -> Any:
        cupy = self.cupy
        n = len(range(*rows.indices(X.shape[0]))) if isinstance(rows, slice) else len(rows)
        shape = (n, *X.shape[1:])
        nbytes = n * X.itemsize * int(numpy.prod(X.shape[1:], dtype=numpy.int64))
        i, self.k = self.k % self.RING, self.k + 1
        mem, event = self.slots[i] or (None, None)
        if event is not None:
            event.synchronize()  # the copy out of this buffer RING uploads ago
        if mem is None or mem.size() < nbytes:
            mem = cupy.cuda.alloc_pinned_memory(max(nbytes, 1))
        host = numpy.ndarray(shape, X.dtype, buffer=mem)  # a view of the pinned buffer
        if isinstance(rows, slice):
            host[...] = X[rows]
        else:
            numpy.take(X, rows, axis=0, out=host)
        out = cupy.empty(shape, X.dtype)
        stream = cupy.cuda.get_current_stream()
        out.set(host, stream=stream)
        event = cupy.cuda.Event(block=False, disable_timing=True)
        event.record(stream)
        self.slots[i] = (mem, event)
        return out

    def release(self) -> None:
        self.slots = [None] * self.RING
