"""Real and synthetic sequences for the recurrent examples: the yearly sunspot numbers
that statsmodels ships (read from its CSV file, nothing downloaded) and the adding
problem of Hochreiter & Schmidhuber (1997)."""

from __future__ import annotations

import importlib.resources

import numpy as np


def sunspots() -> tuple[np.ndarray, np.ndarray]:
    """Years 1700-2008 and the yearly mean sunspot number (statsmodels' data set)."""
    try:
        path = importlib.resources.files("statsmodels.datasets") / "sunspots" / "sunspots.csv"
    except ModuleNotFoundError:
        raise SystemExit(
            "this example reads statsmodels' sunspot data: pip install statsmodels"
        ) from None
    data = np.loadtxt(str(path), delimiter=",", skiprows=1)
    return data[:, 0].astype(int), data[:, 1]


def windows(series: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(N, lag, 1)``: the ``lag`` values before each step, and targets ``(N, 1)``."""
    X = np.lib.stride_tricks.sliding_window_view(series[:-1], lag)
    return X[..., None].copy(), series[lag:, None].copy()


def adding_problem(n: int, length: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sequences ``(length, 2)``: a value in [0, 1) and a marker that is 1 at two
    steps (one in each half); the target is the sum of the two marked values. Guessing
    the mean (1.0) scores a mean squared error of 1/6, the baseline to beat.

    Example:
        >>> X, y = adding_problem(4, 10)
        >>> X.shape, y.shape, X[..., 1].sum(axis=1).tolist()
        ((4, 10, 2), (4, 1), [2.0, 2.0, 2.0, 2.0])
        >>> bool(np.allclose(y[:, 0], (X[..., 0] * X[..., 1]).sum(axis=1)))
        True
    """
    rng = np.random.default_rng(seed)
    X = np.zeros((n, length, 2), dtype=np.float32)
    X[..., 0] = rng.random((n, length))
    half = length // 2
    rows = np.arange(n)
    X[rows, rng.integers(0, half, n), 1] = 1.0
    X[rows, rng.integers(half, length, n), 1] = 1.0
    y = (X[..., 0] * X[..., 1]).sum(axis=1, keepdims=True)
    return X, y.astype(np.float32)
