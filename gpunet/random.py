"""Seeded random streams, all drawn on the host.

Initial weights, shuffling and dropout each have their own NumPy ``Generator``
spawned from one seed, so ``set_random_seed(n)`` makes a CPU run repeat bit for
bit, and the same seed gives the same starting weights on every device.

Threads: the main thread's seed sets the streams every thread draws from, as
PyTorch's default generator does; a thread that calls ``set_random_seed`` itself gets
streams of its own, so several threads each fitting a seeded model give exactly the
results of the same fits run one after the other.

Example:
    >>> import gpunet as gn
    >>> gn.utils.set_random_seed(0)
    >>> a = gn.random.generator("init").random()
    >>> gn.utils.set_random_seed(0)
    >>> a == gn.random.generator("init").random()
    True
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

STREAMS = ("init", "shuffle", "dropout")
_shared: dict[str, np.random.Generator] = {}  # the main thread's: every thread's default
_lock = threading.Lock()
_epoch = 0  # bumped by set_random_seed so device RNGs know to reseed


class _Own(threading.local):
    generators: dict[str, np.random.Generator] | None = None  # set by a worker's seed


_own = _Own()


def set_random_seed(seed: int | None) -> None:
    """Seed every stream from ``seed`` (``None`` draws fresh OS entropy): the shared
    streams from the main thread, this thread's own from any other thread."""
    global _epoch
    if seed is not None and (not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    fresh = {
        name: np.random.Generator(np.random.PCG64(child))
        for name, child in zip(STREAMS, children, strict=True)
    }
    with _lock:
        if threading.current_thread() is threading.main_thread():
            _shared.clear()
            _shared.update(fresh)
            _own.generators = None
        else:
            _own.generators = fresh
        _epoch += 1


def _streams() -> dict[str, np.random.Generator]:
    own = _own.generators
    if own is not None:
        return own
    if not _shared:
        with _lock:
            if not _shared:
                children = np.random.SeedSequence(None).spawn(len(STREAMS))
                for name, child in zip(STREAMS, children, strict=True):
                    _shared[name] = np.random.Generator(np.random.PCG64(child))
    return _shared


def generator(stream: str) -> np.random.Generator:
    """Return the host generator of ``stream`` (``"init"``, ``"shuffle"``, ``"dropout"``)."""
    return _streams()[stream]


def seed_epoch() -> int:
    """A counter that changes on every ``set_random_seed`` call."""
    return _epoch


def get_state() -> dict[str, Any]:
    """Return the state of every stream as plain JSON-able data."""
    return {name: g.bit_generator.state for name, g in _streams().items()}


def set_state(state: dict[str, Any]) -> None:
    """Restore the streams from :func:`get_state` output."""
    streams = _streams()
    for name in STREAMS:
        streams[name].bit_generator.state = state[name]


# keras.random's draws (gn.random.normal, ...), after the streams they draw from
from gpunet._keras_random import (  # noqa: E402
    SeedGenerator,
    dropout,
    normal,
    randint,
    shuffle,
    truncated_normal,
    uniform,
)

__all__ = [
    "SeedGenerator", "dropout", "generator", "get_state", "normal", "randint", "seed_epoch",
    "set_random_seed", "set_state", "shuffle", "truncated_normal", "uniform",
]  # fmt: skip
