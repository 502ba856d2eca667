"""Masks (Keras 3 semantics): a boolean ``(batch, time)`` array, True for a real step,
that travels with a tensor in its ``_keras_mask`` attribute.

A layer makes or passes a mask through ``compute_mask(inputs, mask=None)``;
``supports_masking = True`` (or a ``compute_mask`` of its own) says it does, and the
default ``compute_mask`` passes the input's mask through unchanged. A layer whose
``call`` (or ``forward_pass``, for layers that define only that) has a ``mask``
parameter is given the mask of its input. A layer that does not support masking drops
the mask, with Keras' warning. The same rules run in eager calls, on symbolic tensors
(the mask of a ``SymbolicTensor`` is a symbolic ``(batch, time)`` tensor), in
``Sequential`` and in the graph-free step, where masks are plain device arrays.

Example:
    >>> import numpy as np, gpunet as gn
    >>> x = np.array([[1.0, 0.0], [2.0, 3.0]])[:, :, None]
    >>> gn.layers.Masking(0.0)(x)._keras_mask
    array([[ True, False],
           [ True,  True]])
"""

from __future__ import annotations

from typing import Any

from gpunet.autograd import Tensor
from gpunet.errors import InputValidationError
from gpunet.layers import spec
from gpunet.layers.base import Backprop, Layer


@spec.register
class Masking(Layer):
    """Mask the steps whose features all equal ``mask_value``: they are zeroed, and
    layers that read masks skip them (Keras).

    Args:
        mask_value: The padding value.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> x = np.array([[[1.0], [0.0]]])
        >>> y = gn.layers.Masking()(x)
        >>> y.numpy().ravel().tolist(), y._keras_mask.tolist()
        ([1.0, 0.0], [[True, False]])
    """

    CONFIG = {"mask_value": spec.Float()}
    supports_masking = True

    def __init__(self, mask_value: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mask_value = float(mask_value)

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        X = inputs.data if isinstance(inputs, Tensor) else inputs
        return self.ops.xp.any(X != self.mask_value, axis=-1)

    def check_input(self, inputs: Any) -> None:
        if isinstance(inputs, Tensor) and inputs.ndim < 2:
            raise InputValidationError(
                f"layer {self.name!r} expects inputs of shape (batch, time, features), "
                f"got shape {inputs.shape}"
            )

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        xp = ops.xp
        keep = xp.astype(xp.any(X != self.mask_value, axis=-1, keepdims=True), X.dtype)
        return X * keep, lambda dY, need_dX: dY * keep if need_dX else None
