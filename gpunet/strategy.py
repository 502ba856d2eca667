"""How ``fit`` spreads work across processes, and how a step stays atomic.

``LocalStrategy`` is the single-process default; ``gpunet.distributed`` subclasses
it. ``fit`` only calls these hooks.
"""

from __future__ import annotations

import signal
import threading
from typing import Any


class LocalStrategy:
    """How ``fit`` splits work across processes: here, not at all.

    ``gpunet.distributed`` subclasses it; ``fit`` only calls these hooks.
    """

    rank, size = 0, 1

    def __deepcopy__(self, memo: dict[int, Any]) -> LocalStrategy:
        """The strategy itself: it stands for the running processes (an MPI
        communicator cannot be copied), so copies of a model or estimator, and
        scikit-learn's ``clone``, share it."""
        return self

    @property
    def is_chief(self) -> bool:
        """The process that prints progress and writes files."""
        return self.rank == 0

    def setup(self, model: Any) -> None:
        """Called once per ``fit`` after the optimizer is built (sync initial state)."""

    def local_rows(self, start: int, stop: int) -> tuple[int, int]:
        """The rows of global batch ``[start, stop)`` this process trains on."""
        return start, stop

    def reduce_gradients(self, optimizer: Any) -> None:
        """Combine gradients across processes before the optimizer step."""

    def read_metrics(self, model: Any, prefix: str) -> dict[str, float]:
        """Epoch or batch logs, combined across processes."""
        return model._read_local_metrics(prefix)  # type: ignore[no-any-return]


class InterruptGuard:
    """Defer Ctrl-C inside ``fit`` to the next step boundary.

    One handler for the whole fit (installing one per step costs ~20 us, more
    than a tutorial-sized step): a first Ctrl-C sets ``pending`` and the loop
    raises ``KeyboardInterrupt`` after the current step, so weights and optimizer
    state always come from the same step; a second Ctrl-C raises at once.
    """

    def __init__(self) -> None:
        self.pending = False
        self.old: Any = None

    def __enter__(self) -> InterruptGuard:
        self.pending = False
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.pending:
            raise KeyboardInterrupt
        self.pending = True

    def __exit__(self, *exc: object) -> None:
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
            self.old = None
