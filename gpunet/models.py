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
from typing import Any

import numpy as np

from gpunet.autograd import Tensor, no_grad
from gpunet.backend import get_ops
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers.base import Layer, structure_changed, takes_training
from gpunet.training import TrainingMixin


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

    def __init__(self, *, device: Any = None, **kwargs: Any) -> None:
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
        if not isinstance(out, Tensor):
            raise InvalidParameterError("the model must return a single tensor")
        self._n_outputs = int(out.shape[-1]) if out.ndim > 1 else 1

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
        from gpunet.summary import summary_lines

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
        layers: Sequence[Layer] | None = None,
        *,
        name: str | None = None,
        device: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, device=device, **kwargs)
        for layer in layers or []:
            self.add(layer)

    def add(self, layer: Layer) -> None:
        """Append ``layer`` to the stack."""
        if not isinstance(layer, Layer):
            raise InvalidParameterError(
                f"Sequential.add expects a gpunet layer, got {type(layer).__name__}"
            )
        self._layers.append(layer)
        structure_changed()
        if self._ops is not None:
            layer.to(self._ops)
        self.built = False
        self._n_outputs = 0

    @property
    def weights(self) -> list[Any]:
        self.build_from_input_shape()
        return super().weights

    @property
    def input_dtype(self) -> str:
        """The first layer's dtype: float64 data for float64 layers stays float64."""
        return self._layers[0].dtype if self._layers else self.dtype

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
        layers = self._layers
        last = len(layers) - 1
        backprops = []
        for i, layer in enumerate(layers):
            if logits and i == last:
                X, backprop = layer.forward_pass(ops, X, training, logits=True)  # type: ignore[call-arg]
            else:
                X, backprop = layer.forward_pass(ops, X, training)
            backprops.append(backprop)

        def backprop_all(dY: Any, need_dX: bool) -> Any:
            for i in range(last, -1, -1):
                dY = backprops[i](dY, need_dX or i > 0)
            return dY

        return X, backprop_all

    def call(self, x: Any, training: bool = False) -> Any:
        for layer in self._layers:
            x = layer(x, training=training)
        return x

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "layers": [
                {"class_name": type(layer).__name__, "config": layer.get_config()}
                for layer in self._layers
            ],
        }


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
