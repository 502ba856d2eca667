"""Test scores on scikit-learn's bundled datasets, gpunet against scikit-learn.

Same hyperparameters and seed for both (the tutorial's ``(100, 50)`` relu network,
``max_iter=500``, ``random_state=42``, standardised inputs); gpunet must score at
least scikit-learn's score minus 0.01, in float64 (the default for float64 data), in
float32, and with L-BFGS. Regression targets are standardised and use early stopping:
without it both libraries overfit diabetes to a negative R^2.
"""

from __future__ import annotations

import functools
import warnings

import pytest

pytest.importorskip("sklearn")

from sklearn import datasets
from sklearn import neural_network as sk
from sklearn.compose import TransformedTargetRegressor
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from gpunet import sklearn as gn

DATASETS = {
    "digits": (datasets.load_digits, "classifier"),
    "breast_cancer": (datasets.load_breast_cancer, "classifier"),
    "wine": (datasets.load_wine, "classifier"),
    "iris": (datasets.load_iris, "classifier"),
    "diabetes": (datasets.load_diabetes, "regressor"),
    "synthetic_regression": (
        functools.partial(datasets.make_regression, n_samples=1000, n_features=20,
                          n_informative=10, noise=10.0, random_state=0),
        "regressor",
    ),
}  # fmt: skip
VARIANTS = {"float64": {}, "float32": {"dtype": "float32"}, "lbfgs": {"solver": "lbfgs"}}
PARAMS = {"hidden_layer_sizes": (100, 50), "max_iter": 500, "random_state": 42}


def score_of(library, name: str, **extra) -> float:
    load, kind = DATASETS[name]
    X, y = load(return_X_y=True) if not isinstance(load, functools.partial) else load()
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    if kind == "classifier":
        est = library.MLPClassifier(**PARAMS, **extra)
    else:
        reg = library.MLPRegressor(**PARAMS, early_stopping=True, **extra)
        est = TransformedTargetRegressor(reg, transformer=StandardScaler())
    pipe = make_pipeline(StandardScaler(), est)
    # one BLAS thread: small matrices gain nothing from more, and shared CI cores make
    # spinning thread pools crawl (the host kernels' own pool runs these small layers
    # on the calling thread)
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # both libraries warn alike when max_iter is hit
        pipe.fit(X_train, y_train)
    return float(pipe.score(X_test, y_test))


@functools.cache
def reference_score(name: str, solver: str) -> float:
    return score_of(sk, name, solver=solver)


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("name", list(DATASETS))
def test_scores_at_least_scikit_learns(name, variant):
    extra = VARIANTS[variant]
    ref = reference_score(name, extra.get("solver", "adam"))
    got = score_of(gn, name, **extra)
    print(f"{name} {variant}: scikit-learn {ref:.4f}, gpunet {got:.4f}")
    assert got >= ref - 0.01
    if variant == "float64" and extra.get("solver") is None:
        assert got == pytest.approx(ref, abs=1e-9)  # the same run, step by step
