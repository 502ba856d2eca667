"""Sequence outputs in ``fit``/``evaluate`` (Keras 3 semantics): an output of shape
``(batch, time, units)`` is scored as ``batch * time`` rows, one per step, against
targets of shape ``(batch, time)`` (sparse labels) or ``(batch, time, units)``.

The loss is the mean over the steps (``sum_over_batch_size``); where the output
carries a ``(batch, time)`` mask, the padded steps weigh 0 and the real ones
``steps / real steps``, so it is the mean over the real steps (Keras' ``apply_mask``);
a sample weight weighs every step of its sequence (or one per step, ``(batch, time)``).
Metrics take the mask alone as their sample weights, as Keras 3's compiled ``metrics``
do (they are not given the sample weights).

Example:
    >>> import numpy as np, gpunet as gn
    >>> model = gn.Sequential([gn.layers.Embedding(5, 3, mask_zero=True),
    ...                        gn.layers.Dense(4, activation="softmax")])
    >>> model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    >>> ids = np.array([[1, 2, 0], [3, 0, 0]])
    >>> logs = model.fit(ids, np.array([[1, 2, 0], [3, 0, 0]]), verbose=0).history
    >>> sorted(logs)
    ['accuracy', 'loss']
"""

from __future__ import annotations

from numbers import Number
from typing import Any

from gpunet import functional as F
from gpunet.autograd import Tensor


def is_sequence(Y: Any, T: Any) -> bool:
    """Whether output ``Y`` against targets ``T`` is a sequence output."""
    return len(Y.shape) == 3 and len(T.shape) >= 2


def scale_rows(ops: Any, shape: tuple[int, ...], scale: Any, mask: Any) -> Any:
    """The per-row loss scale of a ``(B, T, ...)`` output whose per-sequence scale is
    ``scale`` (a number, or one per sequence: the sample weights over the batch size):
    ``scale / T``, or with a mask ``scale * mask * B / real steps``."""
    xp = ops.xp
    B, T = int(shape[0]), int(shape[1])
    if mask is None and isinstance(scale, Number):
        return float(scale) / T  # type: ignore[arg-type]
    per: Any = scale if isinstance(scale, Number) or scale.ndim == 2 else xp.reshape(scale, (B, 1))
    if mask is None:
        return xp.reshape(xp.broadcast_to(per / T, (B, T)), (B * T,))  # type: ignore[operator]
    M = xp.astype(mask, ops.dtype("float32") if isinstance(scale, Number) else scale.dtype)
    valid = xp.sum(M)
    factor = xp.where(valid > 0, B / xp.where(valid > 0, valid, 1), 0)
    return xp.reshape(M * per * factor, (B * T,))


def sample_rows(ops: Any, shape: tuple[int, ...], sw: Any, mask: Any, mean: bool,
                dtype: Any) -> Any:  # fmt: skip
    """Per-row sample weights (None when all 1): the sequence's weight times the mask,
    rescaled by ``steps / real steps`` for a mean (the losses), not for the metrics."""
    xp = ops.xp
    B, T = int(shape[0]), int(shape[1])
    W = None
    if sw is not None:  # one per sequence, or one per step
        W = xp.astype(sw, dtype) if sw.ndim == 2 else xp.broadcast_to(
            xp.reshape(xp.astype(sw, dtype), (B, 1)), (B, T))  # fmt: skip
    if mask is not None:
        M = xp.astype(mask, dtype)
        W = M if W is None else W * M
        if mean:
            valid = xp.sum(M)
            W = W * xp.where(valid > 0, (B * T) / xp.where(valid > 0, valid, 1), 0)
    return None if W is None else xp.reshape(W, (B * T,))


def rows(ops: Any, A: Any) -> Any:
    """``(B, T, ...)`` as ``(B * T, ...)`` (an array, or a tensor with its gradient)."""
    shape = tuple(A.shape)
    flat = (shape[0] * shape[1], *shape[2:])
    return F.reshape(A, flat) if isinstance(A, Tensor) else ops.xp.reshape(A, flat)
