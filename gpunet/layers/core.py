"""Activation, LeakyReLU, Dropout, Flatten and Softmax: layers without a matrix product."""

from __future__ import annotations

import math
from typing import Any

from gpunet import activations
from gpunet.autograd import Tensor
from gpunet.errors import InvalidParameterError
from gpunet.layers import spec
from gpunet.layers.base import Backprop, Layer

PROB_ACTIVATIONS = ("sigmoid", "softmax")


def _identity(dY: Any, need_dX: bool) -> Any:
    return dY


@spec.register
class Activation(Layer):
    """Apply an activation by name or function.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.Activation("relu")(np.array([[-1.0, 2.0]])).numpy()
        array([[0., 2.]], dtype=float32)
    """

    CONFIG = {"activation": spec.Activation()}
    supports_masking = True  # Keras: passes the input mask on

    def __init__(self, activation: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation_name, self.activation_kw, self.activation_fn = activations.get(activation)

    @property
    def prob_activation(self) -> str | None:  # type: ignore[override]
        fused = self.activation_fn is None and self.activation_name in PROB_ACTIVATIONS
        return self.activation_name if fused else None

    @property
    def runs_on_arrays(self) -> bool:
        return self.activation_fn is None

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        if self.activation_fn is not None:
            return self.activation_fn(x)  # type: ignore[no-any-return]
        return super().call(x, training)

    def forward_pass(
        self, ops: Any, X: Any, training: bool, logits: bool = False
    ) -> tuple[Any, Backprop]:
        if logits:
            return X, _identity
        name, kw = self.activation_name or "linear", self.activation_kw
        Y = ops.activation(name, X, **kw)
        return Y, lambda dY, need_dX: ops.backprop_activation(name, dY, X, Y, **kw)

    def get_config(self) -> dict[str, Any]:
        if self.activation_fn is not None:
            raise InvalidParameterError(f"layer {self.name!r}: custom functions cannot be saved")
        return {
            **super().get_config(),
            "activation": {"name": self.activation_name, **self.activation_kw},
        }


@spec.register
class LeakyReLU(Layer):
    """``max(x, negative_slope * x)``, as Keras 3's ``layers.LeakyReLU`` (whose default
    slope is 0.3; the ``leaky_relu`` activation's is 0.2).

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.LeakyReLU(negative_slope=0.2)(np.array([[-1.0, 2.0]])).numpy()
        array([[-0.2,  2. ]], dtype=float32)
    """

    CONFIG = {"negative_slope": spec.Float(0.0)}

    def __init__(self, negative_slope: float = 0.3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        ok = isinstance(negative_slope, (int, float)) and not isinstance(negative_slope, bool)
        if not ok or not negative_slope >= 0:
            raise InvalidParameterError(
                f"LeakyReLU negative_slope must be a float >= 0, got {negative_slope!r} "
                f"(layer {self.name!r})"
            )
        self.negative_slope = float(negative_slope)

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        kw = {"alpha": self.negative_slope}
        Y = ops.activation("leaky_relu", X, **kw)
        return Y, lambda dY, need_dX: ops.backprop_activation("leaky_relu", dY, X, Y, **kw)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "negative_slope": self.negative_slope}


@spec.register
class Dropout(Layer):
    """Zero a fraction ``rate`` of the inputs while training, scaling the rest by
    ``1 / (1 - rate)`` (inverted dropout); identity in inference.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.Dropout(0.5)(np.ones((1, 4)), training=False).numpy()
        array([[1., 1., 1., 1.]], dtype=float32)
    """

    CONFIG = {"rate": spec.Float(0.0, 0.999999)}
    supports_masking = True  # Keras: passes the input mask on

    def __init__(self, rate: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise InvalidParameterError(
                f"Dropout rate must be a float in [0, 1), got {rate!r} (layer {self.name!r})"
            )
        self.rate = float(rate)

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        if not training or self.rate == 0.0:
            return X, _identity
        mask = ops.dropout_mask(X.shape, self.rate, X.dtype)
        return X * mask, lambda dY, need_dX: dY * mask


@spec.register
class Flatten(Layer):
    """Reshape ``(batch, d1, d2, ...)`` to ``(batch, d1 * d2 * ...)``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.Flatten()(np.ones((2, 3, 4))).shape
        (2, 12)
    """

    def compute_output_shape(self, input_shape: Any) -> Any:
        rest = input_shape[1:]
        return (input_shape[0], None if None in rest else math.prod(rest))

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        if X.ndim == 2:
            return X, _identity
        xp, shape = ops.xp, tuple(X.shape)
        Y = xp.reshape(X, (shape[0], math.prod(shape[1:])))
        return Y, lambda dY, need_dX: xp.reshape(dY, shape)


@spec.register
class Softmax(Layer):
    """Softmax over ``axis`` (default: the last), as Keras' ``layers.Softmax``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.Softmax()(np.array([[0.0, 0.0]])).numpy()
        array([[0.5, 0.5]], dtype=float32)
    """

    CONFIG = {"axis": spec.Int(-8, 7)}
    supports_masking = True  # Keras: passes the input mask on

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise InvalidParameterError(f"Softmax axis must be an int, got {axis!r}")
        self.axis = axis

    @property
    def prob_activation(self) -> str | None:  # type: ignore[override]
        # over the last axis it is the output a cross-entropy fuses with (gradient p - y)
        return "softmax" if self.axis == -1 else None

    def forward_pass(
        self, ops: Any, X: Any, training: bool, logits: bool = False
    ) -> tuple[Any, Backprop]:
        if logits:
            return X, _identity
        if not -X.ndim <= self.axis < X.ndim:
            raise InvalidParameterError(
                f"layer {self.name!r}: axis {self.axis} is out of range for inputs of "
                f"{X.ndim} dimensions"
            )
        axis = self.axis
        Y = ops.softmax(X, axis=axis)
        return Y, lambda dY, need_dX: ops.backprop_softmax(dY, X, Y, axis=axis)
