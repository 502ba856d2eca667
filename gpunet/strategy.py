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


class DeferInterrupt:
    """Hold Ctrl-C during an optimizer step, so weights and optimizer state always
    come from the same step; the KeyboardInterrupt is raised right after it."""

    def __enter__(self) -> None:
        self.pending = False
        self.old: Any = None
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, self._hold)

    def _hold(self, signum: int, frame: Any) -> None:
        self.pending = True

    def __exit__(self, *exc: object) -> None:
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
        if self.pending:
            raise KeyboardInterrupt
