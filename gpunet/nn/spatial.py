"""More of PyTorch's modules over (N, C, L) and (N, C, H, W) inputs: ``nn.MaxPool1d``,
``nn.AvgPool1d`` (a text CNN's pools, run as the 2-d
pools over a height of 1), ``nn.Dropout1d``/``nn.Dropout2d`` (whole channels
zeroed), ``nn.Upsample`` / ``F.interpolate`` (nearest neighbour by an integer
factor), and their functional spellings.

Example:
    >>> import numpy as np
    >>> from gpunet import nn
    >>> nn.MaxPool1d(2)(np.arange(8.0, dtype="float32").reshape(1, 2, 4)).numpy()
    array([[[1., 3.],
            [5., 7.]]], dtype=float32)
"""

from __future__ import annotations

from typing import Any

from gpunet.autograd import Tensor
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers import UpSampling2D
from gpunet.layers.base import Backprop, Layer
from gpunet.layers.pooling import from_last, to_last
from gpunet.nn._module import TorchModule
from gpunet.nn.conv import AvgPool2d, MaxPool2d


def _one(value: Any, what: str, lo: int = 1) -> int:
    v = value[0] if isinstance(value, (tuple, list)) and len(value) == 1 else value
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise InvalidParameterError(f"{what} must be an int >= {lo}, got {value!r}")
    return v


def _check_ncl(layer: Any, x: Any) -> None:
    if not isinstance(x, Tensor) or x.ndim != 3:
        raise InputValidationError(
            f"{type(layer).__name__} expects input (N, C, L), got shape {getattr(x, 'shape', None)}"
        )


class _Pool1d:
    """A 2-d pool of kernel (1, k) over the input seen as (N, C, 1, L)."""

    def check_input(self, x: Any) -> None:
        _check_ncl(self, x)
        self.compute_output_shape((*x.shape[:2], 1, x.shape[2]))  # type: ignore[attr-defined]

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        xp, (N, C, L) = ops.xp, X.shape
        Y4, back = super().forward_pass(ops, xp.reshape(X, (N, C, 1, L)), training)  # type: ignore[misc]

        def backprop(dY: Any, need_dX: bool) -> Any:
            dX = back(xp.reshape(dY, Y4.shape), need_dX)
            return None if dX is None else xp.reshape(dX, (N, C, L))

        return xp.reshape(Y4, (N, C, Y4.shape[3])), backprop

    def extra_repr(self) -> str:
        k, s = self.pool_size[1], self.strides[1]  # type: ignore[attr-defined]
        return f"kernel_size={k}, stride={s}, padding={self.pads[1]}"  # type: ignore[attr-defined]


class MaxPool1d(_Pool1d, MaxPool2d):
    """``nn.MaxPool1d(kernel_size, stride=None, padding=0)`` over (N, C, L)."""

    def __init__(
        self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
        return_indices: bool = False, ceil_mode: bool = False,
    ) -> None:  # fmt: skip
        k = _one(kernel_size, "MaxPool1d kernel_size")
        s = k if stride is None else _one(stride, "MaxPool1d stride")
        p = _one(padding, "MaxPool1d padding", lo=0)
        super().__init__((1, k), (1, s), (0, p), _one(dilation, "MaxPool1d dilation"),
                         return_indices, ceil_mode)  # fmt: skip


class AvgPool1d(_Pool1d, AvgPool2d):
    """``nn.AvgPool1d(kernel_size, stride=None, padding=0)`` over (N, C, L)."""

    def __init__(
        self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:  # fmt: skip
        k = _one(kernel_size, "AvgPool1d kernel_size")
        s = k if stride is None else _one(stride, "AvgPool1d stride")
        p = _one(padding, "AvgPool1d padding", lo=0)
        super().__init__((1, k), (1, s), (0, p), ceil_mode, count_include_pad)


class _ChannelDropout(TorchModule, Layer):
    """Each (sample, channel) of an input of rank ``RANKS`` zeroed with probability
    ``p`` in training, the rest scaled by ``1 / (1 - p)``; identity in eval."""

    RANKS: tuple[int, ...] = ()
    SHAPES = ""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise InvalidParameterError(
                f"dropout probability has to be between 0 and 1, but got {p!r}"
            )
        self.p = float(p)

    def check_input(self, x: Any) -> None:
        if not isinstance(x, Tensor) or x.ndim not in self.RANKS:
            raise InputValidationError(
                f"{type(self).__name__} expects input {self.SHAPES}, got shape "
                f"{getattr(x, 'shape', None)}"
            )

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        if not training or self.p == 0.0:
            return X, lambda dY, need: dY
        lead = tuple(X.shape[:2] if X.ndim == max(self.RANKS) else X.shape[:1])  # unbatched
        drawn = (
            ops.dropout_mask(lead, self.p, X.dtype) if self.p < 1.0 else ops.zeros(lead, X.dtype)
        )
        mask = ops.xp.reshape(drawn, (*lead, *[1] * (X.ndim - len(lead))))
        return X * mask, lambda dY, need: dY * mask

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace=False"


class Dropout1d(_ChannelDropout):
    RANKS, SHAPES = (2, 3), "(N, C, L) or (C, L)"


class Dropout2d(_ChannelDropout):
    RANKS, SHAPES = (3, 4), "(N, C, H, W) or (C, H, W)"


class Upsample(TorchModule, UpSampling2D):
    """``nn.Upsample(size=None, scale_factor=None, mode="nearest")`` over (N, C, H, W):
    nearest neighbour by whole factors (``size`` a whole multiple of the input's)."""

    def __init__(self, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                 align_corners: Any = None) -> None:  # fmt: skip
        if mode != "nearest" or (size is None) == (scale_factor is None):
            raise InvalidParameterError(
                "nn.Upsample: mode 'nearest' with exactly one of size and scale_factor is "
                f"supported, got mode={mode!r}, size={size!r}, scale_factor={scale_factor!r}"
            )
        self.target = None if size is None else _hw(size, "size")
        factor = (1, 1) if scale_factor is None else _hw(scale_factor, "scale_factor")
        super().__init__(factor, data_format="channels_first")
        self.mode, self.scale_factor = mode, scale_factor

    def check_input(self, x: Any) -> None:
        if not isinstance(x, Tensor) or x.ndim != 4:
            raise InputValidationError(
                f"Upsample expects input (N, C, H, W), got shape {getattr(x, 'shape', None)}"
            )
        self._factor(tuple(x.shape))

    def _factor(self, shape: tuple[int, ...]) -> tuple[int, int]:
        if self.target is None:
            return self.size  # type: ignore[return-value]
        H, W = shape[2:]
        if self.target[0] % H or self.target[1] % W:
            raise InputValidationError(
                f"Upsample: size {self.target} must be a whole multiple of the input's "
                f"(H, W) = {(H, W)} for nearest neighbour by whole factors"
            )
        return self.target[0] // H, self.target[1] // W

    def compute_output_shape(self, input_shape: Any) -> Any:
        f = self._factor(tuple(input_shape))
        return (*input_shape[:2], input_shape[2] * f[0], input_shape[3] * f[1])

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        xp, f = ops.xp, self._factor(tuple(X.shape))  # per call: no state shared by threads
        Y = from_last(xp, ops.upsample2d(to_last(xp, X, True), f), True)
        return Y, lambda dY, need: from_last(
            xp, ops.backprop_upsample2d(to_last(xp, dY, True), f), True
        )

    def extra_repr(self) -> str:
        what = f"size={self.target}" if self.target else f"scale_factor={self.scale_factor}"
        return f"{what}, mode='{self.mode}'"


def _hw(value: Any, what: str) -> tuple[int, int]:
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or any(float(v) != int(v) or int(v) < 1 for v in pair):
        raise InvalidParameterError(f"nn.Upsample {what} must be whole numbers >= 1, got {value!r}")
    return int(pair[0]), int(pair[1])


def max_pool1d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Tensor:
    return MaxPool1d(kernel_size, stride, padding)(input)  # type: ignore[no-any-return]


def avg_pool1d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Tensor:
    return AvgPool1d(kernel_size, stride, padding)(input)  # type: ignore[no-any-return]


def interpolate(input: Tensor, size: Any = None, scale_factor: Any = None,
                mode: str = "nearest", align_corners: Any = None) -> Tensor:  # fmt: skip
    return Upsample(size, scale_factor, mode, align_corners)(input)  # type: ignore[no-any-return]
