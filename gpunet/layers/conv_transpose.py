"""Conv2DTranspose: ``Y = activation(conv_transpose(X, kernel) + bias)``, Keras' layer.

Its forward is the data gradient of a conv2d (the backend's ``conv2d_transpose``,
col2im of ``X @ kernel.T``) and its backward a conv2d forward plus a weight gradient.
The output size is Keras': ``H * s + max(k - s, 0)`` ("valid") or ``H * s`` ("same")
without ``output_padding``, else ``(H - 1) * s + k - 2 * pad + output_padding``.
"""

from __future__ import annotations

from typing import Any

from gpunet.backend._conv_ops import conv_pads
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers import spec
from gpunet.layers.base import Backprop, add_grad, unique_name
from gpunet.layers.conv import _config, _Conv


@spec.register
class Conv2DTranspose(_Conv):
    """Transposed 2-D convolution (Keras' ``Conv2DTranspose``): kernel
    ``(kh, kw, filters, in_channels)``.

    Args:
        filters: Number of output channels.
        kernel_size, strides, dilation_rate: An int or a pair (no dilation with strides > 1).
        padding: ``"valid"`` or ``"same"``.
        output_padding: None or an int or pair, each below its stride: extra rows/columns
            at the bottom/right of the output.
        data_format, activation, use_bias, kernel_initializer, bias_initializer,
        kernel_regularizer, bias_regularizer: As in ``Conv2D``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> layer = gn.layers.Conv2DTranspose(4, 3, strides=2, padding="same")
        >>> layer(np.ones((2, 5, 5, 3), "float32")).shape, layer.kernel.shape
        ((2, 10, 10, 4), (3, 3, 4, 3))
    """

    rank = 2
    CONFIG = {k: v for k, v in _config(2).items() if k != "groups"} | {
        "output_padding": spec.Optional(spec.IntTuple(2, 0))
    }

    def __init__(self, filters: int, kernel_size: Any, *args: Any, **kwargs: Any) -> None:
        op = kwargs.pop("output_padding", None)
        if kwargs.get("groups", 1) != 1:
            raise InvalidParameterError(
                f"Conv2DTranspose supports groups=1 only (as Keras), got {kwargs['groups']!r}"
            )
        self.output_padding: tuple[int, ...] | None = None
        if op is not None:
            vals = (op, op) if isinstance(op, int) and not isinstance(op, bool) else op
            ok = isinstance(vals, (tuple, list)) and len(vals) == 2
            ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in vals)
            if not ok or min(vals) < 0:
                raise InvalidParameterError(
                    f"output_padding of Conv2DTranspose must be None, an int >= 0 or a pair "
                    f"of them, got {op!r}"
                )
            self.output_padding = tuple(int(v) for v in vals)
        if not kwargs.get("name"):  # Keras' name
            kwargs["name"] = unique_name("conv2d_transpose")
        super().__init__(filters, kernel_size, *args, **kwargs)
        if self.output_padding is not None and any(
            o >= s for o, s in zip(self.output_padding, self.strides, strict=True)
        ):
            raise InvalidParameterError(
                f"output_padding {self.output_padding} of layer {self.name!r} must be smaller "
                f"than strides {self.strides}"
            )

    def _out_sizes(self, sizes: tuple[Any, ...], shape: Any) -> tuple[Any, ...]:
        out: list[Any] = []
        ops = self.output_padding or (None, None)
        for n, k, s, d, o in zip(
            sizes, self.kernel_size, self.strides, self.dilation_rate, ops, strict=True
        ):
            ke = (k - 1) * d + 1
            if n is None:
                out.append(None)
            elif o is None:
                out.append(n * s + (max(ke - s, 0) if self.padding == "valid" else 0))
            else:
                pad = ke // 2 if self.padding == "same" else 0
                out.append((n - 1) * s + ke - 2 * pad + o)
            if out[-1] is not None and out[-1] < 1:
                raise InputValidationError(
                    f"layer {self.name!r}: input of shape {shape!r} gives an empty output"
                )
        return tuple(out)

    def weight_specs(self, input_shape: Any) -> list[spec.WeightSpec]:
        specs = super().weight_specs(input_shape)
        _, C = self._split(input_shape)
        specs[0] = spec.WeightSpec(
            "kernel",
            (*self.kernel_size, self.filters, C),
            self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        return specs

    def check_input(self, inputs: Any) -> None:
        if self.kernel is not None and getattr(inputs, "ndim", 0) == 4:
            C = inputs.shape[1 if self.data_format == "channels_first" else -1]
            if C != self.kernel.shape[-1]:
                raise InputValidationError(
                    f"layer {self.name!r} was built for {self.kernel.shape[-1]} input "
                    f"channels, got {C} (input shape {inputs.shape}, data_format "
                    f"{self.data_format!r})"
                )
        self._split((None, *getattr(inputs, "shape", (None,))[1:]))

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        xp, W, b = ops.xp, self.kernel, self.bias
        act = "linear" if self.activation_fn is not None else self.activation_name or "linear"
        kw = {} if act == "linear" else self.activation_kw
        first = self.data_format == "channels_first"
        Xl = xp.permute_dims(X, (0, 2, 3, 1)) if first else X
        out = self._out_sizes(tuple(Xl.shape[1:3]), tuple(X.shape))
        pads = (0, 0)
        if self.padding == "same":
            k, s, d = self.kernel_size, self.strides, self.dilation_rate
            tb, lr = conv_pads((out[0], out[1]), (k[0], k[1]), (s[0], s[1]), (d[0], d[1]), "same")
            pads = (tb[0], lr[0])
        Z, saved = ops.conv2d_transpose(
            Xl, W.data, None if b is None else b.data, out, pads,
            strides=self.strides, dilation=self.dilation_rate,
        )  # fmt: skip
        if first:
            Z = xp.permute_dims(Z, (0, 3, 1, 2))
        Y = Z if act == "linear" else ops.activation(act, Z, **kw)

        def backprop(dY: Any, need_dX: bool) -> Any:
            if act != "linear":
                dY = ops.backprop_activation(act, dY, Z, Y, **kw)
            if first:
                dY = xp.permute_dims(dY, (0, 2, 3, 1))
            need_db = b is not None and b.requires_grad
            dX, dW, db = ops.backprop_conv2d_transpose(dY, saved, need_dX=need_dX, need_db=need_db)
            add_grad(W, dW)
            if db is not None and need_db:
                add_grad(b, db)
            if dX is not None and first:
                dX = xp.permute_dims(dX, (0, 3, 1, 2))
            return dX

        return Y, backprop

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.pop("groups", None)
        op = self.output_padding
        return {**cfg, "output_padding": None if op is None else list(op)}
