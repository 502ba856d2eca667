"""Small helpers users reach for: seeding and one-hot labels.

Example:
    >>> import gpunet as gn
    >>> gn.utils.set_random_seed(42)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpunet import random as grandom
from gpunet.data import PyDataset

__all__ = ["PyDataset", "set_random_seed", "to_categorical"]


def set_random_seed(seed: int) -> None:
    """Seed gpunet's weight initialization, shuffling and dropout streams.

    With the same seed, a CPU run repeats bit for bit, and every device starts
    from the same initial weights.
    """
    grandom.set_random_seed(seed)


def to_categorical(y: Any, num_classes: int | None = None, dtype: str = "float32") -> np.ndarray:
    """One-hot encode integer class labels (Keras' ``to_categorical``).

    Example:
        >>> import gpunet as gn
        >>> gn.utils.to_categorical([0, 2], num_classes=3)
        array([[1., 0., 0.],
               [0., 0., 1.]], dtype=float32)

    Raises:
        InputValidationError: for labels that are not integers in ``[0, num_classes)``.
    """
    from gpunet.errors import InputValidationError

    labels = np.asarray(y)
    if labels.ndim >= 2 and labels.shape[-1] == 1:
        labels = labels[..., 0]  # a column of labels, as Keras accepts
    if labels.dtype.kind not in "iub" and not (
        labels.dtype.kind == "f" and np.all(np.isfinite(labels) & (labels == np.round(labels)))
    ):
        raise InputValidationError(f"to_categorical needs integer labels, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    n = int(num_classes) if num_classes is not None else int(labels.max(initial=-1)) + 1
    if labels.size and (labels.min() < 0 or labels.max() >= n):
        bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
        raise InputValidationError(f"to_categorical: label {bad} is outside [0, {n})")
    return np.eye(n, dtype=dtype)[labels]
