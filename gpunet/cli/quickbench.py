"""``gpunet bench``: a quick CPU-versus-GPU timing of the benchmark workloads.

Each workload (``WORKLOADS``, the same definitions ``bench/`` uses) is trained
with ``model.fit`` on every device found, at several batch sizes. Devices are
interleaved repeat by repeat, so drift of a shared machine hits both, and the
table shows the median ms per step and which device wins. Needs neither PyTorch
nor scikit-learn: the comparison with those is ``python bench/run.py``.

Example:
    >>> from gpunet.cli.quickbench import WORKLOADS
    >>> WORKLOADS["A"].sizes, WORKLOADS["A"].batch
    ((784, 512, 512, 10), 256)
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Workload:
    """One benchmark MLP: layer widths, batch size, loss and the timing plan.

    ``steps`` minibatches make one timed block (an epoch over the bench data);
    ``warmup`` untimed steps precede each block; ``repeats`` blocks per run.
    """

    key: str
    name: str
    sizes: tuple[int, ...]
    batch: int
    loss: str  # "ce": softmax + sparse categorical CE; "bce": sigmoid + binary CE
    steps: int
    warmup: int
    repeats: int

    @property
    def n_params(self) -> int:
        return sum(i * o + o for i, o in zip(self.sizes, self.sizes[1:], strict=False))

    def gemm_flops(self, batch: int | None = None) -> float:
        """FLOPs of the GEMMs of one step: forward, dW for every layer, dX for all
        but the first (nothing needs the input's gradient)."""
        B = self.batch if batch is None else batch
        pairs = list(zip(self.sizes, self.sizes[1:], strict=False))
        per = [2.0 * B * i * o for i, o in pairs]
        return 2 * sum(per) + sum(per[1:])


# The workloads of issue #4; bench/ imports these so both always agree.
WORKLOADS = {
    "A": Workload("A", "mnist-mlp", (784, 512, 512, 10), 256, "ce", 50, 3, 9),
    "B": Workload("B", "small", (10, 64, 32, 1), 32, "bce", 1000, 30, 9),
    "C": Workload("C", "wide", (4096, 4096, 4096, 10), 1024, "ce", 2, 0, 5),
}
# batch sizes timed per workload, and samples per timed block (quick, full)
BATCHES = {
    "A": ((32, 256, 1024), (32, 256, 1024, 4096)),
    "B": ((32, 1024), (32, 256, 4096)),
    "C": ((), (256, 1024)),
}
SAMPLES = {"A": (4096, 16384), "B": (4096, 32768), "C": (0, 2048)}


def make_data(w: Workload, n: int, seed: int = 1234) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random float32 samples and labels (int classes, or 0/1 floats for bce)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, w.sizes[0]), dtype=np.float32)
    if w.loss == "bce":
        return X, rng.integers(0, 2, n).astype(np.float32)
    return X, rng.integers(0, w.sizes[-1], n)


def build_model(w: Workload, device: str = "cpu", seed: int = 0) -> Any:
    """The workload as a compiled ``gn.Sequential`` (ReLU hidden layers, Adam 1e-3)."""
    import gpunet as gn

    gn.utils.set_random_seed(seed)
    sizes = w.sizes
    layers: list[Any] = [gn.layers.Dense(sizes[1], activation="relu", input_shape=(sizes[0],))]
    layers += [gn.layers.Dense(n, activation="relu") for n in sizes[2:-1]]
    layers.append(gn.layers.Dense(sizes[-1], activation="softmax" if w.loss == "ce" else "sigmoid"))
    model = gn.Sequential(layers, device=device)
    loss = "sparse_categorical_crossentropy" if w.loss == "ce" else "binary_crossentropy"
    model.compile(optimizer=gn.optimizers.Adam(learning_rate=1e-3), loss=loss)
    return model


def fit_seconds(model: Any, X: Any, y: Any, batch: int, steps: int) -> float:
    """Wall time of ``steps`` training steps through the public ``fit`` (one epoch,
    no shuffling, so every implementation sees the same contiguous batches)."""
    n = steps * batch
    start = time.perf_counter()
    model.fit(X[:n], y[:n], batch_size=batch, epochs=1, shuffle=False, verbose=0)
    model.ops.synchronize()
    return time.perf_counter() - start


def measure(
    keys: Sequence[str],
    devices: Sequence[str],
    quick: bool = True,
    *,
    batch_sizes: Sequence[int] | None = None,
    samples: int | None = None,
    repeats: int | None = None,
) -> list[dict[str, Any]]:
    """One row per (workload, batch size): median ms per step on each device."""
    rows = []
    for key in keys:
        w = WORKLOADS[key]
        n_samples = samples or SAMPLES[key][0 if quick else 1]
        for batch in batch_sizes or BATCHES[key][0 if quick else 1]:
            steps = max(2, min(1000, n_samples // batch))
            row: dict[str, Any] = {"workload": key, "name": w.name, "batch": batch, "steps": steps}
            try:
                n_rep = repeats or (3 if quick else 5)
                row["ms_per_step"] = _time_devices(w, list(devices), batch, steps, n_rep)
            except Exception as exc:  # one broken workload must not hide the others
                row["error"] = f"{type(exc).__name__}: {exc}"
            else:
                ms = row["ms_per_step"]
                row["winner"] = min(ms, key=lambda d: ms[d])
            rows.append(row)
    return rows


def _time_devices(
    w: Workload, devices: list[str], batch: int, steps: int, repeats: int
) -> dict[str, float]:
    X, y = make_data(w, steps * batch)
    models = {d: build_model(w, d) for d in devices}
    for d in devices:  # warm-up: first-call costs (kernel compiles, buffers)
        fit_seconds(models[d], X, y, batch, min(steps, 2))
    times: dict[str, list[float]] = {d: [] for d in devices}
    for r in range(repeats):
        for d in devices[r % len(devices) :] + devices[: r % len(devices)]:
            gc.collect()
            time.sleep(0.05)  # let the BLAS worker threads go idle
            times[d].append(fit_seconds(models[d], X, y, batch, steps) / steps)
    return {d: 1e3 * statistics.median(t) for d, t in times.items()}


def format_table(rows: list[dict[str, Any]], devices: Sequence[str]) -> list[str]:
    head = "| workload | batch |" + "".join(f" {d} ms/step | {d} samples/s |" for d in devices)
    lines = [head + " faster |", "|---|---:|" + "---:|---:|" * len(devices) + "---|"]
    for row in rows:
        if "error" in row:
            lines.append(
                f"| {row['workload']} {row['name']} | {row['batch']} |"
                + " - | - |" * len(devices)
                + f" failed: {row['error'][:120]} |"
            )
            continue
        cells = ""
        for d in devices:
            ms = row["ms_per_step"][d]
            cells += f" {ms:.4g} | {row['batch'] * 1e3 / ms:,.0f} |"
        speedup = ""
        if len(devices) > 1:
            slow = max(row["ms_per_step"].values())
            speedup = f" ({slow / row['ms_per_step'][row['winner']]:.2f}x)"
        lines.append(
            f"| {row['workload']} {row['name']} | {row['batch']} |{cells} "
            f"{row['winner']}{speedup} |"
        )
    return lines


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """Per workload: which device wins at which batch sizes."""
    out = []
    for key in dict.fromkeys(r["workload"] for r in rows):
        mine = [r for r in rows if r["workload"] == key]
        by_dev: dict[str, list[int]] = {}
        for r in mine:
            if "error" in r:
                continue
            by_dev.setdefault(r["winner"], []).append(r["batch"])
        parts = [f"{d} wins at batch {', '.join(map(str, b))}" for d, b in by_dev.items()]
        out.append(f"{key}: {'; '.join(parts) or 'no timing (failed)'}")
    return out


def run(
    quick: bool = True,
    *,
    keys: Sequence[str] | None = None,
    batch_sizes: Sequence[int] | None = None,
    samples: int | None = None,
    repeats: int | None = None,
    print_fn: Callable[[str], Any] = print,
) -> int:
    """Time the workloads on the CPU and, when one is usable, the GPU; print a
    markdown table and which device wins at which batch size. Returns 0, or 1
    when a workload failed (its row says why)."""
    from gpunet.backend import _compat

    n_gpu, why = _compat.gpu_count()
    devices = ["cpu"] + (["cuda"] if n_gpu else [])
    keys = list(keys or (("A", "B") if quick else ("A", "B", "C")))
    print_fn(
        f"gpunet bench ({'quick' if quick else 'full'}): model.fit, float32, Adam; "
        f"median of interleaved repeats; numpy {np.__version__}"
    )
    if not n_gpu:
        print_fn(f"No GPU found: {why}. Timing the CPU only.")
    rows = measure(keys, devices, quick, batch_sizes=batch_sizes, samples=samples, repeats=repeats)
    print_fn("")
    for line in format_table(rows, devices):
        print_fn(line)
    print_fn("")
    for line in verdicts(rows):
        print_fn(line)
    if not n_gpu:
        print_fn("(CPU only: install CuPy on a machine with an NVIDIA GPU to compare.)")
    if "C" not in keys:
        print_fn("Workload C (4096-4096-4096-10) runs with --full; peers: python bench/run.py")
    return 1 if any("error" in r for r in rows) else 0
