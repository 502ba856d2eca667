"""The recurrent cells as fused kernels (``kernels/rnn.cu``, ``kernels/rnn.cuh``): one
pass per time step instead of a dozen elementwise array ops, forward and backward.

``FusedRecurrentOps`` launches the CUDA kernels (through the active runner, so the
tests run the same launchers over the host-built kernels); ``HostRecurrentOps`` calls
the host build (``kernels/host.cpp``) from ``NumpyOps``. Both take Keras' default
activations (tanh, sigmoid gates) on C-contiguous arrays of a kernel dtype (float16 too
on the GPU, float32/float64 on the host) and leave everything else to the reference
in ``_rnn_ops.py``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from gpunet.backend import _kernels
from gpunet.backend._blas_threads import one_blas_thread
from gpunet.backend._kernels import _NULL, BLOCK, CTYPE, _check, _launch
from gpunet.backend._rnn_host_loop import HostLoops
from gpunet.backend._rnn_ops import RecurrentOps

Array = Any
_i64 = np.int64
_DEFAULT = ("tanh", "sigmoid")


def _flat_mask(xp: Any, m: Array | None) -> Array | None:
    """The step's (batch, 1) mask column as a contiguous (batch,) array."""
    return None if m is None else xp.ascontiguousarray(xp.reshape(m, (-1,)))


# -- CUDA launchers ---------------------------------------------------------------------
def lstm_step(Z: Array, c_prev: Array, h_prev: Array | None, m: Array | None) -> tuple[Any, Any]:
    xp, dt = _kernels.runner().xp, Z.dtype.name
    B, U = c_prev.shape
    for what, A, shape in (("Z", Z, (B, 4 * U)), ("c_prev", c_prev, (B, U))):
        _check(what, A, dt, shape)
    h, c = xp.empty_like(c_prev), xp.empty_like(c_prev)
    mb = _flat_mask(xp, m)
    _launch("rnn.cu", f"gpunet_lstm_step<{CTYPE[dt]}>", B * U, BLOCK,
            (h, c, Z, c_prev, _NULL if mb is None else h_prev, _NULL if mb is None else mb,
             _i64(B), _i64(U)))  # fmt: skip
    return h, c


def lstm_backward(
    dh: Array, dc: Array | None, Z: Array, c_prev: Array, m: Array | None
) -> tuple[Any, Any, Any]:
    xp, dt = _kernels.runner().xp, Z.dtype.name
    B, U = c_prev.shape
    _check("dh", dh, dt, (B, U))
    dZ, dc_prev = xp.empty_like(Z), xp.empty_like(c_prev)
    mb = _flat_mask(xp, m)
    carry = None if mb is None else xp.empty_like(c_prev)
    _launch("rnn.cu", f"gpunet_lstm_backward<{CTYPE[dt]}>", B * U, BLOCK,
            (dZ, dc_prev, _NULL if carry is None else carry, dh, _NULL if dc is None else dc,
             Z, c_prev, _NULL if mb is None else mb, _i64(B), _i64(U)))  # fmt: skip
    return dZ, carry, dc_prev


def gru_step(Zx: Array, Zh: Array | None, h_prev: Array, m: Array | None) -> Any:
    xp, dt = _kernels.runner().xp, Zx.dtype.name
    B, U = h_prev.shape
    _check("Zx", Zx, dt, (B, 3 * U))
    h = xp.empty_like(h_prev)
    mb = _flat_mask(xp, m)
    _launch("rnn.cu", f"gpunet_gru_step<{CTYPE[dt]}>", B * U, BLOCK,
            (h, Zx, _NULL if Zh is None else Zh, h_prev, _NULL if mb is None else mb,
             _i64(B), _i64(U)))  # fmt: skip
    return h


def gru_backward(
    dh: Array, Zx: Array, Zh: Array | None, h_prev: Array, m: Array | None
) -> tuple[Any, Any, Any]:
    xp, dt = _kernels.runner().xp, Zx.dtype.name
    B, U = h_prev.shape
    _check("dh", dh, dt, (B, U))
    dZx, dh_prev = xp.empty_like(Zx), xp.empty_like(h_prev)
    dZh = None if Zh is None else xp.empty_like(Zh)
    mb = _flat_mask(xp, m)
    _launch("rnn.cu", f"gpunet_gru_backward<{CTYPE[dt]}>", B * U, BLOCK,
            (dZx, _NULL if dZh is None else dZh, dh_prev, dh, Zx, _NULL if Zh is None else Zh,
             h_prev, _NULL if mb is None else mb, _i64(B), _i64(U)))  # fmt: skip
    return dZx, dZh, dh_prev


class FusedRecurrentOps(RecurrentOps):
    """Mixin of ``FusedOps``: the LSTM and GRU steps as one kernel launch each."""

    @staticmethod
    def _fused(acts: tuple[str, str], *arrays: Any) -> bool:
        return acts == _DEFAULT and _kernels.fast_dtype(*arrays) is not None

    def lstm_step(self, Z: Array, c_prev: Array, h_prev: Array | None, m: Array | None,
                  activation: str = "tanh",
                  recurrent_activation: str = "sigmoid") -> tuple[Array, Array]:  # fmt: skip
        if not self._fused((activation, recurrent_activation), Z, c_prev, h_prev):
            return super().lstm_step(Z, c_prev, h_prev, m, activation, recurrent_activation)
        return lstm_step(Z, c_prev, h_prev, m)

    def backprop_lstm_step(self, dh: Array, dc: Array | None, Z: Array, c_prev: Array,
                           m: Array | None, activation: str = "tanh",
                           recurrent_activation: str = "sigmoid") -> Any:  # fmt: skip
        if not self._fused((activation, recurrent_activation), dh, dc, Z, c_prev):
            return super().backprop_lstm_step(dh, dc, Z, c_prev, m, activation,
                                              recurrent_activation)  # fmt: skip
        return lstm_backward(dh, dc, Z, c_prev, m)

    def gru_step(self, Zx: Array, Zh: Array | None, h_prev: Array, m: Array | None,
                 activation: str = "tanh",
                 recurrent_activation: str = "sigmoid") -> Array:  # fmt: skip
        if not self._fused((activation, recurrent_activation), Zx, Zh, h_prev):
            return super().gru_step(Zx, Zh, h_prev, m, activation, recurrent_activation)
        return gru_step(Zx, Zh, h_prev, m)

    def backprop_gru_step(self, dh: Array, Zx: Array, Zh: Array | None, h_prev: Array,
                          m: Array | None, activation: str = "tanh",
                          recurrent_activation: str = "sigmoid") -> Any:  # fmt: skip
        if not self._fused((activation, recurrent_activation), dh, Zx, Zh, h_prev):
            return super().backprop_gru_step(dh, Zx, Zh, h_prev, m, activation,
                                             recurrent_activation)  # fmt: skip
        return gru_backward(dh, Zx, Zh, h_prev, m)


# -- the host build ------------------------------------------------------------------------
_SUFFIX = {np.dtype("float32"): "f32", np.dtype("float64"): "f64"}
_LOOPS: dict[tuple[Any, Any], HostLoops] = {}


def _p(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


class HostRecurrentOps(RecurrentOps):
    """Mixin of ``NumpyOps``: the LSTM and GRU steps in the host build of the kernels."""

    host: Any

    def _host_fn(self, name: str, acts: tuple[str, str], *arrays: Any) -> Any:
        if self.host is None or acts != _DEFAULT:
            return None
        suffix = _SUFFIX.get(arrays[0].dtype)
        for a in arrays:
            if a is not None and (
                type(a) is not np.ndarray or a.dtype != arrays[0].dtype or not a.flags.c_contiguous
            ):
                return None
        return None if suffix is None else getattr(self.host, name)[suffix]

    def recurrent_loops(self, cell: Any, Z: Array, U: Array, H: Array, rdp: Array | None) -> Any:
        acts = (cell.activation, cell.recurrent_activation)
        fast = cell.kind == "lstm" or (cell.kind == "gru" and cell.reset_after)
        if not fast or self._host_fn("lstm_step", acts, Z, H, rdp) is None:
            return None
        if type(U) is not np.ndarray or U.dtype != Z.dtype:
            return None
        key = (self.host, Z.dtype)  # the build itself, not its id: ids are reused
        if key not in _LOOPS:  # a few entries: one per kernel build and dtype
            _LOOPS[key] = HostLoops(self.host, _SUFFIX[Z.dtype])
        return _LOOPS[key]

    def step_loop_scope(self) -> AbstractContextManager[Any]:
        return one_blas_thread()

    def lstm_step(self, Z: Array, c_prev: Array, h_prev: Array | None, m: Array | None,
                  activation: str = "tanh",
                  recurrent_activation: str = "sigmoid") -> tuple[Array, Array]:  # fmt: skip
        mb = _flat_mask(np, m)
        fn = self._host_fn("lstm_step", (activation, recurrent_activation), Z, c_prev, h_prev, mb)
        if fn is None:
            return super().lstm_step(Z, c_prev, h_prev, m, activation, recurrent_activation)
        B, U = c_prev.shape
        h, c = np.empty_like(c_prev), np.empty_like(c_prev)
        fn(_p(h), _p(c), _p(Z), _p(c_prev), _p(h_prev if mb is not None else None), _p(mb), B, U)
        return h, c

    def backprop_lstm_step(self, dh: Array, dc: Array | None, Z: Array, c_prev: Array,
                           m: Array | None, activation: str = "tanh",
                           recurrent_activation: str = "sigmoid") -> Any:  # fmt: skip
        mb = _flat_mask(np, m)
        acts = (activation, recurrent_activation)
        fn = self._host_fn("lstm_backward", acts, dh, dc, Z, c_prev, mb)
        if fn is None:
            return super().backprop_lstm_step(dh, dc, Z, c_prev, m, *acts)
        B, U = c_prev.shape
        dZ, dc_prev = np.empty_like(Z), np.empty_like(c_prev)
        carry = None if mb is None else np.empty_like(c_prev)
        fn(_p(dZ), _p(dc_prev), _p(carry), _p(dh), _p(dc), _p(Z), _p(c_prev), _p(mb), B, U)
        return dZ, carry, dc_prev

    def gru_step(self, Zx: Array, Zh: Array | None, h_prev: Array, m: Array | None,
                 activation: str = "tanh",
                 recurrent_activation: str = "sigmoid") -> Array:  # fmt: skip
        mb = _flat_mask(np, m)
        fn = self._host_fn("gru_step", (activation, recurrent_activation), Zx, Zh, h_prev, mb)
        if fn is None:
            return super().gru_step(Zx, Zh, h_prev, m, activation, recurrent_activation)
        B, U = h_prev.shape
        h = np.empty_like(h_prev)
        fn(_p(h), _p(Zx), _p(Zh), _p(h_prev), _p(mb), B, U)
        return h

    def backprop_gru_step(self, dh: Array, Zx: Array, Zh: Array | None, h_prev: Array,
                          m: Array | None, activation: str = "tanh",
                          recurrent_activation: str = "sigmoid") -> Any:  # fmt: skip
        mb = _flat_mask(np, m)
        acts = (activation, recurrent_activation)
        fn = self._host_fn("gru_backward", acts, dh, Zx, Zh, h_prev, mb)
        if fn is None:
            return super().backprop_gru_step(dh, Zx, Zh, h_prev, m, *acts)
        B, U = h_prev.shape
        dZx, dh_prev = np.empty_like(Zx), np.empty_like(h_prev)
        dZh = None if Zh is None else np.empty_like(Zh)
        fn(_p(dZx), _p(dZh), _p(dh_prev), _p(dh), _p(Zx), _p(Zh), _p(h_prev), _p(mb), B, U)
        return dZx, dZh, dh_prev
