"""Small Keras layers that public example code uses between the big ones: ``ReLU``,
``ELU``, ``Identity``, ``RepeatVector``, ``Permute``, ``Rescaling``, ``GaussianNoise``,
``GaussianDropout``, ``SpatialDropout1D`` and ``Lambda``. Each follows Keras 3's
arguments and arithmetic (tested against Keras on the same inputs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from gpunet.autograd import Tensor
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers import spec
from gpunet.layers.base import Backprop, Layer


def _identity(dY: Any, need_dX: bool) -> Any:
    return dY


def _number(layer: str, name: str, value: Any, lo: float = 0.0, below: float = math.inf) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not lo <= value < below:
        span = f"[{lo}, {below})" if below != math.inf else f">= {lo}"
        raise InvalidParameterError(f"{layer} {name} must be a float {span}, got {value!r}")
    return float(value)


def _rank(layer: Layer, X: Any, ndim: int, what: str) -> None:
    if X.ndim != ndim:
        raise InputValidationError(
            f"layer {layer.name!r} ({type(layer).__name__}) expects inputs of rank {ndim} "
            f"{what}, got shape {tuple(X.shape)}"
        )


def _normal(ops: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """Standard normal samples from the device's uniform stream (Box-Muller)."""
    xp = ops.xp
    u1 = 1.0 - ops.random_uniform(shape, dtype)  # in (0, 1]: log(u1) is finite
    u2 = ops.random_uniform(shape, dtype)
    return xp.sqrt(-2.0 * xp.log(u1)) * xp.cos((2.0 * math.pi) * u2)


@spec.register
class ReLU(Layer):
    """Keras' ``layers.ReLU``: ``x`` from ``threshold`` up to ``max_value``, capped at
    ``max_value``, and ``negative_slope * (x - threshold)`` below ``threshold``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.ReLU(max_value=1.0)(np.array([[-1.0, 0.5, 2.0]])).numpy()
        array([[0. , 0.5, 1. ]], dtype=float32)
    """

    CONFIG = {
        "max_value": spec.Optional(spec.Float(0.0)),
        "negative_slope": spec.Float(0.0),
        "threshold": spec.Float(0.0),
    }
    supports_masking = True

    def __init__(self, max_value: float | None = None, negative_slope: float = 0.0,
                 threshold: float = 0.0, **kwargs: Any) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.max_value = None if max_value is None else _number("ReLU", "max_value", max_value)
        self.negative_slope = _number("ReLU", "negative_slope", negative_slope)
        self.threshold = _number("ReLU", "threshold", threshold)  # Keras: no negative one

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        xp, t, top = ops.xp, self.threshold, self.max_value
        if self.negative_slope == 0.0 and t == 0.0 and top is None:
            Y = ops.activation("relu", X)
            return Y, lambda dY, need_dX: ops.backprop_activation("relu", dY, X, Y)
        low = X < t  # arrays on X's device throughout (no host scalars in where)
        slope = xp.where(low, xp.full_like(X, self.negative_slope), xp.ones_like(X))
        Y = xp.where(low, self.negative_slope * (X - t), X) + 0.0  # -0.0 as 0.0
        if top is not None:
            high = X >= top
            slope = xp.where(high, xp.zeros_like(X), slope)
            Y = xp.where(high, xp.full_like(X, top), Y)
        return Y, lambda dY, need_dX: dY * slope

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "max_value": self.max_value,
                "negative_slope": self.negative_slope, "threshold": self.threshold}  # fmt: skip


@spec.register
class ELU(Layer):
    """``x`` for ``x > 0``, else ``alpha * (exp(x) - 1)`` (Keras' ``layers.ELU``).

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.ELU()(np.array([[0.0, 2.0]])).numpy()
        array([[0., 2.]], dtype=float32)
    """

    CONFIG = {"alpha": spec.Float()}
    supports_masking = True

    def __init__(self, alpha: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha = _number("ELU", "alpha", alpha, -math.inf)

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        kw = {"alpha": self.alpha}
        Y = ops.activation("elu", X, **kw)
        return Y, lambda dY, need_dX: ops.backprop_activation("elu", dY, X, Y, **kw)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha}


@spec.register
class Identity(Layer):
    """Its input, unchanged (a placeholder, as Keras' ``layers.Identity``).

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.Identity()(np.ones((1, 2))).shape
        (1, 2)
    """

    CONFIG: dict[str, Any] = {}
    supports_masking = True

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        return X, _identity


@spec.register
class RepeatVector(Layer):
    """Repeat each ``(batch, features)`` sample ``n`` times: ``(batch, n, features)``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.RepeatVector(3)(np.ones((2, 4))).shape
        (2, 3, 4)
    """

    CONFIG = {"n": spec.Int(1)}

    def __init__(self, n: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidParameterError(f"RepeatVector n must be an int >= 1, got {n!r}")
        self.n = n

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0], self.n, *input_shape[1:])

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        _rank(self, X, 2, "(batch, features)")
        xp = ops.xp
        Y = xp.broadcast_to(X[:, None, :], (X.shape[0], self.n, X.shape[1]))
        return ops.copy(Y), lambda dY, need_dX: xp.sum(dY, axis=1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n": self.n}


@spec.register
class Permute(Layer):
    """Reorder the non-batch axes: ``dims`` is a permutation of ``1 .. rank - 1``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.Permute((2, 1))(np.ones((5, 3, 4))).shape
        (5, 4, 3)
    """

    CONFIG = {"dims": spec.IntTuple(0, 1, 8)}

    def __init__(self, dims: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        try:
            d = tuple(dims)
        except TypeError:
            d = ()
        if not d or sorted(d) != list(range(1, len(d) + 1)):
            raise InvalidParameterError(
                f"Permute dims must be a permutation of 1..{len(d) or 'n'}, got {dims!r}"
            )
        self.dims = d

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0], *(input_shape[d] for d in self.dims))

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        _rank(self, X, len(self.dims) + 1, f"(batch + {len(self.dims)} axes)")
        xp, perm = ops.xp, (0, *self.dims)
        inverse = tuple(perm.index(i) for i in range(len(perm)))
        Y = ops.copy(xp.permute_dims(X, perm))
        return Y, lambda dY, need_dX: ops.copy(xp.permute_dims(dY, inverse))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dims": list(self.dims)}


@spec.register
class Rescaling(Layer):
    """``inputs * scale + offset`` (e.g. ``Rescaling(1 / 255)`` for 8-bit images).

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.Rescaling(0.5, offset=1.0)(np.array([[2.0, 4.0]])).numpy()
        array([[2., 3.]], dtype=float32)
    """

    CONFIG = {"scale": spec.Float(), "offset": spec.Float()}
    supports_masking = True

    def __init__(self, scale: float, offset: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = _number("Rescaling", "scale", scale, -math.inf)
        self.offset = _number("Rescaling", "offset", offset, -math.inf)

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        s = self.scale
        return X * s + self.offset, lambda dY, need_dX: dY * s

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


class _Noise(Layer):
    """A layer that only acts while training (identity in inference)."""

    supports_masking = True

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        if not training or self._off():
            return X, _identity
        return self._noisy(ops, X)

    def _off(self) -> bool:
        raise NotImplementedError

    def _noisy(self, ops: Any, X: Any) -> tuple[Any, Backprop]:
        raise NotImplementedError


@spec.register
class GaussianNoise(_Noise):
    """Add zero-mean Gaussian noise of ``stddev`` while training.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.GaussianNoise(0.1)(np.ones((1, 2)), training=False).numpy()
        array([[1., 1.]], dtype=float32)
    """

    CONFIG = {"stddev": spec.Float(0.0)}

    def __init__(self, stddev: float, **kwargs: Any) -> None:
        kwargs.pop("seed", None)  # gn.utils.set_random_seed seeds every stream
        super().__init__(**kwargs)
        self.stddev = _number("GaussianNoise", "stddev", stddev)

    def _off(self) -> bool:
        return self.stddev == 0.0

    def _noisy(self, ops: Any, X: Any) -> tuple[Any, Backprop]:
        return X + self.stddev * _normal(ops, tuple(X.shape), X.dtype), _identity

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "stddev": self.stddev}


@spec.register
class GaussianDropout(_Noise):
    """Multiply by Gaussian noise of mean 1 and variance ``rate / (1 - rate)`` while
    training.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.GaussianDropout(0.2)(np.ones((1, 2)), training=False).numpy()
        array([[1., 1.]], dtype=float32)
    """

    CONFIG = {"rate": spec.Float(0.0, 0.999999)}

    def __init__(self, rate: float, **kwargs: Any) -> None:
        kwargs.pop("seed", None)
        super().__init__(**kwargs)
        self.rate = _number("GaussianDropout", "rate", rate, 0.0, 1.0)

    def _off(self) -> bool:
        return self.rate == 0.0

    def _noisy(self, ops: Any, X: Any) -> tuple[Any, Backprop]:
        sd = math.sqrt(self.rate / (1.0 - self.rate))
        M = 1.0 + sd * _normal(ops, tuple(X.shape), X.dtype)
        return X * M, lambda dY, need_dX: dY * M

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate}


@spec.register
class SpatialDropout1D(_Noise):
    """Dropout of whole channels of ``(batch, steps, channels)``: each (sample,
    channel) is zeroed with probability ``rate``, the rest scaled by ``1 / (1 - rate)``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.SpatialDropout1D(0.5)(np.ones((1, 3, 2)), training=False).shape
        (1, 3, 2)
    """

    CONFIG = {"rate": spec.Float(0.0, 0.999999)}

    def __init__(self, rate: float, **kwargs: Any) -> None:
        kwargs.pop("seed", None)
        super().__init__(**kwargs)
        self.rate = _number("SpatialDropout1D", "rate", rate, 0.0, 1.0)

    def _off(self) -> bool:
        return self.rate == 0.0

    def _noisy(self, ops: Any, X: Any) -> tuple[Any, Backprop]:
        _rank(self, X, 3, "(batch, steps, channels)")
        mask = ops.dropout_mask((X.shape[0], 1, X.shape[2]), self.rate, X.dtype)
        return X * mask, lambda dY, need_dX: dY * mask

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate}


class Lambda(Layer):  # not registered: a file naming "Lambda" stays an unknown type
    """Wrap a function of tensors as a layer: ``Lambda(lambda x: x ** 2)``. It runs
    on gpunet tensors, so any function built from tensor operations and ``gn.ops``
    trains. It cannot be saved: model files hold no code (rebuild the layer in code).

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.layers.Lambda(lambda x: x * 2.0)(np.ones((1, 2))).numpy()
        array([[2., 2.]], dtype=float32)
    """

    CONFIG: dict[str, Any] = {}

    def __init__(self, function: Callable[..., Any], output_shape: Any = None,
                 mask: Any = None, arguments: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(**kwargs)
        if not callable(function):
            raise InvalidParameterError(f"Lambda needs a callable, got {type(function).__name__}")
        self.function, self.arguments = function, dict(arguments or {})

    def call(self, inputs: Tensor) -> Any:
        return self.function(inputs, **self.arguments)

    def get_config(self) -> dict[str, Any]:
        raise InvalidParameterError(
            f"layer {self.name!r} (Lambda) holds Python code, which gpunet files never "
            "store; define a Layer subclass, or rebuild the model in code and load weights"
        )
