"""Small helpers users reach for: seeding, one-hot labels and padding sequences.

Example:
    >>> import gpunet as gn
    >>> gn.utils.set_random_seed(42)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpunet import random as grandom
from gpunet.data import PyDataset

__all__ = ["PyDataset", "pad_sequences", "set_random_seed", "to_categorical"]


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


def pad_sequences(
    sequences: Any,
    maxlen: int | None = None,
    dtype: Any = "int32",
    padding: str = "pre",
    truncating: str = "pre",
    value: Any = 0.0,
) -> np.ndarray:
    """Pad (or cut) sequences of different lengths into one ``(n, maxlen, ...)`` array.

    Keras' ``pad_sequences``: ``maxlen`` defaults to the longest sequence; ``padding``
    and ``truncating`` say which end is filled with ``value`` or cut ("pre", the
    default, keeps the ends of long sequences). Entries may be lists or arrays of
    any trailing shape, the same for all.

    Example:
        >>> import gpunet as gn
        >>> gn.utils.pad_sequences([[1], [2, 3], [4, 5, 6]], maxlen=2)
        array([[0, 1],
               [2, 3],
               [5, 6]], dtype=int32)
        >>> gn.utils.pad_sequences([[1], [2, 3]], padding="post", value=-1)
        array([[ 1, -1],
               [ 2,  3]], dtype=int32)

    Raises:
        InvalidParameterError: for an unknown ``padding``/``truncating`` or a negative
            ``maxlen``; InputValidationError for an entry that is not a sequence or
            whose trailing shape differs from the others'.
    """
    from gpunet.errors import InputValidationError, InvalidParameterError

    for name, side in (("padding", padding), ("truncating", truncating)):
        if side not in ("pre", "post"):
            raise InvalidParameterError(f'pad_sequences: {name}={side!r}; use "pre" or "post"')
    if maxlen is not None and (int(maxlen) != maxlen or maxlen < 0):
        raise InvalidParameterError(f"pad_sequences: maxlen={maxlen!r}; expected an int >= 0")
    rows = []
    for i, s in enumerate(sequences):
        if not hasattr(s, "__len__"):
            raise InputValidationError(
                f"pad_sequences: entry {i} is {type(s).__name__}, not a sequence"
            )
        rows.append(np.asarray(s, dtype=dtype if len(s) else None))
    sample_shape = next((r.shape[1:] for r in rows if r.size or r.ndim > 1), ())
    n = max((len(r) for r in rows), default=0) if maxlen is None else int(maxlen)
    out = np.full((len(rows), n, *sample_shape), value, dtype=dtype)
    for i, r in enumerate(rows):
        if not len(r) or not n:
            continue
        if r.shape[1:] != sample_shape:
            raise InputValidationError(
                f"pad_sequences: entry {i} has steps of shape {r.shape[1:]}, "
                f"the others {sample_shape}"
            )
        kept = r[-n:] if truncating == "pre" else r[:n]
        if padding == "pre":
            out[i, n - len(kept) :] = kept
        else:
            out[i, : len(kept)] = kept
    return out
