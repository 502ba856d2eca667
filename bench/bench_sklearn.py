"""gpunet.sklearn against scikit-learn: fit time per epoch, side by side.

    python bench/bench_sklearn.py                  # markdown table, rounds interleaved
    python bench/bench_sklearn.py --threads 1 --rounds 5
    pytest bench/bench_sklearn.py                  # pytest-benchmark rows (digits)
    pytest bench/bench_sklearn.py -m slow          # also the 50,000 x 784 set

Workloads: digits (1,797 x 64, 10 classes) and a synthetic 50,000 x 784 set with 10
classes, both standardised; the tutorial's network ``(100, 50)``, relu, Adam, batch
``"auto"`` (200), the same ``random_state``. One timed fit runs ``epochs`` epochs
(``tol=0`` and ``n_iter_no_change=inf`` so none stops early); the figures are wall and
CPU seconds per epoch, input checks and the move to the device included. The script interleaves the
implementations round by round and reports medians, so load on a shared machine hits
every row alike; ratios are scikit-learn's time over gpunet's. Timings are reported,
never asserted.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORKLOADS = {"digits": 20, "synthetic_50k": 5}  # name -> epochs per timed fit
PARAMS = {"hidden_layer_sizes": (100, 50), "random_state": 0, "tol": 0.0,
          "n_iter_no_change": np.inf}  # fmt: skip
# row -> (library, X dtype, extra estimator parameters)
IMPLS: dict[str, tuple[str, Any, dict[str, Any]]] = {
    "sklearn float64": ("sklearn", np.float64, {}),
    "gpunet float64 (default)": ("gpunet", np.float64, {}),
    "gpunet float32 (dtype='float32')": ("gpunet", np.float64, {"dtype": "float32"}),
    "sklearn float32 (float32 X)": ("sklearn", np.float32, {}),
    "gpunet cuda float32": ("gpunet", np.float64, {"dtype": "float32", "device": "cuda"}),
}


@functools.cache
def data(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
    else:  # labels from a random linear teacher, so the task is learnable
        rng = np.random.default_rng(0)
        X = rng.standard_normal((50_000, 784))
        y = np.argmax(X @ rng.standard_normal((784, 10)), axis=1)
    X = (X - X.mean(0)) / np.maximum(X.std(0), 1e-12)
    return X, y


def make(impl: str, workload: str) -> Any:
    """A zero-argument function that fits once and returns wall and CPU seconds per
    epoch (None: the row cannot run here)."""
    lib, x_dtype, extra = IMPLS[impl]
    if extra.get("device") == "cuda":
        from gpunet.backend import _compat

        if _compat.gpu_count()[0] == 0:
            return None
    if lib == "sklearn":
        from sklearn.neural_network import MLPClassifier
    else:
        from gpunet.sklearn import MLPClassifier
    X, y = data(workload)
    X = X.astype(x_dtype)
    epochs = WORKLOADS[workload]

    def fit() -> tuple[float, float]:
        clf = MLPClassifier(**PARAMS, max_iter=epochs, **extra)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "maximum iterations reached", by design
            wall, cpu = time.perf_counter(), time.process_time()
            clf.fit(X, y)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return wall / clf.n_iter_, cpu / clf.n_iter_

    return fit


CASES = [
    pytest.param(w, i, id=f"{w}-{i}", marks=[pytest.mark.slow] if w != "digits" else [])
    for w in WORKLOADS
    for i in IMPLS
]


@pytest.mark.parametrize(("workload", "impl"), CASES)
def test_fit_epoch(benchmark: Any, workload: str, impl: str) -> None:
    fit = make(impl, workload)
    if fit is None:
        pytest.skip(f"{impl}: no CUDA GPU here")
    fit()  # warm-up: imports, first-call costs
    benchmark.group = f"fit, seconds per epoch: {workload}"
    benchmark.extra_info["epochs_per_round"] = WORKLOADS[workload]
    benchmark.pedantic(lambda: fit()[0], rounds=3, iterations=1)


def table(workloads: list[str], rounds: int) -> str:
    """Markdown: median wall and CPU seconds per epoch of each row, rounds interleaved.

    With one thread, CPU time is what a row costs whatever else the machine runs;
    wall time is what a user waits (and the only measure of the GPU rows).
    """
    lines = [
        "| workload | implementation | wall s/epoch | CPU s/epoch | sklearn float64 / this"
        " (wall, CPU) |",
        "|---|---|---:|---:|---:|",
    ]
    for w in workloads:
        fits = {i: f for i in IMPLS if (f := make(i, w)) is not None}
        for f in fits.values():
            f()  # warm-up
        times: dict[str, list[tuple[float, float]]] = {i: [] for i in fits}
        for _ in range(rounds):
            for i, f in fits.items():
                times[i].append(f())
        med = {i: [statistics.median(c) for c in zip(*t, strict=True)] for i, t in times.items()}
        base = med["sklearn float64"]
        for i, (wall, cpu) in med.items():
            ratio = f"{base[0] / wall:.2f}x, {base[1] / cpu:.2f}x"
            lines.append(f"| {w} | {i} | {wall:.4f} | {cpu:.4f} | {ratio} |")
        a, b = med["sklearn float32 (float32 X)"], med["gpunet float32 (dtype='float32')"]
        lines.append(
            f"| {w} | same precision: sklearn float32 / gpunet float32 | | | "
            f"{a[0] / b[0]:.2f}x, {a[1] / b[1]:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="BLAS and host-kernel threads")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workloads", nargs="*", default=list(WORKLOADS))
    args = ap.parse_args()
    import _machine
    from threadpoolctl import threadpool_info, threadpool_limits

    from gpunet.backend import _host

    kernels = _host.load()
    if kernels is not None and args.threads:  # a pool of its own: threadpoolctl's limit
        kernels.set_threads(args.threads)  # does not reach it
    with threadpool_limits(limits=args.threads):  # BLAS (and any OpenMP runtime)
        pools = [(d["internal_api"], d["num_threads"]) for d in threadpool_info()]
        pools.append(("gpunet host kernels", kernels.threads if kernels else 0))
        print(f"CPU: {_machine._lscpu().get('Model name', '?')}; thread pools: {pools}")
        import sklearn

        print(f"numpy {np.__version__}, scikit-learn {sklearn.__version__}\n")
        print(table(args.workloads, args.rounds))


if __name__ == "__main__":
    main()
