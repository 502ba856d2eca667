"""``callbacks.TensorBoard``: epoch (and batch) logs and weight histograms as
TensorBoard event files, written by ``tensorboardX`` (the ``tensorboard`` extra).

Like Keras, training logs go to ``log_dir/train`` and validation logs to
``log_dir/validation``, both under the tag ``epoch_<name>`` (``val_loss`` is
``epoch_loss`` of the validation run); batch logs are ``batch_<name>``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from gpunet.callbacks import Callback
from gpunet.errors import InvalidParameterError

INSTALL_HINT = "pip install 'gpunet[tensorboard]' (or pip install tensorboardX)"


class TensorBoard(Callback):
    """Write ``fit``'s logs where TensorBoard reads them (``tensorboard --logdir logs``).

    Args:
        log_dir: folder of the runs (``train`` and ``validation`` below it).
        histogram_freq: write a histogram of every weight each this many epochs (0: never).
        update_freq: ``"epoch"``, ``"batch"``, or a number of batches between writes
            of the batch logs (each write reads the metrics from the device once).

    Example:
        >>> import gpunet as gn
        >>> try:
        ...     cb = gn.callbacks.TensorBoard(log_dir="logs")
        ... except ImportError as exc:  # without the extra
        ...     print("gpunet[tensorboard]" in str(exc))
        ... else:
        ...     print(cb.update_freq == "epoch")
        True
    """

    def __init__(
        self, log_dir: Any = "logs", histogram_freq: int = 0, update_freq: Any = "epoch"
    ) -> None:
        super().__init__()
        try:
            import tensorboardX
        except ImportError as exc:
            raise ImportError(f"callbacks.TensorBoard needs tensorboardX: {INSTALL_HINT}") from exc
        if update_freq not in ("epoch", "batch") and not (
            isinstance(update_freq, int) and not isinstance(update_freq, bool) and update_freq > 0
        ):
            raise InvalidParameterError(
                f"update_freq must be 'epoch', 'batch' or a positive int, got {update_freq!r}"
            )
        if not isinstance(histogram_freq, int) or histogram_freq < 0:
            raise InvalidParameterError(
                f"histogram_freq must be an int >= 0, got {histogram_freq!r}"
            )
        self._tbx = tensorboardX
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq = histogram_freq
        self.update_freq = update_freq
        self._writers: dict[str, Any] = {}
        self._step = 0

    def _writer(self, run: str) -> Any:
        if run not in self._writers:
            path = os.path.join(self.log_dir, run)
            self._writers[run] = self._tbx.SummaryWriter(logdir=path)
        return self._writers[run]

    def _scalars(self, logs: Mapping[str, Any] | None, prefix: str, step: int) -> None:
        for key, value in (logs or {}).items():
            if np.ndim(value) != 0:  # per-threshold vectors: one scalar each
                for i, v in enumerate(np.ravel(value)):
                    self._scalars({f"{key}/{i}": v}, prefix, step)
                continue
            run, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            self._writer(run).add_scalar(f"{prefix}_{name}", float(value), step)

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._step = 0

    def on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        self._step += 1
        every = 1 if self.update_freq == "batch" else self.update_freq
        if every != "epoch" and self._step % int(every) == 0:
            self._scalars(logs, "batch", self._step)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._scalars(logs, "epoch", epoch)
        if self.histogram_freq and (epoch + 1) % self.histogram_freq == 0:
            self._histograms(epoch)
        for w in self._writers.values():
            w.flush()

    def _histograms(self, epoch: int) -> None:
        writer = self._writer("train")
        for i, W in enumerate(self.model.weights):
            tag = getattr(W, "name", None) or f"weight_{i}"
            writer.add_histogram(tag, np.asarray(W.numpy(), dtype=np.float64), epoch)

    def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
        for w in self._writers.values():
            w.close()
        self._writers = {}
