"""One rank of the NCCL check of ``gpunet doctor --full`` (run under ``mpiexec``).

Usage: ``mpiexec -n 2 python -m gpunet.cli.gpu_check._nccl_rank nccl|host``. Each rank
sums ``arange(n) * (rank + 1)`` with the strategy's GPU reducer, then trains the
same data-parallel fit; rank 0 prints one JSON line: the largest error of the sum
and whether every rank ended with rank 0's weights.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main(reduce: str) -> int:
    import gpunet as gn
    from gpunet.distributed import MPIStrategy

    strategy = MPIStrategy(gpu_reduce=reduce, timeout=120)
    ops = gn.get_ops(strategy.device)
    n, size, rank = 4099, strategy.size, strategy.rank
    buf = ops.asarray(np.arange(n, dtype=np.float32) * (rank + 1))
    strategy.reducer(ops).allreduce(ops, buf, "the doctor's allreduce")
    want = np.arange(n, dtype=np.float64) * (size * (size + 1) // 2)
    error = float(np.max(np.abs(ops.to_numpy(buf).astype(np.float64) - want)))
    gn.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((512, 16)).astype("float32"), rng.integers(0, 3, 512)
    layers = [gn.layers.Dense(32, activation="relu", input_shape=(16,)),
              gn.layers.Dense(3, activation="softmax")]  # fmt: skip
    model = gn.Sequential(layers, device=strategy.device)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", strategy=strategy)
    model.fit(X, y, epochs=2, batch_size=64, verbose=0, shuffle=False)
    flat = np.concatenate([w.ravel() for w in model.get_weights()]).astype(np.float64)
    ref = np.asarray(strategy.comm.bcast_json(flat.tolist() if rank == 0 else None, "weights"))
    differ = strategy.allreduce([float(not np.array_equal(flat, ref))])[0]
    if rank == 0:
        print(
            json.dumps(
                {
                    "n": n,
                    "sum_error": error,
                    "weights_agree": bool(differ == 0),
                    "ranks": size,
                    "devices": f"{size} rank(s), rank 0 on {ops.device}",
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
