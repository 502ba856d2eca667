"""``keras.random``: draws for custom layers (a VAE's sampling layer, noise, masks),
from gpunet's seeded host streams, placed on the device of the layer whose call is
running (else on the CPU), as Keras places them on its default device.

``seed`` is as in Keras 3: ``None`` draws from the global streams (so
``gn.utils.set_random_seed`` repeats a run), an int gives the same values on every
call, and a :class:`SeedGenerator` gives a new, reproducible draw on each call.

Example:
    >>> import gpunet as gn
    >>> a = gn.random.normal((2, 3), seed=7)
    >>> bool((a.numpy() == gn.random.normal((2, 3), seed=7).numpy()).all())
    True
    >>> gen = gn.random.SeedGenerator(1)
    >>> first, second = (gn.random.uniform((4,), seed=gen).numpy() for _ in range(2))
    >>> bool((first != second).any())
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np


class SeedGenerator:
    """A stream of seeds: each draw that takes it advances it (``keras.random.SeedGenerator``)."""

    def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
        self._rng = np.random.default_rng(seed)

    def next(self) -> np.random.Generator:
        return self._rng


def _rng(seed: Any) -> np.random.Generator:
    if isinstance(seed, SeedGenerator):
        return seed.next()
    if seed is None:
        from gpunet.random import generator

        return generator("dropout")
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return np.random.default_rng(int(seed))
    raise ValueError(f"seed must be None, an int >= 0 or a SeedGenerator, got {seed!r}")


def _out(values: np.ndarray, dtype: Any) -> Any:
    from gpunet import config
    from gpunet.kops import convert_to_tensor

    return convert_to_tensor(np.asarray(values, dtype=dtype or config.floatx()))


def normal(shape: Any, mean: float = 0.0, stddev: float = 1.0, dtype: Any = None,
           seed: Any = None) -> Any:  # fmt: skip
    return _out(_rng(seed).normal(mean, stddev, size=tuple(shape)), dtype)


def uniform(shape: Any, minval: float = 0.0, maxval: float = 1.0, dtype: Any = None,
            seed: Any = None) -> Any:  # fmt: skip
    return _out(_rng(seed).uniform(minval, maxval, size=tuple(shape)), dtype)


def truncated_normal(shape: Any, mean: float = 0.0, stddev: float = 1.0, dtype: Any = None,
                     seed: Any = None) -> Any:  # fmt: skip
    """Normal draws, each redrawn until it lies within two standard deviations."""
    rng, n = _rng(seed), int(np.prod(tuple(shape), dtype=np.int64))
    out = rng.standard_normal(n)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return _out(mean + stddev * out.reshape(tuple(shape)), dtype)


def randint(shape: Any, minval: int, maxval: int, dtype: Any = "int32", seed: Any = None) -> Any:
    return _out(_rng(seed).integers(minval, maxval, size=tuple(shape)), dtype)


def shuffle(x: Any, axis: int = 0, seed: Any = None) -> Any:
    """``x`` with its entries along ``axis`` in a random order (gradients follow)."""
    from gpunet import functional as F
    from gpunet.kops import _out as as_ops
    from gpunet.kops import _t

    t = _t(x)
    order = _rng(seed).permutation(t.shape[axis])
    key = (slice(None),) * (axis % t.ndim) + (order,)
    return as_ops(F.getitem(t, key))


def dropout(inputs: Any, rate: float, noise_shape: Any = None, seed: Any = None) -> Any:
    """Zero each entry with probability ``rate`` and scale the rest by ``1 / (1 - rate)``."""
    from gpunet.kops import _t, multiply

    t = _t(inputs)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate!r}")
    shape = (
        t.shape
        if noise_shape is None
        else tuple(n if m is None else m for n, m in zip(t.shape, noise_shape, strict=True))
    )
    keep = _rng(seed).random(shape) >= rate
    return multiply(t, (keep / (1.0 - rate)).astype(np.dtype(str(t.dtype))))


__all__ = ["SeedGenerator", "dropout", "normal", "randint", "shuffle", "truncated_normal",
           "uniform"]  # fmt: skip
