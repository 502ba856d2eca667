"""Forecast the yearly sunspot number one year ahead with a GRU, and compare it on a
held-out tail with the two baselines every forecast should beat: the seasonal-naive
forecast (the value one solar cycle, 11 years, earlier) and the naive one (last
year's value).

    python examples/forecast_sunspots.py                 # 120 epochs, ~1 min on 2 cores
    python examples/forecast_sunspots.py --cell lstm

The series ships with statsmodels (pip install statsmodels); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _series

import gpunet as gn

CYCLE = 11  # years: the seasonal-naive forecast repeats the value one cycle back


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--epochs", type=int, default=120)
    p.add_argument("--lag", type=int, default=24, help="years of history per forecast")
    p.add_argument("--test-years", type=int, default=40)
    p.add_argument("--cell", choices=("gru", "lstm"), default="gru")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    gn.utils.set_random_seed(a.seed)
    years, spots = _series.sunspots()
    series = np.sqrt(spots)  # the usual variance-stabilising transform of counts
    split = len(series) - a.test_years
    mu, sd = series[:split].mean(), series[:split].std()
    z = ((series - mu) / sd).astype(np.float32)
    X, y = _series.windows(z, a.lag)  # X[i] = z[i : i + lag], y[i] = z[i + lag]
    target_index = np.arange(a.lag, len(z))
    train = target_index < split

    Cell = gn.layers.GRU if a.cell == "gru" else gn.layers.LSTM
    model = gn.Sequential([gn.Input((a.lag, 1)), Cell(32), gn.layers.Dense(1)])
    model.compile(optimizer=gn.optimizers.Adam(3e-3), loss="mse")
    model.fit(X[train], y[train], epochs=a.epochs, batch_size=32, verbose=0)

    def to_spots(v: np.ndarray) -> np.ndarray:  # back to sunspot numbers
        return np.maximum(v * sd + mu, 0.0) ** 2

    t = target_index[~train]
    truth = spots[t]
    scores = {
        a.cell: float(np.abs(to_spots(model.predict(X[~train], verbose=0)[:, 0]) - truth).mean()),
        "seasonal naive": float(np.abs(spots[t - CYCLE] - truth).mean()),
        "naive": float(np.abs(spots[t - 1] - truth).mean()),
    }
    print(f"one-year-ahead mean absolute error, years {years[t[0]]}-{years[t[-1]]}:")
    for name, mae in scores.items():
        print(f"  {name:>15}: {mae:6.2f}")
    return scores


if __name__ == "__main__":
    main()
