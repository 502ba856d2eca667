"""``NumpyOps``: the CPU backend. Same results as the reference ``Ops`` (to
rounding), faster: the elementwise work around the matrix products and the
optimizer updates run in the host build of ``kernels/`` (one multi-threaded pass
each), matrix products write straight into their destination (``out=``), and
everything falls back to the reference when the host kernels are unavailable or
an input is outside their fast path (dtype, layout, activation).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpunet.backend import _host
from gpunet.backend._activation_ops import NEEDS_X
from gpunet.backend.ops import Ops

Array = Any
_SUFFIX = {np.dtype("float32"): "f32", np.dtype("float64"): "f64"}


def _ptr(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


def _fast(*arrays: Any) -> str | None:
    """The kernel suffix when every array is a C-contiguous f32/f64 ndarray of one dtype."""
    first = arrays[0]
    suffix = _SUFFIX.get(getattr(first, "dtype", None))  # type: ignore[arg-type]
    if suffix is None:
        return None
    for a in arrays:
        if a is not None and (
            not isinstance(a, np.ndarray) or a.dtype != first.dtype or not a.flags.c_contiguous
        ):
            return None
    return suffix


def _act_code(activation: str, kw: dict[str, Any]) -> tuple[int, float] | None:
    if activation == "gelu" and kw.get("approximate"):
        return 6, 0.0
    code = _host.ACT_CODES.get(activation)
    if code is None or (set(kw) - {"alpha", "approximate"}):
        return None
    return code, float(kw.get("alpha", 0.2))


class NumpyOps(Ops):
    name = "numpy"
    xp = np
    device = "cpu"
    accum_dtype = "float64"

    def __init__(self) -> None:
        super().__init__()
        self.host = _host.load()

    def to_numpy(self, X: Array) -> np.ndarray:
        return np.asarray(X)  # host memory already: not a sync

    def assign(self, dst: Array, src: Any) -> None:
        if src is not dst:
            np.copyto(dst, src)

    def iadd(self, dst: Array, src: Array) -> None:
        np.add(dst, src, out=dst)

    # -- dense ------------------------------------------------------------------
    def dense(
        self, X: Array, W: Array, b: Array | None, activation: str = "linear", **kw: Any
    ) -> tuple[Array, Array | None]:
        act = _act_code(activation, kw)
        suffix = _fast(X, W, b)
        if self.host is None or act is None or suffix is None or X.ndim != 2:
            return super().dense(X, W, b, activation, **kw)
        Y = np.matmul(X, W)
        Z = np.empty_like(Y) if activation in NEEDS_X else None
        B, O = Y.shape
        self.host.bias_act[suffix](Y.ctypes.data, _ptr(Z), _ptr(b), B, O, act[0], act[1])  # type: ignore[attr-defined]
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
        act = _act_code(activation, kw)
        suffix = _fast(dY, X, W, Y, Z, dW_out, db_out)
        if self.host is None or act is None or suffix is None or dY.ndim != 2:
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
        B, O = dY.shape
        dZ = np.empty_like(dY)  # dY may be shared with another branch of the graph
        db = (db_out if db_out is not None else np.empty(O, dY.dtype)) if need_db else None
        self.host.act_bwd[suffix](
            dZ.ctypes.data,
            dY.ctypes.data,
            _ptr(Z),
            Y.ctypes.data,  # type: ignore[attr-defined]
            _ptr(db),
            B,
            O,
            act[0],
            act[1],
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

    def softmax_cross_entropy(
        self, Z: Array, T: Array, *, scale: Any, label_smoothing: float = 0.0
    ) -> tuple[Array, Array]:
        suffix, sc = _fast(Z, T), self._scale_args(scale, Z.dtype)
        if self.host is None or suffix is None or sc is None or Z.ndim != 2:
            return super().softmax_cross_entropy(Z, T, scale=scale, label_smoothing=label_smoothing)
        B, C = Z.shape
        L, dZ = np.empty(B, Z.dtype), np.empty_like(Z)
        self.host.softmax_xent[suffix](
            L.ctypes.data,
            dZ.ctypes.data,
            Z.ctypes.data,
            None,  # type: ignore[attr-defined]
            T.ctypes.data,
            B,
            C,
            label_smoothing,
            sc[0],
            sc[1],
        )
        return L, dZ

    def sparse_softmax_cross_entropy(
        self, Z: Array, labels: Array, *, scale: Any, label_smoothing: float = 0.0
    ) -> tuple[Array, Array]:
        suffix, sc = _fast(Z), self._scale_args(scale, Z.dtype)
        ok = isinstance(labels, np.ndarray) and labels.dtype == np.int64 and labels.ndim == 1
        if self.host is None or suffix is None or sc is None or not ok or Z.ndim != 2:
            return super().sparse_softmax_cross_entropy(
                Z, labels, scale=scale, label_smoothing=label_smoothing
            )
        labels = np.ascontiguousarray(labels)
        B, C = Z.shape
        L, dZ = np.empty(B, Z.dtype), np.empty_like(Z)
        self.host.softmax_xent[suffix](
            L.ctypes.data,
            dZ.ctypes.data,
            Z.ctypes.data,  # type: ignore[attr-defined]
            labels.ctypes.data,
            None,
            B,
            C,
            label_smoothing,
            sc[0],
            sc[1],
        )
        return L, dZ

    def sigmoid_cross_entropy(
        self, Z: Array, T: Array, *, scale: Any, label_smoothing: float = 0.0
    ) -> tuple[Array, Array]:
        suffix, sc = _fast(Z, T), self._scale_args(scale, Z.dtype)
        if self.host is None or suffix is None or sc is None or Z.ndim != 2:
            return super().sigmoid_cross_entropy(Z, T, scale=scale, label_smoothing=label_smoothing)
        B, K = Z.shape
        L, dZ = np.empty(B, Z.dtype), np.empty_like(Z)
        self.host.sigmoid_bce[suffix](
            L.ctypes.data,
            dZ.ctypes.data,
            Z.ctypes.data,  # type: ignore[attr-defined]
            T.ctypes.data,
            B,
            K,
            label_smoothing,
            sc[0],
            sc[1],
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
    ) -> tuple[Array, Array, Array]:
        suffix = _fast(P, G, M, V)
        if self.host is None or suffix is None:
            return super().adam(
                P, G, M, V, lr_t=lr_t, beta1=beta1, beta2=beta2, eps=eps, decay=decay
            )
        self.host.adam[suffix](
            P.ctypes.data,
            G.ctypes.data,
            M.ctypes.data,
            V.ctypes.data,  # type: ignore[attr-defined]
            P.size,
            lr_t,
            beta1,
            beta2,
            eps,
            1.0 - decay,
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
    ) -> tuple[Array, Array | None]:
        vel = Vel if momentum else None
        suffix = _fast(P, G, vel)
        if self.host is None or suffix is None:
            return super().sgd(P, G, Vel, lr=lr, momentum=momentum, nesterov=nesterov, decay=decay)
        self.host.sgd[suffix](
            P.ctypes.data,
            G.ctypes.data,
            _ptr(vel),
            P.size,
            lr,
            momentum,  # type: ignore[attr-defined]
            int(nesterov),
            1.0 - decay,
        )
        return P, Vel
