"""The ``fit`` progress display: tqdm when installed, else a plain text bar.

Values are read from the device at most every ``interval`` seconds and at the
epoch end, so on a GPU the bar costs no host sync per batch.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

from gpunet.callbacks import Callback


def _fmt(logs: Mapping[str, float]) -> str:
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


class ProgbarLogger(Callback):
    """``verbose=1``: a bar per epoch; ``verbose=2``: one line per epoch."""

    def __init__(self, verbose: int = 1, interval: float = 0.1) -> None:
        super().__init__()
        self.verbose, self.interval = verbose, interval
        self._bar: Any = None

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self.epoch, self.start, self.last = epoch, time.perf_counter(), 0.0
        self.steps = self.params.get("steps")
        if self.verbose == 1:
            desc = f"Epoch {epoch + 1}/{self.params.get('epochs')}"
            try:
                from tqdm.auto import tqdm

                self._bar = tqdm(
                    total=self.steps,
                    desc=desc,
                    unit="batch",
                    leave=True,
                    dynamic_ncols=True,
                    file=sys.stdout,
                )
            except ImportError:
                self._bar = None
                print(desc)

    def on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        if self.verbose != 1:
            return
        if self._bar is not None:
            self._bar.update(1)
        now = time.perf_counter()
        if now - self.last < self.interval or logs is None:
            return
        self.last = now
        text = _fmt(logs)  # the only place batch logs are read
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)
        else:
            of = "" if self.steps is None else f"/{self.steps}"  # a generator's length is unknown
            print(f"\r{batch + 1}{of} - {text}", end="", flush=True)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        took = time.perf_counter() - self.start
        text = _fmt(logs or {})
        if self.verbose == 1 and self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)
            self._bar.close()
        elif self.verbose == 1:
            done = "" if self.steps is None else f"{self.steps}/{self.steps} - "
            print(f"\r{done}{took:.1f}s - {text}", flush=True)
        else:
            print(
                f"Epoch {epoch + 1}/{self.params.get('epochs')} - {took:.1f}s - {text}", flush=True
            )
