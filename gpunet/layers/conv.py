"""Conv1D and Conv2D: ``Y = activation(conv(X, kernel) + bias)``, Keras' layers.

The arithmetic is the backend's ``conv2d`` (channels last, im2col and a GEMM per
group); Conv1D is the same op with a height of 1, and ``channels_first`` inputs are
transposed to channels last and back around it.
"""

from __future__ import annotations

import math
from typing import Any

from gpunet import activations, initializers
from gpunet import regularizers as regs
from gpunet.autograd import Tensor
from gpunet.backend._conv_ops import conv_out_size
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers import spec
from gpunet.layers.base import Backprop, Layer, add_grad, record_pass, unique_name


def _ints(value: Any, n: int, what: str, layer: str) -> tuple[int, ...]:
    vals = (value,) * n if isinstance(value, int) and not isinstance(value, bool) else value
    try:
        out = tuple(int(v) for v in vals if not isinstance(v, bool))
    except TypeError:
        out = ()
    if len(out) != n or any(v != w for v, w in zip(out, vals, strict=False)) or min(out) < 1:
        raise InvalidParameterError(
            f"{what} of layer {layer!r} must be a positive int or a tuple of {n} positive "
            f"ints, got {value!r}"
        )
    return out


class _Conv(Layer):
    rank = 2

    def __init__(
        self,
        filters: int,
        kernel_size: Any,
        strides: Any = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: Any = 1,
        groups: int = 1,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        **kwargs: Any,
    ) -> None:
        if not kwargs.get("name"):  # Keras' names: conv2d, conv2d_1 (not conv2_d)
            kwargs["name"] = unique_name(type(self).__name__.lower())
        super().__init__(**kwargs)
        n, name = self.rank, self.name
        for what, v in (("filters", filters), ("groups", groups)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise InvalidParameterError(
                    f"{what} of layer {name!r} must be a positive int, got {v!r}"
                )
        if filters % groups:
            raise InvalidParameterError(
                f"filters ({filters}) of layer {name!r} must be a multiple of groups ({groups})"
            )
        self.filters, self.groups = filters, groups
        self.kernel_size = _ints(kernel_size, n, "kernel_size", name)
        self.strides = _ints(strides, n, "strides", name)
        self.dilation_rate = _ints(dilation_rate, n, "dilation_rate", name)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise InvalidParameterError(
                f"layer {name!r}: strides {self.strides} > 1 cannot be combined with "
                f"dilation_rate {self.dilation_rate} > 1 (as in Keras)"
            )
        padding = str(padding).lower()
        if padding not in ("valid", "same"):
            raise InvalidParameterError(
                f"padding of layer {name!r} must be 'valid' or 'same', got {padding!r}"
            )
        data_format = data_format or "channels_last"
        if data_format not in ("channels_last", "channels_first"):
            raise InvalidParameterError(
                f"data_format of layer {name!r} must be 'channels_last' or 'channels_first', "
                f"got {data_format!r}"
            )
        self.padding, self.data_format = padding, data_format
        self.activation_name, self.activation_kw, self.activation_fn = activations.get(activation)
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

    # -- shapes ----------------------------------------------------------------------
    def _split(self, shape: Any) -> tuple[tuple[Any, ...], Any]:
        """``(spatial sizes, channels)`` of a batch-first input shape, checked."""
        want = self.rank + 2
        if not isinstance(shape, tuple) or len(shape) != want:
            layout = ("(batch, length, channels)", "(batch, height, width, channels)")
            if self.data_format == "channels_first":
                layout = ("(batch, channels, length)", "(batch, channels, height, width)")
            raise InputValidationError(
                f"layer {self.name!r} expects input of rank {want} {layout[self.rank - 1]}, "
                f"got shape {shape!r}"
            )
        if self.data_format == "channels_first":
            return tuple(shape[2:]), shape[1]
        return tuple(shape[1:-1]), shape[-1]

    def _out_sizes(self, sizes: tuple[Any, ...], shape: Any) -> tuple[Any, ...]:
        out: list[Any] = []
        for n, k, s, d in zip(
            sizes, self.kernel_size, self.strides, self.dilation_rate, strict=True
        ):
            if n is None:
                out.append(None)
            elif self.padding == "same":
                out.append(math.ceil(n / s))
            else:
                m = conv_out_size(n, k, s, d, 0)
                if m < 1:
                    raise InputValidationError(
                        f"layer {self.name!r}: the kernel {self.kernel_size} (dilation "
                        f"{self.dilation_rate}) is larger than the input of shape {shape!r} "
                        "with padding 'valid'"
                    )
                out.append(m)
        return tuple(out)

    def weight_specs(self, input_shape: Any) -> list[spec.WeightSpec]:
        sizes, C = self._split(input_shape)
        self._out_sizes(sizes, input_shape)
        if C is None or C % self.groups:
            raise InvalidParameterError(
                f"layer {self.name!r}: input channels {C} must be known and a multiple of "
                f"groups ({self.groups}) (input shape {input_shape!r})"
            )
        kshape = (*self.kernel_size, C // self.groups, self.filters)
        kernel = spec.WeightSpec(
            "kernel", kshape, self.kernel_initializer, regularizer=self.kernel_regularizer
        )
        if not self.use_bias:
            return [kernel]
        bias = spec.WeightSpec(
            "bias", (self.filters,), self.bias_initializer, regularizer=self.bias_regularizer
        )
        return [kernel, bias]

    def compute_output_shape(self, input_shape: Any) -> Any:
        input_shape = tuple(input_shape)
        sizes, _ = self._split(input_shape)
        out = self._out_sizes(sizes, input_shape)
        if self.data_format == "channels_first":
            return (input_shape[0], self.filters, *out)
        return (input_shape[0], *out, self.filters)

    def check_input(self, inputs: Any) -> None:
        if not isinstance(inputs, Tensor):
            raise InputValidationError(f"layer {self.name!r} expects one tensor input")
        shape = (None, *inputs.shape[1:])
        sizes, C = self._split(shape)
        want = self.kernel.shape[-2] * self.groups
        if C != want:
            raise InputValidationError(
                f"layer {self.name!r} was built for {want} input channels, got {C} "
                f"(input shape {shape}, data_format {self.data_format!r})"
            )
        self._out_sizes(sizes, shape)

    # -- computing -------------------------------------------------------------------
    @property
    def runs_on_arrays(self) -> bool:
        return self.activation_fn is None  # a custom activation is a tensor function

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        y = record_pass(self, x, training)
        return self.activation_fn(y) if self.activation_fn is not None else y

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        xp, W, b = ops.xp, self.kernel, self.bias
        act = "linear" if self.activation_fn is not None else self.activation_name or "linear"
        kw = {} if act == "linear" else self.activation_kw
        first = self.data_format == "channels_first"
        to_last = (0, *range(2, self.rank + 2), 1)
        to_first = (0, self.rank + 1, *range(1, self.rank + 1))
        Xl = xp.permute_dims(X, to_last) if first else X
        # the activation runs inside the op: fused with the bias where a backend can
        geo = {"padding": self.padding, "groups": self.groups, "activation": act, "act_kw": kw}
        if self.rank == 1:
            geo |= {"strides": self.strides[0], "dilation": self.dilation_rate[0]}
            Z, saved = ops.conv1d(Xl, W.data, None if b is None else b.data, **geo)
        else:
            geo |= {"strides": self.strides, "dilation": self.dilation_rate}
            Z, saved = ops.conv2d(Xl, W.data, None if b is None else b.data, **geo)
        Y = xp.permute_dims(Z, to_first) if first else Z

        def backprop(dY: Any, need_dX: bool) -> Any:
            if first:
                dY = xp.permute_dims(dY, to_last)
            back = ops.backprop_conv1d if self.rank == 1 else ops.backprop_conv2d
            need_db = b is not None and b.requires_grad
            dX, dW, db = back(dY, saved, need_dX=need_dX, need_db=need_db)
            add_grad(W, dW)
            if db is not None and need_db:
                add_grad(b, db)
            if dX is not None and first:
                dX = xp.permute_dims(dX, to_first)
            return dX

        return Y, backprop

    def get_config(self) -> dict[str, Any]:
        if self.activation_fn is not None:
            raise InvalidParameterError(
                f"layer {self.name!r} uses a custom activation function, which cannot be "
                "saved; use a named activation"
            )
        return {
            **super().get_config(),
            "activation": {"name": self.activation_name, **self.activation_kw},
            "kernel_initializer": initializers.name_of(self.kernel_initializer),
            "bias_initializer": initializers.name_of(self.bias_initializer),
            "kernel_regularizer": _reg_cfg(self.kernel_regularizer),
            "bias_regularizer": _reg_cfg(self.bias_regularizer),
        }


def _reg_cfg(r: Any) -> Any:
    return None if r is None else r.get_config()


def _config(n: int) -> dict[str, Any]:
    return {
        "filters": spec.Int(1), "kernel_size": spec.IntTuple(n, 1),
        "strides": spec.IntTuple(n, 1), "padding": spec.Choice(("valid", "same")),
        "data_format": spec.Choice(("channels_last", "channels_first")),
        "dilation_rate": spec.IntTuple(n, 1), "groups": spec.Int(1),
        "activation": spec.Activation(), "use_bias": spec.Bool(),
        "kernel_initializer": spec.Initializer(), "bias_initializer": spec.Initializer(),
        "kernel_regularizer": spec.Optional(spec.Regularizer()),
        "bias_regularizer": spec.Optional(spec.Regularizer()),
    }  # fmt: skip


@spec.register
class Conv2D(_Conv):
    """2-D convolution (Keras' ``Conv2D``): kernel ``(kh, kw, in/groups, filters)``.

    Args:
        filters: Number of output channels.
        kernel_size: An int or a pair ``(kh, kw)``.
        strides: An int or a pair.
        padding: ``"valid"`` (none) or ``"same"`` (output ``ceil(size / stride)``,
            the odd pad at the bottom/right, as Keras).
        data_format: ``"channels_last"`` (N, H, W, C) or ``"channels_first"`` (N, C, H, W).
        dilation_rate: An int or a pair (not with strides > 1).
        groups: Channel groups; input channels and ``filters`` divide by it.
        activation: A name, a ``gn.activations`` function or a callable on tensors.
        use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer: As in ``Dense``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.Conv2D(4, 3, padding="same")(np.ones((2, 5, 5, 3), "float32")).shape
        (2, 5, 5, 4)
    """

    rank = 2
    CONFIG = _config(2)


@spec.register
class Conv1D(_Conv):
    """1-D convolution (Keras' ``Conv1D``) over (N, length, C): kernel
    ``(k, in/groups, filters)``; the arguments are Conv2D's with single ints
    (``padding="causal"`` is not supported).

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.Conv1D(4, 3, strides=2)(np.ones((2, 9, 3), "float32")).shape
        (2, 4, 4)
    """

    rank = 1
    CONFIG = _config(1)
