"""Recurrent cell ops of the reference backend: one time step of SimpleRNN, LSTM and
GRU after the matrix products (gate activations and the state update), and its
backprop, written once against ``self.xp``.

The layer does the GEMMs (the input projection of all steps at once, one recurrent
product per step) and hands each step's pre-activations here, so a fused kernel can
replace a whole step's elementwise work. Gates are in Keras order (LSTM i, f, c, o;
GRU z, r, h). The backprops keep only pre-activations and recompute the activations.

``m`` is the step's mask as a ``(batch, 1)`` float column (1 = a real step) or None:
a padded step keeps the previous state (Keras). Each backprop returns, besides the
gradients of the pre-activations, the part of ``dh`` that flows past a padded step
to the previous state unchanged (None without a mask).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

Array = Any


class RecurrentOps:
    """Mixin of :class:`gpunet.backend.ops.Ops`: recurrent cells, one step at a time.

    Example:
        >>> import numpy as np
        >>> from gpunet.backend.ops import Ops
        >>> h, c = Ops().lstm_step(np.zeros((1, 4)), np.ones((1, 1)), None, None)
        >>> round(float(c[0, 0]), 3)  # f = sigmoid(0) keeps half of c
        0.5
    """

    xp: Any
    if TYPE_CHECKING:  # ActivationOps provides them

        def activation(self, name: str, X: Array, **kw: Any) -> Array: ...

        def backprop_activation(
            self, name: str, dY: Array, X: Array | None, Y: Array, **kw: Any
        ) -> Array: ...

    def _masked(self, new: Array, old: Array, m: Array | None) -> Array:
        return new if m is None else old + m * (new - old)

    def _split_dh(self, dh: Array, m: Array | None) -> tuple[Array, Array | None]:
        """``dh`` as (the part reaching the cell, the part passing a padded step)."""
        return (dh, None) if m is None else (dh * m, dh * (1.0 - m))

    def recurrent_loops(self, cell: Any, Z: Array, U: Array, H: Array, rdp: Array | None) -> Any:
        """Whole time loops for ``cell`` on these arrays (``_rnn_host_loop.HostLoops``), or
        None: then the recurrence calls the step ops above, one step at a time."""
        return None

    def step_loop_scope(self) -> AbstractContextManager[Any]:
        """Entered around a recurrence's forward and its backward (the host backend
        limits BLAS to one thread there: the per-step products are too small to share)."""
        return nullcontext()

    # -- SimpleRNN: h = act(Z) ----------------------------------------------------------
    def rnn_step(
        self, Z: Array, h_prev: Array | None, m: Array | None, activation: str = "tanh"
    ) -> Array:
        """``h`` of one SimpleRNN step from ``Z = x @ W + h_prev @ U + b``."""
        return self._masked(self.activation(activation, Z), h_prev, m)

    def backprop_rnn_step(
        self, dh: Array, Z: Array, m: Array | None, activation: str = "tanh"
    ) -> tuple[Array, Array | None]:
        """``(dZ, dh_prev past a padded step)`` of :meth:`rnn_step`."""
        dh, carry = self._split_dh(dh, m)
        A = self.activation(activation, Z)
        return self.backprop_activation(activation, dh, Z, A), carry

    # -- LSTM: Z = [i | f | c | o] pre-activations ----------------------------------------
    def _lstm_gates(self, Z: Array, act: str, rec: str) -> tuple[Array, ...]:
        n = Z.shape[1] // 4
        i = self.activation(rec, Z[:, :n])
        f = self.activation(rec, Z[:, n : 2 * n])
        g = self.activation(act, Z[:, 2 * n : 3 * n])
        o = self.activation(rec, Z[:, 3 * n :])
        return i, f, g, o

    def lstm_step(
        self,
        Z: Array,
        c_prev: Array,
        h_prev: Array | None,
        m: Array | None,
        activation: str = "tanh",
        recurrent_activation: str = "sigmoid",
    ) -> tuple[Array, Array]:
        """``(h, c)`` of one LSTM step from ``Z = x @ W + h_prev @ U + b`` (batch, 4u)."""
        i, f, g, o = self._lstm_gates(Z, activation, recurrent_activation)
        c = f * c_prev + i * g
        h = o * self.activation(activation, c)
        return self._masked(h, h_prev, m), self._masked(c, c_prev, m)

    def backprop_lstm_step(
        self,
        dh: Array,
        dc: Array | None,
        Z: Array,
        c_prev: Array,
        m: Array | None,
        activation: str = "tanh",
        recurrent_activation: str = "sigmoid",
    ) -> tuple[Array, Array | None, Array]:
        """``(dZ, dh_prev past a padded step, dc_prev)`` of :meth:`lstm_step`; ``dc``
        is the gradient of the carried ``c`` (None: zero, the last step)."""
        xp, act, rec = self.xp, activation, recurrent_activation
        i, f, g, o = self._lstm_gates(Z, act, rec)
        c = f * c_prev + i * g
        tc = self.activation(act, c)
        dh, carry_h = self._split_dh(dh, m)
        dc_new, carry_c = (None, None) if dc is None else self._split_dh(dc, m)
        dcs = self.backprop_activation(act, dh * o, c, tc)
        if dc_new is not None:
            dcs = dcs + dc_new
        n = Z.shape[1] // 4
        dZ = xp.concat(
            [
                self.backprop_activation(rec, dcs * g, Z[:, :n], i),
                self.backprop_activation(rec, dcs * c_prev, Z[:, n : 2 * n], f),
                self.backprop_activation(act, dcs * i, Z[:, 2 * n : 3 * n], g),
                self.backprop_activation(rec, dh * tc, Z[:, 3 * n :], o),
            ],
            axis=1,
        )
        dc_prev = dcs * f if carry_c is None else dcs * f + carry_c
        return dZ, carry_h, dc_prev

    # -- GRU: Zx = input part [z | r | h]; Zh = recurrent part (reset_after) or None ----
    def _gru_gates(
        self, Zx: Array, Zh: Array | None, act: str, rec: str
    ) -> tuple[Array, Array | None, Array, Array, Array | None]:
        n = Zx.shape[1] // 3
        if Zh is None:  # reset before the product: the candidate is all in Zx
            z = self.activation(rec, Zx[:, :n])
            pre_n = Zx[:, 2 * n :]
            return z, None, pre_n, self.activation(act, pre_n), None
        pre_z = Zx[:, :n] + Zh[:, :n]
        pre_r = Zx[:, n : 2 * n] + Zh[:, n : 2 * n]
        z, r = self.activation(rec, pre_z), self.activation(rec, pre_r)
        pre_n = Zx[:, 2 * n :] + r * Zh[:, 2 * n :]
        return z, r, pre_n, self.activation(act, pre_n), pre_r

    def gru_step(
        self,
        Zx: Array,
        Zh: Array | None,
        h_prev: Array,
        m: Array | None,
        activation: str = "tanh",
        recurrent_activation: str = "sigmoid",
    ) -> Array:
        """``h`` of one GRU step. ``reset_after`` (Keras' default): ``Zx = x @ W + b_in``
        and ``Zh = h_prev @ U + b_rec``. Otherwise ``Zh`` is None and ``Zx`` holds the
        whole pre-activations (the candidate's ``(r * h_prev) @ U_h`` included)."""
        z, _, _, hh, _ = self._gru_gates(Zx, Zh, activation, recurrent_activation)
        return self._masked(z * h_prev + (1.0 - z) * hh, h_prev, m)

    def backprop_gru_step(
        self,
        dh: Array,
        Zx: Array,
        Zh: Array | None,
        h_prev: Array,
        m: Array | None,
        activation: str = "tanh",
        recurrent_activation: str = "sigmoid",
    ) -> tuple[Array, Array | None, Array]:
        """``(dZx, dZh, dh_prev)`` of :meth:`gru_step` (``dh_prev`` through the update
        gate and past a padded step; the products' share is the caller's). Without
        ``Zh`` the reset gate's column of ``dZx`` is zero: the caller owns it."""
        xp, act, rec = self.xp, activation, recurrent_activation
        n = Zx.shape[1] // 3
        z, r, pre_n, hh, pre_r = self._gru_gates(Zx, Zh, act, rec)
        dh, carry = self._split_dh(dh, m)
        dpre_z = self.backprop_activation(rec, dh * (h_prev - hh), Zx[:, :n] if Zh is None
                                          else Zx[:, :n] + Zh[:, :n], z)  # fmt: skip
        dpre_n = self.backprop_activation(act, dh * (1.0 - z), pre_n, hh)
        dh_prev = dh * z if carry is None else dh * z + carry
        if Zh is None:
            dZx = xp.concat([dpre_z, xp.zeros_like(dpre_z), dpre_n], axis=1)
            return dZx, None, dh_prev
        dpre_r = self.backprop_activation(rec, dpre_n * Zh[:, 2 * n :], pre_r, r)
        dZx = xp.concat([dpre_z, dpre_r, dpre_n], axis=1)
        dZh = xp.concat([dpre_z, dpre_r, dpre_n * r], axis=1)
        return dZx, dZh, dh_prev
