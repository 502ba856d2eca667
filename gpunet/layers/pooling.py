"""Pooling layers, as Keras': channels-last (``(batch, steps, channels)`` and
``(batch, height, width, channels)``), ``data_format="channels_first"`` by transposes.
The 1-D layers run the 2-D ops with a height of 1.
"""

from __future__ import annotations

from typing import Any

from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers import spec
from gpunet.layers.base import Backprop, Layer

_FORMATS = ("channels_last", "channels_first")
_FORMAT = spec.Choice(_FORMATS)
_PADDING = spec.Choice(("valid", "same"))


def int_tuple(value: Any, n: int, what: str, lo: int = 1) -> tuple[int, ...]:
    """``value`` (an int or ``n`` ints, each >= ``lo``) as a tuple of ``n`` ints."""
    items = (value,) * n if isinstance(value, int) and not isinstance(value, bool) else value
    try:
        out = tuple(items)
    except TypeError:
        out = ()
    if len(out) != n or not all(isinstance(v, int) and not isinstance(v, bool) for v in out):
        raise InvalidParameterError(f"{what} must be an int or {n} ints, got {value!r}")
    if any(v < lo for v in out):
        raise InvalidParameterError(f"{what} must be >= {lo}, got {value!r}")
    return out


def data_format_of(value: Any, layer: str) -> str:
    value = "channels_last" if value is None else value
    if value not in _FORMATS:
        raise InvalidParameterError(
            f"{layer} data_format must be 'channels_last' or 'channels_first', got {value!r}"
        )
    return str(value)


def check_rank(layer: Layer, shape: Any, rank: int) -> None:
    if len(shape) != rank:
        raise InputValidationError(
            f"layer {layer.name!r} ({type(layer).__name__}) expects inputs of {rank} "
            f"dimensions (batch first), got shape {tuple(shape)}"
        )


def to_last(xp: Any, X: Any, channels_first: bool) -> Any:
    """NC... -> N...C (channels_first) or X unchanged."""
    if not channels_first:
        return X
    return xp.permute_dims(X, (0, *range(2, X.ndim), 1))


def from_last(xp: Any, X: Any, channels_first: bool) -> Any:
    if not channels_first:
        return X
    return xp.permute_dims(X, (0, X.ndim - 1, *range(1, X.ndim - 1)))


class _Pool(Layer):
    """Max or average pooling over ``rank`` spatial axes."""

    rank = 2
    kind = "max"

    def __init__(
        self,
        pool_size: Any = 2,
        strides: Any = None,
        padding: str = "valid",
        data_format: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        cls, n = type(self).__name__, self.rank
        self.pool_size = int_tuple(pool_size, n, f"{cls} pool_size")
        self.strides = (
            self.pool_size if strides is None else int_tuple(strides, n, f"{cls} strides")
        )
        if padding not in ("valid", "same"):
            raise InvalidParameterError(f"{cls} padding must be 'valid' or 'same', got {padding!r}")
        self.padding = padding
        self.data_format = data_format_of(data_format, cls)

    def _geometry(self, shape: Any) -> tuple[Any, ...]:
        """The output spatial sizes for the input ``shape`` (None stays None)."""
        check_rank(self, shape, self.rank + 2)
        first = self.data_format == "channels_first"
        spatial = tuple(shape[2:] if first else shape[1:-1])
        out = tuple(
            None if n is None else -(-n // t) if self.padding == "same" else (n - k) // t + 1
            for n, k, t in zip(spatial, self.pool_size, self.strides, strict=True)
        )
        if any(o is not None and o < 1 for o in out):
            raise InputValidationError(
                f"layer {self.name!r} ({type(self).__name__}): pool_size {self.pool_size} is "
                f"larger than the input's spatial shape {spatial} (input shape {tuple(shape)}, "
                f"padding {self.padding!r})"
            )
        return out

    def compute_output_shape(self, input_shape: Any) -> Any:
        out = self._geometry(input_shape)
        if self.data_format == "channels_first":
            return (input_shape[0], input_shape[1], *out)
        return (input_shape[0], *out, input_shape[-1])

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        xp, first = ops.xp, self.data_format == "channels_first"
        self._geometry(tuple(X.shape))
        Z = to_last(xp, X, first)
        pool, strides = self.pool_size, self.strides
        if self.rank == 1:
            Z = xp.expand_dims(Z, axis=1)
            pool, strides = (1, *pool), (1, *strides)
        fwd = ops.max_pool2d if self.kind == "max" else ops.avg_pool2d
        back = ops.backprop_max_pool2d if self.kind == "max" else ops.backprop_avg_pool2d
        Y, saved = fwd(Z, pool=pool, strides=strides, padding=self.padding)
        one = self.rank == 1

        def backprop(dY: Any, need_dX: bool) -> Any:
            dZ = to_last(xp, dY, first)
            dX = back(xp.expand_dims(dZ, axis=1) if one else dZ, saved)
            return from_last(xp, dX[:, 0] if one else dX, first)

        return from_last(xp, Y[:, 0] if one else Y, first), backprop


_POOL_CONFIG = {"padding": _PADDING, "data_format": _FORMAT}


@spec.register
class MaxPooling1D(_Pool):
    """Max over windows of ``pool_size`` steps of ``(batch, steps, channels)`` inputs.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.MaxPooling1D(2)(np.arange(4.0).reshape(1, 4, 1)).numpy().ravel()
        array([1., 3.], dtype=float32)
    """

    rank, kind = 1, "max"
    CONFIG = {"pool_size": spec.IntTuple(1, 1), "strides": spec.IntTuple(1, 1), **_POOL_CONFIG}


@spec.register
class MaxPooling2D(_Pool):
    """Max over ``pool_size`` windows of ``(batch, height, width, channels)`` inputs;
    the gradient of each window goes to its first maximum.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.MaxPooling2D()(np.arange(16.0).reshape(1, 4, 4, 1)).numpy().ravel()
        array([ 5.,  7., 13., 15.], dtype=float32)
    """

    rank, kind = 2, "max"
    CONFIG = {"pool_size": spec.IntTuple(2, 1), "strides": spec.IntTuple(2, 1), **_POOL_CONFIG}


@spec.register
class AveragePooling1D(_Pool):
    """Mean over windows of ``pool_size`` steps ("same": over the steps inside the input).

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.AveragePooling1D(2)(np.arange(4.0).reshape(1, 4, 1)).numpy().ravel()
        array([0.5, 2.5], dtype=float32)
    """

    rank, kind = 1, "avg"
    CONFIG = MaxPooling1D.CONFIG


@spec.register
class AveragePooling2D(_Pool):
    """Mean over ``pool_size`` windows; with ``padding="same"`` each window averages
    over the elements inside the input only, as Keras does.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.AveragePooling2D()(np.arange(16.0).reshape(1, 4, 4, 1)).numpy().ravel()
        array([ 2.5,  4.5, 10.5, 12.5], dtype=float32)
    """

    rank, kind = 2, "avg"
    CONFIG = MaxPooling2D.CONFIG


class _GlobalPool(Layer):
    rank = 2
    kind = "avg"
    CONFIG = {"data_format": _FORMAT, "keepdims": spec.Bool()}

    def __init__(
        self, data_format: str | None = None, keepdims: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.data_format = data_format_of(data_format, type(self).__name__)
        if not isinstance(keepdims, bool):
            raise InvalidParameterError(
                f"{type(self).__name__} keepdims must be a bool, got {keepdims!r}"
            )
        self.keepdims = keepdims

    def compute_output_shape(self, input_shape: Any) -> Any:
        check_rank(self, input_shape, self.rank + 2)
        first = self.data_format == "channels_first"
        C = input_shape[1] if first else input_shape[-1]
        if not self.keepdims:
            return (input_shape[0], C)
        ones = (1,) * self.rank
        return (input_shape[0], C, *ones) if first else (input_shape[0], *ones, C)

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        xp, first = ops.xp, self.data_format == "channels_first"
        out_shape = self.compute_output_shape(tuple(X.shape))
        Z = to_last(xp, X, first)
        shape = tuple(Z.shape)
        if self.kind == "max":
            Y, saved = ops.global_max_pool(Z)
        else:
            Y = xp.mean(Z, axis=tuple(range(1, Z.ndim - 1)))
        n = 1
        for s in shape[1:-1]:
            n *= s

        def backprop(dY: Any, need_dX: bool) -> Any:
            dY = xp.reshape(dY, (shape[0], shape[-1]))
            if self.kind == "max":
                dZ = ops.backprop_global_max_pool(dY, saved)
            else:
                dZ = xp.broadcast_to(
                    xp.reshape(dY / n, (shape[0],) + (1,) * self.rank + (shape[-1],)), shape
                )
            return from_last(xp, dZ, first)

        return xp.reshape(Y, out_shape), backprop


@spec.register
class GlobalAveragePooling1D(_GlobalPool):
    """Mean over the steps of ``(batch, steps, channels)`` inputs.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.GlobalAveragePooling1D()(np.arange(4.0).reshape(1, 2, 2)).numpy()
        array([[1., 2.]], dtype=float32)
    """

    rank, kind = 1, "avg"
    supports_masking = True  # reads the mask; its output has none (Keras)

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        return None

    def forward_pass(
        self, ops: Any, X: Any, training: bool, mask: Any = None
    ) -> tuple[Any, Backprop]:
        """With a ``(batch, steps)`` mask: the mean over the real steps only (a row
        with none is 0/0, NaN, as Keras')."""
        if mask is None:
            return super().forward_pass(ops, X, training)
        xp, first = ops.xp, self.data_format == "channels_first"
        M = xp.astype(mask, X.dtype)
        M = M[:, None, :] if first else M[:, :, None]
        axis = 2 if first else 1
        count = xp.sum(M, axis=axis, keepdims=True)
        W = M / xp.where(count > 0, count, 1)  # (no 0/0 warning; NaN set below)
        Y = xp.sum(X * W, axis=axis, keepdims=True)
        Y = xp.where(count > 0, Y, xp.nan)
        kept = tuple(Y.shape)

        def backprop(dY: Any, need_dX: bool) -> Any:
            return xp.reshape(dY, kept) * W

        return Y if self.keepdims else xp.squeeze(Y, axis=axis), backprop


@spec.register
class GlobalAveragePooling2D(_GlobalPool):
    """Mean over height and width of ``(batch, height, width, channels)`` inputs.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.GlobalAveragePooling2D()(np.ones((2, 3, 3, 4))).shape
        (2, 4)
    """

    rank, kind = 2, "avg"


@spec.register
class GlobalMaxPooling1D(_GlobalPool):
    """Max over the steps of ``(batch, steps, channels)`` inputs.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.GlobalMaxPooling1D()(np.arange(4.0).reshape(1, 2, 2)).numpy()
        array([[2., 3.]], dtype=float32)
    """

    rank, kind = 1, "max"


@spec.register
class GlobalMaxPooling2D(_GlobalPool):
    """Max over height and width; the gradient goes to the first maximum.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.GlobalMaxPooling2D(keepdims=True)(np.ones((2, 3, 3, 4))).shape
        (2, 1, 1, 4)
    """

    rank, kind = 2, "max"
