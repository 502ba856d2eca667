"""Fit gpunet's scikit-learn estimators with ``strategy=`` under mpiexec, or in one
process (``--single``), and save the fitted attributes, for the equivalence tests.

Runs every case of ``CASES`` in float64 and float32 in one launch (MPI start-up
dominates on a small machine). Each process seeds differently where the case's seed
allows it (a ``RandomState`` object, or NumPy's global stream): ``fit`` must give
every process rank 0's draws, so rank 0 matches the single process.

Usage: mpiexec -n N python estimators.py OUT_DIR [--device sim|cuda] [--gpu-reduce host]
                                           [--dtypes float32]
       python estimators.py OUT_DIR --single [--device sim] [--dtypes float32]
       mpiexec -n 2 python estimators.py OUT_DIR --mismatch rows|values|param
"""

from __future__ import annotations

import contextlib
import io
import sys
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

import gpunet as gn
from gpunet.sklearn import MLPClassifier, MLPRegressor

N_ROWS = 203  # batch 64: the last batch of 11 rows splits unevenly

# name -> (estimator, parameters, target kind, sample weights?, seed kind)
CASES = {
    "adam_clf": (MLPClassifier, {"solver": "adam", "batch_size": 64, "max_iter": 4,
                                 "alpha": 1e-3, "learning_rate_init": 0.01}, "multi", False, "int"),
    # batch 101: the last batch is one row, so rank 0 (and, on 4 ranks, 2 and 3)
    # trains on no row of it while it still adds the L2 term
    "sgd_clf": (MLPClassifier, {"solver": "sgd", "batch_size": 101, "max_iter": 5,
                                "learning_rate_init": 0.1}, "binary", True, "object"),
    "lbfgs_clf": (MLPClassifier, {"solver": "lbfgs", "max_iter": 5, "alpha": 1e-2},
                  "multi", False, "global"),
    "adam_reg": (MLPRegressor, {"solver": "adam", "batch_size": 64, "max_iter": 4,
                                "learning_rate_init": 0.01}, "real", True, "object"),
    "sgd_reg": (MLPRegressor, {"solver": "sgd", "batch_size": 64, "max_iter": 5, "alpha": 1e-2,
                               "learning_rate_init": 0.01, "learning_rate": "invscaling"},
                "real", False, "int"),
    "lbfgs_reg": (MLPRegressor, {"solver": "lbfgs", "max_iter": 5}, "real", True, "int"),
    # the validation split, its scores and the stopping decisions, on every process
    "adam_clf_early": (MLPClassifier, {"solver": "adam", "batch_size": 48, "max_iter": 6,
                                       "early_stopping": True, "validation_fraction": 0.2,
                                       "n_iter_no_change": 2, "learning_rate_init": 0.05},
                       "multi", False, "global"),
    "lbfgs_poisson": (MLPRegressor, {"solver": "lbfgs", "max_iter": 5, "loss": "poisson"},
                      "count", True, "object"),
}  # fmt: skip


def data(kind: str, dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    X = rng.standard_normal((N_ROWS, 6))
    score = X[:, 0] + 0.5 * X[:, 1] ** 2
    y: np.ndarray = {
        "multi": (score > 0.3).astype(int) + (X[:, 2] > 1.0),
        "binary": np.where(score > 0.3, "yes", "no"),
        "real": np.stack([score, np.sin(X[:, 3])], axis=1),
        "count": rng.poisson(np.exp(0.3 * X[:, 0])).astype(float),
    }[kind]
    w = rng.uniform(0.2, 3.0, N_ROWS)
    return X.astype(dtype), y, w


def seed(kind: str, rank: int) -> object:
    if kind == "int":
        return 0
    if kind == "object":
        return np.random.RandomState(rank)
    np.random.seed(rank)  # noqa: NPY002 - random_state=None draws from this global stream
    return None


def fit(name: str, dtype: str, strategy: object, rank: int, device: str) -> dict[str, np.ndarray]:
    Est, params, kind, weighted, seed_kind = CASES[name]
    X, y, w = data(kind, dtype)
    est = Est(hidden_layer_sizes=(9, 5), activation="tanh", device=device, verbose=True,
              random_state=seed(seed_kind, rank), strategy=strategy, **params)  # fmt: skip
    est = clone(est)  # clone keeps the strategy (the same object), as GridSearchCV needs
    assert est.strategy is strategy
    printed = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(printed):
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y, sample_weight=w if weighted else None)
    out = {f"coefs_{i}": W for i, W in enumerate(est.coefs_)}
    out.update({f"intercepts_{i}": b for i, b in enumerate(est.intercepts_)})
    out["loss_"] = np.array(est.loss_)
    out["n_iter_"] = np.array(est.n_iter_)
    if hasattr(est, "loss_curve_"):
        out["loss_curve_"] = np.array(est.loss_curve_)
    if getattr(est, "validation_scores_", None) is not None:
        out["validation_scores_"] = np.array(est.validation_scores_)
    pred = est.predict_proba(X) if hasattr(est, "predict_proba") else est.predict(X)
    out["predict"] = np.asarray(pred)
    out["printed_lines"] = np.array(len(printed.getvalue().splitlines()))
    return out


def mismatch(mode: str, strategy: gn.distributed.MPIStrategy) -> None:
    """Rank 1 fits other data or parameters: every rank must raise, none may hang."""
    X, y, _ = data("multi", "float64")
    alpha = 1e-4
    if strategy.rank == 1:
        if mode == "rows":
            X, y = X[:-1], y[:-1]
        elif mode == "values":
            X = X.copy()
            X[17, 3] += 1e-9
        else:
            alpha = 1e-3
    est = MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, alpha=alpha, random_state=0,
                        strategy=strategy)  # fmt: skip
    try:
        est.fit(X, y)
    except gn.distributed.DistributedError as exc:
        print(f"rank {strategy.rank}: DistributedError: {exc}", flush=True)
        sys.exit(3)


def option(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def main() -> None:
    out_dir, single = sys.argv[1], "--single" in sys.argv
    strategy = None
    if not single:
        strategy = gn.distributed.MPIStrategy(timeout=60, gpu_reduce=option("--gpu-reduce", "nccl"))
    if "--mismatch" in sys.argv:
        assert strategy is not None
        mismatch(option("--mismatch", "rows"), strategy)
        return
    rank = 0 if strategy is None else strategy.rank
    device = option("--device", "cpu")
    results: dict[str, np.ndarray] = {}
    for dtype in option("--dtypes", "float64,float32").split(","):
        for name in CASES:
            for key, v in fit(name, dtype, strategy, rank, device).items():
                results[f"{name}/{dtype}/{key}"] = v
    np.savez(f"{out_dir}/rank{rank}.npz", **results)


if __name__ == "__main__":
    main()
