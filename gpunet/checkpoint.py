"""``ModelCheckpoint`` and ``BackupAndRestore``: callbacks that write safe,
atomic ``.gpunet`` files while ``fit`` runs (Keras names and arguments).

``BackupAndRestore`` stores everything a CPU run needs to continue bit for bit:
weights, optimizer slots and step count, the learning rate, the seeded random
streams and the next epoch. A run killed after epoch ``k`` and started again
with the same callback ends with exactly the weights, optimizer state and
random state of a run that was never interrupted.

Only the chief process (``model.strategy.is_chief``) writes; every process
restores.

Example:
    >>> import tempfile, numpy as np, gpunet as gn
    >>> model = gn.Sequential([gn.layers.Dense(1, input_shape=(2,))])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> backup = gn.callbacks.BackupAndRestore(tempfile.mkdtemp())
    >>> h = model.fit(np.ones((4, 2)), np.ones(4), epochs=2, verbose=0, callbacks=[backup])
    >>> len(h.history["loss"])
    2
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from gpunet import random as grandom
from gpunet.callbacks import Callback, _mode
from gpunet.errors import InvalidParameterError, ModelFileError
from gpunet.saving import _model
from gpunet.saving import _tensors as T


def _check_freq(save_freq: Any) -> Any:
    if save_freq == "epoch":
        return save_freq
    if isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1:
        raise InvalidParameterError(f"save_freq must be 'epoch' or an int >= 1, got {save_freq!r}")
    return save_freq


def _is_chief(model: Any) -> bool:
    return bool(getattr(getattr(model, "strategy", None), "is_chief", True))


class ModelCheckpoint(Callback):
    """Save the model (or its weights) during training.

    Args:
        filepath: Where to save; may hold ``{epoch}`` (1-based), ``{batch}`` and
            any log key, e.g. ``"ckpt-{epoch:02d}-{val_loss:.2f}.gpunet"``.
        monitor: Log key compared when ``save_best_only``.
        verbose: 1 prints a line per save.
        save_best_only: Save only when ``monitor`` improves on the best so far.
        save_weights_only: ``model.save_weights`` instead of ``model.save`` (needed
            for subclassed models).
        mode: ``"auto"``, ``"min"`` or ``"max"``: what "improves" means.
        save_freq: ``"epoch"``, or an int: save every that many batches.
        initial_value_threshold: A starting "best" value that must be beaten.
    """

    def __init__(self, filepath: Any, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False,
                 mode: str = "auto", save_freq: Any = "epoch",
                 initial_value_threshold: float | None = None) -> None:  # fmt: skip
        super().__init__()
        self.filepath = os.fspath(filepath)
        self.monitor, self.verbose = monitor, verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.better = _mode(mode, monitor)
        self.save_freq = _check_freq(save_freq)
        self.best = initial_value_threshold
        self._epoch = 0
        self._batches = 0

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        # checked now, not at the first save after an epoch of training
        reason = None if self.save_weights_only else _model.unsavable(self.model)
        if reason is not None:
            raise InvalidParameterError(
                f"ModelCheckpoint cannot save model {self.model.name!r} with model.save: "
                f"{reason}. Pass save_weights_only=True to ModelCheckpoint to checkpoint "
                "the weights (model.load_weights reads them back)"
            )

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        if self.save_freq == "epoch":
            return
        self._batches += 1
        if self._batches % self.save_freq == 0:
            self._save(self._epoch, batch, logs)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        if self.save_freq == "epoch":
            self._save(epoch, None, logs)

    def _path(self, epoch: int, batch: int | None, logs: Mapping[str, float]) -> str:
        fields: dict[str, Any] = {**logs, "epoch": epoch + 1}
        if batch is not None:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(**fields)
        except (KeyError, IndexError, ValueError) as exc:
            raise InvalidParameterError(
                f"cannot format the checkpoint path {self.filepath!r}: {exc!r} "
                f"(available keys: {', '.join(sorted(fields))})"
            ) from None

    def _save(self, epoch: int, batch: int | None, logs: Mapping[str, float] | None) -> None:
        logs = dict(logs or {})
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                warnings.warn(
                    f"ModelCheckpoint: {self.monitor!r} is not in the logs "
                    f"({', '.join(sorted(logs))}); nothing saved",
                    stacklevel=2,
                )
                return
            if self.best is not None and not self.better(current, self.best):
                if self.verbose:
                    print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved to {current:.5f}")
            self.best = current
        if not _is_chief(self.model):
            return
        path = self._path(epoch, batch, logs)
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved {path}")


def save_backup(model: Any, path: Any, epoch: int, rng: dict[str, Any] | None = None) -> None:
    """Write weights, optimizer state, the random streams and the next ``epoch``."""
    opt = model.optimizer
    tensors = {k: p.numpy() for k, p in T.named_weights(model).items()}
    tensors.update(T.optimizer_arrays(opt))
    scaled = _model.loss_scale_doc(opt)  # a LossScaleOptimizer: its inner one's rate
    lr = getattr(getattr(opt, "inner_optimizer", opt), "_lr", None)
    doc = _model.document(
        "backup",
        optimizer={"iterations": int(getattr(opt, "iterations", 0)),
                   "learning_rate": lr if isinstance(lr, float) else None,
                   **({"loss_scale": scaled} if scaled else {})},
        rng=rng if rng is not None else grandom.get_state(),
        training={"epoch": int(epoch)},
    )  # fmt: skip
    _model.write(path, doc, tensors)


def load_backup(model: Any, path: Any) -> int:
    """Restore a backup into ``model`` (all or nothing); returns the next epoch."""
    doc, tensors, where = _model.read(path, ("backup",))
    opt = model.optimizer
    with T.in_file(where):
        weights, slots = T.split(tensors)
        params = T.named_weights(model)
        T.check(weights, T.expected_of(params), allow_nonfinite=False)
        T.check(slots, T.optimizer_expected(opt), allow_nonfinite=False)
        _check_rng(doc["rng"])
        T.assign(params, weights)
        T.assign_optimizer(opt, slots)
        if opt is not None:
            opt.iterations = doc["optimizer"]["iterations"]
            lr = doc["optimizer"]["learning_rate"]
            if lr is not None and isinstance(getattr(opt, "_lr", None), float):
                opt.learning_rate = lr
            scaled = doc["optimizer"].get("loss_scale")
            if scaled is not None and hasattr(opt, "set_scale_state"):
                if lr is not None and isinstance(opt.inner_optimizer._lr, float):
                    opt.inner_optimizer.learning_rate = lr
                opt.set_scale_state(scaled["scale"], scaled["step_counter"])
        grandom.set_state(doc["rng"])
    return int(doc["training"]["epoch"])


def _check_rng(state: dict[str, Any]) -> None:
    for name, value in state.items():
        try:
            np.random.PCG64().state = value
        except (TypeError, ValueError, KeyError) as exc:
            raise ModelFileError(f"invalid random state for stream {name!r}: {exc}") from None


class BackupAndRestore(Callback):
    """Back up the training state so an interrupted ``fit`` can go on.

    Args:
        backup_dir: A folder for this run's backups (``latest.gpunet``, and
            ``previous.gpunet`` with ``double_checkpoint``).
        save_freq: ``"epoch"``: back up after every epoch; the resumed run is
            bit-identical on the CPU. An int: back up every that many batches too;
            a resumed run then repeats the interrupted epoch from its start with
            the backed-up weights (as Keras does), so it is not bit-identical.
        delete_checkpoint: Remove the backups when ``fit`` finishes.
        double_checkpoint: Keep the previous backup too; if the latest cannot be
            read (damaged or missing), training resumes from the previous one.

    The state of other callbacks (``EarlyStopping``'s patience count, ``History``
    of the epochs before the crash) is not part of a backup, as in Keras; the fit
    arguments must be the same when it is run again.
    """

    def __init__(self, backup_dir: Any, save_freq: Any = "epoch", delete_checkpoint: bool = True,
                 double_checkpoint: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = _check_freq(save_freq)
        self.delete_checkpoint, self.double_checkpoint = delete_checkpoint, double_checkpoint
        self.latest = os.path.join(self.backup_dir, "latest.gpunet")
        self.previous = os.path.join(self.backup_dir, "previous.gpunet")
        self._epoch, self._batches = 0, 0
        self._epoch_rng: dict[str, Any] | None = None

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        candidates = [self.latest] + ([self.previous] if self.double_checkpoint else [])
        for path in candidates:
            if not os.path.exists(path):
                continue
            try:
                self.model._resume_epoch = load_backup(self.model, path)
                return
            except ModelFileError as exc:
                if path == candidates[-1]:
                    raise
                warnings.warn(f"{exc}; resuming from the previous backup", stacklevel=2)

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._epoch = epoch
        if self.save_freq != "epoch":
            self._epoch_rng = grandom.get_state()

    def on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        if self.save_freq != "epoch":
            self._batches += 1
            if self._batches % self.save_freq == 0:
                self._backup(self._epoch, self._epoch_rng)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._backup(epoch + 1, None)

    def _backup(self, next_epoch: int, rng: dict[str, Any] | None) -> None:
        if not _is_chief(self.model):
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint and os.path.exists(self.latest):
            os.replace(self.latest, self.previous)
        save_backup(self.model, self.latest, next_epoch, rng)

    def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
        if self.delete_checkpoint and _is_chief(self.model):
            for path in (self.latest, self.previous):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
