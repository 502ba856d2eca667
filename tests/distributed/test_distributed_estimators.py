"""The scikit-learn estimators' ``fit`` with ``strategy=``: data parallel = one process.

Every case of ``scripts/estimators.py`` (Adam, SGD and L-BFGS; classifier and
regressor; sample weights, an L2 penalty, uneven last batches and a last batch of
one row, early stopping, processes seeded differently) fits in one process and on 2
and 4 MPI ranks. Fitted weights and curves must match within 1e-12 (float64) and
1e-6 (float32) and every replica must be identical.

L-BFGS runs 5 iterations: its line search amplifies rounding (float32 reaches 1e-6
after about 10 iterations, float64 1e-12 after about 20), as it does for one process
whose BLAS blocks a product differently.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
from mpi_fixtures import reference_and_ranks

pytest.importorskip("sklearn")

from sklearn.base import clone

from gpunet.sklearn import MLPClassifier, MLPRegressor
from gpunet.sklearn._parallel import shards
from gpunet.strategy import LocalStrategy

TOL = {"float64": 1e-12, "float32": 1e-6}
RANKS = [2, pytest.param(4, marks=pytest.mark.slow)]
CASES = ["adam_clf", "sgd_clf", "lbfgs_clf", "adam_reg", "sgd_reg", "lbfgs_reg",
         "adam_clf_early", "lbfgs_poisson"]  # fmt: skip
FITTED = ("coefs_", "intercepts_", "loss_curve_", "validation_scores_", "loss_")


reference, ranks = reference_and_ranks("estimators.py", RANKS)


def _keys(run: dict, case: str, dtype: str, names: tuple[str, ...]) -> list[str]:
    prefix = f"{case}/{dtype}/"
    return [k for k in run if k.startswith(prefix) and k[len(prefix) :].startswith(names)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES)
def test_fitted_attributes_match_one_process(reference, ranks, case, dtype):
    n, runs = ranks
    keys = _keys(reference, case, dtype, FITTED)
    assert {k.split("/")[-1].rstrip("0123456789") for k in keys} >= {"coefs_", "intercepts_"}
    if not case.startswith("lbfgs"):
        assert f"{case}/{dtype}/loss_curve_" in keys
    worst = 0.0
    for k in keys:
        assert runs[0][k].shape == reference[k].shape, k
        worst = max(worst, float(np.max(np.abs(runs[0][k] - reference[k]))))
    assert worst <= TOL[dtype], f"{n} ranks, {case}, {dtype}: max |d| = {worst:.3g}"
    iters = f"{case}/{dtype}/n_iter_"
    assert runs[0][iters] == reference[iters] > 0
    assert runs[0][f"{case}/{dtype}/coefs_0"].dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_predictions_match_one_process(reference, ranks, dtype):
    _, runs = ranks
    for case in CASES:
        key = f"{case}/{dtype}/predict"
        tol = TOL[dtype] * 10  # outputs of order 1, from weights within TOL
        np.testing.assert_allclose(runs[0][key], reference[key], rtol=tol, atol=tol, err_msg=key)


def test_replicas_are_identical(ranks):
    _, runs = ranks
    for run in runs[1:]:
        assert run.keys() == runs[0].keys()
        for k in run:
            if not k.endswith("printed_lines"):
                np.testing.assert_array_equal(run[k], runs[0][k], err_msg=k)


def test_only_rank_0_prints(reference, ranks):
    _, runs = ranks
    for k in (k for k in reference if k.endswith("printed_lines")):
        assert runs[0][k] == reference[k] > 0, k  # one line per iteration, as one process
        assert all(run[k] == 0 for run in runs[1:]), k


@pytest.mark.parametrize(
    ("mode", "why"),
    [("rows", "rank 1 passed X of shape (202, 6) float64, rank 0 (203, 6) float64"),
     ("values", "rank 1 passed other values of X, y or sample_weight than rank 0"),
     ("param", "rank 1 has alpha=0.001, rank 0 has alpha=0.0001")],
)  # fmt: skip
def test_processes_that_disagree_raise_on_every_rank(mpi_launch, tmp_path, mode, why):
    job = mpi_launch(2, "estimators.py", str(tmp_path), "--mismatch", mode, timeout=60)
    assert job.rc == 3, job.output  # both ranks caught the error and exited with 3
    for rank in (0, 1):
        assert f"rank {rank}: DistributedError: processes disagree on the fit: {why}" in (
            job.output
        ), job.output


@pytest.mark.slow
def test_simulated_device_matches_one_process(tmp_path, mpi_launch):
    """A device that is not the host (strict array API, float32 only): gradients and
    losses go through the reducer's host staging, as on a GPU with gpu_reduce="host"."""
    args = ("--device", "sim", "--dtypes", "float32")
    single = mpi_launch(None, "estimators.py", str(tmp_path), "--single", *args, timeout=120)
    assert single.rc == 0, single.output
    reference = dict(np.load(tmp_path / "rank0.npz"))
    job = mpi_launch(2, "estimators.py", str(tmp_path), *args, timeout=180)
    assert job.rc == 0, job.output
    runs = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(2)]
    for case in CASES:
        for k in _keys(reference, case, "float32", FITTED):
            np.testing.assert_allclose(runs[0][k], reference[k], rtol=0, atol=TOL["float32"])
            np.testing.assert_array_equal(runs[1][k], runs[0][k])


# -- in one process: strategy= as a scikit-learn parameter ---------------------------------
class FakeMPI(LocalStrategy):
    """Stands for an MPIStrategy of two processes (no MPI in the test process)."""

    size = 2
    comm = None


def _data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 4))
    return X, (X[:, 0] > 0).astype(int)


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_strategy_is_a_plain_parameter(Est):
    assert Est().get_params()["strategy"] is None
    strategy = FakeMPI()
    est = Est(strategy=strategy)
    assert est.get_params()["strategy"] is strategy
    assert clone(est).strategy is strategy  # a copy would be a second communicator
    assert copy.deepcopy(strategy) is strategy
    assert Est(**{**est.get_params(), "strategy": None}).strategy is None
    with pytest.raises(ValueError, match=r"'strategy' parameter .* must be None or an instance"):
        Est(strategy="mpi").fit(*_data())


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_one_process_strategy_fits_as_none(solver):
    X, y = _data()
    kw = {"hidden_layer_sizes": (5,), "solver": solver, "max_iter": 30, "random_state": 0}
    a = MLPClassifier(**kw).fit(X, y)
    b = MLPClassifier(**kw, strategy=LocalStrategy()).fit(X, y)
    for Wa, Wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        np.testing.assert_array_equal(Wa, Wb)
    assert shards(None) is None and shards(LocalStrategy()) is None
    assert shards(FakeMPI()) is not None


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_pickles_and_saved_files_leave_the_strategy_out(tmp_path):
    from gpunet.sklearn import load

    X, y = _data()
    est = MLPClassifier(hidden_layer_sizes=(3,), solver="lbfgs", max_iter=5, random_state=0)
    est.fit(X, y)
    est.set_params(strategy=FakeMPI())  # fitted elsewhere, then handed a strategy
    back = pickle.loads(pickle.dumps(est))
    assert back.strategy is None and est.strategy is not None
    est.save(tmp_path / "m.gpunet")
    loaded = load(tmp_path / "m.gpunet")
    assert loaded.strategy is None
    np.testing.assert_array_equal(loaded.predict_proba(X), back.predict_proba(X))
