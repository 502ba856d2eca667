"""``Layer``: parameters, lazy build, device placement, train/eval mode, and the
layer protocol every training path runs on.

A layer that computes on arrays defines ``forward_pass(ops, X, training)``, which
returns its output ``Y`` and ``backprop(dY, need_dX)``: the function that writes the
gradients of the layer's weights (into the optimizer's flat buffer when it can) and
returns ``dX``. The autograd graph records that pair as one node; the graph-free step
(``gpunet.engine.step``) calls the same pairs in a loop. (It is not called ``forward``:
that is the PyTorch user's method on ``gn.nn.Module`` subclasses.) A layer written with
tensor ops in ``call`` works too, on the graph only.

Sublayers and parameters assigned as attributes are tracked in order, as in PyTorch
modules, so subclassed models need no registration calls.
"""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np

from gpunet import initializers, mixed_precision
from gpunet import regularizers as regs
from gpunet.autograd import Tensor, as_tensor
from gpunet.backend import get_ops
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers import _masks

# the protocol's helpers, re-exported: layer authors import them from here
from gpunet.layers._protocol import Backprop as Backprop
from gpunet.layers._protocol import add_grad as add_grad
from gpunet.layers._protocol import grad_out as grad_out
from gpunet.layers._protocol import penalties as penalties
from gpunet.layers._protocol import record_pass as record_pass
from gpunet.layers.spec import WeightSpec
from gpunet.layers.spec import snake_case as _snake

_name_counts: defaultdict[str, itertools.count[int]] = defaultdict(itertools.count)


_NO_EFFECT = ("autocast", "aggregation")  # add_weight arguments of Keras' that change nothing here


class _CallState(threading.local):
    """Per-thread call state: the training flag of the outermost call, and hooks that
    see every layer output (NaN probing). Threads never see each other's."""

    def __init__(self) -> None:
        self.training: list[tuple[bool, Any]] = []  # (training, ops) of each call in progress
        self.hooks: list[Any] = []
        self.zero_init = False  # build with zeros: the weights are about to be loaded
        self.describing: list[WeightSpec] | None = None  # add_weight records, allocates nothing


_local = _CallState()


class _Hooks:
    """``call_hooks``: f(layer, output) after every layer call, in this thread."""

    def append(self, hook: Any) -> None:
        _local.hooks.append(hook)

    def remove(self, hook: Any) -> None:
        _local.hooks.remove(hook)

    def __bool__(self) -> bool:
        return bool(_local.hooks)

    def __iter__(self) -> Iterator[Any]:
        return iter(list(_local.hooks))


call_hooks = _Hooks()
structure_version = [0]  # bumped when any model's layers or weights change: training
# keeps its step plan between train_on_batch calls while it stays the same


def structure_changed() -> None:
    """Note that layers or weights were added, moved or (un)frozen somewhere."""
    structure_version[0] += 1


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


def _node_attr(what: str) -> Any:
    """``layer.input`` / ``layer.output``: the symbolic tensors of the layer's first call
    on symbolic tensors (Keras); an attribute of that name set by the user wins (PyTorch
    code writes ``self.output = nn.Linear(...)``)."""

    def get(self: Layer) -> Any:
        own, node = self.__dict__.get(f"_{what}_attr"), self.__dict__.get("_node0")
        if own is not None:
            return own
        if node is not None:
            return node.inputs if what == "input" else list(node.siblings) or node
        raise AttributeError(
            f"layer {self.name!r} has never been called on symbolic tensors, so it has "
            f"no defined {what} (call it on gn.Input(...) or give the model an input shape)"
        )

    return property(get, lambda self, value: self.__dict__.__setitem__(f"_{what}_attr", value))


class Layer:
    """Base class of layers and models.

    Args:
        name: Unique name (default from the class name: ``dense``, ``dense_1``...).
        dtype: Float dtype of the weights, or a dtype policy (``"mixed_float16"``,
            ``gn.mixed_precision.DTypePolicy``); default the global policy
            (``gn.mixed_precision.global_policy()``, which follows ``gn.config.floatx()``).
        trainable: Whether ``fit`` and optimizers update this layer's weights.
        input_shape: Shape of one sample, e.g. ``(10,)``; builds the layer at once
            (tutorial style; lazy building from the first input works too).
        input_dim: Same as ``input_shape=(input_dim,)``.
    """

    _params: list[Parameter]
    _layers: list[Layer]
    dtype: str  # the variable dtype (Keras 3), set with the policy
    _dtype_policy: Any
    CONFIG: dict[str, Any] = {}  # config field -> type (gpunet.layers.spec), for saving
    prob_activation: str | None = None  # "sigmoid"/"softmax" when the output is one of
    # logits the layer can hand over instead (forward_pass(..., logits=True)), so a
    # following cross-entropy fuses with it (gradient p - y)
    supports_masking = False  # Keras: True passes the input's mask on (gpunet.layers.masking)
    int_inputs = False  # integer inputs stay integers (ids), not cast to the layer's dtype
    # the mode of a call given no training= outside any other layer's call: Keras runs a
    # direct call as inference (dropout off, batch norm on its moving statistics);
    # PyTorch modules start in training mode (TorchModule says so), until .eval()
    training = False

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
        self.dtype_policy = mixed_precision.resolve(dtype)
        self._dt: Any = None
        self._dt_ops: Any = None
        self._trainable = trainable
        self.built = False
        self._ops: Any = None
        self.losses: list[Tensor] = []
        if batch_input_shape is not None:
            input_shape = tuple(batch_input_shape)[1:]
        if input_dim is not None:
            input_shape = (int(input_dim),)
        self.input_shape_hint = _shape_tuple(input_shape) if input_shape is not None else None
        self.built_input_shape: Any = None  # the shape the first call built it for
        self.output_shape: tuple[Any, ...] | None = None

    # -- dtype policy (Keras 3) ------------------------------------------------------
    @property
    def dtype_policy(self) -> Any:
        return self._dtype_policy

    @dtype_policy.setter
    def dtype_policy(self, value: Any) -> None:
        policy = mixed_precision.resolve(value)
        self.__dict__["_dtype_policy"] = policy
        self.__dict__["dtype"] = policy.variable_dtype  # Keras 3: layer.dtype is this
        self.__dict__["_dt_ops"] = None

    @property
    def compute_dtype(self) -> str:
        return str(self._dtype_policy.compute_dtype)

    @property
    def variable_dtype(self) -> str:
        return str(self._dtype_policy.variable_dtype)

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
        structure_changed()
        for layer in self._walk():
            layer._trainable = bool(value)
            for p in layer._params:
                p.requires_grad = bool(value) and p.trainable

    @property
    def weights(self) -> list[Parameter]:
        """All weights, trainable first within each layer (Keras order)."""
        seen: dict[int, Parameter] = {}
        for layer in self._walk():
            for p in sorted(layer._params, key=lambda p: not p.trainable):
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
        name: Any = None,
        shape: Any = None,
        initializer: Any = None,
        trainable: bool = True,
        regularizer: Any = None,
        dtype: Any = None,
        **ignored: Any,
    ) -> Parameter:
        """Create a weight drawn on the host by ``initializer`` (default
        ``"glorot_uniform"``, as Keras') and put it on the device. Both Keras
        spellings work: ``add_weight(shape=(3, 4), initializer="random_normal",
        name="w")`` (Keras 3, shape first) and ``add_weight("w", (3, 4), "zeros")``.

        Example:
            >>> import gpunet as gn
            >>> layer = gn.layers.Layer()
            >>> layer.add_weight(shape=(2, 3), initializer="ones", name="w").shape
            (2, 3)
        """
        if name is not None and not isinstance(name, str):  # Keras 3 positional order
            name, shape, initializer, dtype = None, name, shape, dtype or initializer
        bad = sorted(k for k, v in ignored.items() if v is not None and k not in _NO_EFFECT)
        if bad:
            raise InvalidParameterError(f"add_weight of {self.name!r}: unsupported {bad}")
        shape = (shape,) if isinstance(shape, int) else tuple(shape or ())
        if name is None:  # Keras names them variable, variable_1, ...
            taken = {str(p.name).rsplit("/", 1)[-1] for p in self._params}
            taken |= {w.name for w in _local.describing or ()}
            name = next(n for k in range(len(taken) + 1)
                        if (n := f"variable_{k}" if k else "variable") not in taken)  # fmt: skip
        dt = str(np.dtype(dtype)) if dtype is not None else self.dtype
        initializer = "glorot_uniform" if initializer is None else initializer
        if _local.describing is not None:  # record what build() would create, allocate nothing
            _local.describing.append(WeightSpec(name, shape, initializer, trainable, regularizer))
            return Tensor(np.broadcast_to(np.zeros((), dt), shape), self.ops)  # type: ignore[return-value]
        if _local.zero_init:  # drawing values a file overwrites would be wasted work
            data = self.ops.zeros(shape, dt)
        else:
            init = initializers.get(initializer)
            data = self.ops.asarray(init(shape, dt), dtype=dt)
        p = Parameter(
            data,
            self.ops,
            name=f"{self.name}/{name}",
            trainable=trainable,
            regularizer=regs.get(regularizer),
        )
        p.requires_grad = trainable and self._trainable
        self._params.append(p)
        structure_changed()
        return p

    add_variable = add_weight  # Keras 3's other name for it

    def add_loss(self, value: Any) -> None:
        """Add ``value`` (a scalar tensor computed in ``call``) to the training loss,
        with the regularization penalties (Keras' ``add_loss``; cleared each call).

        Example:
            >>> import numpy as np, gpunet as gn
            >>> class Penalized(gn.layers.Layer):
            ...     def call(self, x):
            ...         self.add_loss((x * x).mean())
            ...         return x
            >>> layer = Penalized()
            >>> _ = layer(np.full((2, 2), 3.0))
            >>> [float(v.item()) for v in layer.losses]
            [9.0]
        """
        self.__dict__["adds_losses"] = True
        self.losses.append(value if isinstance(value, Tensor) else as_tensor(value, self.ops))

    input = _node_attr("input")
    output = _node_attr("output")

    # -- calling ---------------------------------------------------------------------
    def weight_specs(self, input_shape: Any) -> list[WeightSpec]:
        """The weights this layer creates for inputs of ``input_shape`` (batch first)."""
        return []

    def compute_output_shape(self, input_shape: Any) -> Any:
        """The output shape for ``input_shape`` (batch axis first; None where unknown)."""
        return input_shape

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        """The output's mask given the input's (tensors; arrays in the graph-free step):
        by default the input's, for layers with ``supports_masking`` (Keras)."""
        return mask

    def build(self, input_shape: Any) -> None:
        """Create the weights of :meth:`weight_specs` (as attributes of their names)."""
        for w in self.weight_specs(input_shape):
            p = self.add_weight(
                w.name, w.shape, w.initializer, regularizer=w.regularizer, trainable=w.trainable
            )
            object.__setattr__(self, w.name, p)

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        """The layer on arrays: ``(Y, backprop)`` (see the module docstring)."""
        raise NotImplementedError(f"{type(self).__name__} has no forward_pass")

    @property
    def runs_on_arrays(self) -> bool:
        """Whether ``forward_pass`` computes all that ``call`` does, so the graph-free
        step may run this layer (a layer with its own ``call`` says so itself)."""
        return has_forward_pass(self) and type(self).call is Layer.call

    def call(self, *args: Any, **kwargs: Any) -> Any:
        """The forward computation on tensors: subclasses define it, or define
        ``forward_pass`` and get this one, which records it as one graph node."""
        if not has_forward_pass(self):
            raise NotImplementedError(f"{type(self).__name__} must define call() or forward_pass()")
        mask = {"mask": kwargs["mask"]} if "mask" in kwargs else {}
        return record_pass(self, args[0], bool(kwargs.get("training", False)), **mask)

    def __call__(self, *args: Any, training: bool | None = None, **kwargs: Any) -> Any:
        if not args:
            raise TypeError(f"layer {self.name!r} was called without an input")
        inputs = args[0]
        ops = self.ops
        if self._dt_ops is not ops:  # the dtype object of this device's namespace
            mixed = self._dtype_policy.is_mixed  # else self.dtype (a model sets it itself)
            store = mixed_precision.storage_dtype(ops, self.compute_dtype) if mixed else self.dtype
            self._dt, self._dt_ops = ops.dtype(store), ops
        if type(inputs) is not Tensor or inputs.ops is not ops or inputs.dtype != self._dt:
            from gpunet.engine import functional

            if functional.is_symbolic(inputs):  # building a functional model
                kw = {} if training is None else {"training": training}
                return functional.symbolic_call(self, inputs, {**kw, **kwargs})
            inputs = self._convert(inputs)  # the hot path (right device and dtype) skips it
        if not self.built:
            self.built_input_shape = _shapes(inputs)
            self.build(self.built_input_shape)
            self.built = True
        self.check_input(inputs)
        mask = _masks.take(self, inputs, args, kwargs)
        stack = _local.training  # (training, ops) of the calls in progress: the device is
        if training is None:  # where gn.ops / gn.random put the constants a call creates
            training = stack[-1][0] if stack else self.training
        stack.append((bool(training), ops))
        state = self.__dict__  # plain attributes: skip the tracking __setattr__
        state["losses"] = []
        try:
            if _accepts_training(self):
                out = self.call(inputs, *args[1:], training=training, **kwargs)
            else:
                out = self.call(inputs, *args[1:], **kwargs)
        finally:
            stack.pop()
        if state["output_shape"] is None:
            state["output_shape"] = _shapes(out)
        if mask is not None or _masks.makes_mask(type(self)):
            _masks.attach(self, inputs, out, mask)
        if _local.hooks:
            for hook in list(_local.hooks):
                hook(self, out)
        return out

    def _convert(self, x: Any) -> Any:
        if isinstance(x, (list, tuple)) and x and isinstance(x[0], (Tensor, np.ndarray)):
            return [self._convert(v) for v in x]
        if isinstance(x, dict):  # named inputs of a functional model
            return {k: self._convert(v) for k, v in x.items()}
        if isinstance(x, Tensor):
            x = as_tensor(x, self.ops)
            # float inputs take the layer's dtype (Keras' autocast): no silent upcast
            if (  # under autocast each layer's rule decides (gpunet.mixed_precision)
                x.dtype != self._dt
                and self.ops.xp.isdtype(x.dtype, "real floating")
                and not mixed_precision.autocasting()
            ):
                from gpunet.functional import cast

                x = cast(x, self._dt)
            return x
        arr = np.asarray(x)
        if arr.dtype.kind not in "biuf":
            raise InputValidationError(
                f"layer {self.name!r} got an input of dtype {arr.dtype}; expected numbers"
            )
        if self.int_inputs and arr.dtype.kind in "biu":
            return Tensor(self.ops.asarray(arr), self.ops)
        return Tensor(self.ops.asarray(arr, dtype=self._dt or self.dtype), self.ops)

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
        structure_changed()
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
        policy = self._dtype_policy  # a mixed policy by name, else the dtype (as before)
        cfg: dict[str, Any] = {"name": self.name, "dtype": policy.name if policy.is_mixed
                               else self.dtype, "trainable": self._trainable}  # fmt: skip
        if self.input_shape_hint is not None:
            cfg["input_shape"] = list(self.input_shape_hint)
        for key in type(self).CONFIG:  # plain fields (ints, floats, bools, tuples) by name
            value = getattr(self, key, None)
            cfg[key] = list(value) if isinstance(value, tuple) else value
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


_HAS_PASS: dict[type, bool] = {}


def has_forward_pass(layer: Any) -> bool:
    """Whether ``layer`` follows the array protocol (defines ``forward_pass``)."""
    cls = type(layer)
    known = _HAS_PASS.get(cls)
    if known is None:
        known = _HAS_PASS[cls] = getattr(cls, "forward_pass", None) is not Layer.forward_pass
    return known


class zero_init:
    """Context manager: layers built inside draw no initial values (all zeros), for
    weights that are loaded right after."""

    def __enter__(self) -> None:
        self._prev = _local.zero_init
        _local.zero_init = True

    def __exit__(self, *exc: object) -> None:
        _local.zero_init = self._prev
