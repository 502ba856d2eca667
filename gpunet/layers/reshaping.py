"""Reshaping layers, as Keras': ``Reshape``, ``UpSampling2D``, ``ZeroPadding2D``,
``Cropping2D`` and ``SpatialDropout2D`` (channels-last; ``data_format="channels_first"``
by transposes).
"""

from __future__ import annotations

import math
from typing import Any

from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers import spec
from gpunet.layers.base import Backprop, Layer
from gpunet.layers.pooling import _FORMAT, check_rank, data_format_of, from_last, int_tuple, to_last


def _identity(dY: Any, need_dX: bool) -> Any:
    return dY


@spec.register
class Reshape(Layer):
    """Reshape each sample to ``target_shape`` (one entry may be -1: inferred).

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.Reshape((2, -1))(np.ones((3, 6))).shape
        (3, 2, 3)
    """

    CONFIG = {"target_shape": spec.IntTuple(0, -1)}

    def __init__(self, target_shape: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        try:
            shape = tuple(target_shape)
        except TypeError:
            shape = None  # type: ignore[assignment]
        if (
            not shape
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape)
            or any(s == 0 or s < -1 for s in shape)
            or shape.count(-1) > 1
        ):
            raise InvalidParameterError(
                f"Reshape target_shape must be positive ints with at most one -1, "
                f"got {target_shape!r}"
            )
        self.target_shape = shape

    def _resolve(self, input_shape: Any) -> tuple[Any, ...]:
        rest, target = input_shape[1:], self.target_shape
        if None in rest:
            return tuple(None if s == -1 else s for s in target)
        n, known = math.prod(rest), math.prod(s for s in target if s != -1)
        out = tuple(n // known if s == -1 else s for s in target)
        if math.prod(out) != n:
            raise InputValidationError(
                f"layer {self.name!r} (Reshape): cannot reshape samples of shape "
                f"{tuple(rest)} ({n} values) to {target}"
            )
        return out

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0], *self._resolve(input_shape))

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        xp, shape = ops.xp, tuple(X.shape)
        Y = xp.reshape(X, (shape[0], *self._resolve(shape)))
        return Y, lambda dY, need_dX: xp.reshape(dY, shape)


class _Spatial2D(Layer):
    """A layer on ``(batch, height, width, channels)`` inputs run channels-last."""

    def _check(self, shape: Any) -> tuple[bool, Any]:
        check_rank(self, shape, 4)
        first = self.data_format == "channels_first"  # type: ignore[attr-defined]
        return first, tuple(shape[2:] if first else shape[1:3])

    def _out_shape(self, input_shape: Any, hw: tuple[Any, Any]) -> Any:
        if self.data_format == "channels_first":  # type: ignore[attr-defined]
            return (input_shape[0], input_shape[1], *hw)
        return (input_shape[0], *hw, input_shape[3])


@spec.register
class UpSampling2D(_Spatial2D):
    """Repeat rows ``size[0]`` and columns ``size[1]`` times (nearest neighbour).

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.UpSampling2D((2, 3))(np.ones((1, 2, 2, 1))).shape
        (1, 4, 6, 1)
    """

    CONFIG = {
        "size": spec.IntTuple(2, 1),
        "data_format": _FORMAT,
        "interpolation": spec.Choice(("nearest",)),
    }

    def __init__(
        self,
        size: Any = (2, 2),
        data_format: str | None = None,
        interpolation: str = "nearest",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.size = int_tuple(size, 2, "UpSampling2D size")
        self.data_format = data_format_of(data_format, "UpSampling2D")
        if interpolation != "nearest":
            raise InvalidParameterError(
                f"UpSampling2D interpolation must be 'nearest' (the only one here), "
                f"got {interpolation!r}"
            )
        self.interpolation = interpolation

    def compute_output_shape(self, input_shape: Any) -> Any:
        _, (H, W) = self._check(input_shape)
        sh, sw = self.size
        return self._out_shape(input_shape, (H and H * sh, W and W * sw))

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        xp, (first, _) = ops.xp, self._check(tuple(X.shape))
        size = self.size
        Y = from_last(xp, ops.upsample2d(to_last(xp, X, first), size), first)

        def backprop(dY: Any, need_dX: bool) -> Any:
            return from_last(xp, ops.backprop_upsample2d(to_last(xp, dY, first), size), first)

        return Y, backprop


def _pads(value: Any, what: str) -> tuple[int, int, int, int]:
    """Keras' int | (rows, cols) | ((top, bottom), (left, right)) as 4 ints (a list of
    4 ints, the saved form, too)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return int_tuple(value, 4, what, lo=0)  # type: ignore[return-value]
    try:
        items = tuple(value)
    except TypeError:
        items = ()
    if len(items) == 2 and all(isinstance(v, int) for v in items):
        r, c = int_tuple(items, 2, what, lo=0)
        return r, r, c, c
    if len(items) == 2:
        try:
            return (*int_tuple(items[0], 2, what, 0), *int_tuple(items[1], 2, what, 0))  # type: ignore[return-value]
        except InvalidParameterError:
            pass
    if len(items) == 4:
        return int_tuple(items, 4, what, lo=0)  # type: ignore[return-value]
    raise InvalidParameterError(
        f"{what} must be an int, 2 ints or ((top, bottom), (left, right)), got {value!r}"
    )


class _Pad2D(_Spatial2D):
    """Zero padding (``sign`` 1) or cropping (-1) of ``(top, bottom, left, right)``."""

    sign = 1
    arg = "padding"

    def _setup(self, value: Any, data_format: str | None) -> None:
        self._pads = _pads(value, f"{type(self).__name__} {self.arg}")
        self.data_format = data_format_of(data_format, type(self).__name__)

    def compute_output_shape(self, input_shape: Any) -> Any:
        _, (H, W) = self._check(input_shape)
        t, b, l, r = (self.sign * p for p in self._pads)
        out = (None if H is None else H + t + b, None if W is None else W + l + r)
        if any(s is not None and s < 1 for s in out):
            raise InputValidationError(
                f"layer {self.name!r} ({type(self).__name__}): {self.arg} {self._pads} "
                f"leaves nothing of inputs of shape {tuple(input_shape)}"
            )
        return self._out_shape(input_shape, out)

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        xp, (first, _) = ops.xp, self._check(tuple(X.shape))
        self.compute_output_shape(tuple(X.shape))
        pads = tuple(self.sign * p for p in self._pads)
        back = tuple(-p for p in pads)
        Y = from_last(xp, ops.pad2d(to_last(xp, X, first), pads), first)

        def backprop(dY: Any, need_dX: bool) -> Any:
            return from_last(xp, ops.pad2d(to_last(xp, dY, first), back), first)

        return Y, backprop


@spec.register
class ZeroPadding2D(_Pad2D):
    """Add rows and columns of zeros around the image: ``padding`` is an int, 2 ints
    (rows, columns) or ``((top, bottom), (left, right))``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.ZeroPadding2D(((1, 0), (2, 1)))(np.ones((1, 2, 2, 1))).shape
        (1, 3, 5, 1)
    """

    CONFIG = {"padding": spec.IntTuple(4, 0), "data_format": _FORMAT}

    def __init__(self, padding: Any = 1, data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._setup(padding, data_format)

    @property
    def padding(self) -> tuple[int, int, int, int]:
        """``(top, bottom, left, right)``."""
        return self._pads


@spec.register
class Cropping2D(_Pad2D):
    """Remove rows and columns at the edges of the image (``cropping`` as
    ZeroPadding2D's ``padding``).

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.Cropping2D(((1, 0), (2, 1)))(np.ones((1, 4, 5, 1))).shape
        (1, 3, 2, 1)
    """

    CONFIG = {"cropping": spec.IntTuple(4, 0), "data_format": _FORMAT}
    sign, arg = -1, "cropping"

    def __init__(self, cropping: Any = 0, data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._setup(cropping, data_format)

    @property
    def cropping(self) -> tuple[int, int, int, int]:
        """``(top, bottom, left, right)``."""
        return self._pads


@spec.register
class SpatialDropout2D(_Spatial2D):
    """Dropout of whole channels: each (sample, channel) is zeroed with probability
    ``rate``, the rest scaled by ``1 / (1 - rate)``; identity in inference.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.SpatialDropout2D(0.5)(np.ones((1, 2, 2, 3)), training=False).shape
        (1, 2, 2, 3)
    """

    CONFIG = {"rate": spec.Float(0.0, 0.999999), "data_format": _FORMAT}

    def __init__(self, rate: float, data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise InvalidParameterError(
                f"SpatialDropout2D rate must be a float in [0, 1), got {rate!r}"
            )
        self.rate = float(rate)
        self.data_format = data_format_of(data_format, "SpatialDropout2D")

    def compute_output_shape(self, input_shape: Any) -> Any:
        self._check(input_shape)
        return input_shape

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        first, _ = self._check(tuple(X.shape))
        if not training or self.rate == 0.0:
            return X, _identity
        B, C = X.shape[0], X.shape[1 if first else 3]
        mask = ops.dropout_mask((B, C, 1, 1) if first else (B, 1, 1, C), self.rate, X.dtype)
        return X * mask, lambda dY, need_dX: dY * mask
