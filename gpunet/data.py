"""Datasets and loaders as both ecosystems write them: ``Dataset``,
``IterableDataset``, ``TensorDataset``, ``ConcatDataset``, ``Subset``,
``random_split``, the samplers and ``DataLoader`` (PyTorch's names and arguments)
for a hand-written loop, and ``PyDataset`` (Keras's) for a sequence of batches
that ``fit`` streams. They are reached as ``gn.data.*`` (and ``gn.utils.PyDataset``).

Example:
    >>> import numpy as np, gpunet as gn
    >>> ds = gn.data.TensorDataset(np.arange(10.0).reshape(5, 2), np.arange(5))
    >>> loader = gn.data.DataLoader(ds, batch_size=2, shuffle=True, generator=0)
    >>> [tuple(xb.shape) for xb, yb in loader]
    [(2, 2), (2, 2), (1, 2)]
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from gpunet._samplers import (
    BatchSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
    _rng,
)
from gpunet.autograd import Tensor
from gpunet.errors import InputValidationError, InvalidParameterError

__all__ = [
    "BatchSampler", "ConcatDataset", "DataLoader", "Dataset", "IterableDataset", "PyDataset",
    "RandomSampler", "Sampler", "SequentialSampler", "Subset", "SubsetRandomSampler",
    "TensorDataset", "WeightedRandomSampler", "default_collate", "random_split",
]  # fmt: skip


class Dataset:
    """Map-style dataset: subclass and define ``__getitem__(i)`` and ``__len__``."""

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __add__(self, other: Any) -> ConcatDataset:
        return ConcatDataset([self, other])


class IterableDataset(Dataset):
    """Stream-style dataset: subclass and define ``__iter__`` yielding samples. A
    ``DataLoader`` reads it in order (no ``shuffle`` or sampler); ``__len__`` is optional.

    Example:
        >>> import gpunet as gn
        >>> class Count(gn.data.IterableDataset):
        ...     def __iter__(self):
        ...         return iter(range(5))
        >>> [b.tolist() for b in gn.data.DataLoader(Count(), batch_size=2)]
        [[0, 1], [2, 3], [4]]
    """

    def __iter__(self) -> Iterator[Any]:
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")

    def __len__(self) -> int:
        raise TypeError(f"{type(self).__name__} has no __len__")


class ConcatDataset(Dataset):
    """The samples of several map-style datasets, one after the other.

    Example:
        >>> import gpunet as gn
        >>> ds = gn.data.ConcatDataset([[1, 2], [3, 4, 5]])
        >>> len(ds), ds.cumulative_sizes, ds[2], ds[-1]
        (5, [2, 5], 3, 5)
    """

    def __init__(self, datasets: Iterable[Any]) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise AssertionError("datasets should not be an empty iterable")
        if any(isinstance(d, IterableDataset) for d in self.datasets):
            raise AssertionError("ConcatDataset does not support IterableDataset")
        self.cumulative_sizes = list(itertools.accumulate(len(d) for d in self.datasets))

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, index: int) -> Any:
        n = len(self)
        if index < -n:
            raise InputValidationError("absolute value of index should not exceed dataset length")
        if index >= n:
            raise IndexError(f"index {index} is out of range for a dataset of length {n}")
        index = index + n if index < 0 else index
        d = bisect.bisect_right(self.cumulative_sizes, index)
        return self.datasets[d][index - (self.cumulative_sizes[d - 1] if d else 0)]


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
    """Batches of a dataset, in order, shuffled or in a sampler's order (PyTorch's
    ``DataLoader``, its arguments in its order).

    Args:
        dataset: Anything with ``__getitem__`` and ``__len__``, or an ``IterableDataset``
            (read in its own order: no ``shuffle``, ``sampler`` or ``batch_sampler``).
        batch_size: Samples per batch; ``None`` yields samples one by one, unbatched.
        shuffle: A fresh order every pass, drawn from ``generator``.
        sampler: The indices to read, in order (a ``Sampler`` or any iterable of
            indices); excludes ``shuffle``.
        batch_sampler: Yields whole batches of indices; excludes ``batch_size``,
            ``shuffle``, ``sampler`` and ``drop_last``.
        drop_last: Drop the last, smaller batch.
        generator: ``None`` (gpunet's seeded shuffle stream), an int seed, or a
            ``numpy.random.Generator``.
        collate_fn: Turns a list of samples into a batch (default: ``default_collate``).
        num_workers, pin_memory: Accepted for PyTorch code; batches are made in
            this process (``num_workers`` > 0 gives no parallelism).
    """

    def __init__(self, dataset: Any, batch_size: int | None = 1, shuffle: bool = False,
                 sampler: Any = None, batch_sampler: Any = None, num_workers: int = 0,
                 collate_fn: Callable[[list[Any]], Any] | None = None, pin_memory: bool = False,
                 drop_last: bool = False, generator: Any = None) -> None:  # fmt: skip
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise InvalidParameterError(
                f"batch_size should be a positive integer value or None, got {batch_size!r}"
            )
        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable:
            for name, value in (("shuffle", shuffle or None), ("sampler", sampler),
                                ("batch_sampler", batch_sampler)):  # fmt: skip
                if value is not None:
                    raise InvalidParameterError(
                        f"DataLoader with IterableDataset: expected unspecified {name} option, "
                        f"but got {name}={value!r}"
                    )
        elif not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise InvalidParameterError(
                f"DataLoader needs a dataset with __getitem__ and __len__, got {type(dataset)!r}"
            )
        if sampler is not None and shuffle:
            raise InvalidParameterError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            options = (
                ("batch_size", batch_size, batch_size != 1),
                ("shuffle", shuffle, bool(shuffle)),
                ("sampler", sampler, sampler is not None),
                ("drop_last", drop_last, bool(drop_last)),
            )
            clash = [f"{k}={v!r}" for k, v, given in options if given]
            if clash:
                raise InvalidParameterError(
                    "batch_sampler option is mutually exclusive with batch_size, shuffle, "
                    f"sampler, and drop_last; got {', '.join(clash)}"
                )
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise InvalidParameterError(
                "batch_size=None option disables auto-batching and is mutually exclusive "
                "with drop_last"
            )
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, bool(shuffle)
        self.drop_last, self.collate_fn = bool(drop_last), collate_fn
        self.generator = _rng(generator) if generator is not None else None
        self.num_workers, self.pin_memory = num_workers, pin_memory
        if sampler is None and not self._iterable:
            if shuffle:
                sampler = RandomSampler(dataset, generator=self.generator)
            else:
                sampler = SequentialSampler(dataset)
        if batch_sampler is None and batch_size is not None and not self._iterable:
            batch_sampler = BatchSampler(sampler, batch_size, self.drop_last)
        self.sampler, self.batch_sampler = sampler, batch_sampler

    def __len__(self) -> int:
        if self._iterable:
            n = len(self.dataset)
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        return len(self.batch_sampler if self.batch_sampler is not None else self.sampler)

    def __iter__(self) -> Iterator[Any]:
        collate = self.collate_fn or default_collate
        if self._iterable:
            samples = iter(self.dataset)
            if self.batch_size is None:
                yield from samples
                return
            while batch := list(itertools.islice(samples, self.batch_size)):
                if self.drop_last and len(batch) < self.batch_size:  # type: ignore[operator]
                    return
                yield collate(batch)
            return
        if self.batch_sampler is None:
            yield from (self.dataset[i] for i in self.sampler)
            return
        fast = self.collate_fn is None and hasattr(self.dataset, "_batch")
        sampler = self.batch_sampler
        batches = sampler._batches() if isinstance(sampler, BatchSampler) else iter(sampler)
        for idx in batches:
            if fast:  # one gather per array instead of a sample-by-sample stack
                yield self.dataset._batch(np.asarray(idx))
            else:
                keys = idx.tolist() if isinstance(idx, np.ndarray) else idx
                yield collate([self.dataset[i] for i in keys])


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
