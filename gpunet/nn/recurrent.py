"""``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` with PyTorch's arguments, parameter names
(``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, ``..._reverse``),
shapes, gate order (LSTM i, f, g, o; GRU r, z, n) and initialization.

They run the recurrence of the Keras layers (:func:`gpunet.layers._recurrence.run`):
each step re-lays its weights into the Keras layout (transposed; GRU's gate blocks
reordered; the two biases summed where PyTorch's math only sees their sum), and the
gradients are laid back.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gpunet import random as grandom
from gpunet.autograd import Tensor
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers import _recurrence
from gpunet.layers._protocol import add_grad
from gpunet.layers.base import Layer
from gpunet.layers.recurrent import record_outputs
from gpunet.nn._module import TorchModule, torch_param

_GRU_ORDER = (1, 0, 2)  # PyTorch's r, z, n blocks as Keras' z, r, h (its own inverse)


class _TorchRNN(TorchModule, Layer):
    KIND = "simple"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: Any = None,
        dtype: Any = None,
        nonlinearity: str = "tanh",
        **kwargs: Any,
    ) -> None:
        super().__init__(dtype=None if dtype is None else np.dtype(dtype).name, **kwargs)
        cls = type(self).__name__
        for what, n, lo in (("input_size", input_size, 1), ("hidden_size", hidden_size, 1),
                            ("num_layers", num_layers, 1)):  # fmt: skip
            if isinstance(n, bool) or not isinstance(n, int) or n < lo:
                raise InvalidParameterError(f"{cls} {what} must be an int >= {lo}, got {n!r}")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout <= 1.0:
            raise InvalidParameterError(f"{cls} dropout must be in [0, 1], got {dropout!r}")
        if nonlinearity not in ("tanh", "relu"):
            raise InvalidParameterError(
                f"{cls} nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}"
            )
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first = bool(bias), bool(batch_first)
        self.dropout, self.bidirectional = float(dropout), bool(bidirectional)
        self.nonlinearity = nonlinearity
        D, H = self.num_directions, hidden_size
        G = _recurrence.GATES[self.KIND] * H
        bound = 1.0 / math.sqrt(H)
        rng = grandom.generator("init")
        for layer in range(num_layers):
            n_in = input_size if layer == 0 else H * D
            for d in range(D):
                sfx = f"l{layer}" + ("_reverse" if d else "")
                shapes: list[tuple[str, tuple[int, ...]]] = [
                    ("weight_ih", (G, n_in)), ("weight_hh", (G, H))]  # fmt: skip
                if self.bias:
                    shapes += [("bias_ih", (G,)), ("bias_hh", (G,))]
                for name, shape in shapes:
                    values = rng.uniform(-bound, bound, shape)
                    setattr(self, f"{name}_{sfx}", torch_param(self, f"{name}_{sfx}", values))
        self.built = True
        if device is not None:
            self.to(device)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def extra_repr(self) -> str:
        out = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            out += f", num_layers={self.num_layers}"
        if not self.bias:
            out += ", bias=False"
        if self.batch_first:
            out += ", batch_first=True"
        if self.dropout:
            out += f", dropout={self.dropout}"
        if self.bidirectional:
            out += ", bidirectional=True"
        return out

    def check_input(self, inputs: Any) -> None:
        shape = tuple(getattr(inputs, "shape", ()))
        if len(shape) not in (2, 3) or shape[-1] != self.input_size:
            order = "(batch, seq, " if self.batch_first else "(seq, batch, "
            raise InputValidationError(
                f"{type(self).__name__}({self.input_size}, {self.hidden_size}) expects input "
                f"of shape {order}{self.input_size}) or (seq, {self.input_size}), got {shape}"
            )

    # -- weights in the Keras layout, and their gradients back --------------------------
    def _names(self, layer: int, d: int) -> list[str]:
        sfx = f"l{layer}" + ("_reverse" if d else "")
        names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if self.bias else [])
        return [f"{n}_{sfx}" for n in names]

    def _blocks(self, xp: Any, A: Any) -> Any:
        """GRU: the gate blocks of axis 0 in the other library's order."""
        if self.KIND != "gru":
            return A
        H = self.hidden_size
        return xp.concat([A[i * H : (i + 1) * H, ...] for i in _GRU_ORDER], axis=0)

    def _keras(self, xp: Any, layer: int, d: int) -> tuple[Any, Any, Any]:
        ps = [getattr(self, n).data for n in self._names(layer, d)]
        W = xp.matrix_transpose(self._blocks(xp, ps[0]))
        U = xp.matrix_transpose(self._blocks(xp, ps[1]))
        if not self.bias:
            return W, U, None
        if self.KIND == "gru":
            return W, U, xp.stack([self._blocks(xp, ps[2]), self._blocks(xp, ps[3])])
        return W, U, ps[2] + ps[3]

    def _add_grads(self, xp: Any, layer: int, d: int, dW: Any, dU: Any, db: Any) -> None:
        ps = [getattr(self, n) for n in self._names(layer, d)]
        add_grad(ps[0], self._blocks(xp, xp.matrix_transpose(dW)))
        add_grad(ps[1], self._blocks(xp, xp.matrix_transpose(dU)))
        if self.bias:
            gru = self.KIND == "gru"
            add_grad(ps[2], self._blocks(xp, db[0, ...]) if gru else db)
            add_grad(ps[3], self._blocks(xp, db[1, ...]) if gru else db)

    # -- the stack on arrays ---------------------------------------------------------------
    def _stack(
        self, ops: Any, X: Any, h0: Any, c0: Any, training: bool
    ) -> tuple[Any, Any, Any, Any]:
        """``(Y, h_n, c_n, back)`` for ``X`` (batch, seq, features); ``back(dY, dh_n,
        dc_n, need_dX) -> (dX, dh_0, dc_0)``."""
        xp, H, D = ops.xp, self.hidden_size, self.num_directions
        act = "relu" if self.nonlinearity == "relu" else "tanh"
        lstm = self.KIND == "lstm"
        hs, cs, backs, drops = [], [], [], []
        for layer in range(self.num_layers):
            ys = []
            for d in range(D):
                i = layer * D + d
                cell = _recurrence.Cell(self.KIND, H, act, "sigmoid", True, bool(d), True)
                init = [None if h0 is None else h0[i, ...], None if c0 is None else c0[i, ...]]
                Y, S, run_back = _recurrence.run(ops, cell, X, *self._keras(xp, layer, d), init)
                ys.append(xp.flip(Y, axis=1) if d else Y)
                hs.append(S[0])
                cs.append(S[1] if lstm else None)
                backs.append(run_back)
            X = ys[0] if D == 1 else xp.concat(ys, axis=-1)
            drop = None
            if training and self.dropout > 0 and layer < self.num_layers - 1:
                drop = ops.dropout_mask(tuple(X.shape), self.dropout, X.dtype)
                X = X * drop
            drops.append(drop)
        h_n = xp.stack(hs)
        c_n = xp.stack(cs) if lstm else None

        def back(dY: Any, dh_n: Any, dc_n: Any, need_dX: bool) -> tuple[Any, Any, Any]:
            dh0: list[Any] = [None] * len(hs)
            dc0: list[Any] = [None] * len(hs)
            for layer in range(self.num_layers - 1, -1, -1):
                if drops[layer] is not None:
                    dY = dY * drops[layer]
                dX = None
                for d in range(D):
                    i = layer * D + d
                    dYd = dY[..., d * H : (d + 1) * H]
                    if d:
                        dYd = xp.flip(dYd, axis=1)
                    dS = [
                        None if dh_n is None else dh_n[i, ...],
                        None if dc_n is None else dc_n[i, ...],
                    ]
                    need = need_dX or layer > 0
                    dXd, dW, dU, db, d0 = backs[i](dYd, dS[: 2 if lstm else 1], need)
                    self._add_grads(xp, layer, d, dW, dU, db)
                    dX = dXd if dX is None else (dX if dXd is None else dX + dXd)
                    dh0[i] = d0[0]
                    dc0[i] = d0[1] if lstm else None
                dY = dX
            return dY, xp.stack(dh0), xp.stack(dc0) if lstm else None

        return X, h_n, c_n, back

    def call(self, inputs: Tensor, hx: Any = None, training: bool = False) -> Any:  # type: ignore[override]
        ops, xp = self.ops, self.ops.xp
        lstm = self.KIND == "lstm"
        unbatched = inputs.ndim == 2
        X = inputs.data
        if unbatched:
            X = X[None, ...] if self.batch_first else X[:, None, :]
        if not self.batch_first:
            X = xp.permute_dims(X, (1, 0, 2))
        B = X.shape[0]
        init = self._states(hx, B, unbatched, lstm)
        h0, c0 = (None if s is None else s.data for s in init)
        if unbatched:
            h0, c0 = (None if s is None else s[:, None, :] for s in (h0, c0))
        Y, h_n, c_n, back = self._stack(ops, X, h0, c0, training)

        def fix(A: Any, seq: bool) -> Any:  # back to the caller's layout
            if seq and not self.batch_first:
                A = xp.permute_dims(A, (1, 0, 2))
            if unbatched:
                A = A[0, ...] if (seq and self.batch_first) else A[:, 0, :]
            return A

        outs = [fix(Y, True), fix(h_n, False)] + ([fix(c_n, False)] if lstm else [])

        def unfix(dA: Any, seq: bool) -> Any:
            if unbatched:
                dA = dA[None, ...] if (seq and self.batch_first) else dA[:, None, :]
            if seq and not self.batch_first:
                dA = xp.permute_dims(dA, (1, 0, 2))
            return dA

        def backward(douts: list[Any]) -> tuple[list[Any], Any]:
            dY, dh = unfix(douts[0], True), unfix(douts[1], False)
            dc = unfix(douts[2], False) if lstm else None
            dX, dh0, dc0 = back(dY, dh, dc, inputs.requires_grad)
            if dX is not None:
                dX = fix(dX, True)
            d0 = [fix(dh0, False), fix(dc0, False) if lstm else None]
            return [dX], d0

        res = record_outputs(self, inputs, init, outs, backward)
        return (res[0], (res[1], res[2])) if lstm else (res[0], res[1])

    def _states(self, hx: Any, B: int, unbatched: bool, lstm: bool) -> list[Any]:
        if hx is None:
            return [None, None]
        parts = list(hx) if lstm else [hx]
        if len(parts) != (2 if lstm else 1):
            raise InputValidationError(f"{type(self).__name__} takes hx=(h_0, c_0), got {hx!r}")
        want = (self.num_layers * self.num_directions, *(() if unbatched else (B,)),
                self.hidden_size)  # fmt: skip
        out = [self._convert(p) for p in parts]
        for p in out:
            if tuple(p.shape) != want:
                raise InputValidationError(
                    f"{type(self).__name__} expects hidden states of shape {want}, "
                    f"got {tuple(p.shape)}"
                )
        return out + [None] * (2 - len(out))


class RNN(_TorchRNN):
    """``nn.RNN``: Elman recurrence, ``h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``
    (``nonlinearity="relu"`` for ReLU). Returns ``(output, h_n)``.

    Example:
        >>> import numpy as np
        >>> from gpunet import nn
        >>> out, h = nn.RNN(3, 4, batch_first=True)(np.ones((2, 5, 3), "float32"))
        >>> out.shape, h.shape
        ((2, 5, 4), (1, 2, 4))
    """

    KIND = "simple"


class LSTM(_TorchRNN):
    """``nn.LSTM``: returns ``(output, (h_n, c_n))``; gates i, f, g, o in the rows of
    ``weight_ih_l0 (4*hidden, input)``.

    Example:
        >>> import numpy as np
        >>> from gpunet import nn
        >>> lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True)
        >>> out, (h, c) = lstm(np.ones((5, 2, 3), "float32"))
        >>> out.shape, h.shape, lstm.weight_hh_l1_reverse.shape
        ((5, 2, 8), (4, 2, 4), (16, 4))
    """

    KIND = "lstm"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "nonlinearity" in kwargs:
            raise InvalidParameterError("LSTM has no nonlinearity argument")
        super().__init__(*args, **kwargs)


class GRU(_TorchRNN):
    """``nn.GRU``: returns ``(output, h_n)``; gates r, z, n in the rows of
    ``weight_ih_l0 (3*hidden, input)``, the reset gate applied to ``W_hn h + b_hn``.

    Example:
        >>> import numpy as np
        >>> from gpunet import nn
        >>> out, h = nn.GRU(3, 4)(np.ones((5, 3), "float32"))  # unbatched
        >>> out.shape, h.shape
        ((5, 4), (1, 4))
    """

    KIND = "gru"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "nonlinearity" in kwargs:
            raise InvalidParameterError("GRU has no nonlinearity argument")
        super().__init__(*args, **kwargs)
