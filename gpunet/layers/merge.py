"""Add and Concatenate: layers that merge a list of inputs."""

from __future__ import annotations

from typing import Any

from gpunet.autograd import Tensor
from gpunet.errors import InputValidationError
from gpunet.layers import spec
from gpunet.layers.base import Backprop, Layer


def _check_list(layer: Layer, inputs: Any) -> list[Tensor]:
    if not isinstance(inputs, list) or len(inputs) < 2:
        raise InputValidationError(
            f"layer {layer.name!r} expects a list of at least 2 tensors, "
            f"got {type(inputs).__name__}"
        )
    return inputs


@spec.register
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

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape[0]

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        Y = X[0]
        for x in X[1:]:
            Y = Y + x
        shapes = [tuple(x.shape) for x in X]
        return Y, lambda dY, need_dX: [ops.sum_to_shape(dY, s) for s in shapes]


@spec.register
class Concatenate(Layer):
    """Join a list of tensors along ``axis`` (default: the last).

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.Concatenate()([np.ones((1, 2)), np.zeros((1, 3))]).shape
        (1, 5)
    """

    CONFIG = {"axis": spec.Int(-8, 7)}

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = int(axis)

    def check_input(self, inputs: Any) -> None:
        _check_list(self, inputs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        first = list(input_shape[0])
        sizes = [s[self.axis] for s in input_shape]
        first[self.axis] = None if None in sizes else sum(sizes)
        return tuple(first)

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        ndim = X[0].ndim
        ax = self.axis % ndim
        Y = ops.xp.concat(list(X), axis=ax)
        sizes = [x.shape[ax] for x in X]

        def backprop(dY: Any, need_dX: bool) -> list[Any]:
            out, start = [], 0
            for n in sizes:
                idx = tuple(
                    slice(start, start + n) if i == ax else slice(None) for i in range(ndim)
                )
                out.append(dY[idx])
                start += n
            return out

        return Y, backprop
