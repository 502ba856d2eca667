"""Callbacks (Keras names and arguments): hooks ``fit`` calls at train, epoch and
batch boundaries. Batch ``logs`` are lazy: reading a value is a host sync on a
GPU, so only callbacks that read per batch pay for it.

Example:
    >>> import gpunet as gn
    >>> stop = gn.callbacks.EarlyStopping(monitor="val_loss", patience=3)
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from gpunet.errors import InvalidParameterError

Logs = Mapping[str, Any]

# Keras's hooks; ``on_batch_*`` are the old names of ``on_train_batch_*``, which
# call them unless overridden (so a callback written with either name runs)
HOOKS = (
    "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
    "on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end",
    "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
    "on_predict_begin", "on_predict_end", "on_predict_batch_begin", "on_predict_batch_end",
)  # fmt: skip


class Callback:
    """Base class; override any of the ``on_*`` hooks. ``self.model`` is set by
    ``fit``, ``evaluate`` and ``predict``; every hook gets ``logs`` as a mapping
    (``{}`` at the begin hooks, as Keras passes)."""

    def __init__(self) -> None:
        self.model: Any = None
        self.params: dict[str, Any] = {}

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: Logs | None = None) -> None: ...
    def on_train_end(self, logs: Logs | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None: ...
    def on_batch_begin(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None: ...

    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self.on_batch_end(batch, logs=logs)

    def on_test_begin(self, logs: Logs | None = None) -> None: ...
    def on_test_end(self, logs: Logs | None = None) -> None: ...
    def on_test_batch_begin(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_test_batch_end(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_predict_begin(self, logs: Logs | None = None) -> None: ...
    def on_predict_end(self, logs: Logs | None = None) -> None: ...
    def on_predict_batch_begin(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_predict_batch_end(self, batch: int, logs: Logs | None = None) -> None: ...


class LazyLogs(Mapping[str, Any]):
    """Batch logs read from device metric state only when a key is accessed."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read
        self._values: dict[str, Any] | None = None

    def _get(self) -> dict[str, Any]:
        if self._values is None:
            self._values = self._read()
        return self._values

    def __getitem__(self, key: str) -> Any:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


class CallbackList:
    """Calls every callback in order; ``cbs.hook(name, *args)`` with a fresh
    ``{}`` as the logs where none are given."""

    def __init__(self, callbacks: list[Callback], model: Any, params: dict[str, Any]) -> None:
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not hasattr(cb, "set_model"):
                raise InvalidParameterError(
                    f"callbacks must be gpunet.callbacks.Callback instances, got {cb!r}"
                )
            cb.set_model(model)
            cb.set_params(params)

    def overrides(self, *hooks: str) -> bool:
        """Whether any callback defines one of ``hooks`` (else the loop skips calling
        it, and never builds the logs). ``on_train_batch_*`` count their aliases."""
        names = set(hooks)
        if "on_train_batch_begin" in names:
            names.add("on_batch_begin")
        if "on_train_batch_end" in names:
            names.add("on_batch_end")
        # a LambdaCallback's hooks are instance attributes
        return any(h in vars(cb) or getattr(type(cb), h, None) is not getattr(Callback, h)
                   for cb in self.callbacks for h in names)  # fmt: skip

    def hook(self, name: str, *args: Any) -> None:
        if not args or not isinstance(args[-1], Mapping):
            args = (*args, {})
        for cb in self.callbacks:  # one logs object for all, as in Keras: History
            getattr(cb, name)(*args)  # sees what a scheduler wrote into it


class History(Callback):
    """Records epoch logs: ``history.history["loss"]`` is one value per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    def plot(self, path: str = "history.png", keys: list[str] | None = None) -> str:
        """Draw the curves to a PNG (needs matplotlib); returns the path."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise ImportError("History.plot needs matplotlib: pip install matplotlib") from exc
        keys = keys or list(self.history)
        fig, ax = plt.subplots(figsize=(6, 4))
        for k in keys:
            ax.plot([e + 1 for e in self.epoch], self.history[k], label=k, marker="o")
        ax.set_xlabel("epoch")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return path


def _mode(mode: str, monitor: str) -> Callable[[float, float], bool]:
    if mode not in ("auto", "min", "max"):
        raise InvalidParameterError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        maxed = ("acc", "accuracy", "auc", "precision", "recall", "r2")
        mode = "max" if any(monitor.endswith(k) for k in maxed) else "min"
    return (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ) -> None:
        super().__init__()
        if patience < 0:
            raise InvalidParameterError(f"patience must be >= 0, got {patience}")
        self.monitor, self.patience, self.verbose = monitor, int(patience), verbose
        self.better = _mode(mode, monitor)
        self.min_delta = abs(min_delta) if self.better(1.0, 0.0) else -abs(min_delta)
        self.baseline, self.restore_best_weights = baseline, restore_best_weights
        self.start_from_epoch = start_from_epoch

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best: float | None = self.baseline
        self.best_weights: list[Any] | None = None

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None or epoch < self.start_from_epoch:
            return
        if self.best is None or self.better(value - self.min_delta, self.best):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.stopped_epoch and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None and self.stopped_epoch:
            if self.verbose:
                print(f"Restoring model weights from the end of epoch {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class TerminateOnNaN(Callback):
    """Stop training at the first batch whose loss is NaN or infinite."""

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: invalid loss {loss}, terminating training")
            self.model.stop_training = True


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` stops improving."""

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        verbose: int = 0,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 < factor < 1.0:
            raise InvalidParameterError(f"ReduceLROnPlateau factor must be in (0, 1), got {factor}")
        self.monitor, self.factor, self.patience = monitor, float(factor), int(patience)
        self.verbose, self.min_delta, self.cooldown = verbose, float(min_delta), int(cooldown)
        self.min_lr = float(min_lr)
        self.better = _mode(mode, monitor)
        self.sign = 1.0 if self.better(1.0, 0.0) else -1.0

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.wait, self.cooldown_left = 0, 0
        self.best: float | None = None

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if self.best is None or self.better(value - self.sign * self.min_delta, self.best):
            self.best, self.wait = value, 0
        elif self.cooldown_left <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                opt = self.model.optimizer
                old = opt.learning_rate
                new = max(old * self.factor, self.min_lr)
                if new < old:
                    opt.learning_rate = new
                    if self.verbose:
                        print(
                            f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate "
                            f"to {new:g}."
                        )
                self.cooldown_left, self.wait = self.cooldown, 0


class LearningRateScheduler(Callback):
    """Set the learning rate at each epoch start to ``schedule(epoch, lr)``."""

    def __init__(self, schedule: Callable[[int, float], float], verbose: int = 0) -> None:
        super().__init__()
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        opt = self.model.optimizer
        lr = float(self.schedule(epoch, opt.learning_rate))
        opt.learning_rate = lr
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr:g}.")

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if isinstance(logs, dict):
            logs["learning_rate"] = self.model.optimizer.learning_rate


class CSVLogger(Callback):
    """Append each epoch's logs as a row of a CSV file."""

    def __init__(
        self, filename: str | os.PathLike[str], separator: str = ",", append: bool = False
    ) -> None:
        super().__init__()
        self.filename, self.sep, self.append = os.fspath(filename), separator, append

    def on_train_begin(self, logs: Logs | None = None) -> None:
        exists = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename)
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self._writer: Any = None
        self._header_done = bool(exists)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        row = {"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}}
        if self._writer is None:
            self._writer = csv.DictWriter(self._file, fieldnames=list(row), delimiter=self.sep)
            if not self._header_done:
                self._writer.writeheader()
        self._writer.writerow({k: row.get(k, np.nan) for k in self._writer.fieldnames})
        self._file.flush()

    def on_train_end(self, logs: Logs | None = None) -> None:
        self._file.close()


class LambdaCallback(Callback):
    """A callback from plain functions, e.g. ``LambdaCallback(on_epoch_end=f)``."""

    def __init__(self, **hooks: Callable[..., Any]) -> None:
        super().__init__()
        allowed = {n for n in dir(Callback) if n.startswith("on_")}
        for name, fn in hooks.items():
            if name not in allowed:
                raise InvalidParameterError(
                    f"unknown hook {name!r}; expected one of {', '.join(sorted(allowed))}"
                )
            setattr(self, name, fn)


def __getattr__(name: str) -> Any:
    # the checkpoint callbacks bring the file format (hashlib, json, tempfile): loaded
    # on first use, so `import gpunet` stays light
    if name in ("BackupAndRestore", "ModelCheckpoint"):
        from gpunet import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module 'gpunet.callbacks' has no attribute {name!r}")


from gpunet.tensorboard import TensorBoard as TensorBoard  # noqa: E402  (it subclasses Callback)
