"""Max-pooling forward + backward at the LeNet step's two pools, gpunet against
``torch.nn.functional.max_pool2d`` on ``channels_last`` tensors.

    python bench/pool_micro.py                 # interleaved rounds, each impl in its own process
    python bench/pool_micro.py --threads 1 --rounds 7

Pools (batch 128, float32, 2x2 stride 2, "valid"): (26, 26, 32) -> (13, 13, 32) and
(11, 11, 64) -> (5, 5, 64) (the odd row and column cropped). One sample = both pools'
forward and backward, median of ``--reps`` calls, per round; rounds alternate the
implementations, so the ratio is from one run. Implementations:

* ``gpunet``: ``NumpyOps`` (the host kernels where built, else NumPy);
* ``numpy``: ``NumpyOps`` with the host kernels switched off (the NumPy reference code);
* ``torch``: ``F.max_pool2d`` forward + ``autograd.grad`` on NCHW-shaped tensors in
  ``channels_last`` memory format.
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

SHAPES = [(128, 26, 26, 32), (128, 11, 11, 64)]


def _gpunet(host: bool) -> Any:
    import numpy as np

    from gpunet.backend.numpy_ops import NumpyOps

    ops = NumpyOps()
    if not host:
        ops.host = None
    rng = np.random.default_rng(0)
    Xs = [rng.standard_normal(s).astype("float32") for s in SHAPES]
    dYs = [rng.standard_normal((B, H // 2, W // 2, C)).astype("float32") for B, H, W, C in SHAPES]

    def step() -> None:
        for X, dY in zip(Xs, dYs, strict=True):
            _, saved = ops.max_pool2d(X, pool=(2, 2), strides=(2, 2), padding="valid")
            ops.backprop_max_pool2d(dY, saved)

    return step


def _torch() -> Any:
    import torch

    F = torch.nn.functional
    g = torch.Generator().manual_seed(0)
    Xs, dYs = [], []
    for B, H, W, C in SHAPES:
        X = torch.randn(B, C, H, W, generator=g).to(memory_format=torch.channels_last)
        Xs.append(X.requires_grad_())
        dY = torch.randn(B, C, H // 2, W // 2, generator=g)
        dYs.append(dY.to(memory_format=torch.channels_last))

    def step() -> None:
        for X, dY in zip(Xs, dYs, strict=True):
            Y = F.max_pool2d(X, 2)
            torch.autograd.grad(Y, X, dY)

    return step


def worker(impl: str, threads: int, reps: int) -> None:
    if impl == "torch":
        import torch

        torch.set_num_threads(threads)
        step = _torch()
    else:
        from gpunet.backend import _host

        _host.set_num_threads(threads)
        step = _gpunet(impl == "gpunet")
    for _ in range(3):
        step()
    for line in sys.stdin:  # one request per round: time `reps` calls, answer the median
        times = []
        for _ in range(int(line)):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        print(json.dumps(1e3 * statistics.median(times)), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--impls", default="gpunet,numpy,torch")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        return worker(a.worker, a.threads, a.reps)
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "OPENBLAS_NUM_THREADS": "1"}
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
    samples: dict[str, list[float]] = {k: [] for k in procs}
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
    med = {k: statistics.median(v) for k, v in samples.items()}
    base = med.get("torch")
    print(f"max pool fwd+bwd, LeNet's two pools, batch 128 float32, {a.threads} thread(s), "
          f"median of {a.rounds} interleaved rounds x {a.reps} calls")  # fmt: skip
    for k, v in med.items():
        ratio = f"  {v / base:.2f}x torch" if base else ""
        print(f"  {k:8s} {v:8.3f} ms{ratio}")


if __name__ == "__main__":
    main()
