"""Dense: ``Y = activation(X @ W + b)`` as one fused op."""

from __future__ import annotations

from typing import Any

from gpunet import activations, initializers
from gpunet import functional as F
from gpunet import regularizers as regs
from gpunet.autograd import Tensor
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers.base import Layer


class Dense(Layer):
    """Fully connected layer: ``Y = activation(X @ W + b)``.

    Args:
        units: Width of the output.
        activation: A name (``"relu"``, ``"sigmoid"``, ...), a function of
            ``gn.activations``, any callable on tensors, or None (linear).
        use_bias: Add a learned bias vector.
        kernel_initializer: Initializer of ``W`` (default ``"glorot_uniform"``).
        bias_initializer: Initializer of ``b`` (default ``"zeros"``).
        kernel_regularizer: ``"l1"``, ``"l2"``, ``gn.regularizers.L1L2(...)`` or None.
        bias_regularizer: As ``kernel_regularizer``, for ``b``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.Dense(4)(np.ones((2, 3), dtype="float32")).shape
        (2, 4)
    """

    def __init__(
        self,
        units: int,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
            raise InvalidParameterError(
                f"Dense units must be a positive int, got {units!r} (layer {self.name!r})"
            )
        self.units = units
        self.activation_name, self.activation_kw, self.activation_fn = activations.get(activation)
        self._activation_spec = activation
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regs.get(kernel_regularizer)
        self.bias_regularizer = regs.get(bias_regularizer)
        self.kernel: Any = None
        self.bias: Any = None
        if self.input_shape_hint is not None:
            self.build((None, *self.input_shape_hint))
            self.built = True

    def build(self, input_shape: Any) -> None:
        if not isinstance(input_shape, tuple) or len(input_shape) < 1:
            raise InputValidationError(
                f"layer {self.name!r} expects one array input, got shape {input_shape!r}"
            )
        n_in = input_shape[-1]
        self.kernel = self.add_weight(
            "kernel",
            (n_in, self.units),
            self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                "bias", (self.units,), self.bias_initializer, regularizer=self.bias_regularizer
            )

    def check_input(self, inputs: Any) -> None:
        if not isinstance(inputs, Tensor):
            raise InputValidationError(f"layer {self.name!r} expects one tensor input")
        if inputs.ndim < 2:
            raise InputValidationError(
                f"layer {self.name!r} expects input of shape (batch, {self.kernel.shape[0]}), "
                f"got shape {inputs.shape}"
            )
        if inputs.shape[-1] != self.kernel.shape[0]:
            raise InputValidationError(
                f"X has {inputs.shape[-1]} features, but layer {self.name!r} expects "
                f"{self.kernel.shape[0]} (input shape (batch, {self.kernel.shape[0]}), "
                f"got {inputs.shape})"
            )

    def call(self, x: Tensor) -> Tensor:
        for p in (self.kernel, self.bias):
            if p is not None and p.regularizer is not None:
                self.losses.append(p.regularizer(p))
        name = self.activation_name or "linear"
        y = F.dense(x, self.kernel, self.bias, name, **self.activation_kw)
        return self.activation_fn(y) if self.activation_fn is not None else y

    def get_config(self) -> dict[str, Any]:
        if self.activation_fn is not None:
            raise InvalidParameterError(
                f"layer {self.name!r} uses a custom activation function, which cannot be "
                "saved; use a named activation"
            )
        return {
            **super().get_config(),
            "units": self.units,
            "activation": {"name": self.activation_name, **self.activation_kw},
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.name_of(self.kernel_initializer),
            "bias_initializer": initializers.name_of(self.bias_initializer),
            "kernel_regularizer": _reg_cfg(self.kernel_regularizer),
            "bias_regularizer": _reg_cfg(self.bias_regularizer),
        }


def _reg_cfg(r: Any) -> Any:
    return None if r is None else r.get_config()
