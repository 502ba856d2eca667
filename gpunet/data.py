"""Datasets and loaders as both ecosystems write them: ``Dataset``,
``TensorDataset``, ``Subset``, ``random_split`` and ``DataLoader`` (PyTorch's
names and arguments) for a hand-written loop, and ``PyDataset`` (Keras's) for a
sequence of batches that ``fit`` streams. They are reached as ``gn.data.*``
(and ``gn.utils.PyDataset``).

Example:
    >>> import numpy as np, gpunet as gn
    >>> ds = gn.data.TensorDataset(np.arange(10.0).reshape(5, 2), np.arange(5))
    >>> loader = gn.data.DataLoader(ds, batch_size=2, shuffle=True, generator=0)
    >>> [tuple(xb.shape) for xb, yb in loader]
    [(2, 2), (2, 2), (1, 2)]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from gpunet import random as grandom
from gpunet.autograd import Tensor
from gpunet.errors import InputValidationError, InvalidParameterError


class Dataset:
    """Map-style dataset: subclass and define ``__getitem__(i)`` and ``__len__``."""

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__")


def _rows(a: Any) -> Any:
    return a.data if isinstance(a, Tensor) else np.asarray(a)


class TensorDataset(Dataset):
    """Samples ``(a[i], b[i], ...)`` of arrays or tensors sharing their first dimension."""

    def __init__(self, *tensors: Any) -> None:
        if not tensors:
            raise InvalidParameterError("TensorDataset needs at least one array or tensor")
        self.tensors = tensors
        self._ops = [t.ops if isinstance(t, Tensor) else None for t in tensors]
        self._arrays = [_rows(t) for t in tensors]
        sizes = [int(a.shape[0]) if a.ndim else -1 for a in self._arrays]
        if len(set(sizes)) != 1 or sizes[0] < 0:
            raise InputValidationError(f"Size mismatch between tensors: first dimensions {sizes}")

    def __len__(self) -> int:
        return int(self._arrays[0].shape[0])

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        return tuple(self._wrap(i, a[index]) for i, a in enumerate(self._arrays))

    def _wrap(self, i: int, value: Any) -> Any:
        ops = self._ops[i]
        return value if ops is None else Tensor(value, ops)

    def _batch(self, indices: np.ndarray) -> tuple[Tensor, ...]:
        """Rows ``indices`` of every array in one gather, already collated."""
        out = []
        for i, a in enumerate(self._arrays):
            ops = self._ops[i]
            rows = a[indices] if ops is None else ops.take_rows(a, ops.asarray(indices))
            out.append(Tensor(rows, ops) if ops is not None else _tensor(rows))
        return tuple(out)


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``."""

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[self.indices[index]]

    def __len__(self) -> int:
        return len(self.indices)

    def _batch(self, indices: np.ndarray) -> Any:
        return self.dataset._batch(np.asarray(self.indices)[indices])


def _rng(generator: Any) -> np.random.Generator:
    """A NumPy generator from ``generator``: ``None`` (gpunet's seeded shuffle
    stream, so ``gn.utils.set_random_seed`` fixes it), an int seed, or a Generator."""
    if generator is None:
        return grandom.generator("shuffle")
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return np.random.default_rng(int(generator))
    raise InvalidParameterError(
        f"generator must be None, an int seed or a numpy.random.Generator, got {generator!r}"
    )


def random_split(dataset: Any, lengths: Sequence[float], generator: Any = None) -> list[Subset]:
    """Split ``dataset`` at random into ``Subset`` s of ``lengths`` (counts, or
    fractions summing to 1, the remainder given out one by one as PyTorch does).

    Example:
        >>> import numpy as np, gpunet as gn
        >>> a, b = gn.data.random_split(gn.data.TensorDataset(np.zeros(10)), [0.7, 0.3])
        >>> len(a), len(b)
        (7, 3)
    """
    n = len(dataset)
    if math.isclose(sum(lengths), 1.0) and sum(lengths) <= 1.0 and n != 1:
        counts = [math.floor(n * f) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
    else:
        counts = [int(k) for k in lengths]
    if any(k < 0 for k in counts) or sum(counts) != n:
        raise InvalidParameterError(
            f"Sum of input lengths {list(lengths)} does not equal the length of the "
            f"input dataset ({n})"
        )
    perm = _rng(generator).permutation(n)
    starts = np.cumsum([0, *counts])
    return [Subset(dataset, perm[s:e].tolist()) for s, e in itertools.pairwise(starts)]


def _tensor(a: np.ndarray) -> Tensor:
    return Tensor(np.ascontiguousarray(a))


def default_collate(samples: list[Any]) -> Any:
    """Stack a list of samples field by field into tensors (PyTorch's rule:
    tuples stay tuples, dicts stay dicts, numbers and arrays are stacked)."""
    first = samples[0]
    if isinstance(first, (tuple, list)):
        return type(first)(default_collate(list(f)) for f in zip(*samples, strict=True))
    if isinstance(first, dict):
        return {k: default_collate([s[k] for s in samples]) for k in first}
    if isinstance(first, Tensor):
        return Tensor(first.ops.xp.stack([s.data for s in samples]), first.ops)
    if isinstance(first, float):
        return _tensor(np.asarray(samples, dtype=np.float64))
    return _tensor(np.stack([np.asarray(s) for s in samples]))


class DataLoader:
    """Batches of a dataset, in order or shuffled (PyTorch's ``DataLoader``).

    Args:
        dataset: Anything with ``__getitem__`` and ``__len__``.
        batch_size: Samples per batch; ``None`` yields samples one by one, unbatched.
        shuffle: A fresh order every pass, drawn from ``generator``.
        drop_last: Drop the last, smaller batch.
        generator: ``None`` (gpunet's seeded shuffle stream), an int seed, or a
            ``numpy.random.Generator``.
        collate_fn: Turns a list of samples into a batch (default: ``default_collate``).
        num_workers, pin_memory: Accepted for PyTorch code; batches are made in
            this process (``num_workers`` > 0 gives no parallelism).
    """

    def __init__(self, dataset: Any, batch_size: int | None = 1, shuffle: bool = False,
                 drop_last: bool = False, generator: Any = None,
                 collate_fn: Callable[[list[Any]], Any] | None = None, num_workers: int = 0,
                 pin_memory: bool = False) -> None:  # fmt: skip
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise InvalidParameterError(
                f"batch_size should be a positive integer value or None, got {batch_size!r}"
            )
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise InvalidParameterError(
                f"DataLoader needs a dataset with __getitem__ and __len__, got {type(dataset)!r}"
            )
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, bool(shuffle)
        self.drop_last, self.collate_fn = bool(drop_last), collate_fn
        self.generator = _rng(generator) if generator is not None else None
        self.num_workers, self.pin_memory = num_workers, pin_memory

    def __len__(self) -> int:
        n = len(self.dataset)
        if self.batch_size is None:
            return n
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        n = len(self.dataset)
        order = _rng(self.generator).permutation(n) if self.shuffle else np.arange(n)
        if self.batch_size is None:
            for i in order:
                yield self.dataset[int(i)]
            return
        fast = self.collate_fn is None and hasattr(self.dataset, "_batch")
        collate = self.collate_fn or default_collate
        for k in range(len(self)):
            idx = order[k * self.batch_size : (k + 1) * self.batch_size]
            if fast:  # one gather per array instead of a sample-by-sample stack
                yield self.dataset._batch(idx)
            else:
                yield collate([self.dataset[int(i)] for i in idx])


class PyDataset:
    """Keras's ``PyDataset``: a sequence of batches ``fit`` streams.

    Subclass it, call ``super().__init__(**kwargs)``, and define ``__len__`` (the
    number of batches) and ``__getitem__(idx)`` returning ``(x, y)`` or
    ``(x, y, sample_weight)`` for batch ``idx`` (or a ``num_batches`` property,
    None for an endless one); ``on_epoch_begin`` and ``on_epoch_end`` run around
    each epoch. ``workers``, ``use_multiprocessing`` and ``max_queue_size`` are
    accepted for Keras code; batches are made in this process.
    """

    def __init__(self, workers: int = 1, use_multiprocessing: bool = False,
                 max_queue_size: int = 10) -> None:  # fmt: skip
        self.workers, self.use_multiprocessing = workers, use_multiprocessing
        self.max_queue_size = max_queue_size

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    @property
    def num_batches(self) -> int | None:
        """Batches in the dataset (``len(self)``); override to return None for an endless one."""
        return len(self)

    def on_epoch_begin(self) -> None:
        """Called before each epoch."""

    def on_epoch_end(self) -> None:
        """Called after each epoch (e.g. to reshuffle)."""
