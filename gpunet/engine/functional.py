"""The Keras functional API: ``Input``, layers called on symbolic tensors, and
``Model(inputs, outputs)``.

Calling a layer on a :class:`SymbolicTensor` builds it for that shape and returns a
new symbolic tensor that remembers the call (the layer, its inputs, its keyword
arguments). ``Model(inputs, outputs)`` walks those calls back from the outputs once,
in topological order, and replays them on real tensors at every call, so shared
layers, residual adds, several inputs and outputs, and models used as layers all
train through the same autograd graph.

Example:
    >>> import numpy as np, gpunet as gn
    >>> x = gn.Input(shape=(4,))
    >>> h = gn.layers.Dense(8, activation="relu")(x)
    >>> y = gn.layers.Dense(2)(gn.layers.Add()([h, gn.layers.Dense(8)(x)]))
    >>> model = gn.Model(x, y)
    >>> model(np.ones((3, 4))).shape
    (3, 2)

A layer of several outputs gives one symbolic tensor per output, and ``initial_state=``
takes symbolic tensors (Keras' seq2seq: the encoder's states start the decoder):

    >>> src, tgt = gn.Input(shape=(None, 3)), gn.Input(shape=(None, 2))
    >>> _, h, c = gn.layers.LSTM(4, return_state=True)(src)
    >>> seq = gn.layers.LSTM(4, return_sequences=True)(tgt, initial_state=[h, c])
    >>> model = gn.Model([src, tgt], [seq, h])
    >>> [a.shape for a in model.predict([np.ones((2, 5, 3)), np.ones((2, 7, 2))], verbose=0)]
    [(2, 7, 4), (2, 4)]
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from gpunet import config
from gpunet.autograd import Tensor, no_grad
from gpunet.errors import InputValidationError, InvalidParameterError

_input_ids = itertools.count()


class SymbolicTensor:
    """A placeholder for a batch of data: a shape (batch axis first, None where not
    known yet), a dtype, and the layer call that makes it (None for an ``Input``).

    A call with several outputs (``LSTM(return_state=True)``) makes one tensor per
    output; they share ``siblings`` (all of them, in order) and the first stands for
    the call in the model's graph."""

    __slots__ = ("_keras_mask", "dtype", "inputs", "kwargs", "layer", "name", "shape", "siblings")

    def __init__(self, shape: tuple[Any, ...], dtype: str, layer: Any = None,
                 inputs: Any = None, kwargs: dict[str, Any] | None = None,
                 name: str | None = None) -> None:  # fmt: skip
        self.shape, self.dtype = tuple(shape), str(dtype)
        self.layer, self.inputs, self.kwargs = layer, inputs, kwargs or {}
        self.name = name or (layer.name if layer is not None else f"input_{next(_input_ids)}")
        self._keras_mask: SymbolicTensor | None = None  # the symbolic (batch, time) mask
        self.siblings: tuple[SymbolicTensor, ...] = ()  # every output of a multi-output call

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __add__(self, other: Any) -> SymbolicTensor:
        from gpunet.layers import Add

        out: SymbolicTensor = Add()([self, other])
        return out

    def __repr__(self) -> str:
        return f"<SymbolicTensor shape={self.shape} dtype={self.dtype} name={self.name!r}>"


def Input(shape: Any = None, batch_size: int | None = None, dtype: Any = None,
          name: str | None = None, batch_shape: Any = None) -> SymbolicTensor:  # fmt: skip
    """A symbolic input of samples of ``shape`` (without the batch axis), as Keras'.

    Raises:
        InvalidParameterError: for a shape that is not a tuple of positive ints/None.
    """
    if batch_shape is not None:
        full = tuple(batch_shape)
    else:
        if shape is None:
            raise InvalidParameterError("Input needs shape=(...) (one sample's shape)")
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        full = (batch_size, *dims)
    for d in full[1:]:
        if d is not None and (isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1):
            raise InvalidParameterError(f"Input shape must hold positive ints or None, got {full}")
    dt = str(np.dtype(dtype or config.floatx()))
    return SymbolicTensor(tuple(None if d is None else int(d) for d in full), dt, name=name)


def is_symbolic(x: Any) -> bool:
    if isinstance(x, SymbolicTensor):
        return True
    if isinstance(x, (list, tuple)):
        return any(isinstance(v, SymbolicTensor) for v in x)
    if isinstance(x, dict):
        return any(isinstance(v, SymbolicTensor) for v in x.values())
    return False


def flatten(struct: Any) -> list[Any]:
    """The leaves of a tensor, a list/tuple or a dict (in key order) of them."""
    if isinstance(struct, dict):
        return [v for k in struct for v in flatten(struct[k])]
    if isinstance(struct, (list, tuple)):
        return [v for s in struct for v in flatten(s)]
    return [struct]


def rebuild(struct: Any, leaves: Any) -> Any:
    """``struct`` with its leaves replaced, in order, by those of the iterator ``leaves``."""
    if isinstance(struct, dict):
        return {k: rebuild(v, leaves) for k, v in struct.items()}
    if isinstance(struct, (list, tuple)):
        return [rebuild(v, leaves) for v in struct]
    return next(leaves)


def _kwarg_tensors(layer: Any, kwargs: dict[str, Any]) -> list[SymbolicTensor]:
    """The symbolic tensors among a call's keyword arguments (``initial_state=``).

    Raises:
        InvalidParameterError: for an array among them (a functional graph replays its
            calls on new data, so a fixed array would be silently reused).
    """
    found = []
    for key, value in kwargs.items():
        for v in flatten(value):
            if isinstance(v, SymbolicTensor):
                found.append(v)
            elif hasattr(v, "shape") and hasattr(v, "dtype"):
                raise InvalidParameterError(
                    f"layer {layer.name!r} was given {key}= an array of shape "
                    f"{tuple(v.shape)} in a functional model; pass a symbolic tensor (a "
                    f"gn.Input, or a layer's output) of shape (None, ...) instead"
                )
    return found


def parents(node: SymbolicTensor) -> list[SymbolicTensor]:
    """The tensors a call reads: its inputs, then those among its keyword arguments."""
    return [*flatten(node.inputs), *(v for v in flatten(list(node.kwargs.values()))
                                     if isinstance(v, SymbolicTensor))]  # fmt: skip


def replay_kwargs(node: SymbolicTensor, values: dict[int, Any]) -> dict[str, Any]:
    """A call's keyword arguments with their symbolic tensors replaced by ``values``."""
    out = {}
    for key, value in node.kwargs.items():
        leaves = flatten(value)
        if any(isinstance(v, SymbolicTensor) for v in leaves):
            value = rebuild(value, iter([values[id(v)] if isinstance(v, SymbolicTensor) else v
                                         for v in leaves]))  # fmt: skip
        out[key] = value
    return out


def _output_shape(layer: Any, shapes: Any, inputs: Any, kwargs: dict[str, Any]) -> Any:
    from gpunet.layers.base import Layer

    fn = type(layer).compute_output_shape
    if fn is Layer.compute_output_shape:  # work it out by running the layer on a batch of one
        return _probe_shape(layer, inputs)
    code = fn.__code__  # keywords that change the outputs (return_attention_scores)
    names = code.co_varnames[2 : code.co_argcount + code.co_kwonlyargcount]
    return layer.compute_output_shape(shapes, **{k: v for k, v in kwargs.items() if k in names})


def symbolic_call(layer: Any, inputs: Any, kwargs: dict[str, Any]) -> Any:
    """Record ``layer(inputs, **kwargs)`` on symbolic tensors: build the layer for
    their shapes and work out the output's shape; a layer of several outputs gives a
    list of symbolic tensors, one per output."""
    for t in flatten(inputs):
        if not isinstance(t, SymbolicTensor):
            raise InvalidParameterError(
                f"layer {layer.name!r} was called on a mix of symbolic tensors and "
                f"{type(t).__name__}; wrap constants in a layer or use gn.Input for every input"
            )
    _kwarg_tensors(layer, kwargs)
    shapes = rebuild(inputs, iter([t.shape for t in flatten(inputs)]))
    shapes = tuple(shapes) if isinstance(shapes, list) and not isinstance(inputs, list) else shapes
    if not layer.built and not hasattr(layer, "_nodes"):
        layer.built_input_shape = shapes
        layer.build(shapes)
        layer.built = True
    check = getattr(layer, "check_symbolic_call", None)
    if check is not None:  # e.g. initial_state's shapes, named with the layer
        check(shapes, kwargs)
    out = _output_shape(layer, shapes, inputs, kwargs)
    several = isinstance(out, list) and all(isinstance(s, tuple) for s in out) and out
    if not isinstance(out, tuple) and not several:
        raise InvalidParameterError(
            f"layer {layer.name!r} gives an output of unknown shape ({out!r}) on inputs of "
            f"shape {shapes}; define its compute_output_shape to use it in a functional model"
        )
    from gpunet.layers import _masks

    mask = _masks.symbolic(layer, inputs, _masks.mask_of(inputs))
    if not several:
        node = SymbolicTensor(out, layer.dtype, layer, inputs, kwargs)
        node._keras_mask = mask
        layer.__dict__.setdefault("_node0", node)  # layer.input / layer.output (Keras)
        return node
    outs = [SymbolicTensor(s, layer.dtype, layer, inputs, kwargs,
                           name=layer.name if i == 0 else f"{layer.name}:{i}")
            for i, s in enumerate(out)]  # fmt: skip
    masks = mask if isinstance(mask, list) else [mask]
    for i, t in enumerate(outs):
        t.siblings = tuple(outs)
        t._keras_mask = masks[i] if i < len(masks) else None
    layer.__dict__.setdefault("_node0", outs[0])
    return outs


def _probe_shape(layer: Any, inputs: Any) -> Any:
    def zeros(t: SymbolicTensor) -> np.ndarray:
        return np.zeros([1 if d is None else d for d in t.shape], dtype=t.dtype)

    probe = rebuild(inputs, iter([zeros(t) for t in flatten(inputs)]))
    with no_grad():
        out = layer(probe, training=False)
    if isinstance(out, (list, tuple)) and out and all(isinstance(o, Tensor) for o in out):
        return [(None, *o.shape[1:]) for o in out]
    if not isinstance(out, Tensor):
        return None
    return (None, *out.shape[1:])


def trace(inputs: Any, outputs: Any) -> list[SymbolicTensor]:
    """The calls between ``inputs`` and ``outputs``, each after those it reads.

    Raises:
        InvalidParameterError: when an output needs an input that is not given.
    """
    given = {id(t) for t in flatten(inputs)}
    for t in flatten(inputs):
        if not isinstance(t, SymbolicTensor) or t.layer is not None:
            raise InvalidParameterError(f"Model inputs must be gn.Input(...) tensors, got {t!r}")
    order: list[SymbolicTensor] = []
    seen: set[int] = set()
    stack: list[tuple[SymbolicTensor, bool]] = [(t, False) for t in reversed(flatten(outputs))]
    while stack:
        t, done = stack.pop()
        if not isinstance(t, SymbolicTensor):
            raise InvalidParameterError(f"Model outputs must be symbolic tensors, got {t!r}")
        if done:
            order.append(t)
            continue
        if t.siblings:  # one of several outputs: the call is recorded by the first
            t = t.siblings[0]
        if id(t) in seen:
            continue
        seen.add(id(t))
        if t.layer is None:
            if id(t) not in given:
                raise InvalidParameterError(
                    f"graph disconnected: the outputs need input {t.name!r} "
                    f"(shape {t.shape}), which is not among the model's inputs"
                )
            continue
        stack.append((t, True))
        stack.extend((p, False) for p in reversed(parents(t)) if id(p) not in seen)
    return order


def check_inputs(model: Any, inputs: Any) -> None:
    """Raise a Keras-quality error when real inputs do not fit the model's Inputs."""
    want = flatten(model._inputs_struct)
    got = flatten(inputs) if isinstance(inputs, (list, tuple, dict)) else [inputs]
    if len(got) != len(want):
        raise InputValidationError(
            f"model {model.name!r} expects {len(want)} input(s) "
            f"({', '.join(t.name for t in want)}), got {len(got)}"
        )
    for sym, t in zip(want, got, strict=True):
        shape = tuple(getattr(t, "shape", ()))
        ok = len(shape) == sym.ndim and all(
            d is None or d == s for d, s in zip(sym.shape[1:], shape[1:], strict=True)
        )
        if not ok:
            raise InputValidationError(
                f"input {sym.name!r} of model {model.name!r} expects shape {sym.shape}, got {shape}"
            )
