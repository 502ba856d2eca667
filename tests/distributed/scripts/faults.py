"""Fault scenarios for the distributed tests: every one must end every rank.

Usage: mpiexec -n N python faults.py MODE OUT_DIR

MODE:
  mismatch-shape  rank 1 builds Dense(5) where the others build Dense(4)
  mismatch-dtype  rank 1 trains in float64, the others in float32
  raise           rank 0 raises ValueError in the 3rd step
  kill            rank 1 SIGKILLs itself in epoch 3 (after 2 epochs were backed up)
  hang            rank 1 stops answering in the 3rd step (the watchdog must fire)
  train           train 4 epochs with backups in OUT_DIR (resumes from them if present)
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

import gpunet as gn

EPOCHS, BATCH = 4, 16


class Fault(gn.callbacks.Callback):
    def __init__(self, mode: str, strategy: gn.distributed.MPIStrategy) -> None:
        super().__init__()
        self.mode, self.strategy, self.rank = mode, strategy, strategy.rank
        self.step = self.epoch = 0

    def on_train_begin(self, logs: object = None) -> None:
        # a short watchdog once every rank is up: start-up on a loaded machine is slow
        if "FAULT_TIMEOUT" in os.environ:
            self.strategy.timeout = float(os.environ["FAULT_TIMEOUT"])

    def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
        self.epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: object = None) -> None:
        self.step += 1
        if self.mode == "raise" and self.rank == 0 and self.step == 3:
            raise ValueError("injected failure on rank 0 at step 3")
        if self.mode == "hang" and self.rank == 1 and self.step == 3:
            time.sleep(3600)
        if self.mode == "kill" and self.rank == 1 and self.epoch == 2 and batch == 1:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    mode, out_dir = sys.argv[1], sys.argv[2]
    strategy = gn.distributed.MPIStrategy(timeout=60)
    rank = strategy.rank
    dtype = "float64" if mode == "mismatch-dtype" and rank == 1 else "float32"
    units = 5 if mode == "mismatch-shape" and rank == 1 else 4
    gn.utils.set_random_seed(0)
    model = gn.Sequential([gn.layers.Dense(units, activation="relu", input_shape=(3,), dtype=dtype),
                           gn.layers.Dense(1, dtype=dtype)])  # fmt: skip
    model.compile(optimizer="adam", loss="mse", strategy=strategy)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((100, 3))
    y = X @ np.array([1.0, -2.0, 0.5])
    callbacks = [Fault(mode, strategy)]
    if mode in ("kill", "train"):
        callbacks.append(gn.callbacks.BackupAndRestore(out_dir, delete_checkpoint=False))
    try:
        hist = model.fit(X, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, callbacks=callbacks)
    except gn.errors.DistributedError as exc:
        if not mode.startswith("mismatch"):
            raise
        print(f"rank {rank}: DistributedError: {exc}", flush=True)
        sys.exit(3)
    weights = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    np.savez(os.path.join(out_dir, f"weights{rank}.npz"), epochs=np.array(hist.epoch), **weights)
    print(f"rank {rank}: done", flush=True)


if __name__ == "__main__":
    main()
