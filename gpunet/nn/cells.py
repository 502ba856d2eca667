"""PyTorch's ``nn.RNNCell``, ``nn.LSTMCell`` and ``nn.GRUCell``: one time step,
called in the user's own loop (``h, c = cell(x_t, (h, c))``), with PyTorch's
parameter names and shapes (``weight_ih (G*H, in)``, ``weight_hh (G*H, H)``,
``bias_ih``, ``bias_hh``), gate order (LSTM i, f, g, o; GRU r, z, n) and
initialization ``U(-1/sqrt(H), 1/sqrt(H))``. Inputs are ``(N, in)`` or unbatched
``(in,)``; the state defaults to zeros. The step is composed of autograd ops, so
every gradient comes from their backward.

Example:
    >>> import gpunet as gn
    >>> cell = gn.nn.LSTMCell(3, 5)
    >>> h, c = cell(gn.ones(2, 3))
    >>> h.shape, c.shape
    ((2, 5), (2, 5))
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gpunet import functional as G
from gpunet import random as grandom
from gpunet.autograd import Tensor
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers.base import Layer
from gpunet.nn._module import TorchModule, torch_param


def _sigmoid(x: Tensor) -> Tensor:
    return G.activation(x, "sigmoid")


def _tanh(x: Tensor) -> Tensor:
    return G.activation(x, "tanh")


class _Cell(TorchModule, Layer):
    GATES = 1
    weight_ih: Any
    weight_hh: Any
    bias_ih: Any
    bias_hh: Any

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None,
        dtype: Any = None,
    ) -> None:  # fmt: skip
        super().__init__(dtype=None if dtype is None else np.dtype(dtype).name)
        for what, n in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise InvalidParameterError(
                    f"{type(self).__name__} {what} must be an int >= 1, got {n!r}"
                )
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bool(bias)
        rows, bound = self.GATES * hidden_size, 1.0 / math.sqrt(hidden_size)
        rng = grandom.generator("init")
        shapes: list[tuple[str, tuple[int, ...]]] = [
            ("weight_ih", (rows, input_size)), ("weight_hh", (rows, hidden_size))]  # fmt: skip
        if self.bias:
            shapes += [("bias_ih", (rows,)), ("bias_hh", (rows,))]
        else:
            self.bias_ih = self.bias_hh = None
        for name, shape in shapes:
            setattr(self, name, torch_param(self, name, rng.uniform(-bound, bound, shape)))
        self.built = True
        if device is not None:
            self.to(device)

    def check_input(self, x: Any) -> None:
        if not isinstance(x, Tensor) or x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise InputValidationError(
                f"{type(self).__name__}({self.input_size}, {self.hidden_size}) expects input "
                f"(N, {self.input_size}) or ({self.input_size},), got {getattr(x, 'shape', None)}"
            )

    def _state(self, x: Tensor, h: Any, what: str = "hx") -> Tensor:
        """``h`` as a tensor of ``x``'s batch shape (zeros when None)."""
        shape = (*x.shape[:-1], self.hidden_size)
        if h is None:
            return Tensor(self.ops.zeros(shape, x.dtype), self.ops)
        h = self._convert(h)
        if tuple(h.shape) != shape:
            raise InputValidationError(
                f"{type(self).__name__}: {what} must have shape {shape} for an input of "
                f"shape {tuple(x.shape)}, got {tuple(h.shape)}"
            )
        return h  # type: ignore[no-any-return]

    def _gates(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        return (G.linear(x, self.weight_ih, self.bias_ih),
                G.linear(h, self.weight_hh, self.bias_hh))  # fmt: skip

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class RNNCell(_Cell):
    """``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)`` (or ``relu``)."""

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True,
        nonlinearity: str = "tanh", device: Any = None, dtype: Any = None,
    ) -> None:  # fmt: skip
        if nonlinearity not in ("tanh", "relu"):
            raise InvalidParameterError(
                f"RNNCell nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}"
            )
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def call(self, input: Tensor, hx: Any = None, training: bool = False) -> Tensor:  # type: ignore[override]
        a, b = self._gates(input, self._state(input, hx))
        return G.activation(a + b, self.nonlinearity)


class LSTMCell(_Cell):
    """``(h', c')`` from ``(x, (h, c))``: ``c' = f c + i g``, ``h' = o tanh(c')``."""

    GATES = 4

    def call(self, input: Tensor, hx: Any = None, training: bool = False) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        h, c = (None, None) if hx is None else hx
        h, c = self._state(input, h, "h_0"), self._state(input, c, "c_0")
        a, b = self._gates(input, h)
        z = a + b
        H = self.hidden_size
        i, f, g, o = (z[..., k * H : (k + 1) * H] for k in range(4))
        c2 = _sigmoid(f) * c + _sigmoid(i) * _tanh(g)
        return _sigmoid(o) * _tanh(c2), c2


class GRUCell(_Cell):
    """``n = tanh(x W_in + b_in + r (h W_hn + b_hn))``, ``h' = (1 - z) n + z h``."""

    GATES = 3

    def call(self, input: Tensor, hx: Any = None, training: bool = False) -> Tensor:  # type: ignore[override]
        h = self._state(input, hx)
        a, b = self._gates(input, h)
        H = self.hidden_size
        r = _sigmoid(a[..., :H] + b[..., :H])
        z = _sigmoid(a[..., H : 2 * H] + b[..., H : 2 * H])
        n = _tanh(a[..., 2 * H :] + r * b[..., 2 * H :])
        return (1.0 - z) * n + z * h
