"""LSTM/GRU training-step speed against PyTorch on the CPU, and the memory of
backprop through time (issue 15's Speed section).

    python bench/rnn_speed.py                    # 1 and 2 threads, 5 interleaved rounds
    python bench/rnn_speed.py --threads 1 --rounds 3

Workload: LSTM(input 32, hidden 128, length 50, batch 64), last state -> Dense 10,
softmax cross-entropy, Adam, float32; the same for GRU. Implementations: gpunet
(``Sequential.train_on_batch``, the graph-free step), torch ``nn.LSTM``/``nn.GRU``,
and a torch ``nn.LSTMCell`` Python loop. Each measurement is its own process (one
library's threads never meet another's); rounds interleave the implementations, and
the ratios come from medians within one run. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

T, B, F, H, C = 50, 64, 32, 128, 10
IMPLS = ("gpunet_lstm", "torch_lstm", "torch_lstmcell", "gpunet_gru", "torch_gru")
STEPS, WARMUP = 10, 5


def _gpunet(kind: str, threads: int):  # type: ignore[no-untyped-def]
    import gpunet as gn
    from gpunet.backend import _host

    _host.set_num_threads(threads)
    rec = (
        gn.layers.LSTM(H, input_shape=(T, F))
        if kind == "lstm"
        else gn.layers.GRU(H, input_shape=(T, F))
    )
    model = gn.Sequential([rec, gn.layers.Dense(C)])
    model.compile(optimizer="adam", loss=gn.losses.SparseCategoricalCrossentropy(from_logits=True))
    return lambda x, y: model.train_on_batch(x, y)


def _torch(kind: str, threads: int):  # type: ignore[no-untyped-def]
    import torch

    torch.set_num_threads(threads)
    fc = torch.nn.Linear(H, C)
    if kind == "lstmcell":
        cell = torch.nn.LSTMCell(F, H)

        def forward(x):  # type: ignore[no-untyped-def]
            h = c = torch.zeros(x.shape[0], H)
            for t in range(x.shape[1]):
                h, c = cell(x[:, t], (h, c))
            return fc(h)

        params = [*cell.parameters(), *fc.parameters()]
    else:
        rnn = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(F, H, batch_first=True)

        def forward(x):  # type: ignore[no-untyped-def]
            _, state = rnn(x)
            return fc((state[0] if kind == "lstm" else state)[-1])

        params = [*rnn.parameters(), *fc.parameters()]
    opt, loss = torch.optim.Adam(params), torch.nn.CrossEntropyLoss()

    def step(x, y):  # type: ignore[no-untyped-def]
        opt.zero_grad()
        loss(forward(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt.step()

    return step


def worker(impl: str, threads: int) -> float:
    """ms per training step (median of 3 blocks of STEPS steps)."""
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.standard_normal((4 * B, T, F), dtype=np.float32)
    y = rng.integers(0, C, 4 * B)
    lib, kind = impl.split("_")
    step = (_gpunet if lib == "gpunet" else _torch)(kind, threads)
    batches = [(X[i * B : (i + 1) * B], y[i * B : (i + 1) * B]) for i in range(4)]
    for i in range(WARMUP):
        step(*batches[i % 4])
    blocks = []
    for _ in range(3):
        t0 = time.perf_counter()
        for i in range(STEPS):
            step(*batches[i % 4])
        blocks.append((time.perf_counter() - t0) / STEPS * 1e3)
    return statistics.median(blocks)


def bptt_memory() -> tuple[float, float]:
    """(bytes kept from the LSTM forward for its backward, peak extra bytes of the
    backward), both over 7*T*B*H float32 (the histories the issue counts)."""
    import tracemalloc

    import numpy as np

    from gpunet.backend import get_ops
    from gpunet.layers import _recurrence

    rng = np.random.default_rng(0)
    ops, cell = get_ops("cpu"), _recurrence.Cell("lstm", H)
    X = rng.standard_normal((B, T, F), dtype=np.float32)
    W, U = (rng.standard_normal(s, dtype=np.float32) * 0.1 for s in ((F, 4 * H), (H, 4 * H)))
    b, dY = np.zeros(4 * H, np.float32), rng.standard_normal((B, H), dtype=np.float32)
    tracemalloc.start()
    _Y, _, back = _recurrence.run(ops, cell, X, W, U, b)
    kept = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    back(dY, [], True)
    peak = tracemalloc.get_traced_memory()[1] - kept
    tracemalloc.stop()
    unit = 7 * T * B * H * 4
    return kept / unit, peak / unit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--worker", nargs=2, metavar=("IMPL", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]))))
        return
    root = Path(__file__).resolve().parents[1]
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    results: dict[tuple[str, int], list[float]] = {}
    for n in args.threads:
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(n),
               "OPENBLAS_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n),
               "GPUNET_NUM_THREADS": str(n), "PYTHONPATH": str(root)}  # fmt: skip
        for _ in range(args.rounds):
            for impl in IMPLS:
                cmd = [sys.executable, __file__, "--worker", impl, str(n)]
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                results.setdefault((impl, n), []).append(json.loads(out.stdout.splitlines()[-1]))
    print(f"LSTM/GRU(in {F}, hidden {H}, T {T}, batch {B}) -> Dense {C}, Adam, float32; "
          f"median ms/step of {args.rounds} interleaved rounds, one process each")  # fmt: skip
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"  load average {load0:.1f} at the start, {load1:.1f} at the end, "
          f"on {os.cpu_count()} CPUs (a loaded machine: compare the ratios)")  # fmt: skip
    for n in args.threads:
        med = {i: statistics.median(results[(i, n)]) for i in IMPLS}
        print(f"  {n} thread(s): " + ", ".join(f"{i} {med[i]:.1f}" for i in IMPLS))
        print(f"    gpunet/torch LSTM {med['gpunet_lstm'] / med['torch_lstm']:.2f}x, "
              f"gpunet/LSTMCell loop {med['gpunet_lstm'] / med['torch_lstmcell']:.2f}x, "
              f"gpunet/torch GRU {med['gpunet_gru'] / med['torch_gru']:.2f}x")  # fmt: skip
    kept, peak = bptt_memory()
    print(f"  BPTT memory (LSTM): kept for backward {kept:.2f}x of 7*T*B*H floats, "
          f"backward's extra peak {peak:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
