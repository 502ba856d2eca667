"""Position information for attention models, with keras_hub's names and semantics:
both layers return position vectors of the input's shape, which the caller adds
(``x + PositionEmbedding(T)(x)``); the input's values do not enter the result."""

from __future__ import annotations

import math
from typing import Any

from gpunet import initializers
from gpunet.autograd import Tensor
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers import spec
from gpunet.layers.attention import record_call
from gpunet.layers.base import Backprop, Layer, add_grad, penalties


def _check_rank(layer: Layer, x: Any) -> None:
    if not isinstance(x, Tensor) or x.ndim < 2:
        raise InputValidationError(
            f"layer {layer.name!r} expects inputs of shape (batch, T, features), "
            f"got {getattr(x, 'shape', None)}"
        )


def _start(layer: Layer, start_index: Any) -> int:
    if isinstance(start_index, bool) or not isinstance(start_index, int) or start_index < 0:
        raise InvalidParameterError(
            f"layer {layer.name!r}: start_index must be an int >= 0, got {start_index!r}"
        )
    return start_index


@spec.register
class PositionEmbedding(Layer):
    """A learned vector per position, as keras_hub's ``PositionEmbedding``: the output
    is ``embeddings[start_index : start_index + T]`` broadcast to the input's shape.

    Args:
        sequence_length: The most positions the layer has vectors for.
        initializer: Initializer of the ``embeddings`` weight ``(sequence_length, d)``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> x = np.zeros((2, 5, 8), dtype="float32")
        >>> pos = gn.layers.PositionEmbedding(sequence_length=16)
        >>> (x + pos(x)).shape, pos.embeddings.shape
        ((2, 5, 8), (16, 8))
    """

    embeddings: Any
    CONFIG = {"sequence_length": spec.Int(1), "initializer": spec.Initializer()}

    def __init__(
        self, sequence_length: int, initializer: Any = "glorot_uniform", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if (
            isinstance(sequence_length, bool)
            or not isinstance(sequence_length, int)
            or (sequence_length <= 0)
        ):
            raise InvalidParameterError(
                f"PositionEmbedding sequence_length must be a positive int, got {sequence_length!r}"
            )
        self.sequence_length = sequence_length
        self.initializer = initializers.get(initializer)

    def weight_specs(self, input_shape: Any) -> list[spec.WeightSpec]:
        return [spec.WeightSpec("embeddings", (self.sequence_length, int(input_shape[-1])),
                                self.initializer)]  # fmt: skip

    def check_input(self, x: Any) -> None:
        _check_rank(self, x)
        if x.shape[-1] != self.embeddings.shape[1]:
            raise InputValidationError(
                f"layer {self.name!r} was built for {self.embeddings.shape[1]} features, "
                f"got inputs of shape {x.shape}"
            )

    @property
    def runs_on_arrays(self) -> bool:
        return True

    def call(self, x: Tensor, start_index: int = 0) -> Tensor:  # type: ignore[override]
        penalties(self)
        Y, backprop = self.forward_pass(self.ops, x.data, False, _start(self, start_index))
        return record_call(self, [x], Y, lambda dY, need: [backprop(dY, need)])

    def forward_pass(  # type: ignore[override]
        self, ops: Any, X: Any, training: bool, start_index: int = 0
    ) -> tuple[Any, Backprop]:
        xp, E = ops.xp, self.embeddings
        T = X.shape[-2]
        if start_index + T > self.sequence_length:
            raise InputValidationError(
                f"layer {self.name!r} has {self.sequence_length} positions; got a sequence "
                f"of {T} steps from position {start_index}"
            )
        rows = E.data[start_index : start_index + T]
        Y = ops.copy(xp.broadcast_to(rows, tuple(X.shape)))
        lead = tuple(range(X.ndim - 2))

        def backprop(dY: Any, need_dX: bool) -> Any:
            if E.requires_grad:
                g = xp.sum(dY, axis=lead) if lead else dY
                full = ops.zeros(tuple(E.shape), E.dtype)
                full[start_index : start_index + T] = g
                add_grad(E, full)
            return ops.zeros(tuple(X.shape), X.dtype) if need_dX else None

        return Y, backprop

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "initializer": initializers.name_of(self.initializer)}


@spec.register
class SinePositionEncoding(Layer):
    """Fixed sinusoidal positions (Vaswani et al.), as keras_hub's
    ``SinePositionEncoding``: even features ``sin(p / w**(i/d))``, odd features
    ``cos(p / w**((i-1)/d))``, broadcast to the input's shape.

    Args:
        max_wavelength: The longest wavelength ``w`` (default 10000).

    Example:
        >>> import numpy as np, gpunet as gn
        >>> enc = gn.layers.SinePositionEncoding()(np.zeros((1, 3, 4), dtype="float32"))
        >>> np.round(enc.numpy()[0, 1], 4)
        array([0.8415, 0.5403, 0.01  , 1.    ], dtype=float32)
    """

    CONFIG = {"max_wavelength": spec.Float(0.0, above=True)}

    def __init__(self, max_wavelength: float = 10000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if (
            isinstance(max_wavelength, bool)
            or not isinstance(max_wavelength, (int, float))
            or (max_wavelength <= 0)
        ):
            raise InvalidParameterError(
                f"SinePositionEncoding max_wavelength must be > 0, got {max_wavelength!r}"
            )
        self.max_wavelength = float(max_wavelength)

    def check_input(self, x: Any) -> None:
        _check_rank(self, x)

    @property
    def runs_on_arrays(self) -> bool:
        return True

    def call(self, x: Tensor, start_index: int = 0) -> Tensor:  # type: ignore[override]
        Y, backprop = self.forward_pass(self.ops, x.data, False, _start(self, start_index))
        return record_call(self, [x], Y, lambda dY, need: [backprop(dY, need)])

    def forward_pass(  # type: ignore[override]
        self, ops: Any, X: Any, training: bool, start_index: int = 0
    ) -> tuple[Any, Backprop]:
        xp = ops.xp
        T, d = X.shape[-2], X.shape[-1]
        md = ops.dtype("float64") if X.dtype == ops.dtype("float64") else ops.dtype("float32")
        pos = xp.astype(ops.arange(T), md) + float(start_index)
        i = ops.arange(d)
        even = xp.astype(2 * (i // 2), md) / float(d)
        timescales = xp.exp(even * -math.log(self.max_wavelength))  # (1/w) ** (2k/d)
        angles = xp.reshape(pos, (T, 1)) * xp.reshape(timescales, (1, d))
        cos = xp.reshape(xp.astype(i % 2, md), (1, d))
        enc = xp.sin(angles) * (1.0 - cos) + xp.cos(angles) * cos
        Y = ops.copy(xp.broadcast_to(xp.astype(enc, X.dtype), tuple(X.shape)))
        shape, dt = tuple(X.shape), X.dtype

        def backprop(dY: Any, need_dX: bool) -> Any:
            return ops.zeros(shape, dt) if need_dX else None

        return Y, backprop
