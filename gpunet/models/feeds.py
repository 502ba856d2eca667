"""What ``fit``/``evaluate``/``predict`` iterate: arrays (copied to the device once,
sliced per batch) or a stream of batches (a Python generator, a Keras-style
``PyDataset``, a ``DataLoader`` or any re-iterable of batches), each batch
validated and uploaded as it arrives, so the whole dataset is never in memory.

``Epochs`` cuts a feed into epochs of ``steps_per_epoch`` batches as Keras's
epoch iterator does: a pass over the data goes on across epochs and starts
again once it has run out.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from gpunet import random as grandom
from gpunet.autograd import Tensor
from gpunet.data import DataLoader, PyDataset
from gpunet.errors import InputValidationError
from gpunet.models import multi_io
from gpunet.models.feeding import Batch


def is_stream(x: Any) -> bool:
    """Whether ``x`` is a source of batches rather than one array-like."""
    if isinstance(x, (PyDataset, DataLoader, Iterator)):
        return True
    arrayish = (np.ndarray, Tensor, list, tuple, str, bytes, dict)
    if isinstance(x, arrayish) or hasattr(x, "shape") or hasattr(x, "__array__"):
        return False
    return hasattr(x, "__iter__")


def unpack(item: Any, where: str) -> tuple[Any, Any, Any]:
    """``(x, y, sample_weight)`` of one streamed batch (Keras's accepted forms)."""
    if isinstance(item, (tuple, list)) and 1 <= len(item) <= 3:
        x, y, w = (*item, None, None)[:3]
        return x, y, w
    if isinstance(item, (tuple, list)):
        raise InputValidationError(
            f"{where}: a batch must be x, (x,), (x, y) or (x, y, sample_weight), "
            f"got a {type(item).__name__} of {len(item)} items"
        )
    return item, None, None


class ArrayFeed:
    """Arrays already validated on the host: on the device once (whole if they fit
    in its free memory, else streamed per batch), batched there."""

    def __init__(self, model: Any, X: Any, Y: Any, W: Any, batch_size: int,
                 shuffle: bool = False, shard: bool = True) -> None:  # fmt: skip
        self.model, self.batch_size, self.shuffle, self.shard = model, batch_size, shuffle, shard
        self.n = multi_io.rows(X)
        self._host: Any = (X, Y, W)
        self._device: Any = None
        self.order: Any = None

    @property
    def arrays(self) -> Any:
        # uploaded at first use, after fit's strategy has put the model on its device
        if self._device is None:
            self._device, self._host = self.model._to_device(*self._host), None
        return self._device

    def size(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def one_pass(self) -> Iterator[Batch]:
        self.order = grandom.generator("shuffle").permutation(self.n) if self.shuffle else None
        return self.model._batches(  # type: ignore[no-any-return]
            *self.arrays, self.batch_size, self.order, shard=self.shard
        )

    def batch_at(self, i: int) -> Batch:
        """Batch ``i`` of the current pass again (to name a layer that went non-finite)."""
        X, Y, W = self.arrays
        return self.model._batch_at(X, Y, W, self.batch_size, self.order, i)  # type: ignore[no-any-return]

    def on_epoch_begin(self) -> None:
        pass

    def on_epoch_end(self) -> None:
        pass


class StreamFeed:
    """Batches from a generator, ``PyDataset``, ``DataLoader`` or iterable, each
    validated like array input (``class_weight`` applied per batch) and uploaded."""

    batch_at = None  # a streamed batch cannot be made again

    def __init__(self, model: Any, source: Any, mode: str, class_weight: Any = None,
                 shuffle: bool = False) -> None:  # fmt: skip
        self.model, self.source, self.mode = model, source, mode
        self.class_weight, self.shuffle = class_weight, shuffle
        self.indexed = isinstance(source, PyDataset)
        self.one_shot = isinstance(source, Iterator)  # a generator runs once
        self._pending: Iterator[Any] | None = None

    def size(self) -> int | None:
        """Batches per pass, when the source knows (a generator does not)."""
        if self.indexed:
            return self.source.num_batches  # type: ignore[no-any-return]
        try:
            return len(self.source)
        except TypeError:
            return None

    def _items(self) -> Iterator[Any]:
        if self.indexed:
            n = self.source.num_batches
            if n is None:  # endless: fit needs steps_per_epoch
                return (self.source[i] for i in itertools.count())
            order = np.arange(n)
            if self.shuffle:  # Keras shuffles a PyDataset's batch order
                order = grandom.generator("shuffle").permutation(n)
            return (self.source[int(i)] for i in order)
        return iter(self.source)

    def build(self) -> None:
        """Validate the first batch before training starts (it builds the model);
        the batch is kept for the first pass."""
        if getattr(self.model, "built", True):
            return
        items = self._items()
        first = next(items, None)
        if first is None:
            raise InputValidationError(f"{self.mode}: the data source yielded no batch")
        self._prepare(first)

        def chained() -> Iterator[Any]:
            yield first
            yield from items

        self._pending = chained()

    def _prepare(self, item: Any) -> tuple[Any, Any, Any]:
        x, y, w = unpack(item, self.mode)
        m = self.model
        if self.mode == "predict":
            return m._inputs(x), None, None
        if y is None:
            raise InputValidationError(
                f"{self.mode}: each batch must hold (x, y) or (x, y, sample_weight); got x only"
            )
        return m._prepare(x, y, w, self.class_weight)  # type: ignore[no-any-return]

    def one_pass(self) -> Iterator[Batch]:
        items, self._pending = (self._pending or self._items()), None
        ops = self.model.ops
        for item in items:
            X, Y, W = self._prepare(item)
            if self.mode == "predict":
                yield Batch(multi_io.each(X, ops.asarray), None, None, multi_io.rows(X))
                continue
            Wd = None if W is None else multi_io.each(W, self.model._weights_on(ops))
            X, Y = multi_io.each(X, ops.asarray), multi_io.each(Y, ops.asarray)
            # each process takes its rows of every batch (all iterate the same source)
            yield from self.model._batches(X, Y, Wd, multi_io.rows(X))

    def on_epoch_begin(self) -> None:
        if self.indexed:
            self.source.on_epoch_begin()

    def on_epoch_end(self) -> None:
        if self.indexed:
            self.source.on_epoch_end()


class Epochs:
    """Epochs of at most ``steps`` batches from ``feed`` (all of a pass when
    ``steps`` is None). ``ran_out`` turns True when a one-shot source is spent."""

    def __init__(self, feed: Any, steps: int | None) -> None:
        self.feed, self.steps = feed, steps
        self.ran_out = False
        self._it: Iterator[Batch] | None = None
        self._seen = 0

    @property
    def length(self) -> int | None:
        """Batches per epoch when known (the progress bar's total)."""
        n = self.feed.size()
        return self.steps if self.steps is not None else n

    def epoch(self) -> Iterator[Batch]:
        n = self.feed.size()
        self.feed.on_epoch_begin()
        if self.steps is None:
            steps = 0
            for steps, b in enumerate(self.feed.one_pass(), 1):  # noqa: B007
                yield b
            if steps == 0:  # a spent generator
                self._out()
            self.feed.on_epoch_end()
            return
        if self._it is None:
            self._it, self._seen = self.feed.one_pass(), 0
        for _ in range(self.steps):
            if n is not None and self._seen >= n:
                self._out(stop=False)
                break
            b = next(self._it, None)
            if b is None:
                self._out()
                break
            self._seen += 1
            yield b
        if n is not None and self._seen >= n:
            self._it = None  # the next epoch starts a new pass
        self.feed.on_epoch_end()

    def _out(self, stop: bool = True) -> None:
        warnings.warn(
            "Your input ran out of data; interrupting training. Make sure that your "
            "dataset or generator can generate at least `steps_per_epoch * epochs` batches.",
            UserWarning,
            stacklevel=3,
        )
        if stop:
            self.ran_out = True
