"""Dense: ``Y = activation(X @ W + b)`` as one fused op."""

from __future__ import annotations

from typing import Any

from gpunet import activations, initializers
from gpunet import regularizers as regs
from gpunet.autograd import Tensor
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers import spec
from gpunet.layers.base import Backprop, Layer, add_grad, grad_out, record_pass

PROB_ACTIVATIONS = ("sigmoid", "softmax")


@spec.register
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

    CONFIG = {
        "units": spec.Int(1), "activation": spec.Activation(), "use_bias": spec.Bool(),
        "kernel_initializer": spec.Initializer(), "bias_initializer": spec.Initializer(),
        "kernel_regularizer": spec.Optional(spec.Regularizer()),
        "bias_regularizer": spec.Optional(spec.Regularizer()),
    }  # fmt: skip
    supports_masking = True  # Keras: applied per step, the input mask passes on

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

    def weight_specs(self, input_shape: Any) -> list[spec.WeightSpec]:
        if not isinstance(input_shape, tuple) or len(input_shape) < 1:
            raise InputValidationError(
                f"layer {self.name!r} expects one array input, got shape {input_shape!r}"
            )
        n_in = input_shape[-1]
        kernel = spec.WeightSpec(
            "kernel", (n_in, self.units), self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )  # fmt: skip
        if not self.use_bias:
            return [kernel]
        bias = spec.WeightSpec(
            "bias", (self.units,), self.bias_initializer, regularizer=self.bias_regularizer
        )
        return [kernel, bias]

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (*input_shape[:-1], self.units)

    @property
    def prob_activation(self) -> str | None:  # type: ignore[override]
        fused = self.activation_fn is None and self.activation_name in PROB_ACTIVATIONS
        return self.activation_name if fused else None

    @property
    def runs_on_arrays(self) -> bool:
        return self.activation_fn is None  # a custom activation is a tensor function

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
                f"got {(None, *inputs.shape[1:])})"
            )

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        y = record_pass(self, x, training)
        return self.activation_fn(y) if self.activation_fn is not None else y

    def forward_pass(
        self, ops: Any, X: Any, training: bool, logits: bool = False
    ) -> tuple[Any, Backprop]:
        act = self.activation_name or "linear"
        if logits or self.activation_fn is not None:
            act = "linear"
        kw = {} if act == "linear" else self.activation_kw
        if act in PROB_ACTIVATIONS:  # the GEMM, then the activation as its own pass
            Z, backprop_z = self.forward_pass(ops, X, training, logits=True)
            P = ops.activation(act, Z, **kw)

            def backprop_p(dY: Any, need_dX: bool) -> Any:
                return backprop_z(ops.backprop_activation(act, dY, Z, P, **kw), need_dX)

            return P, backprop_p
        xp, W, b = ops.xp, self.kernel, self.bias
        lead = None
        if X.ndim != 2:  # Keras applies Dense to the last axis
            lead = tuple(X.shape[:-1])
            X = xp.reshape(X, (-1, X.shape[-1]))
        Wd = W.data
        Y, Z = ops.dense(X, Wd, None if b is None else b.data, act, **kw)

        def backprop(dY: Any, need_dX: bool) -> Any:
            if lead is not None:
                dY = xp.reshape(dY, (-1, dY.shape[-1]))
            dX, dW, db = ops.backprop_dense(
                dY, X, Wd, Z, Y, act, need_dX=need_dX, need_db=b is not None and b.requires_grad,
                dW_out=grad_out(W), db_out=grad_out(b), **kw,
            )  # fmt: skip
            add_grad(W, dW)
            if db is not None:
                add_grad(b, db)
            if dX is not None and lead is not None:
                dX = xp.reshape(dX, (*lead, dX.shape[-1]))
            return dX

        out = Y if lead is None else xp.reshape(Y, (*lead, self.units))  # backprop keeps Y
        return out, backprop

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
