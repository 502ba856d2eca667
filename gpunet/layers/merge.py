"""Add and Concatenate: layers that merge a list of inputs."""

from __future__ import annotations

from typing import Any

from gpunet import functional as F
from gpunet.autograd import Tensor
from gpunet.errors import InputValidationError
from gpunet.layers.base import Layer


def _check_list(layer: Layer, inputs: Any) -> list[Tensor]:
    if not isinstance(inputs, list) or len(inputs) < 2:
        raise InputValidationError(
            f"layer {layer.name!r} expects a list of at least 2 tensors, "
            f"got {type(inputs).__name__}"
        )
    return inputs


class Add(Layer):
    """Elementwise sum of a list of tensors of one shape (residual connections).

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.Add()([np.ones((1, 2)), np.ones((1, 2))]).numpy()
        array([[2., 2.]], dtype=float32)
    """

    def check_input(self, inputs: Any) -> None:
        shapes = {t.shape[1:] for t in _check_list(self, inputs)}
        if len(shapes) > 1:
            raise InputValidationError(f"layer {self.name!r} got inputs of shapes {sorted(shapes)}")

    def call(self, inputs: list[Tensor]) -> Tensor:
        out = inputs[0]
        for t in inputs[1:]:
            out = F.add(out, t)
        return out


class Concatenate(Layer):
    """Join a list of tensors along ``axis`` (default: the last).

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.Concatenate()([np.ones((1, 2)), np.zeros((1, 3))]).shape
        (1, 5)
    """

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = int(axis)

    def check_input(self, inputs: Any) -> None:
        _check_list(self, inputs)

    def call(self, inputs: list[Tensor]) -> Tensor:
        return F.concat(inputs, axis=self.axis)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}
