"""The time loops of LSTM and GRU (``reset_after``) on the host build, over the
histories that ``gpunet.layers._recurrence`` preallocates.

Each step is one recurrent GEMM written into a buffer (``out=``) and one cell kernel
writing the history in place: no array is allocated and no view made per step
except the GEMM's operands; the kernels get pointers computed from the histories'
base addresses. The LSTM's forward overwrites the pre-activations with the gates'
activations, which its backward reads rather than recomputes; the backward kernels
overwrite those with the pre-activations' gradients in place (each element reads its
own gate values before writing them).
The arrays are C-contiguous, of the kernels' dtype, time-major: ``Z`` (T, B, G*u),
``H``/``C`` (T+1, B, u), ``M`` (T, B) float or None.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Array = Any


class HostLoops:
    """The loops of one (kernels, dtype) pair; ``k`` is :class:`HostKernels`."""

    def __init__(self, k: Any, suffix: str) -> None:
        # the LSTM forward leaves the gates' activations in Z for the backward to read
        self.lstm_step, self.lstm_backward = k.lstm_step_keep[suffix], k.lstm_backward_act[suffix]
        self.gru_step, self.gru_backward = k.gru_step[suffix], k.gru_backward[suffix]

    def lstm_forward(self, Z: Array, U: Array, H: Array, C: Array, M: Array | None,
                     rdp: Array | None) -> None:  # fmt: skip
        T, B, G = Z.shape
        n, sz = H.shape[2], Z.itemsize
        R, hp = np.empty((B, G), Z.dtype), np.empty((B, n), Z.dtype)
        z0, h0, c0, pr = Z.ctypes.data, H.ctypes.data, C.ctypes.data, R.ctypes.data
        m0 = None if M is None else M.ctypes.data
        for t in range(T):
            h = H[t]
            if rdp is not None:
                h = np.multiply(h, rdp, out=hp)
            np.matmul(h, U, out=R)
            ht, ct = h0 + t * B * n * sz, c0 + t * B * n * sz
            self.lstm_step(ht + B * n * sz, ct + B * n * sz, z0 + t * B * G * sz, pr, ct,
                           ht if m0 is not None else None,
                           None if m0 is None else m0 + t * B * sz, B, n)  # fmt: skip

    def lstm_backward_loop(self, Z: Array, Ut: Array, C: Array, M: Array | None,
                           rdp: Array | None, dh: Array, dc: Array,
                           dO: Array | None) -> None:  # fmt: skip
        """``dh``/``dc`` (B, u): the gradients of the last states in, of the first out."""
        T, B, G = Z.shape
        n, sz = C.shape[2], Z.itemsize
        carry = None if M is None else np.empty((B, n), Z.dtype)
        pdh, pdc, pcarry = (
            dh.ctypes.data,
            dc.ctypes.data,
            None if carry is None else carry.ctypes.data,
        )
        z0, c0 = Z.ctypes.data, C.ctypes.data
        m0 = None if M is None else M.ctypes.data
        for t in range(T - 1, -1, -1):
            if dO is not None:
                np.add(dh, dO[t], out=dh)
            zt = z0 + t * B * G * sz
            mt = None if m0 is None else m0 + t * B * sz
            self.lstm_backward(zt, pdc, pcarry, pdh, pdc, zt, c0 + t * B * n * sz, mt, B, n)
            np.matmul(Z[t], Ut, out=dh)
            if rdp is not None:
                np.multiply(dh, rdp, out=dh)
            if carry is not None:
                np.add(dh, carry, out=dh)

    def gru_forward(self, Z: Array, ZH: Array, U: Array, b_rec: Array | None, H: Array,
                    M: Array | None, rdp: Array | None) -> None:  # fmt: skip
        T, B, G = Z.shape
        n, sz = H.shape[2], Z.itemsize
        hp = np.empty((B, n), Z.dtype)
        z0, zh0, h0 = Z.ctypes.data, ZH.ctypes.data, H.ctypes.data
        m0 = None if M is None else M.ctypes.data
        for t in range(T):
            h = H[t]
            if rdp is not None:
                h = np.multiply(h, rdp, out=hp)
            np.matmul(h, U, out=ZH[t])
            if b_rec is not None:
                np.add(ZH[t], b_rec, out=ZH[t])
            ht = h0 + t * B * n * sz
            self.gru_step(ht + B * n * sz, z0 + t * B * G * sz, zh0 + t * B * G * sz, ht,
                          None if m0 is None else m0 + t * B * sz, B, n)  # fmt: skip

    def gru_backward_loop(self, Z: Array, ZH: Array, Ut: Array, H: Array, M: Array | None,
                          rdp: Array | None, dh: Array, dO: Array | None) -> None:  # fmt: skip
        """``dh`` (B, u): the gradient of the last state in, of the first out."""
        T, B, G = Z.shape
        n, sz = H.shape[2], Z.itemsize
        tmp = np.empty((B, n), Z.dtype)
        pdh, z0, zh0, h0 = dh.ctypes.data, Z.ctypes.data, ZH.ctypes.data, H.ctypes.data
        m0 = None if M is None else M.ctypes.data
        for t in range(T - 1, -1, -1):
            if dO is not None:
                np.add(dh, dO[t], out=dh)
            zt, zht = z0 + t * B * G * sz, zh0 + t * B * G * sz
            mt = None if m0 is None else m0 + t * B * sz
            self.gru_backward(zt, zht, pdh, pdh, zt, zht, h0 + t * B * n * sz, mt, B, n)
            np.matmul(ZH[t], Ut, out=tmp)
            if rdp is not None:
                np.multiply(tmp, rdp, out=tmp)
            np.add(dh, tmp, out=dh)
