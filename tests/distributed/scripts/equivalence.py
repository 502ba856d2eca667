"""Train the same small network data-parallel (under mpiexec) or in one process
(``--single``) and save the weights after every step, for the equivalence tests.

Runs four trainings in one launch (MPI start-up dominates on a small machine):
``fit`` and a hand-written loop, each in float64 and float32.

Usage: mpiexec -n N python equivalence.py OUT_DIR [--device cuda] [--gpu-reduce nccl|mpi|host]
       python equivalence.py OUT_DIR --single
"""

from __future__ import annotations

import sys

import numpy as np

import gpunet as gn
from gpunet import nn, optim

N_ROWS, BATCH, EPOCHS = 203, 64, 3  # 4 batches an epoch; the last (11 rows) splits unevenly


def data(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    X = rng.standard_normal((N_ROWS, 6)).astype(dtype)
    y = (X[:, 0] + 0.5 * X[:, 1] ** 2 > 0.3).astype("int64") + (X[:, 2] > 1.0)
    return X, y


def network(dtype: str, device: str) -> gn.Sequential:
    return gn.Sequential([
        gn.layers.Dense(16, activation="tanh", input_shape=(6,), dtype=dtype,
                        kernel_regularizer=gn.regularizers.L2(1e-3)),
        gn.layers.Dense(3, dtype=dtype),
    ], device=device)  # fmt: skip


class Record(gn.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.steps: list[list[np.ndarray]] = []

    def on_train_batch_end(self, batch: int, logs: object = None) -> None:
        self.steps.append(self.model.get_weights())


def train_fit(dtype: str, strategy: object, rank: int, device: str) -> dict[str, np.ndarray]:
    # each rank seeds differently: MPIStrategy.setup must give all of them rank 0's
    # initial weights and shuffle stream (rank 0 matches the single process)
    gn.utils.set_random_seed(rank)
    model = network(dtype, device)
    model.compile(optimizer=gn.optimizers.Adam(learning_rate=0.01), metrics=["accuracy"],
                  loss=gn.losses.SparseCategoricalCrossentropy(from_logits=True),
                  strategy=strategy)  # fmt: skip
    X, y = data(dtype)
    rec = Record()
    hist = model.fit(X, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, callbacks=[rec],
                     validation_data=(X[:50], y[:50]))  # fmt: skip
    out = {f"step{s}_w{i}": w for s, ws in enumerate(rec.steps) for i, w in enumerate(ws)}
    for key, values in hist.history.items():
        out[f"history_{key}"] = np.array(values)
    out["predict"] = model.predict(X, batch_size=50)  # every row, on every rank
    out["evaluate"] = np.array(model.evaluate(X, y, batch_size=50, verbose=0))  # collective
    return out


def train_loop(dtype: str, rank: int, distributed: bool, device: str) -> dict[str, np.ndarray]:
    """PyTorch style: each rank takes its rows of each global batch; the optimizer
    averages the gradients (the shards are of equal size here)."""
    gn.utils.set_random_seed(rank)
    gn.config.set_floatx(dtype)
    net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    net.to(device)
    opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    if distributed:
        opt = gn.distributed.DistributedOptimizer(opt)
    loss_fn = nn.CrossEntropyLoss()
    X, y = data(dtype)
    X, y = X[:192], y[:192]  # 3 global batches of 64: 32 or 16 rows a rank
    steps = []
    for start in range(0, len(X), BATCH):
        xb, yb = X[start : start + BATCH], y[start : start + BATCH]
        if distributed:
            xb, yb = gn.distributed.shard(xb, yb)
        loss = loss_fn(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps.append(net.get_weights())
    return {f"step{s}_w{i}": w for s, ws in enumerate(steps) for i, w in enumerate(ws)}


def option(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def main() -> None:
    out_dir, single = sys.argv[1], "--single" in sys.argv
    strategy = None
    if not single:
        strategy = gn.distributed.MPIStrategy(timeout=60, gpu_reduce=option("--gpu-reduce", "nccl"))
    rank = 0 if strategy is None else strategy.rank
    device = option("--device", "cpu")
    if device == "cuda" and strategy is not None:
        device = strategy.device  # the GPU of this rank's local rank
    results: dict[str, np.ndarray] = {}
    for dtype in ("float64", "float32"):
        for key, v in train_fit(dtype, strategy, rank, device).items():
            results[f"fit_{dtype}_{key}"] = v
        for key, v in train_loop(dtype, rank, strategy is not None, device).items():
            results[f"loop_{dtype}_{key}"] = v
    np.savez(f"{out_dir}/rank{rank}.npz", **results)


if __name__ == "__main__":
    main()
