"""Seeded random streams, all drawn on the host.

Initial weights, shuffling and dropout each have their own NumPy ``Generator``
spawned from one seed, so ``set_random_seed(n)`` makes a CPU run repeat bit for
bit, and the same seed gives the same starting weights on every device.

Example:
    >>> import gpunet as gn
    >>> gn.utils.set_random_seed(0)
    >>> a = gn.random.generator("init").random()
    >>> gn.utils.set_random_seed(0)
    >>> a == gn.random.generator("init").random()
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

STREAMS = ("init", "shuffle", "dropout")
_generators: dict[str, np.random.Generator] = {}
_epoch = 0  # bumped by set_random_seed so device RNGs know to reseed


def set_random_seed(seed: int | None) -> None:
    """Seed every stream from ``seed`` (``None`` draws fresh OS entropy)."""
    global _epoch
    if seed is not None and (not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    for name, child in zip(STREAMS, children, strict=True):
        _generators[name] = np.random.Generator(np.random.PCG64(child))
    _epoch += 1


def generator(stream: str) -> np.random.Generator:
    """Return the host generator of ``stream`` (``"init"``, ``"shuffle"``, ``"dropout"``)."""
    if not _generators:
        set_random_seed(None)
    return _generators[stream]


def seed_epoch() -> int:
    """A counter that changes on every ``set_random_seed`` call."""
    return _epoch


def get_state() -> dict[str, Any]:
    """Return the state of every stream as plain JSON-able data."""
    if not _generators:
        set_random_seed(None)
    return {name: g.bit_generator.state for name, g in _generators.items()}


def set_state(state: dict[str, Any]) -> None:
    """Restore the streams from :func:`get_state` output."""
    if not _generators:
        set_random_seed(None)
    for name in STREAMS:
        _generators[name].bit_generator.state = state[name]
