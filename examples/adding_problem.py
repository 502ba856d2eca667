"""The adding problem (Hochreiter & Schmidhuber, 1997): read a sequence of T random
values, two of them marked, and output the sum of the marked two. The answer depends
on steps up to T apart, which a SimpleRNN's vanishing gradient makes hard and an
LSTM's cell state makes easy. Guessing the mean scores a mean squared error of 0.167.

    python examples/adding_problem.py                  # T = 100, LSTM and SimpleRNN
    python examples/adding_problem.py --length 50 --epochs 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _series

import gpunet as gn

BASELINE = 1 / 6  # the variance of the sum of two uniform values: MSE of always saying 1.0


def train(cell: str, length: int, epochs: int, n: int, seed: int) -> float:
    """Validation mean squared error of ``cell`` ("lstm" or "simple_rnn") after training."""
    gn.utils.set_random_seed(seed)
    X, y = _series.adding_problem(n, length, seed=seed)
    Xv, yv = _series.adding_problem(n // 5, length, seed=seed + 1)
    Cell = gn.layers.LSTM if cell == "lstm" else gn.layers.SimpleRNN
    model = gn.Sequential([gn.Input((length, 2)), Cell(64), gn.layers.Dense(1)])
    model.compile(optimizer=gn.optimizers.Adam(2e-3, clipnorm=1.0), loss="mse")
    model.fit(X, y, epochs=epochs, batch_size=64, verbose=0)
    return float(model.evaluate(Xv, yv, verbose=0))


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--length", type=int, default=100)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    scores = {c: train(c, a.length, a.epochs, a.samples, a.seed) for c in ("lstm", "simple_rnn")}
    print(f"T = {a.length}, {a.epochs} epochs; validation MSE (guessing the mean: {BASELINE:.3f}):")
    for c, mse in scores.items():
        print(f"  {c:>10}: {mse:.4f}")
    return scores


if __name__ == "__main__":
    main()
