"""Merge layers (Add, Subtract, Average, Multiply, Maximum, Minimum, Concatenate)
and their functional forms (``gn.layers.add([a, b])``)."""

from __future__ import annotations

from typing import Any

from gpunet.autograd import Tensor
from gpunet.errors import InputValidationError
from gpunet.layers import _masks, spec
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

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        return _masks.merged(mask)

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

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        return _masks.concatenated(self.ops.xp, inputs, mask, self.axis)

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


class _Merge(Layer):
    """An elementwise merge of a list of same-shaped tensors (Keras' ``Merge``)."""

    n_inputs: int | None = None  # exactly this many inputs (None: 2 or more)

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        return _masks.merged(mask)

    def check_input(self, inputs: Any) -> None:
        xs = _check_list(self, inputs)
        if self.n_inputs is not None and len(xs) != self.n_inputs:
            raise InputValidationError(
                f"layer {self.name!r} expects exactly {self.n_inputs} inputs, got {len(xs)}"
            )
        shapes = {tuple(t.shape[1:]) for t in xs}
        if len(shapes) > 1:
            raise InputValidationError(f"layer {self.name!r} got inputs of shapes {sorted(shapes)}")

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape[0]


@spec.register
class Subtract(_Merge):
    """``inputs[0] - inputs[1]`` (exactly two inputs).

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.Subtract()([np.full((1, 2), 3.0), np.ones((1, 2))]).numpy()
        array([[2., 2.]], dtype=float32)
    """

    n_inputs = 2

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        a, b = X
        return a - b, lambda dY, need_dX: [ops.sum_to_shape(dY, a.shape),
                                           ops.sum_to_shape(-dY, b.shape)]  # fmt: skip


@spec.register
class Average(_Merge):
    """The elementwise mean of a list of tensors.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.Average()([np.ones((1, 2)), np.full((1, 2), 3.0)]).numpy()
        array([[2., 2.]], dtype=float32)
    """

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        Y = X[0]
        for x in X[1:]:
            Y = Y + x
        n, shapes = len(X), [tuple(x.shape) for x in X]
        return Y / n, lambda dY, need_dX: [ops.sum_to_shape(dY / n, s) for s in shapes]


@spec.register
class Multiply(_Merge):
    """The elementwise product of a list of tensors.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.Multiply()([np.full((1, 2), 2.0), np.full((1, 2), 3.0)]).numpy()
        array([[6., 6.]], dtype=float32)
    """

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        Y = X[0]
        for x in X[1:]:
            Y = Y * x

        def backprop(dY: Any, need_dX: bool) -> list[Any]:
            out = []
            for i, x in enumerate(X):  # the product of the others (no division: zeros)
                g = dY
                for j, other in enumerate(X):
                    if j != i:
                        g = g * other
                out.append(ops.sum_to_shape(g, tuple(x.shape)))
            return out

        return Y, backprop


class _Extreme(_Merge):
    pick_max = True

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        xp = ops.xp
        pick = xp.maximum if self.pick_max else xp.minimum
        Y = X[0]
        for x in X[1:]:
            Y = pick(Y, x)

        def backprop(dY: Any, need_dX: bool) -> list[Any]:
            out, taken = [], None
            for x in X:  # a tie sends the gradient to the first input that attains it
                hit = x == Y if taken is None else (x == Y) & ~taken
                taken = hit if taken is None else taken | hit
                out.append(ops.sum_to_shape(xp.where(hit, dY, xp.zeros_like(dY)), x.shape))
            return out

        return Y, backprop


@spec.register
class Maximum(_Extreme):
    """The elementwise maximum of a list of tensors.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.Maximum()([np.array([[1.0, 5.0]]), np.array([[3.0, 2.0]])]).numpy()
        array([[3., 5.]], dtype=float32)
    """


@spec.register
class Minimum(_Extreme):
    """The elementwise minimum of a list of tensors.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.Minimum()([np.array([[1.0, 5.0]]), np.array([[3.0, 2.0]])]).numpy()
        array([[1., 2.]], dtype=float32)
    """

    pick_max = False


# -- the functional forms (Keras: keras.layers.add([x1, x2])) ------------------------------
def add(inputs: Any, **kwargs: Any) -> Any:
    """``Add(**kwargs)(inputs)``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.add([np.ones((1, 2)), np.ones((1, 2))]).numpy()
        array([[2., 2.]], dtype=float32)
    """
    return Add(**kwargs)(inputs)


def subtract(inputs: Any, **kwargs: Any) -> Any:
    """``Subtract(**kwargs)(inputs)``."""
    return Subtract(**kwargs)(inputs)


def average(inputs: Any, **kwargs: Any) -> Any:
    """``Average(**kwargs)(inputs)``."""
    return Average(**kwargs)(inputs)


def multiply(inputs: Any, **kwargs: Any) -> Any:
    """``Multiply(**kwargs)(inputs)``."""
    return Multiply(**kwargs)(inputs)


def maximum(inputs: Any, **kwargs: Any) -> Any:
    """``Maximum(**kwargs)(inputs)``."""
    return Maximum(**kwargs)(inputs)


def minimum(inputs: Any, **kwargs: Any) -> Any:
    """``Minimum(**kwargs)(inputs)``."""
    return Minimum(**kwargs)(inputs)


def concatenate(inputs: Any, axis: int = -1, **kwargs: Any) -> Any:
    """``Concatenate(axis=axis, **kwargs)(inputs)``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> x = gn.Input(shape=(2,))
        >>> gn.layers.concatenate([x, x]).shape
        (None, 4)
    """
    return Concatenate(axis=axis, **kwargs)(inputs)
