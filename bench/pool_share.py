"""The LeNet training step (issue 14's model, batch 128, float32, Adam) and the share
of it spent in pooling, gpunet against PyTorch CPU with ``channels_last``.

    python bench/pool_share.py --threads 1 --rounds 5

Each implementation runs in its own process; rounds alternate between them, and the
ratio is from one run. gpunet's step is ``model.train_on_batch``; its pooling time
is the time inside the four pool ops (``max_pool2d`` and its backprop), measured by
wrapping them in the same process. ``--host 0`` runs gpunet with the host kernels
off (NumPy only) for the before/after figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

B = 128


def _gpunet(host: bool) -> tuple[Any, dict[str, float]]:
    import numpy as np

    import gpunet as gn

    L = gn.layers
    model = gn.Sequential(
        [
            L.Conv2D(32, 3, activation="relu", input_shape=(28, 28, 1)),
            L.MaxPooling2D(2),
            L.Conv2D(64, 3, activation="relu"),
            L.MaxPooling2D(2),
            L.Flatten(),
            L.Dense(128, activation="relu"),
            L.Dense(10),
        ]
    )
    model.compile(
        optimizer="adam",
        loss=gn.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    ops = model.ops
    if not host:
        ops.host = None
    spent = {"pool": 0.0}
    for name in ("max_pool2d", "backprop_max_pool2d"):
        fn = getattr(ops, name)

        def timed(*a: Any, _fn: Any = fn, **kw: Any) -> Any:
            t0 = time.perf_counter()
            out = _fn(*a, **kw)
            spent["pool"] += time.perf_counter() - t0
            return out

        setattr(ops, name, timed)
    rng = np.random.default_rng(0)
    X = rng.random((B, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, B)

    def step() -> None:
        model.train_on_batch(X, y)

    return step, spent


def _torch() -> tuple[Any, dict[str, float]]:
    import torch

    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10),
    ).to(memory_format=torch.channels_last)  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    X = torch.rand(B, 1, 28, 28).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (B,))
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad()
        loss_fn(model(X), y).backward()
        opt.step()

    return step, {}


def worker(impl: str, threads: int) -> None:
    if impl == "torch":
        import torch

        torch.set_num_threads(threads)
        step, spent = _torch()
    else:
        from gpunet.backend import _host

        _host.set_num_threads(threads)
        step, spent = _gpunet(impl == "gpunet")
    for _ in range(3):
        step()
    for line in sys.stdin:
        times, pools = [], []
        for _ in range(int(line)):
            spent["pool"] = 0.0
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
            pools.append(spent.get("pool", 0.0))
        print(json.dumps([1e3 * statistics.median(times), 1e3 * statistics.median(pools)]),
              flush=True)  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--impls", default="gpunet,numpy,torch")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        return worker(a.worker, a.threads)
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads),
           "OPENBLAS_NUM_THREADS": str(a.threads)}  # fmt: skip
    procs = {
        impl: subprocess.Popen(
            [sys.executable, __file__, "--worker", impl, "--threads", str(a.threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for impl in a.impls.split(",")
    }
    samples: dict[str, list[list[float]]] = {k: [] for k in procs}
    for _ in range(a.rounds):
        for impl, proc in procs.items():
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(f"{a.reps}\n")
            proc.stdin.flush()
            samples[impl].append(json.loads(proc.stdout.readline()))
    for proc in procs.values():
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()
    med = {k: [statistics.median(s[i] for s in v) for i in (0, 1)] for k, v in samples.items()}
    base = med.get("torch", [0.0])[0]
    print(f"LeNet step, batch {B} float32 Adam, {a.threads} thread(s), median of "
          f"{a.rounds} interleaved rounds x {a.reps} steps")  # fmt: skip
    for k, (step, pool) in med.items():
        ratio = f"  {step / base:.2f}x torch" if base else ""
        share = f"  pooling {pool:.2f} ms ({pool / step:.0%})" if k != "torch" else ""
        print(f"  {k:8s} {step:8.2f} ms{ratio}{share}")


if __name__ == "__main__":
    main()
