"""Recurrent layers: ``SimpleRNN``, ``LSTM`` and ``GRU``, with Keras' arguments and
weight layouts (gates i, f, c, o for LSTM and z, r, h for GRU), so Keras weights load
with ``set_weights``. The recurrence itself is :mod:`gpunet.layers._recurrence`.

Masks (batch, time; True = a real step) follow Keras 3: a padded step keeps the state,
and outputs the last real step's output (zeros before the first, or always zeros with
``zero_output_for_mask=True``, which ``Bidirectional`` sets for sequences).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from gpunet import activations, initializers
from gpunet import regularizers as regs
from gpunet.autograd import Tensor, needs_grad, record
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers import _recurrence, spec
from gpunet.layers._protocol import add_grad, penalties
from gpunet.layers.base import Backprop, Layer

_INITS = ("kernel_initializer", "recurrent_initializer", "bias_initializer")
_REGS = ("kernel_regularizer", "recurrent_regularizer", "bias_regularizer")
_FLAGS = ("use_bias", "return_sequences", "return_state", "go_backwards", "unroll")


def record_outputs(
    layer: Layer, x: Any, init: list[Any], outs: list[Any], backward: Any
) -> list[Tensor]:
    """Several output arrays of one computation as tensors of one graph node (packed
    end to end, handed out by slices). ``backward(douts) -> ([dX], dstates0)`` with
    ``douts`` None-free; the weights' gradients are added by ``backward`` itself."""
    ops, xs = layer.ops, x if isinstance(x, list) else [x]
    given = [s for s in init if s is not None]
    params = [p for p in layer._params if p.requires_grad]
    for sub in layer._layers:
        params += [p for p in sub._params if p.requires_grad]
    if not needs_grad(*xs, *given, *params):
        return [Tensor(a, ops) for a in outs]
    pad = (None,) * len(params)

    def grads(douts: list[Any]) -> tuple[Any, ...]:
        dX, d0 = backward(douts)
        return (*dX, *[d for d, s in zip(d0, init, strict=True) if s is not None], *pad)

    parents = (*xs, *given, *params)
    if len(outs) == 1:
        return [record(outs[0], ops, parents, lambda dY: grads([dY]), layer.name)]
    xp = ops.xp
    ends = list(itertools.accumulate(math.prod(o.shape) for o in outs))
    packed = xp.concat([xp.reshape(o, (-1,)) for o in outs])

    def unpack(dP: Any) -> tuple[Any, ...]:
        cuts = zip([0, *ends[:-1]], ends, outs, strict=True)
        return grads([xp.reshape(dP[a:b], o.shape) for a, b, o in cuts])

    P = record(packed, ops, parents, unpack, layer.name)
    cuts = zip([0, *ends[:-1]], ends, outs, strict=True)
    return [P[a:b].reshape(*o.shape) for a, b, o in cuts]


def _act_name(spec_: Any, layer: str, what: str) -> str:
    name, kw, fn = activations.get(spec_)
    if fn is not None or kw:
        raise InvalidParameterError(
            f"{what} of {layer!r} must be an activation name such as 'tanh', got {spec_!r}"
        )
    return name or "linear"


class _RNN(Layer):
    """What SimpleRNN, LSTM and GRU share (the Keras ``RNN`` layer's arguments)."""

    KIND = "simple"
    kernel_initializer: Any
    recurrent_initializer: Any
    bias_initializer: Any
    kernel_regularizer: Any
    recurrent_regularizer: Any
    bias_regularizer: Any
    CONFIG = {
        "units": spec.Int(1), "activation": spec.Activation(),
        **{k: spec.Bool() for k in _FLAGS}, "zero_output_for_mask": spec.Bool(),
        **{k: spec.Initializer() for k in _INITS},
        **{k: spec.Optional(spec.Regularizer()) for k in _REGS},
        "dropout": spec.Float(0.0, 1.0), "recurrent_dropout": spec.Float(0.0, 1.0),
    }  # fmt: skip

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        unroll: bool = False,  # accepted (Keras); the loop is the same either way
        zero_output_for_mask: bool = False,
        reset_after: bool = True,
        unit_forget_bias: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        cls = type(self).__name__
        if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
            raise InvalidParameterError(
                f"{cls} units must be a positive int, got {units!r} (layer {self.name!r})"
            )
        for what, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
                raise InvalidParameterError(
                    f"{cls} {what} must be in [0, 1), got {rate!r} (layer {self.name!r})"
                )
        self.units = units
        self.activation = _act_name(activation, self.name, "activation")
        self.recurrent_activation = _act_name(
            recurrent_activation, self.name, "recurrent_activation"
        )
        self.use_bias, self.return_sequences = bool(use_bias), bool(return_sequences)
        self.return_state, self.go_backwards = bool(return_state), bool(go_backwards)
        self.unroll, self.zero_output_for_mask = bool(unroll), bool(zero_output_for_mask)
        self.reset_after, self.unit_forget_bias = bool(reset_after), bool(unit_forget_bias)
        self.dropout, self.recurrent_dropout = float(dropout), float(recurrent_dropout)
        for k, v in zip(_INITS, (kernel_initializer, recurrent_initializer, bias_initializer),
                        strict=True):  # fmt: skip
            setattr(self, k, initializers.get(v))
        for k, v in zip(_REGS, (kernel_regularizer, recurrent_regularizer, bias_regularizer),
                        strict=True):  # fmt: skip
            setattr(self, k, regs.get(v))
        self.kernel: Any = None
        self.recurrent_kernel: Any = None
        self.bias: Any = None
        if self.input_shape_hint is not None:
            self.build((None, *self.input_shape_hint))
            self.built = True

    # -- description -------------------------------------------------------------------
    @property
    def cell(self) -> _recurrence.Cell:
        return _recurrence.Cell(
            self.KIND, self.units, self.activation, self.recurrent_activation,
            self.reset_after, self.go_backwards, self.return_sequences,
            self.zero_output_for_mask,
        )  # fmt: skip

    @property
    def state_size(self) -> list[int]:
        return [self.units] * self.cell.n_states

    def _bias_init(self) -> Any:
        return self.bias_initializer

    def weight_specs(self, input_shape: Any) -> list[spec.WeightSpec]:
        if not isinstance(input_shape, tuple) or len(input_shape) != 3:
            raise InputValidationError(
                f"layer {self.name!r} expects input of shape (batch, time, features), "
                f"got {input_shape!r}"
            )
        k = _recurrence.GATES[self.KIND] * self.units
        out = [
            spec.WeightSpec("kernel", (input_shape[-1], k), self.kernel_initializer,
                            regularizer=self.kernel_regularizer),
            spec.WeightSpec("recurrent_kernel", (self.units, k), self.recurrent_initializer,
                            regularizer=self.recurrent_regularizer),
        ]  # fmt: skip
        if self.use_bias:
            shape = (2, k) if self.KIND == "gru" and self.reset_after else (k,)
            out.append(spec.WeightSpec("bias", shape, self._bias_init(),
                                       regularizer=self.bias_regularizer))  # fmt: skip
        return out

    def compute_output_shape(self, input_shape: Any) -> Any:
        B, T = input_shape[0], input_shape[1]
        out = (B, T, self.units) if self.return_sequences else (B, self.units)
        return [out, *[(B, self.units)] * self.cell.n_states] if self.return_state else out

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        """The output's mask: the input's for sequences, none for the last output."""
        out = mask if self.return_sequences else None
        return [out, *[None] * self.cell.n_states] if self.return_state else out

    @property
    def runs_on_arrays(self) -> bool:
        return not self.return_state

    def check_input(self, inputs: Any) -> None:
        if not isinstance(inputs, Tensor) or inputs.ndim != 3:
            raise InputValidationError(
                f"layer {self.name!r} expects input of shape (batch, time, "
                f"{self.kernel.shape[0]}), got shape {getattr(inputs, 'shape', None)}"
            )
        if inputs.shape[-1] != self.kernel.shape[0]:
            raise InputValidationError(
                f"layer {self.name!r} expects {self.kernel.shape[0]} features per step "
                f"(input shape (batch, time, {self.kernel.shape[0]})), got shape {inputs.shape}"
            )

    def _mask(self, ops: Any, mask: Any, shape: tuple[int, ...]) -> Any:
        if mask is None:
            return None
        data = mask.data if isinstance(mask, Tensor) else mask
        if not hasattr(data, "shape") or (ops.is_host and not isinstance(data, np.ndarray)):
            data = np.asarray(data)
        if isinstance(data, np.ndarray):
            data = ops.asarray(data)
        if tuple(data.shape) != tuple(shape[:2]):
            raise InputValidationError(
                f"layer {self.name!r} got a mask of shape {tuple(data.shape)} for input of "
                f"shape {tuple(shape)}; expected (batch, time) = {tuple(shape[:2])}"
            )
        return ops.xp.astype(data, ops.xp.bool)

    def _dropout(self, ops: Any, X: Any, training: bool) -> tuple[Any, Any]:
        """The inputs' and the recurrent state's dropout masks, one per sequence. With
        ``recurrent_dropout`` Keras 3's LSTM and GRU cells (implementation 1) draw one
        mask per gate for each, side by side: (batch, gates·features), (batch, gates·units)."""
        dt, B = X.dtype, X.shape[0]
        dp = rdp = None
        per_gate = self.recurrent_dropout > 0 and self.KIND != "simple"
        g = _recurrence.GATES[self.KIND] if per_gate else 1
        if training and self.dropout > 0:
            dp = ops.dropout_mask((B, g * X.shape[2]), self.dropout, dt)
        if training and self.recurrent_dropout > 0:
            rdp = ops.dropout_mask((B, g * self.units), self.recurrent_dropout, dt)
        return dp, rdp

    def _weights(self, ops: Any) -> tuple[Any, Any, Any]:
        b = None if self.bias is None else self.bias.data
        return self.kernel.data, self.recurrent_kernel.data, b

    def _add_grads(self, dW: Any, dU: Any, db: Any) -> None:
        add_grad(self.kernel, dW)
        add_grad(self.recurrent_kernel, dU)
        if self.bias is not None:
            add_grad(self.bias, db)

    # -- the protocol ------------------------------------------------------------------
    def _pass(
        self, ops: Any, X: Any, init: list[Any], M: Any, training: bool
    ) -> tuple[Any, list[Any], Any]:
        """``(Y, final states, back)`` on arrays; ``back(dY, dstates, need_dX)`` adds
        the weights' gradients and returns ``(dX, dstates0)``."""
        dp, rdp = self._dropout(ops, X, training)
        Y, states, run_back = _recurrence.run(
            ops, self.cell, X, *self._weights(ops), init, M, dp, rdp
        )

        def back(dY: Any, dS: list[Any], need_dX: bool) -> tuple[Any, list[Any]]:
            dX, dW, dU, db, d0 = run_back(dY, dS, need_dX)
            self._add_grads(dW, dU, db)
            return dX, d0

        return Y, states, back

    def forward_pass(
        self, ops: Any, X: Any, training: bool, mask: Any = None
    ) -> tuple[Any, Backprop]:
        """The layer on arrays (one output: ``return_state`` needs the tensor call)."""
        Y, _, back = self._pass(ops, X, [], self._mask(ops, mask, tuple(X.shape)), training)
        return Y, lambda dY, need_dX: back(dY, [], need_dX)[0]

    def call(
        self, inputs: Tensor, initial_state: Any = None, mask: Any = None, training: bool = False
    ) -> Any:
        ops = self.ops
        if mask is None:
            mask = getattr(inputs, "_keras_mask", None)
        M = self._mask(ops, mask, tuple(inputs.shape))
        init = self._initial(initial_state, inputs)
        penalties(self)
        Y, states, back = self._pass(
            ops, inputs.data, [None if s is None else s.data for s in init], M, training
        )
        n_out = 1 + len(states) if self.return_state else 1

        def backward(douts: list[Any]) -> tuple[list[Any], Any]:
            dX, d0 = back(douts[0], douts[1:], inputs.requires_grad)
            return [dX], d0

        outs = record_outputs(self, inputs, init, [Y, *states][:n_out], backward)
        return outs if self.return_state else outs[0]

    def _initial(self, initial_state: Any, inputs: Tensor) -> list[Any]:
        if initial_state is None:
            return [None] * self.cell.n_states
        states = (
            list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        )
        self.check_states([tuple(getattr(s, "shape", ())) for s in states], inputs.shape[0])
        return [self._convert(s) for s in states]

    def check_states(self, shapes: list[Any], batch: Any) -> None:
        """Raise unless ``shapes`` are those of this layer's initial states for a batch
        of ``batch`` rows (None: not known yet, as in a functional model)."""
        n, kind = self.cell.n_states, type(self).__name__
        if len(shapes) != n:
            raise InputValidationError(
                f"layer {self.name!r} takes {n} initial state(s), got {len(shapes)} "
                f"({kind}'s states are {'[h, c]' if n == 2 else '[h]'})"
            )
        want = (batch, self.units)
        for i, shape in enumerate(shapes):
            bad = len(shape) != 2 or shape[1] != self.units
            if bad or (None not in (batch, shape[0]) and shape[0] != batch):
                raise InputValidationError(
                    f"layer {self.name!r} expects initial states of shape {want}, "
                    f"got {shape} (state {i} of the {kind})"
                )

    def check_symbolic_call(self, input_shape: Any, kwargs: dict[str, Any]) -> None:
        """Check ``initial_state=`` of a call on symbolic tensors (their shapes)."""
        states = kwargs.get("initial_state")
        if states is not None:
            states = list(states) if isinstance(states, (list, tuple)) else [states]
            self.check_states([tuple(s.shape) for s in states], input_shape[0])

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        for k in ("activation", "recurrent_activation"):
            if k in cfg:
                cfg[k] = {"name": getattr(self, k)}
        for k in _INITS:
            cfg[k] = initializers.name_of(getattr(self, k))
        for k in _REGS:
            r = getattr(self, k)
            cfg[k] = None if r is None else r.get_config()
        return cfg


@spec.register
class SimpleRNN(_RNN):
    """Fully connected recurrence: ``h_t = activation(x_t @ W + h_{t-1} @ U + b)``.

    Args:
        units: Width of the state and the output.
        activation: Name of the activation (default ``"tanh"``).
        return_sequences: Output every step ``(batch, time, units)``, else the last.
        return_state: Also return the final state (a list ``[output, h]``).
        go_backwards: Read the sequence last step first (a sequence output stays
            in the order it was read, as Keras').
        dropout: Dropout rate of the inputs, recurrent_dropout: of the state fed to
            the recurrent product (one mask per sequence; training only).
        unroll: Accepted for Keras code; no effect.

    The weights are ``kernel (features, units)``, ``recurrent_kernel (units, units)``
    and ``bias (units,)``. Call it as ``layer(x, initial_state=..., mask=...)``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.SimpleRNN(4)(np.ones((2, 5, 3), dtype="float32")).shape
        (2, 4)
    """

    KIND = "simple"

    def __init__(self, units: int, activation: Any = "tanh", **kwargs: Any) -> None:
        super().__init__(units, activation, **kwargs)


@spec.register
class LSTM(_RNN):
    """Long short-term memory (Hochreiter 1997), as Keras' ``LSTM``.

    Args (besides SimpleRNN's):
        recurrent_activation: Activation of the gates (default ``"sigmoid"``).
        unit_forget_bias: Start the forget gate's bias at 1 (Keras' default).

    The weights are ``kernel (features, 4u)``, ``recurrent_kernel (u, 4u)`` and
    ``bias (4u,)``, the gates in the order i, f, c, o. With ``return_state`` the
    layer returns ``[output, h, c]``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> out, h, c = gn.layers.LSTM(4, return_state=True)(np.ones((2, 5, 3), "float32"))
        >>> out.shape, c.shape
        ((2, 4), (2, 4))
    """

    KIND = "lstm"
    CONFIG = {**_RNN.CONFIG, "recurrent_activation": spec.Activation(),
              "unit_forget_bias": spec.Bool()}  # fmt: skip

    def _bias_init(self) -> Any:
        return (
            _UnitForget(self.bias_initializer) if self.unit_forget_bias else self.bias_initializer
        )


class _UnitForget(initializers.Initializer):
    """The bias initializer, with the forget gate's quarter set to 1 (Keras)."""

    def __init__(self, base: initializers.Initializer) -> None:
        super().__init__()
        self.base = base

    def __call__(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        b = np.array(self.base(shape, dtype))
        n = shape[0] // 4
        b[n : 2 * n] = 1.0
        return b


@spec.register
class GRU(_RNN):
    """Gated recurrent unit (Cho 2014), as Keras' ``GRU``.

    Args (besides SimpleRNN's):
        recurrent_activation: Activation of the gates (default ``"sigmoid"``).
        reset_after: Apply the reset gate after the recurrent product (Keras' default
            and PyTorch's form; the bias is then ``(2, 3u)``: input and recurrent).

    Gates in the order z, r, h: ``kernel (features, 3u)``, ``recurrent_kernel (u, 3u)``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.GRU(4, return_sequences=True)(np.ones((2, 5, 3), "float32")).shape
        (2, 5, 4)
    """

    KIND = "gru"
    CONFIG = {**_RNN.CONFIG, "recurrent_activation": spec.Activation(),
              "reset_after": spec.Bool()}  # fmt: skip
