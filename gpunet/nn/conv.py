"""PyTorch's convolution family over gpunet's ops, in PyTorch's NCHW layout:
``nn.Conv1d``, ``nn.Conv2d``, ``nn.ConvTranspose2d``, ``nn.MaxPool2d``,
``nn.AvgPool2d``, ``nn.BatchNorm2d`` and ``nn.Unflatten`` (the adaptive pools: ``_adaptive``).

Weights keep PyTorch's shapes and names (``weight (out, in / groups, kh, kw)``,
ConvTranspose2d's ``(in, out / groups, kh, kw)``, ``bias (out,)``) and initialization
(``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``), so a torch ``state_dict`` loads as it is.
Inputs are transposed to channels last around the backend's NHWC ``conv2d``.

Example:
    >>> import numpy as np
    >>> from gpunet import nn
    >>> conv = nn.Conv2d(3, 6, 5, padding=2)
    >>> conv(np.zeros((1, 3, 8, 8), "float32")).shape, conv.weight.shape
    ((1, 6, 8, 8), (6, 3, 5, 5))
"""

from __future__ import annotations

import math
from typing import Any

from gpunet import mixed_precision
from gpunet import random as grandom
from gpunet.autograd import Tensor
from gpunet.backend._conv_ops import conv_out_size
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers import AveragePooling2D
from gpunet.layers import MaxPooling2D as _MaxPooling2D
from gpunet.layers.base import Layer, add_grad
from gpunet.nn._module import TorchModule, torch_param


def _pair(value: Any, n: int, what: str, lo: int = 1) -> tuple[int, ...]:
    vals = (value,) * n if isinstance(value, int) and not isinstance(value, bool) else value
    ok = isinstance(vals, (tuple, list)) and len(vals) == n
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and v >= lo for v in vals):
        raise InvalidParameterError(
            f"{what} must be an int >= {lo} or a tuple of {n} of them, got {value!r}"
        )
    return tuple(int(v) for v in vals)


class _ConvNd(TorchModule, Layer):
    rank = 2
    transposed = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = True,
        output_padding: Any = 0,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(dtype=mixed_precision.dtype_arg(dtype))
        cls, n = type(self).__name__, self.rank
        for what, v in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("groups", groups)):  # fmt: skip
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidParameterError(f"{cls} {what} must be an int >= 1, got {v!r}")
        if in_channels % groups or out_channels % groups:
            raise InvalidParameterError(
                f"{cls}: in_channels ({in_channels}) and out_channels ({out_channels}) must "
                f"be multiples of groups ({groups})"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _pair(kernel_size, n, f"{cls} kernel_size")
        self.stride = _pair(stride, n, f"{cls} stride")
        self.dilation = _pair(dilation, n, f"{cls} dilation")
        self.output_padding = _pair(output_padding, n, f"{cls} output_padding", lo=0)
        if isinstance(padding, str):
            if padding not in ("valid", "same") or (padding == "same" and self.transposed):
                raise InvalidParameterError(
                    f"{cls} padding must be 'valid', 'same' (not for ConvTranspose2d) or ints, "
                    f"got {padding!r}"
                )
            if padding == "same" and max(self.stride) > 1:
                raise InvalidParameterError(
                    f"{cls} padding='same' needs stride 1 (as PyTorch), got {self.stride}"
                )
            self.padding: Any = padding
        else:
            self.padding = _pair(padding, n, f"{cls} padding", lo=0)
        if any(o >= max(s, d) for o, s, d in zip(
                self.output_padding, self.stride, self.dilation, strict=True)):  # fmt: skip
            raise InvalidParameterError(
                f"{cls} output_padding {self.output_padding} must be smaller than stride "
                f"{self.stride} or dilation {self.dilation}"
            )
        fan_in_ch = (out_channels if self.transposed else in_channels) // groups
        fan_in = fan_in_ch * math.prod(self.kernel_size)
        shape = (
            (in_channels, out_channels // groups, *self.kernel_size)
            if self.transposed
            else (out_channels, in_channels // groups, *self.kernel_size)
        )
        bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform(a=sqrt(5)) is this bound
        rng = grandom.generator("init")
        self.weight = torch_param(self, "weight", rng.uniform(-bound, bound, shape))
        self.bias = (
            torch_param(self, "bias", rng.uniform(-bound, bound, (out_channels,))) if bias else None
        )
        self.built = True
        if device is not None:
            self.to(device)

    def _pads(self) -> tuple[tuple[int, int], ...]:
        """Explicit (before, after) pads per spatial axis, PyTorch's rules."""
        if self.padding == "valid":
            return ((0, 0),) * self.rank
        if self.padding == "same":  # the odd one after, as PyTorch
            tot = [d * (k - 1) for k, d in zip(self.kernel_size, self.dilation, strict=True)]
            return tuple((t // 2, t - t // 2) for t in tot)
        return tuple((p, p) for p in self.padding)

    def check_input(self, inputs: Any) -> None:
        want = self.rank + 2
        C = self.in_channels
        shape = getattr(inputs, "shape", None)
        if not isinstance(inputs, Tensor) or inputs.ndim != want or shape[1] != C:  # type: ignore[index]
            layout = "(N, C, L)" if self.rank == 1 else "(N, C, H, W)"
            raise InputValidationError(
                f"{type(self).__name__}({self.in_channels}, {self.out_channels}) expects "
                f"input {layout} with C = {C}, got shape {shape}"
            )

    def _to_nhwc(self, xp: Any, X: Any) -> Any:
        if self.rank == 1:
            X = xp.reshape(X, (X.shape[0], X.shape[1], 1, X.shape[2]))
        return xp.permute_dims(X, (0, 2, 3, 1))

    def _from_nhwc(self, xp: Any, Y: Any) -> Any:
        Y = xp.permute_dims(Y, (0, 3, 1, 2))
        return xp.reshape(Y, (Y.shape[0], Y.shape[1], Y.shape[3])) if self.rank == 1 else Y

    def _geo(self) -> tuple[Any, Any, Any]:
        one = (1,) if self.rank == 1 else ()
        pads = self._pads()
        pads2 = (((0, 0),) if self.rank == 1 else ()) + pads
        return one + self.stride, pads2, one + self.dilation

    def _out_sizes(self, shape: tuple[Any, ...]) -> tuple[Any, ...]:
        """PyTorch's output sizes (two, the first 1 for Conv1d) of an (N, C, *spatial)
        input, checked; an unknown size stays None."""
        strides, pads, dilation = self._geo()
        one = (1,) if self.rank == 1 else ()
        ks, ops_ = one + self.kernel_size, (0,) * (2 - self.rank) + self.output_padding
        out: list[Any] = []
        for n, k, s, d, p, o in zip(
            one + tuple(shape[2:]), ks, strides, dilation, pads, ops_, strict=True
        ):
            if n is None:
                out.append(None)
                continue
            ke = d * (k - 1) + 1
            m = (
                (n - 1) * s - sum(p) + ke + o
                if self.transposed
                else conv_out_size(n, k, s, d, sum(p))
            )
            if m < 1:
                raise InputValidationError(
                    f"{type(self).__name__}: the kernel {self.kernel_size} (dilation "
                    f"{self.dilation}, padding {self.padding}) gives an empty output for an "
                    f"input of shape {shape}"
                )
            out.append(m)
        return tuple(out)

    def compute_output_shape(self, input_shape: Any) -> Any:
        out = self._out_sizes(tuple(input_shape))
        return (input_shape[0], self.out_channels, *out[2 - self.rank :])

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Any]:
        xp, Wp, bp = ops.xp, self.weight, self.bias
        strides, pads, dilation = self._geo()
        Wd = Wp.data if self.rank == 2 else xp.reshape(Wp.data, (*Wp.shape[:2], 1, Wp.shape[2]))
        W = xp.permute_dims(Wd, (2, 3, 1, 0))  # (kh, kw, in / groups, out) or its transpose
        Xl = self._to_nhwc(xp, X)
        b = None if bp is None else bp.data
        geo = {"strides": strides, "dilation": dilation, "groups": self.groups}
        out = self._out_sizes(tuple(X.shape))
        if self.transposed:
            Y, saved = ops.conv2d_transpose(Xl, W, b, out, tuple(p[0] for p in pads), **geo)
        else:
            Y, saved = ops.conv2d(Xl, W, b, padding=pads, **geo)

        def backprop(dY: Any, need_dX: bool) -> Any:
            back = ops.backprop_conv2d_transpose if self.transposed else ops.backprop_conv2d
            need_db = bp is not None and bp.requires_grad
            dX, dW, db = back(self._to_nhwc(xp, dY), saved, need_dX=need_dX, need_db=need_db)
            dW = xp.permute_dims(dW, (3, 2, 0, 1))
            add_grad(Wp, dW if self.rank == 2 else xp.reshape(dW, Wp.shape))
            if db is not None and need_db:
                add_grad(bp, db)
            return None if dX is None else self._from_nhwc(xp, dX)

        return self._from_nhwc(xp, Y), backprop

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        s += f", stride={self.stride}"
        if self.padding != (0,) * self.rank:
            s += f", padding={self.padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")


class Conv2d(_ConvNd):
    """``nn.Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0,
    dilation=1, groups=1, bias=True)`` over (N, C, H, W); ``padding`` is ints
    (symmetric zeros), ``"valid"`` or ``"same"`` (stride 1)."""

    rank = 2

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "output_padding" in kwargs:
            raise TypeError("Conv2d got an unexpected keyword argument 'output_padding'")
        super().__init__(*args, **kwargs)


class Conv1d(Conv2d):
    """``nn.Conv1d`` over (N, C, L): Conv2d's arguments with single ints."""

    rank = 1


class ConvTranspose2d(_ConvNd):
    """``nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=1,
    padding=0, output_padding=0, groups=1, bias=True, dilation=1)``: weight
    ``(in, out / groups, kh, kw)``; output ``(H - 1) * s - 2 * p + d * (k - 1) + op + 1``."""

    rank = 2
    transposed = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        output_padding: Any = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: Any = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, output_padding, **kwargs)  # fmt: skip


class ConvTranspose1d(ConvTranspose2d):
    """``nn.ConvTranspose1d`` over (N, C, L): ConvTranspose2d's arguments with single
    ints (a 1-d decoder's upsampling)."""

    rank = 1


class _TorchPool(TorchModule):
    """PyTorch's symmetric ``padding`` around a Keras pooling layer: ``-inf`` for max
    (a padded cell never wins), zeros counted in the mean for avg
    (``count_include_pad=True``)."""

    fill = 0.0
    pads: tuple[int, ...] = (0, 0)

    def _set_padding(self, padding: Any, ceil_mode: bool) -> None:
        cls = type(self).__name__
        if ceil_mode:
            raise InvalidParameterError(f"{cls} supports ceil_mode=False only, got {ceil_mode!r}")
        self.pads = _pair(padding, 2, f"{cls} padding", lo=0)
        k = self.pool_size  # type: ignore[attr-defined]
        if any(2 * p > q for p, q in zip(self.pads, k, strict=True)):
            raise InvalidParameterError(
                f"{cls} padding {self.pads} must be at most half of kernel_size {k}"
            )

    def _padded(self, shape: Any) -> tuple[Any, ...]:
        ph, pw = self.pads
        grow = lambda n, p: None if n is None else n + 2 * p  # noqa: E731
        return (*tuple(shape)[:2], grow(shape[2], ph), grow(shape[3], pw))

    def check_input(self, x: Any) -> None:
        shape = getattr(x, "shape", None)
        if not isinstance(x, Tensor) or x.ndim != 4:
            raise InputValidationError(
                f"{type(self).__name__} expects input (N, C, H, W), got shape {shape}"
            )
        self.compute_output_shape(tuple(x.shape))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return super().compute_output_shape(self._padded(input_shape))  # type: ignore[misc]

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Any]:
        ph, pw = self.pads
        parent = super().forward_pass  # type: ignore[misc]
        if not (ph or pw):
            return parent(ops, X, training)  # type: ignore[no-any-return]
        H, W = X.shape[2:]
        Xp = ops.xp.full(self._padded(X.shape), self.fill, dtype=X.dtype, **ops.device_kw)
        Xp[:, :, ph : ph + H, pw : pw + W] = X
        Y, back = parent(ops, Xp, training)

        def backprop(dY: Any, need_dX: bool) -> Any:
            dXp = back(dY, need_dX)
            return None if dXp is None else dXp[:, :, ph : ph + H, pw : pw + W]

        return Y, backprop

    def extra_repr(self) -> str:
        k, s = self.pool_size, self.strides  # type: ignore[attr-defined]
        return f"kernel_size={k}, stride={s}, padding={self.pads}"


class MaxPool2d(_TorchPool, _MaxPooling2D):
    """``nn.MaxPool2d(kernel_size, stride=None, padding=0)`` over (N, C, H, W)."""

    fill = -math.inf

    def __init__(
        self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
        return_indices: bool = False, ceil_mode: bool = False,
    ) -> None:  # fmt: skip
        if dilation not in (1, (1, 1)) or return_indices:
            raise InvalidParameterError(
                f"MaxPool2d supports dilation=1 and return_indices=False only, got "
                f"dilation={dilation!r}, return_indices={return_indices!r}"
            )
        super().__init__(kernel_size, stride, data_format="channels_first")
        self._set_padding(padding, ceil_mode)


class AvgPool2d(_TorchPool, AveragePooling2D):
    """``nn.AvgPool2d(kernel_size, stride=None, padding=0)`` over (N, C, H, W)."""

    def __init__(
        self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
        count_include_pad: bool = True, divisor_override: Any = None,
    ) -> None:  # fmt: skip
        if divisor_override is not None or not count_include_pad:
            raise InvalidParameterError(
                f"AvgPool2d supports divisor_override=None and count_include_pad=True only, "
                f"got {divisor_override!r}, {count_include_pad!r}"
            )
        super().__init__(kernel_size, stride, data_format="channels_first")
        self._set_padding(padding, ceil_mode)


class Unflatten(TorchModule, Layer):
    """``nn.Unflatten(dim, unflattened_size)``: split axis ``dim`` into ``sizes``."""

    def __init__(self, dim: int, unflattened_size: Any) -> None:
        super().__init__()
        self.dim, self.sizes = int(dim), tuple(int(s) for s in unflattened_size)

    def _shape(self, shape: tuple[Any, ...]) -> tuple[Any, ...]:
        dim = self.dim % len(shape)
        n, known = shape[dim], [s for s in self.sizes if s != -1]
        m = math.prod(known)
        if n is not None and (m == 0 or n % m or (len(known) == len(self.sizes) and m != n)):
            raise InputValidationError(
                f"Unflatten: sizes {self.sizes} do not multiply to {n}, the size of dim "
                f"{self.dim} of an input of shape {shape}"
            )
        sizes = tuple(n // math.prod(known) if s == -1 else s for s in self.sizes)
        return (*shape[:dim], *sizes, *shape[dim + 1 :])

    def compute_output_shape(self, input_shape: Any) -> Any:
        return self._shape(tuple(input_shape))

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Any]:
        xp, shape = ops.xp, tuple(X.shape)
        return xp.reshape(X, self._shape(shape)), lambda dY, need: xp.reshape(dY, shape)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.sizes}"
