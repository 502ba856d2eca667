"""``Layer``: parameters, lazy build, device placement and train/eval mode.

A layer owns parameters and composes graph ops; it has no hand-written backward.
Sublayers and parameters assigned as attributes are tracked in order, as in
PyTorch modules, so subclassed models need no registration calls.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np

from gpunet import config, initializers
from gpunet import regularizers as regs
from gpunet.autograd import Tensor, as_tensor
from gpunet.backend import get_ops
from gpunet.errors import InputValidationError, InvalidParameterError

_name_counts: defaultdict[str, itertools.count[int]] = defaultdict(itertools.count)
_call_training: list[bool] = []  # the training flag of the outermost call
call_hooks: list[Any] = []  # f(layer, output) after every layer call (NaN probing)


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def unique_name(base: str) -> str:
    n = next(_name_counts[base])
    return base if n == 0 else f"{base}_{n}"


class Parameter(Tensor):
    """A weight: a leaf tensor owned by a layer (``trainable=False``: a buffer such
    as batch-norm statistics, saved but not optimized)."""

    __slots__ = ("regularizer", "trainable")

    def __init__(
        self, data: Any, ops: Any, *, name: str, trainable: bool = True, regularizer: Any = None
    ) -> None:
        super().__init__(data, ops, requires_grad=trainable, name=name)
        self.trainable = trainable
        self.regularizer = regularizer

    def assign(self, value: Any) -> None:
        """Overwrite the values in place (views into flat buffers stay valid)."""
        value = np.asarray(value) if not hasattr(value, "shape") else value
        if tuple(value.shape) != self.shape:
            raise InputValidationError(
                f"weight {self.name!r} has shape {self.shape}, got {tuple(value.shape)}"
            )
        self.ops.assign(self.data, self.ops.asarray(value, dtype=self.dtype))


class Layer:
    """Base class of layers and models.

    Args:
        name: Unique name (default from the class name: ``dense``, ``dense_1``...).
        dtype: Float dtype of the weights (default ``gn.config.floatx()``).
        trainable: Whether ``fit`` and optimizers update this layer's weights.
        input_shape: Shape of one sample, e.g. ``(10,)``; builds the layer at once
            (tutorial style; lazy building from the first input works too).
        input_dim: Same as ``input_shape=(input_dim,)``.
    """

    _params: list[Parameter]
    _layers: list[Layer]

    def __init__(
        self,
        *,
        name: str | None = None,
        dtype: Any = None,
        trainable: bool = True,
        input_shape: Any = None,
        input_dim: int | None = None,
        batch_input_shape: Any = None,
    ) -> None:
        object.__setattr__(self, "_params", [])
        object.__setattr__(self, "_layers", [])
        self.name = name or unique_name(_snake(type(self).__name__))
        self.dtype = str(np.dtype(dtype or config.floatx()))
        self._dt: Any = None
        self._dt_ops: Any = None
        self._trainable = trainable
        self.built = False
        self.training = True  # PyTorch default; fit/evaluate pass training explicitly
        self._ops: Any = None
        self.losses: list[Tensor] = []
        if batch_input_shape is not None:
            input_shape = tuple(batch_input_shape)[1:]
        if input_dim is not None:
            input_shape = (int(input_dim),)
        self.input_shape_hint = _shape_tuple(input_shape) if input_shape is not None else None
        self.output_shape: tuple[Any, ...] | None = None

    # -- tracking ------------------------------------------------------------------
    def __setattr__(self, key: str, value: Any) -> None:
        if isinstance(value, Layer) and key != "_parent" and value not in self._layers:
            self._layers.append(value)
            if self._ops is not None and value._ops is None:
                value.to(self._ops)
        elif isinstance(value, Parameter) and all(p is not value for p in self._params):
            self._params.append(value)
        object.__setattr__(self, key, value)

    @property
    def ops(self) -> Any:
        if self._ops is None:
            self._ops = get_ops("cpu")
        return self._ops

    @property
    def device(self) -> str:
        return str(self.ops.device)

    @property
    def layers(self) -> list[Any]:
        """The sublayers, in order (a user attribute named ``layers`` takes precedence,
        as PyTorch code often writes ``self.layers = nn.Sequential(...)``)."""
        own = self.__dict__.get("_layers_attr")
        return own if own is not None else list(self._layers)

    @layers.setter
    def layers(self, value: Any) -> None:
        self.__dict__["_layers_attr"] = value

    def _walk(self) -> Iterator[Layer]:
        yield self
        for layer in self._layers:
            yield from layer._walk()

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        for layer in self._walk():
            layer._trainable = bool(value)
            for p in layer._params:
                p.requires_grad = bool(value) and p.trainable

    @property
    def weights(self) -> list[Parameter]:
        """All weights, trainable first within each layer (Keras order)."""
        seen: dict[int, Parameter] = {}
        for layer in self._walk():
            for p in layer._params:
                seen.setdefault(id(p), p)
        return list(seen.values())

    @property
    def trainable_weights(self) -> list[Parameter]:
        return [p for p in self.weights if p.requires_grad]

    @property
    def non_trainable_weights(self) -> list[Parameter]:
        return [p for p in self.weights if not p.requires_grad]

    def parameters(self) -> list[Parameter]:
        """The trainable weights (PyTorch name), for ``gn.optim.Adam(model.parameters())``."""
        return self.trainable_weights

    def count_params(self) -> int:
        return int(sum(int(np.prod(p.shape)) for p in self.weights))

    def add_weight(
        self,
        name: str,
        shape: Any,
        initializer: Any = "zeros",
        *,
        regularizer: Any = None,
        trainable: bool = True,
    ) -> Parameter:
        """Create a weight drawn on the host by ``initializer`` and put it on the device."""
        init = initializers.get(initializer)
        data = self.ops.asarray(init(tuple(shape), self.dtype), dtype=self.dtype)
        p = Parameter(
            data,
            self.ops,
            name=f"{self.name}/{name}",
            trainable=trainable,
            regularizer=regs.get(regularizer),
        )
        p.requires_grad = trainable and self._trainable
        self._params.append(p)
        return p

    # -- calling ---------------------------------------------------------------------
    def build(self, input_shape: Any) -> None:
        """Create weights for inputs of ``input_shape`` (batch axis first)."""

    def call(self, *args: Any, **kwargs: Any) -> Any:
        """The forward computation on tensors; subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} must define call()")

    def __call__(self, *args: Any, training: bool | None = None, **kwargs: Any) -> Any:
        if not args:
            raise TypeError(f"layer {self.name!r} was called without an input")
        inputs = args[0]
        ops = self.ops
        if self._dt_ops is not ops:  # the dtype object of this device's namespace
            self._dt, self._dt_ops = ops.dtype(self.dtype), ops
        if type(inputs) is not Tensor or inputs.ops is not ops or inputs.dtype != self._dt:
            inputs = self._convert(inputs)  # the hot path (right device and dtype) skips it
        if not self.built:
            self.build(_shapes(inputs))
            self.built = True
        self.check_input(inputs)
        if training is None:
            training = _call_training[-1] if _call_training else self.training
        _call_training.append(bool(training))
        state = self.__dict__  # plain attributes: skip the tracking __setattr__
        state["losses"] = []
        try:
            if _accepts_training(self):
                out = self.call(inputs, *args[1:], training=training, **kwargs)
            else:
                out = self.call(inputs, *args[1:], **kwargs)
        finally:
            _call_training.pop()
        if state["output_shape"] is None:
            state["output_shape"] = _shapes(out)
        if call_hooks:
            for hook in call_hooks:
                hook(self, out)
        return out

    def _convert(self, x: Any) -> Any:
        if isinstance(x, (list, tuple)) and x and isinstance(x[0], (Tensor, np.ndarray)):
            return [self._convert(v) for v in x]
        if isinstance(x, Tensor):
            x = as_tensor(x, self.ops)
            # float inputs take the layer's dtype (Keras' autocast): no silent upcast
            if x.dtype != self._dt and self.ops.xp.isdtype(x.dtype, "real floating"):
                from gpunet.functional import cast

                x = cast(x, self._dt)
            return x
        arr = np.asarray(x)
        if arr.dtype.kind not in "biuf":
            raise InputValidationError(
                f"layer {self.name!r} got an input of dtype {arr.dtype}; expected numbers"
            )
        return Tensor(self.ops.asarray(arr, dtype=self.dtype), self.ops)

    def check_input(self, inputs: Any) -> None:
        """Raise a clear error when ``inputs`` do not fit the built layer."""

    def collect_losses(self) -> list[Tensor]:
        """Regularization losses of this layer and its sublayers from the last call."""
        return [loss for layer in self._walk() for loss in layer.losses]

    # -- modes and devices --------------------------------------------------------------
    def train(self, mode: bool = True) -> Layer:
        """Training mode for this layer and every sublayer (PyTorch)."""
        for layer in self._walk():
            layer.training = bool(mode)
        return self

    def eval(self) -> Layer:
        """Inference mode: dropout off, batch norm uses its moving statistics."""
        return self.train(False)

    def to(self, device: Any) -> Layer:
        """Move every weight (and gradient) to ``device``; returns ``self``."""
        ops = get_ops(device)
        for layer in self._walk():
            for p in layer._params:
                if p.ops is not ops:
                    grad = p._grad
                    p.data = ops.asarray(p.ops.to_numpy(p.data))
                    p._gbuf = None
                    p._grad = None if grad is None else ops.asarray(p.ops.to_numpy(grad))
                    p.ops = ops
            layer._ops = ops
        return self

    def zero_grad(self) -> None:
        for p in self.weights:
            p.zero_grad()

    # -- weights in the Keras layout --------------------------------------------------------
    def get_weights(self) -> list[np.ndarray]:
        """Every weight as a NumPy array (Dense: kernel ``(in, out)``, then bias)."""
        return [p.numpy().copy() for p in self.weights]

    def set_weights(self, weights: list[Any]) -> None:
        params = self.weights
        if len(weights) != len(params):
            raise InputValidationError(
                f"{self.name!r} has {len(params)} weights, got a list of {len(weights)}"
            )
        for p, w in zip(params, weights, strict=True):
            p.assign(w)

    def get_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "trainable": self._trainable}
        if self.input_shape_hint is not None:
            cfg["input_shape"] = list(self.input_shape_hint)
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


def _shape_tuple(shape: Any) -> tuple[Any, ...]:
    if isinstance(shape, int):
        return (shape,)
    try:
        return tuple(None if s is None else int(s) for s in shape)
    except TypeError:
        raise InvalidParameterError(f"input_shape must be a tuple of ints, got {shape!r}") from None


def _shapes(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        return [_shapes(v) for v in x]
    return tuple(x.shape) if hasattr(x, "shape") else None


_ACCEPTS: dict[type, bool] = {}


def takes_training(fn: Any) -> bool:
    """Whether ``fn`` has a parameter named ``training`` (without importing inspect,
    which costs more at import time than this whole module)."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return False
    n = code.co_argcount + code.co_kwonlyargcount
    return "training" in code.co_varnames[:n] or bool(code.co_flags & 0x08)  # **kwargs


def _accepts_training(layer: Layer) -> bool:
    cls = type(layer)
    known = _ACCEPTS.get(cls)
    if known is None:
        known = _ACCEPTS[cls] = takes_training(cls.call)
    return known
