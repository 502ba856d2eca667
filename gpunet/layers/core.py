"""Activation, Dropout and Flatten: layers without a matrix product."""

from __future__ import annotations

from typing import Any

from gpunet import activations
from gpunet import functional as F
from gpunet.autograd import Tensor
from gpunet.errors import InvalidParameterError
from gpunet.layers.base import Layer


class Activation(Layer):
    """Apply an activation by name or function.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.Activation("relu")(np.array([[-1.0, 2.0]])).numpy()
        array([[0., 2.]], dtype=float32)
    """

    def __init__(self, activation: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation_name, self.activation_kw, self.activation_fn = activations.get(activation)

    def call(self, x: Tensor) -> Tensor:
        if self.activation_fn is not None:
            return self.activation_fn(x)  # type: ignore[no-any-return]
        return F.activation(x, self.activation_name or "linear", **self.activation_kw)

    def get_config(self) -> dict[str, Any]:
        if self.activation_fn is not None:
            raise InvalidParameterError(f"layer {self.name!r}: custom functions cannot be saved")
        return {
            **super().get_config(),
            "activation": {"name": self.activation_name, **self.activation_kw},
        }


class Dropout(Layer):
    """Zero a fraction ``rate`` of the inputs while training, scaling the rest by
    ``1 / (1 - rate)`` (inverted dropout); identity in inference.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.Dropout(0.5)(np.ones((1, 4)), training=False).numpy()
        array([[1., 1., 1., 1.]], dtype=float32)
    """

    def __init__(self, rate: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise InvalidParameterError(
                f"Dropout rate must be a float in [0, 1), got {rate!r} (layer {self.name!r})"
            )
        self.rate = float(rate)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        return F.dropout(x, self.rate, training)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate}


class Flatten(Layer):
    """Reshape ``(batch, d1, d2, ...)`` to ``(batch, d1 * d2 * ...)``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.Flatten()(np.ones((2, 3, 4))).shape
        (2, 12)
    """

    def call(self, x: Tensor) -> Tensor:
        n = 1
        for d in x.shape[1:]:
            n *= d
        return F.reshape(x, (x.shape[0], n)) if x.ndim != 2 else x
