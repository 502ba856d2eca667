"""PyTorch's samplers: the order a ``DataLoader`` reads a map-style dataset in.

A sampler yields dataset indices (``BatchSampler``: lists of them). The random
ones draw from gpunet's seeded shuffle stream unless given a ``generator``, so
``gn.manual_seed`` makes their order repeat. They are reached as ``gn.data.*``.

Example:
    >>> import gpunet as gn
    >>> list(gn.data.BatchSampler(gn.data.SequentialSampler(range(7)), 3, drop_last=False))
    [[0, 1, 2], [3, 4, 5], [6]]
    >>> sorted(gn.data.RandomSampler(range(5)))
    [0, 1, 2, 3, 4]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from gpunet import random as grandom
from gpunet.autograd import Tensor
from gpunet.errors import InvalidParameterError


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


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise InvalidParameterError(
            f"{name} should be a positive integer value, but got {name}={value}"
        )
    return int(value)


class Sampler:
    """Base of the samplers: subclass and define ``__iter__`` (and ``__len__``)."""

    def __init__(self, data_source: Any = None) -> None:
        pass  # older PyTorch samplers pass ``data_source`` up; it is not used

    def __iter__(self) -> Iterator[Any]:
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")


class _Ordered(Sampler):
    """A sampler whose pass is one array of indices, drawn at once by ``_indices``."""

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices().tolist())

    def _indices(self) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must define _indices")


class SequentialSampler(_Ordered):
    """``0, 1, ..., len(data_source) - 1``, every pass."""

    def __init__(self, data_source: Any) -> None:
        self.data_source = data_source

    def _indices(self) -> np.ndarray:
        return np.arange(len(self.data_source))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(_Ordered):
    """A fresh permutation of ``data_source`` every pass; with ``replacement``,
    ``num_samples`` independent draws (default ``len(data_source)``). Without it, a
    ``num_samples`` over the length chains permutations, as PyTorch does."""

    def __init__(self, data_source: Any, replacement: bool = False,
                 num_samples: int | None = None, generator: Any = None) -> None:  # fmt: skip
        if not isinstance(replacement, bool):
            raise TypeError(
                f"replacement should be a boolean value, but got replacement={replacement}"
            )
        self.data_source, self.replacement, self._num_samples = (
            data_source,
            replacement,
            num_samples,
        )
        self.generator = None if generator is None else _rng(generator)
        _positive("num_samples", self.num_samples)

    @property
    def num_samples(self) -> int:
        """Indices per pass."""
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def _indices(self) -> np.ndarray:
        n, k, rng = len(self.data_source), self.num_samples, _rng(self.generator)
        if self.replacement:
            return rng.integers(0, n, size=k)
        return np.concatenate([rng.permutation(n) for _ in range(math.ceil(k / n))])[:k]

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(_Ordered):
    """The given ``indices`` in a fresh random order every pass."""

    def __init__(self, indices: Sequence[int], generator: Any = None) -> None:
        self.indices = indices
        self.generator = None if generator is None else _rng(generator)

    def _indices(self) -> np.ndarray:
        return np.asarray(self.indices, dtype=np.int64)[_rng(self.generator).permutation(len(self))]

    def __len__(self) -> int:
        return len(self.indices)


class WeightedRandomSampler(_Ordered):
    """``num_samples`` indices of ``weights``, index ``i`` drawn with probability
    ``weights[i] / sum(weights)`` (each at most once without ``replacement``)."""

    def __init__(self, weights: Any, num_samples: int, replacement: bool = True,
                 generator: Any = None) -> None:  # fmt: skip
        self.num_samples = _positive("num_samples", num_samples)
        if not isinstance(replacement, bool):
            raise InvalidParameterError(
                f"replacement should be a boolean value, but got replacement={replacement}"
            )
        w = np.asarray(weights.numpy() if isinstance(weights, Tensor) else weights, np.float64)
        if w.ndim != 1:
            raise InvalidParameterError(
                f"weights should be a 1d sequence but given weights have shape {w.shape}"
            )
        if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise InvalidParameterError("weights must be finite, non-negative and not all zero")
        self.weights, self.replacement = w, replacement
        self.generator = None if generator is None else _rng(generator)

    def _indices(self) -> np.ndarray:
        p = self.weights / self.weights.sum()
        rng = _rng(self.generator)
        return rng.choice(len(p), size=self.num_samples, replace=self.replacement, p=p)

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler(Sampler):
    """Lists of ``batch_size`` indices from ``sampler`` (any iterable of indices);
    ``drop_last`` drops a last, shorter list."""

    def __init__(self, sampler: Iterable[Any], batch_size: int, drop_last: bool) -> None:
        self.batch_size = _positive("batch_size", batch_size)
        if not isinstance(drop_last, bool):
            raise InvalidParameterError(
                f"drop_last should be a boolean value, but got drop_last={drop_last}"
            )
        self.sampler, self.drop_last = sampler, drop_last

    def __iter__(self) -> Iterator[list[Any]]:
        for batch in self._batches():
            yield batch.tolist() if isinstance(batch, np.ndarray) else batch

    def _batches(self) -> Iterator[Any]:
        """The batches; slices of one index array when the sampler draws its pass at once
        (and iterates it unchanged), lists otherwise."""
        size, sampler = self.batch_size, self.sampler
        if isinstance(sampler, _Ordered) and type(sampler).__iter__ is _Ordered.__iter__:
            order = sampler._indices()
            stop = len(order) - len(order) % size if self.drop_last else len(order)
            yield from (order[i : i + size] for i in range(0, stop, size))
            return
        it = iter(sampler)
        while batch := list(itertools.islice(it, size)):
            if self.drop_last and len(batch) < size:
                return
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
