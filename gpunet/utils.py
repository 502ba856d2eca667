"""Small helpers users reach for: seeding.

Example:
    >>> import gpunet as gn
    >>> gn.utils.set_random_seed(42)
"""

from __future__ import annotations

from gpunet import random as grandom


def set_random_seed(seed: int) -> None:
    """Seed gpunet's weight initialization, shuffling and dropout streams.

    With the same seed, a CPU run repeats bit for bit, and every device starts
    from the same initial weights.
    """
    grandom.set_random_seed(seed)
