"""``NumpyOps``: the CPU backend. Same results as the reference ``Ops`` (to
rounding), faster: the elementwise work around the matrix products and the
optimizer updates run in the host build of ``kernels/`` (one multi-threaded pass
each), matrix products write straight into their destination (``out=``), and
everything falls back to the reference when the host kernels are unavailable or
an input is outside their fast path (dtype, layout, activation).

Convolutions run the reference's im2col + GEMM algorithm over the host kernels
(``_conv_fast``): gather im2col/col2im, bias and activation fused after the GEMM.

Small arrays skip the kernels: below ``HOST_MIN`` elements one or two in-place
ufuncs cost less than a ctypes call, whose array pointers take ~1 us each to fetch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gpunet.backend import _host
from gpunet.backend._activation_ops import NEEDS_X
from gpunet.backend._attention_host import HostAttentionOps
from gpunet.backend._host_conv import HostConvOps, _act_code, _fast, _ptr
from gpunet.backend._optim_ops import _sgd_coefficients
from gpunet.backend._rnn_fused import HostRecurrentOps
from gpunet.backend.ops import Ops

Array = Any
HOST_MIN = 8192
LOSS_HOST_MIN = 1024  # a loss replaces ~20 ufunc calls: worth a kernel call sooner


class NumpyOps(HostConvOps, HostRecurrentOps, HostAttentionOps, Ops):
    name = "numpy"
    xp = np
    device = "cpu"
    accum_dtype = "float64"

    def __init__(self) -> None:
        super().__init__()
        self.host: Any = _host.load()  # HostKernels, or None: the NumPy paths
        self._owned: dict[int, tuple[np.ndarray, int]] = {}

    def matmul(self, A: Array, B: Array) -> Array:
        return np.matmul(A, B)  # no half BLAS: a mixed policy's GEMMs stay float32

    def gemm(
        self, A: Array, B: Array, *, trans1: bool = False, trans2: bool = False,
        out: Array | None = None,
    ) -> Array:  # fmt: skip
        """The product written into ``out`` by BLAS itself (no copy) when it fits."""
        C = self._pool_gemm(A, B, trans1, trans2, out)
        if C is not None:
            return C
        fits = out is not None and type(self).matmul is NumpyOps.matmul
        if not fits or out.dtype != np.result_type(A, B) or out.shape != (  # type: ignore[union-attr]
            *np.broadcast_shapes(A.shape[:-2], B.shape[:-2]),
            A.shape[-1 if trans1 else -2], B.shape[-2 if trans2 else -1],
        ):  # fmt: skip
            return super().gemm(A, B, trans1=trans1, trans2=trans2, out=out)
        A = np.matrix_transpose(A) if trans1 else A
        return np.matmul(A, np.matrix_transpose(B) if trans2 else B, out=out)

    # multiply-adds from which a 2-d product's rows are split over the host pool, each part
    # a one-thread BLAS call: the pool's spinning workers start at once, where OpenBLAS's
    # napping one took 60-160 us to wake for each of an encoder step's 13 products (a step
    # at 2 threads: 1-2.8 ms less, paired in one process)
    pool_gemm_from = 1 << 22

    def _pool_gemm(self, A: Array, B: Array, t1: bool, t2: bool, out: Any) -> Array | None:
        """``op(A) @ op(B)`` over the host pool (see ``pool_gemm_from``), or None."""
        h = self.host
        if h is None or not h.blas or not h.spin or A.ndim != 2 or B.ndim != 2:
            return None  # without the spin, OpenBLAS's own threads were faster
        M, K = (A.shape[1], A.shape[0]) if t1 else A.shape
        N = B.shape[0] if t2 else B.shape[1]
        if M * N * K < self.pool_gemm_from or (B.shape[1] if t2 else B.shape[0]) != K:
            return None
        if h.threads < 2:
            return None
        suffix = _fast(A, B, out)
        if suffix is None:
            return None
        if out is not None and out.shape != (M, N):
            return None
        from gpunet.backend import _blas_threads

        if not _blas_threads.available():
            return None
        C = np.empty((M, N), A.dtype) if out is None else out
        with _blas_threads.one_blas_thread():
            h.pool_gemm[suffix](C.ctypes.data, A.ctypes.data, B.ctypes.data, M, N, K,
                                int(t1), int(t2), A.shape[1], B.shape[1])  # fmt: skip
        return C

    def to_numpy(self, X: Array) -> np.ndarray:
        return np.asarray(X)  # host memory already: not a sync

    def is_finite_scalar(self, X: Array) -> bool:
        return math.isfinite(X)

    def assign(self, dst: Array, src: Any) -> None:
        if src is not dst:
            np.copyto(dst, src)

    def iadd(self, dst: Array, src: Array) -> None:
        np.add(dst, src, out=dst)

    def embedding_backward(self, ids: Array, dY: Array, n: int, out: Array | None = None) -> Array:
        """The segment sum by a stable sort and ``add.reduceat`` (each id's rows summed
        in their order, no running-sum cancellation; 1.4x faster than ``add.at``)."""
        flat = ids.reshape(-1)
        G = dY.reshape(flat.shape[0], dY.shape[-1])
        dW = np.zeros((n, G.shape[1]), dY.dtype) if out is None else out
        if out is not None:
            dW.fill(0)
        if flat.size == 0:
            return dW
        order = np.argsort(flat, kind="stable")
        keys = flat[order]
        starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        dW[keys[starts]] = np.add.reduceat(G[order], starts, axis=0)
        return dW

    def _addr(self, a: np.ndarray) -> int:
        """Pointer of a long-lived owning buffer (flat parameters and optimizer state),
        fetched once: optimizer steps reuse the same few buffers forever."""
        hit = self._owned.get(id(a))
        if hit is not None and hit[0] is a:
            return hit[1]
        if a.base is not None:  # views come and go: do not keep them alive
            return int(a.ctypes.data)
        if len(self._owned) > 256:
            self._owned.clear()
        addr = int(a.ctypes.data)
        self._owned[id(a)] = (a, addr)
        return addr

    # -- dense ------------------------------------------------------------------
    def dense(
        self, X: Array, W: Array, b: Array | None, activation: str = "linear", **kw: Any
    ) -> tuple[Array, Array | None]:
        if X.ndim != 2 or self.host is None or X.shape[0] * W.shape[1] < HOST_MIN:
            if activation not in ("relu", "linear") or kw or X.ndim != 2:
                return super().dense(X, W, b, activation, **kw)
            Y = np.matmul(X, W)  # a small layer: in-place ufuncs, as the reference computes
            if b is not None:
                np.add(Y, b, out=Y)
            if activation == "relu":
                np.maximum(Y, 0.0, out=Y)
            return Y, None
        act = _act_code(activation, kw)
        suffix = _fast(X, W, b)
        if act is None or suffix is None:
            return super().dense(X, W, b, activation, **kw)
        Y = np.matmul(X, W)
        Z = np.empty_like(Y) if activation in NEEDS_X else None
        B, O = Y.shape
        self.host.bias_act[suffix](Y.ctypes.data, _ptr(Z), _ptr(b), B, O, act[0], act[1])
        return Y, Z

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
        small = dY.ndim != 2 or dY.size < HOST_MIN or self.host is None
        act = None if small else _act_code(activation, kw)
        suffix = None if act is None else _fast(dY, X, W, Y, Z, dW_out, db_out)
        if act is None or suffix is None:
            small_ok = activation in ("relu", "linear") and not kw and dY.ndim == 2
            if not small_ok or (dW_out is None and db_out is None):
                return super().backprop_dense(
                    dY,
                    X,
                    W,
                    Z,
                    Y,
                    activation,
                    need_dX=need_dX,
                    need_db=need_db,
                    dW_out=dW_out,
                    db_out=db_out,
                    **kw,
                )
            # as the reference backward (linear: dY itself), without its wrappers and cast
            dZ = dY if activation == "linear" else dY * (Y > 0)
            db = np.add.reduce(dZ, axis=0, out=db_out) if need_db else None
            dW = np.matmul(X.T, dZ, out=dW_out)
            return (np.matmul(dZ, W.T) if need_dX else None), dW, db
        B, O = dY.shape
        dZ = np.empty_like(dY)  # dY may be shared with another branch of the graph
        db = (db_out if db_out is not None else np.empty(O, dY.dtype)) if need_db else None
        self.host.act_bwd[suffix](
            dZ.ctypes.data, dY.ctypes.data, _ptr(Z), Y.ctypes.data, _ptr(db), B, O, act[0], act[1]
        )
        dW = np.matmul(X.T, dZ, out=dW_out)
        dX = np.matmul(dZ, W.T) if need_dX else None
        return dX, dW, db

    # -- fused losses -----------------------------------------------------------
    def _scale_args(self, scale: Any, dtype: Any) -> tuple[int | None, float] | None:
        if isinstance(scale, (int, float)):
            return None, float(scale)
        if isinstance(scale, np.ndarray) and scale.dtype == dtype and scale.flags.c_contiguous:
            return scale.ctypes.data, 0.0
        return None

    def _loss_args(self, Z: Array, *others: Array, scale: Any) -> tuple[str, Any] | None:
        if Z.ndim != 2 or Z.size < LOSS_HOST_MIN or self.host is None:
            return None
        suffix, sc = _fast(Z, *others), self._scale_args(scale, Z.dtype)
        return None if suffix is None or sc is None else (suffix, sc)

    def squared_error(self, P: Array, T: Array, *, scale: float) -> tuple[Array, Array]:
        """One pass of the host kernel (sums in double per chunk of 4096)."""
        suffix = _fast(P, T) if self.host is not None and P.size >= LOSS_HOST_MIN else None
        if suffix is None or P.shape != T.shape:
            return super().squared_error(P, T, scale=scale)
        G, total = np.empty_like(P), np.zeros(1)
        self.host.sq_err[suffix](G.ctypes.data, total.ctypes.data, P.ctypes.data,
                                 T.ctypes.data, P.size, scale)  # fmt: skip
        return total.astype(P.dtype).reshape(()), G

    def softmax_cross_entropy(
        self, Z: Array, T: Array, *, scale: Any, label_smoothing: float = 0.0
    ) -> tuple[Array, Array]:
        args = self._loss_args(Z, T, scale=scale)
        if args is None:
            return super().softmax_cross_entropy(Z, T, scale=scale, label_smoothing=label_smoothing)
        (suffix, (sc, s)), (B, C) = args, Z.shape
        L, dZ = np.empty(B, Z.dtype), np.empty_like(Z)
        self.host.softmax_xent[suffix](
            L.ctypes.data,
            dZ.ctypes.data,
            Z.ctypes.data,
            None,
            T.ctypes.data,
            B,
            C,
            label_smoothing,
            sc,
            s,
        )
        return L, dZ

    def sparse_softmax_cross_entropy(
        self, Z: Array, labels: Array, *, scale: Any, label_smoothing: float = 0.0
    ) -> tuple[Array, Array]:
        ok = type(labels) is np.ndarray and labels.dtype == np.int64 and labels.ndim == 1
        args = self._loss_args(Z, scale=scale) if ok else None
        if args is None:
            return super().sparse_softmax_cross_entropy(
                Z, labels, scale=scale, label_smoothing=label_smoothing
            )
        (suffix, (sc, s)), (B, C) = args, Z.shape
        labels = np.ascontiguousarray(labels)
        L, dZ = np.empty(B, Z.dtype), np.empty_like(Z)
        self.host.softmax_xent[suffix](
            L.ctypes.data,
            dZ.ctypes.data,
            Z.ctypes.data,
            labels.ctypes.data,
            None,
            B,
            C,
            label_smoothing,
            sc,
            s,
        )
        return L, dZ

    def sigmoid_cross_entropy(
        self, Z: Array, T: Array, *, scale: Any, label_smoothing: float = 0.0
    ) -> tuple[Array, Array]:
        args = self._loss_args(Z, T, scale=scale)
        if args is None:
            if label_smoothing or Z.ndim != 2:
                return super().sigmoid_cross_entropy(
                    Z, T, scale=scale, label_smoothing=label_smoothing
                )
            # softplus(z) = log(1 + e^z) serves both results: the loss is
            # softplus(z) - z t, and sigmoid(z) = exp(z - softplus(z)); logaddexp never
            # overflows, and 7 ufunc calls replace the reference's 17 on tiny batches
            sp = np.logaddexp(0.0, Z)
            l = Z * T
            np.subtract(sp, l, out=l)
            np.subtract(Z, sp, out=sp)
            np.exp(sp, out=sp)
            np.copyto(sp, 1.0, where=Z == np.inf)  # inf - inf above; sigmoid(inf) = 1
            np.subtract(sp, T, out=sp)
            sp *= self._row_scale(scale, Z.shape[-1])
            return (l[:, 0] if Z.shape[-1] == 1 else np.mean(l, axis=-1)), sp
        (suffix, (sc, s)), (B, K) = args, Z.shape
        L, dZ = np.empty(B, Z.dtype), np.empty_like(Z)
        self.host.sigmoid_bce[suffix](
            L.ctypes.data,
            dZ.ctypes.data,
            Z.ctypes.data,
            T.ctypes.data,
            B,
            K,
            label_smoothing,
            sc,
            s,
        )
        return L, dZ

    # -- optimizers: in place, one pass --------------------------------------------
    def adam(
        self,
        P: Array,
        G: Array,
        M: Array,
        V: Array,
        *,
        lr_t: float,
        beta1: float,
        beta2: float,
        eps: float,
        decay: float = 0.0,
        ok: Array | None = None,
        step: Any = None,
    ) -> tuple[Array, Array, Array]:
        # a step guard comes only from devices; the reference returns new arrays for it
        guarded = ok is not None or step is not None
        suffix = None if self.host is None or guarded else _fast(P, G, M, V)
        if suffix is None:
            return super().adam(P, G, M, V, lr_t=lr_t, beta1=beta1, beta2=beta2, eps=eps,
                                decay=decay, step=step)  # fmt: skip
        addr = self._addr
        self.host.adam[suffix](
            addr(P), addr(G), addr(M), addr(V), P.size, lr_t, beta1, beta2, eps, 1.0 - decay
        )
        return P, M, V

    def sgd(
        self,
        P: Array,
        G: Array,
        Vel: Array | None,
        *,
        lr: float,
        momentum: float = 0.0,
        nesterov: bool = False,
        decay: float = 0.0,
        dampening: float = 0.0,
        lr_in_buffer: bool = True,
        ok: Array | None = None,
    ) -> tuple[Array, Array | None]:
        vel = Vel if momentum else None
        suffix = None if self.host is None or ok is not None else _fast(P, G, vel)
        kw: dict[str, Any] = {"dampening": dampening, "lr_in_buffer": lr_in_buffer}
        if suffix is None:
            return super().sgd(
                P, G, Vel, lr=lr, momentum=momentum, nesterov=nesterov, decay=decay, **kw
            )
        a, s = _sgd_coefficients(lr, **kw)
        addr = self._addr
        self.host.sgd[suffix](
            addr(P),
            addr(G),
            None if vel is None else addr(vel),
            P.size,
            lr,
            momentum,
            a,
            s,
            int(nesterov),
            1.0 - decay,
        )
        return P, Vel

    # -- layer norm: statistics, normalization and affine in one pass over each row ------
    def layernorm(
        self, X: Array, gamma: Array, beta: Array, *, epsilon: float,
        residual: Array | None = None,
    ) -> tuple[Array, Array, Array]:  # fmt: skip
        C = X.shape[-1] if X.ndim else 0
        ok = self.host is not None and X.size >= HOST_MIN and C > 0
        ok = ok and gamma.shape == beta.shape == (C,)
        ok = ok and (residual is None or getattr(residual, "shape", None) == X.shape)
        suffix = _fast(X, gamma, beta, residual) if ok else None
        if suffix is None:
            return super().layernorm(X, gamma, beta, epsilon=epsilon, residual=residual)
        Y, Xhat = np.empty_like(X), np.empty_like(X)
        inv = np.empty((*X.shape[:-1], 1), X.dtype)
        self.host.layernorm[suffix](Y.ctypes.data, Xhat.ctypes.data, inv.ctypes.data,
                                    X.ctypes.data, _ptr(residual), gamma.ctypes.data,
                                    beta.ctypes.data, X.size // C, C, epsilon)  # fmt: skip
        return Y, Xhat, inv

    def backprop_layernorm(
        self, dY: Array, Xhat: Array, inv_std: Array, gamma: Array
    ) -> tuple[Array, Array, Array]:
        C = dY.shape[-1] if dY.ndim else 0
        ok = self.host is not None and dY.size >= HOST_MIN and C > 0 and gamma.shape == (C,)
        ok = ok and dY.shape == Xhat.shape and inv_std.shape == (*dY.shape[:-1], 1)
        suffix = _fast(dY, Xhat, inv_std, gamma) if ok else None
        if suffix is None:
            return super().backprop_layernorm(dY, Xhat, inv_std, gamma)
        dX, dg, db = np.empty_like(dY), np.empty(C, dY.dtype), np.empty(C, dY.dtype)
        self.host.layernorm_bwd[suffix](dX.ctypes.data, dg.ctypes.data, db.ctypes.data,
                                        dY.ctypes.data, Xhat.ctypes.data, inv_std.ctypes.data,
                                        gamma.ctypes.data, dY.size // C, C)  # fmt: skip
        return dX, dg, db
