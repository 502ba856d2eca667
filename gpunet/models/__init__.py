"""``Model`` (subclass it: write ``call`` or ``forward``) and ``Sequential``.

Example:
    >>> import numpy as np, gpunet as gn
    >>> model = gn.Sequential([gn.layers.Dense(4, activation="relu", input_shape=(3,)),
    ...                        gn.layers.Dense(1)])
    >>> model.predict(np.zeros((2, 3))).shape
    (2, 1)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from gpunet.autograd import Tensor, no_grad
from gpunet.backend import get_ops
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers import _masks
from gpunet.layers.base import Layer, structure_changed, takes_training
from gpunet.mixed_precision import layer_pass
from gpunet.models.training import TrainingMixin

CALL_FLAGS = {
    "use_causal_mask",
    "training",
    "return_attention_scores",
}  # layer call keywords a saved graph keeps
if TYPE_CHECKING:
    from gpunet.engine.functional import SymbolicTensor


class Model(TrainingMixin, Layer):
    """A network: layers composed in ``call`` (Keras) or ``forward`` (PyTorch).

    Args:
        device: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"auto"``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> class Residual(gn.Model):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.inner = gn.layers.Dense(3, activation="relu")
        ...     def call(self, x):
        ...         return x + self.inner(x)
        >>> Residual()(np.ones((2, 3))).shape
        (2, 3)
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # Model(inputs, outputs) is the functional API (Keras): a graph of layer calls
        if cls is Model and (args or "inputs" in kwargs or "outputs" in kwargs):
            return super().__new__(Functional)
        return super().__new__(cls)

    def __init__(
        self, inputs: Any = None, outputs: Any = None, *, device: Any = None, **kwargs: Any
    ) -> None:
        # gn.Model(inputs, outputs) is a Functional (see __new__): these reach here only
        # from a subclass, which defines call() instead
        if inputs is not None or outputs is not None:
            raise InvalidParameterError(
                f"{type(self).__name__}: a subclass of Model defines call(); "
                "Model(inputs, outputs) makes a functional model"
            )
        super().__init__(**kwargs)
        self.compiled_metrics: list[Any] = []
        self._n_outputs = 0
        if device is not None:
            self._ops = get_ops(device)

    def call(self, x: Any, training: bool = False) -> Any:
        forward = getattr(self, "forward", None)
        if forward is None:
            raise NotImplementedError(f"{type(self).__name__} must define call() or forward()")
        if takes_training(forward):
            return forward(x, training=training)
        return forward(x)

    @property
    def _penalties(self) -> bool:
        """Whether a training step adds ``collect_losses()``: for regularized weights
        (set once per fit) or a layer that called ``add_loss``."""
        known = bool(self.__dict__.get("_penalties_flag", True))
        return known or any("adds_losses" in x.__dict__ for x in self._walk())

    @_penalties.setter
    def _penalties(self, value: bool) -> None:
        self.__dict__["_penalties_flag"] = bool(value)

    @property
    def input_dtype(self) -> str:
        """The dtype data is converted to on its way in (the model's own)."""
        return self.dtype

    @property
    def output_dtype(self) -> str:
        """The dtype of the outputs, and of the targets ``fit`` prepares for them."""
        return self.dtype

    def to(self, device: Any) -> Model:
        """Move parameters, gradients, buffers and optimizer state to ``device``."""
        super().to(device)
        if self.optimizer is not None and self.optimizer.built:
            self.optimizer.to(device)
        return self

    def build_from_input_shape(self) -> None:
        """Build every layer now when the first one declares ``input_shape`` (Keras
        builds such a model at construction, so weights exist before any data)."""
        first = self._layers[0] if self._layers else None
        hint = getattr(first, "input_shape_hint", None)
        if hint is None or None in hint:
            return
        if any(layer.output_shape is None for layer in self._layers) or not self._n_outputs:
            self._n_outputs = 0
            self._ensure_built(np.zeros((1, *hint), dtype=self.input_dtype))

    def _ensure_built(self, X: np.ndarray) -> None:
        """Build from one sample and record the output width (no state changes)."""
        if self._n_outputs and self.built:
            return
        with no_grad():
            out = self(X[:1], training=False)
        if isinstance(out, list) and len(out) == 1:  # a functional model's outputs=[y]
            out = out[0]
        if not isinstance(out, Tensor):
            raise InvalidParameterError("the model must return a single tensor")
        self._n_outputs = int(out.shape[-1]) if out.ndim > 1 else 1
        self._seq_out = out.ndim == 3  # (batch, time, units): targets per step

    def save(self, filepath: Any, include_optimizer: bool = True) -> None:
        """Save a ``Sequential`` model to one safe ``.gpunet`` file, atomically
        (see ``gpunet.saving``); subclassed models use ``save_weights``."""
        from gpunet import saving

        saving.save_model(self, filepath, include_optimizer=include_optimizer)

    def save_weights(self, filepath: Any) -> None:
        """Save every weight (subclassed models too) to a ``.gpunet`` file, atomically."""
        from gpunet import saving

        saving.save_weights(self, filepath)

    def load_weights(self, filepath: Any, allow_nonfinite: bool = False) -> None:
        """Load weights saved by ``save_weights``/``save``; names, shapes and dtypes
        must match exactly, or ``ModelFileError`` leaves the model unchanged."""
        from gpunet import saving

        saving.load_weights(self, filepath, allow_nonfinite=allow_nonfinite)

    def summary(self, print_fn: Callable[[str], Any] | None = None) -> None:
        """Print a table of layers, output shapes and parameter counts."""
        from gpunet.models.summary import summary_lines

        self.build_from_input_shape()
        emit = print_fn or print
        for line in summary_lines(self):
            emit(line)


class Sequential(Model):
    """A plain stack of layers, each fed the previous one's output.

    Example:
        >>> import gpunet as gn
        >>> model = gn.Sequential()
        >>> model.add(gn.layers.Dense(8, input_shape=(4,)))
        >>> model.count_params()
        40
    """

    def __init__(
        self,
        layers: Sequence[Layer | SymbolicTensor] | None = None,
        *,
        name: str | None = None,
        device: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, device=device, **kwargs)
        self._chain: list[Any] = []  # the symbolic Input, then each layer's output on it
        for layer in layers or []:
            self.add(layer)

    def add(self, layer: Layer | SymbolicTensor) -> None:
        """Append ``layer`` to the stack (a ``gn.Input(shape=...)`` may come first: it
        gives the model its input shape, builds each layer as it is added and sets
        their ``input``/``output``, as in Keras)."""
        from gpunet.engine.functional import SymbolicTensor

        if isinstance(layer, SymbolicTensor):
            if self._layers or self._chain or layer.layer is not None:
                raise InvalidParameterError(
                    f"gn.Input(...) can only come first in Sequential {self.name!r}, "
                    f"before any layer; got {layer!r}"
                )
            self._chain = [layer]
            return
        if not isinstance(layer, Layer):
            raise InvalidParameterError(
                f"Sequential.add expects a gpunet layer, got {type(layer).__name__}"
            )
        if self._chain and not self._layers:
            shape = self._chain[0].shape[1:]
            if layer.input_shape_hint not in (None, shape):
                raise InvalidParameterError(
                    f"layer {layer.name!r} has input_shape {layer.input_shape_hint}, but the "
                    f"Input of Sequential {self.name!r} has shape {shape}"
                )
            layer.input_shape_hint = shape  # the Keras input_shape=, which saving records
        self._layers.append(layer)
        structure_changed()
        if self._ops is not None:
            layer.to(self._ops)
        self.built = False
        self._n_outputs = 0
        if self._chain:
            self._chain.append(layer(self._chain[-1]))

    def _symbolic(self) -> list[Any]:
        """The chain of symbolic tensors, made now for a first layer's input_shape=."""
        from gpunet.engine.functional import Input

        if not self._chain and self._layers:
            hint = self._layers[0].input_shape_hint
            if hint is not None:
                x = Input(shape=hint, dtype=self._layers[0].dtype)
                self._chain = [x]
                for layer in self._layers:
                    self._chain.append(layer(self._chain[-1]))
        if not self._chain:
            raise InvalidParameterError(
                f"Sequential model {self.name!r} has no defined input shape yet: start it "
                "with gn.Input(shape=...) or give its first layer input_shape=..."
            )
        return self._chain

    @property
    def inputs(self) -> list[Any]:
        """``[the symbolic Input]``, for ``gn.Model(inputs=model.inputs, outputs=...)``."""
        return self._symbolic()[:1]

    @property
    def outputs(self) -> list[Any]:
        """``[the last layer's symbolic output]``."""
        return self._symbolic()[-1:]

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """The layer called ``name``, or at position ``index`` (Keras)."""
        if index is not None:
            return self._layers[index]
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise InvalidParameterError(
            f"no layer named {name!r} in {self.name!r}; it has {[x.name for x in self._layers]}"
        )

    @property
    def weights(self) -> list[Any]:
        self.build_from_input_shape()
        return super().weights

    @property
    def input_dtype(self) -> str:
        """The first layer's dtype: float64 data for float64 layers stays float64
        (ids for a first layer that takes integers, as ``Embedding``, are int32)."""
        if self.int_inputs:
            return "int32"
        return self._layers[0].dtype if self._layers else self.dtype

    @property
    def int_inputs(self) -> bool:  # type: ignore[override]
        return bool(self._layers) and self._layers[0].int_inputs

    @property
    def output_dtype(self) -> str:
        return self._layers[-1].dtype if self._layers else self.dtype

    def pop(self) -> Layer:
        """Remove and return the last layer."""
        if not self._layers:
            raise InputValidationError("pop() on an empty Sequential model")
        self.built = False
        self._n_outputs = 0
        structure_changed()
        if len(self._chain) > 1:
            self._chain.pop()
        return self._layers.pop()

    def build(self, input_shape: Any) -> None:
        if not self._layers:
            raise InputValidationError(f"model {self.name!r} has no layers: add some first")
        self._build_input_shape = input_shape  # model.save records it when no layer says

    def check_input(self, inputs: Any) -> None:
        first = self._layers[0] if self._layers else None
        if first is None or not first.built or not isinstance(inputs, Tensor):
            return
        hint = first.input_shape_hint
        if hint is not None and inputs.ndim != 1 + len(hint):
            raise InputValidationError(
                f"Found array with dim {inputs.ndim}, while dim {1 + len(hint)} is required by "
                f"Sequential {self.name!r}: X has samples of shape {inputs.shape[1:]}"
            )
        first.check_input(inputs)  # the first layer knows what it takes

    @property
    def runs_on_arrays(self) -> bool:
        layers = self._layers
        return (
            bool(layers)
            and type(self).call is Sequential.call
            and len({layer.dtype for layer in layers}) == 1  # the graph casts between them
            and all(layer.built and layer.runs_on_arrays for layer in layers)
        )

    @property
    def prob_activation(self) -> str | None:  # type: ignore[override]
        last = self._layers[-1] if self._layers else None
        if last is None or getattr(last, "activation_kw", None):
            return None  # e.g. softmax over another axis: no fused loss takes it
        return last.prob_activation  # type: ignore[no-any-return]

    def forward_pass(
        self, ops: Any, X: Any, training: bool, logits: bool = False
    ) -> tuple[Any, Any]:
        """The stack on arrays: each layer's pass in order, their backprops chained."""
        return self.forward_masked(ops, X, training, logits)[:2]  # type: ignore[return-value]

    def forward_masked(self, ops: Any, X: Any, training: bool, logits: bool = False) -> Any:
        """``forward_pass`` that also returns the output's mask (None when none): each
        layer that takes a mask is given its input's (``gpunet.layers.masking``)."""
        layers = self._layers
        last = len(layers) - 1
        backprops = []
        mask = None
        for i, layer in enumerate(layers):
            kw: dict[str, Any] = {"logits": True} if logits and i == last else {}
            if mask is not None and _masks.takes_mask(layer):
                kw["mask"] = mask
            Y, backprop = layer_pass(layer, ops, X, training, **kw)
            mask, X = _masks.next_mask(layer, X, mask), Y
            backprops.append(backprop)

        def backprop_all(dY: Any, need_dX: bool) -> Any:
            for i in range(last, -1, -1):
                dY = backprops[i](dY, need_dX or i > 0)
            return dY

        return X, backprop_all, mask

    def call(self, x: Any, training: bool = False) -> Any:
        for layer in self._layers:
            x = layer(x, training=training)
        return x

    def get_config(self) -> dict[str, Any]:
        self.build_from_input_shape()  # the weights a file of this config holds exist
        return {
            "name": self.name,
            "layers": [
                {"class_name": type(layer).__name__, "config": layer.get_config()}
                for layer in self._layers
            ],
        }


class Functional(Model):
    """A model made of layer calls on symbolic tensors: ``gn.Model(inputs, outputs)``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> a, b = gn.Input(shape=(3,), name="a"), gn.Input(shape=(2,), name="b")
        >>> shared = gn.layers.Dense(4)
        >>> out = gn.layers.Concatenate()([shared(a), gn.layers.Dense(4)(b)])
        >>> model = gn.Model(inputs=[a, b], outputs=out)
        >>> model([np.ones((5, 3)), np.ones((5, 2))]).shape
        (5, 8)
    """

    def __init__(
        self, inputs: Any, outputs: Any, *, name: str | None = None, device: Any = None,
        **kwargs: Any,
    ) -> None:  # fmt: skip
        from gpunet.engine import functional

        super().__init__(name=name, device=device, **kwargs)
        self._nodes = functional.trace(inputs, outputs)
        self._inputs_struct, self._outputs_struct = inputs, outputs
        for node in self._nodes:
            if node.layer is self:
                raise InvalidParameterError("a model cannot contain itself")
            if node.layer not in self._layers:
                self._layers.append(node.layer)
                if self._ops is not None:
                    node.layer.to(self._ops)
        structure_changed()
        flat_in = functional.flatten(inputs)
        if len(flat_in) == 1 and None not in flat_in[0].shape[1:]:
            self.input_shape_hint = flat_in[0].shape[1:]
        self.dtype = flat_in[0].dtype
        if np.dtype(self.dtype).kind != "f":  # ids in (Embedding): the outputs' dtype
            self.dtype = functional.flatten(outputs)[0].dtype
        self.built = True

    @property
    def int_inputs(self) -> bool:  # type: ignore[override]
        return any(np.dtype(t.dtype).kind in "biu" for t in self.inputs)

    @property
    def input_dtype(self) -> str:
        return str(self.inputs[0].dtype)

    @property
    def inputs(self) -> list[Any]:
        from gpunet.engine import functional

        return functional.flatten(self._inputs_struct)

    @property
    def outputs(self) -> list[Any]:
        from gpunet.engine import functional

        return functional.flatten(self._outputs_struct)

    def check_input(self, inputs: Any) -> None:
        from gpunet.engine import functional

        functional.check_inputs(self, inputs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        outs = self.outputs
        return outs[0].shape if len(outs) == 1 else [t.shape for t in outs]

    def call(self, inputs: Any, training: bool = False) -> Any:
        from gpunet.engine import functional

        given = functional.flatten(inputs) if isinstance(inputs, (list, tuple, dict)) else [inputs]
        values = {id(s): t for s, t in zip(self.inputs, given, strict=True)}
        for node in self._nodes:
            args = functional.rebuild(
                node.inputs, iter([values[id(t)] for t in functional.flatten(node.inputs)])
            )
            if isinstance(node.inputs, tuple):
                args = tuple(args)
            kw = {"training": training, **functional.replay_kwargs(node, values)}
            out = node.layer(args, **kw)
            if node.siblings:  # a call of several outputs: each sibling gets its own
                for sym, t in zip(node.siblings, out, strict=True):
                    values[id(sym)] = t
            else:
                values[id(node)] = out
        outs = iter([values[id(t)] for t in self.outputs])
        return functional.rebuild(self._outputs_struct, outs)

    def get_config(self) -> dict[str, Any]:
        """The graph as plain data: inputs, layers, calls (by index) and outputs.

        Raises:
            InvalidParameterError: for what a file cannot hold (dict inputs or outputs,
                call keyword arguments, models nested as layers).
        """
        from gpunet.engine import functional

        if isinstance(self._inputs_struct, dict) or isinstance(self._outputs_struct, dict):
            raise InvalidParameterError(
                f"cannot save model {self.name!r}: dict inputs or outputs; use lists"
            )
        inputs, ref = self.inputs, {}
        for k, t in enumerate(inputs):
            ref[id(t)] = -k - 1
        nodes: list[dict[str, Any]] = []
        made = 0  # a reference counts the calls' outputs (one per call, or several)
        for node in self._nodes:
            kw = {k: v for k, v in node.kwargs.items() if k != "initial_state"}
            flags = set(kw) <= CALL_FLAGS  # what saving's schema accepts
            if not flags or not all(isinstance(v, bool) for v in kw.values()):
                raise InvalidParameterError(
                    f"cannot save model {self.name!r}: layer {node.layer.name!r} is called "
                    f"with keyword arguments {sorted(node.kwargs)} (a file holds only "
                    f"True/False values of {sorted(CALL_FLAGS)}, and initial_state)"
                )
            args = functional.flatten(node.inputs)
            nodes.append({"layer": self._layers.index(node.layer),
                          "args": [ref[id(t)] for t in args],
                          "list": isinstance(node.inputs, (list, tuple))})  # fmt: skip
            if kw:
                nodes[-1]["kwargs"] = kw
            if "initial_state" in node.kwargs:
                states = functional.flatten(node.kwargs["initial_state"])
                nodes[-1]["initial_state"] = [ref[id(t)] for t in states]
            if node.siblings:
                nodes[-1]["n_outputs"] = len(node.siblings)
            for t in node.siblings or (node,):
                ref[id(t)] = made
                made += 1
        return {
            "name": self.name,
            "inputs": [
                {"name": t.name, "shape": list(t.shape[1:]), "dtype": t.dtype} for t in inputs
            ],
            "inputs_list": isinstance(self._inputs_struct, (list, tuple)),
            "layers": [
                {"class_name": type(layer).__name__, "config": layer.get_config()}
                for layer in self._layers
            ],
            "nodes": nodes,
            "outputs": [ref[id(t)] for t in self.outputs],
            "outputs_list": isinstance(self._outputs_struct, (list, tuple)),
        }

    def connections(self) -> dict[str, list[str]]:
        """For ``summary()``: each layer call and the names of the tensors it reads."""
        from gpunet.engine import functional

        return {n.name: [t.name for t in functional.parents(n)] for n in self._nodes}


def load_model(filepath: Any, device: Any = None, allow_nonfinite: bool = False) -> Model:
    """Load a model saved by ``model.save`` (see ``gpunet.saving.load_model``).

    Example:
        >>> import os, tempfile, gpunet as gn
        >>> path = os.path.join(tempfile.mkdtemp(), "m.gpunet")
        >>> gn.Sequential([gn.layers.Dense(1, input_shape=(2,))]).save(path)
        >>> gn.models.load_model(path).count_params()
        3
    """
    from gpunet import saving

    return saving.load_model(filepath, device=device, allow_nonfinite=allow_nonfinite)  # type: ignore[no-any-return]
