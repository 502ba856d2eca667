"""gpunet.sklearn against scikit-learn's MLPs: same runs, same attributes, warnings and
errors, and the meta-estimator plumbing (Pipeline, GridSearchCV, pickling).

In float64 the estimators draw the same initial weights, see the same batches and
apply the same updates as scikit-learn's, so a run matches scikit-learn's loss by
loss; these tests hold them to that.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn import neural_network as sk
from sklearn.base import clone
from sklearn.datasets import make_blobs, make_multilabel_classification
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from conftest import needs_gpu
from gpunet.backend import get_ops
from gpunet.sklearn import MLPClassifier, MLPRegressor

SMALL = {"hidden_layer_sizes": (8, 5), "random_state": 0, "max_iter": 12}


def _blobs(n=120, centers=3, seed=0):
    X, y = make_blobs(n_samples=n, centers=centers, n_features=4, random_state=seed)
    return StandardScaler().fit_transform(X), y


def _fit(est, *args, method="fit", **kwargs):
    """Call ``est.method`` and return the warnings it raised as (category, text)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        getattr(est, method)(*args, **kwargs)
    return [(w.category, str(w.message)) for w in caught]


def _assert_same_fit(ref, got, rtol=1e-9):
    for name in ("n_iter_", "t_", "n_layers_", "n_outputs_", "out_activation_"):
        assert getattr(got, name) == getattr(ref, name), name
    np.testing.assert_allclose(got.loss_, ref.loss_, rtol=rtol)
    for name in ("loss_curve_", "validation_scores_"):
        if getattr(ref, name, None) is not None:
            np.testing.assert_allclose(getattr(got, name), getattr(ref, name), rtol=rtol)
    for a, b in zip(got.coefs_ + got.intercepts_, ref.coefs_ + ref.intercepts_, strict=True):
        assert type(a) is np.ndarray and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol * 100, atol=1e-10)


STOCHASTIC = [
    {"solver": "adam"},
    {"solver": "adam", "alpha": 0.0, "activation": "tanh"},
    {"solver": "adam", "shuffle": False, "batch_size": 7, "activation": "logistic"},
    {"solver": "adam", "early_stopping": True, "validation_fraction": 0.2},
    {"solver": "sgd"},
    {"solver": "sgd", "nesterovs_momentum": False, "activation": "identity"},
    {"solver": "sgd", "momentum": 0.0, "learning_rate": "invscaling", "power_t": 0.3},
    {"solver": "sgd", "learning_rate": "adaptive", "n_iter_no_change": 1, "tol": 0.5},
    {"solver": "sgd", "n_iter_no_change": 2, "tol": 0.5},
]


@pytest.mark.parametrize("params", STOCHASTIC, ids=lambda p: "-".join(map(str, p.values())))
def test_classifier_run_matches_scikit_learn(params):
    X, y = _blobs()
    ref, got = sk.MLPClassifier(**SMALL, **params), MLPClassifier(**SMALL, **params)
    assert _fit(got, X, y) == _fit(ref, X, y)
    _assert_same_fit(ref, got)
    for name in ("best_loss_", "best_validation_score_"):
        a, b = getattr(got, name), getattr(ref, name)
        assert a == b if b is None else a == pytest.approx(b, rel=1e-12), name
    np.testing.assert_allclose(got.predict_proba(X), ref.predict_proba(X), rtol=1e-7)
    np.testing.assert_array_equal(got.predict(X), ref.predict(X))


@pytest.mark.parametrize("centers", [2, 3])
def test_lbfgs_matches_scikit_learn_for_its_first_iterations(centers):
    # SciPy's L-BFGS-B and ours take the same unit steps at first; their line searches
    # interpolate differently once a unit step is rejected (here from iteration 5 on)
    X, y = _blobs(centers=centers)
    params = {**SMALL, "solver": "lbfgs", "max_iter": 4}
    ref, got = sk.MLPClassifier(**params), MLPClassifier(**params)
    assert _fit(got, X, y) == _fit(ref, X, y)
    assert "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT" in _fit(clone(got), X, y)[0][1]
    _assert_same_fit(ref, got, rtol=1e-6)
    assert not hasattr(got, "loss_curve_") and not hasattr(ref, "loss_curve_")


def test_lbfgs_max_fun_stops_like_scikit_learn():
    X, y = _blobs()
    params = {**SMALL, "solver": "lbfgs", "max_iter": 200, "max_fun": 3}
    ref, got = sk.MLPClassifier(**params), MLPClassifier(**params)
    caught = _fit(got, X, y)
    assert caught == _fit(ref, X, y)
    assert "TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT" in caught[0][1]
    assert got.n_iter_ == ref.n_iter_ < 200


def test_lbfgs_converges_and_fits_well():
    X, y = _blobs(n=200)
    clf = MLPClassifier(hidden_layer_sizes=(10,), solver="lbfgs", random_state=0, max_iter=500)
    assert _fit(clf, X, y) == []  # converged: no warning
    assert clf.score(X, y) > 0.97 and 1 <= clf.n_iter_ < 500


def test_multilabel_matches_scikit_learn():
    X, Y = make_multilabel_classification(n_samples=80, n_features=5, n_classes=4, random_state=0)
    ref, got = sk.MLPClassifier(**SMALL), MLPClassifier(**SMALL)
    assert _fit(got, X, Y) == _fit(ref, X, Y)
    _assert_same_fit(ref, got)
    assert got.out_activation_ == "logistic"
    np.testing.assert_array_equal(got.predict(X), ref.predict(X))
    assert got.predict_proba(X).shape == (80, 4)


def test_sample_weight_matches_scikit_learn():
    X, y = _blobs()
    w = np.random.default_rng(0).uniform(0, 3, len(y))
    for solver in ("adam", "sgd"):
        ref = sk.MLPClassifier(**SMALL, solver=solver)
        got = MLPClassifier(**SMALL, solver=solver)
        assert _fit(got, X, y, sample_weight=w) == _fit(ref, X, y, sample_weight=w)
        _assert_same_fit(ref, got)


@pytest.mark.parametrize(
    "params",
    [
        {"loss": "squared_error"},
        {"loss": "poisson", "activation": "tanh"},
        {"loss": "squared_error", "early_stopping": True, "solver": "sgd"},
    ],
    ids=lambda p: "-".join(map(str, p.values())),
)
@pytest.mark.parametrize("n_outputs", [1, 2])
def test_regressor_run_matches_scikit_learn(params, n_outputs):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 3))
    Y = np.stack([np.exp(0.5 * X[:, 0]), np.abs(X[:, 1] + X[:, 2])], axis=1)[:, :n_outputs]
    Y = Y.ravel() if n_outputs == 1 else Y
    ref, got = sk.MLPRegressor(**SMALL, **params), MLPRegressor(**SMALL, **params)
    assert _fit(got, X, Y) == _fit(ref, X, Y)
    _assert_same_fit(ref, got)
    np.testing.assert_allclose(got.predict(X), ref.predict(X), rtol=1e-7)
    assert got.predict(X).shape == Y.shape


def test_partial_fit_continues_like_scikit_learn():
    X, y = _blobs()
    ref, got = sk.MLPClassifier(**SMALL), MLPClassifier(**SMALL)
    for i, est in enumerate((ref, got)):
        for start in range(0, 120, 40):
            kw = {"classes": np.unique(y)} if start == 0 else {}
            est.partial_fit(X[start : start + 40], y[start : start + 40], **kw)
        assert est.n_iter_ == 1 and est.t_ == 120, i
    _assert_same_fit(ref, got)


def test_warm_start_continues_like_scikit_learn():
    X, y = _blobs()
    ref, got = sk.MLPClassifier(**SMALL), MLPClassifier(**SMALL)
    for est in (ref, got):
        _fit(est, X, y)
        est.set_params(warm_start=True, max_iter=5)
        _fit(est, X, y)
    _assert_same_fit(ref, got)
    assert len(got.loss_curve_) == 17


def test_pickle_keeps_the_optimizer_state_for_partial_fit():
    X, y = _blobs()
    a = MLPClassifier(**SMALL).partial_fit(X, y, classes=[0, 1, 2])
    b = pickle.loads(pickle.dumps(a))
    assert "_net" not in b.__dict__ and "_optimizer" not in b.__dict__
    np.testing.assert_array_equal(b.predict_proba(X), a.predict_proba(X))
    for est in (a, b):
        est.partial_fit(X, y)
    _assert_same_fit(a, b, rtol=0)


def test_fitted_attributes_are_numpy_and_match_the_names():
    X, y = _blobs()
    clf = MLPClassifier(**{**SMALL, "max_iter": 30})
    assert _fit(clf, X, y)[0][0] is ConvergenceWarning
    assert [c.shape for c in clf.coefs_] == [(4, 8), (8, 5), (5, 3)]
    assert [b.shape for b in clf.intercepts_] == [(8,), (5,), (3,)]
    assert all(type(a) is np.ndarray for a in clf.coefs_ + clf.intercepts_)
    assert clf.n_layers_ == 4 and clf.n_outputs_ == 3 and clf.n_features_in_ == 4
    assert clf.out_activation_ == "softmax" and list(clf.classes_) == [0, 1, 2]
    assert clf.loss_ == clf.loss_curve_[-1] and clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    assert clf.t_ == 120 * clf.n_iter_ and clf.loss == "log_loss"
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), clf.predict_proba(X))


def test_float32_training_when_asked_or_when_X_is_float32():
    X, y = _blobs()
    for X_in, expected in ((X, np.float64), (X.astype(np.float32), np.float32)):
        clf = MLPClassifier(**SMALL)
        _fit(clf, X_in, y)
        assert clf.coefs_[0].dtype == expected
    clf = MLPClassifier(**SMALL, dtype="float32")
    ref = MLPClassifier(**SMALL)
    assert _fit(clf, X, y) == _fit(ref, X, y)
    assert clf.coefs_[0].dtype == np.float32 and clf.predict_proba(X).dtype == np.float32
    np.testing.assert_allclose(clf.loss_curve_, ref.loss_curve_, rtol=1e-5)


def test_convergence_warnings_have_scikit_learn_text():
    X, y = _blobs()
    with pytest.warns(ConvergenceWarning, match=r"Stochastic Optimizer: Maximum iterations \(3\)"):
        MLPClassifier(max_iter=3, random_state=0).fit(X, y)
    with pytest.warns(ConvergenceWarning, match=r"lbfgs failed to converge after 2 iteration"):
        MLPClassifier(solver="lbfgs", max_iter=2, random_state=0).fit(X, y)
    caught = _fit(MLPRegressor(batch_size=500, max_iter=20, tol=10.0), X, y)
    assert caught == [(UserWarning, "Got `batch_size` less than 1 or larger than sample size. "
                                     "It is going to be clipped")]  # fmt: skip


def test_bad_input_and_parameters_raise_scikit_learn_errors():
    X, y = _blobs()
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(X)
    with pytest.raises(InvalidParameterError, match="'learning_rate_init' parameter of MLPC"):
        MLPClassifier(learning_rate_init=-1).fit(X, y)
    with pytest.raises(InvalidParameterError, match="'dtype' parameter"):
        MLPRegressor(dtype="int8").fit(X, y)
    with pytest.raises(ValueError, match=r"hidden_layer_sizes must be > 0, got \[3, 0\]"):
        MLPClassifier(hidden_layer_sizes=[3, 0]).fit(X, y)
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        MLPClassifier().fit(Xn, y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        MLPClassifier().fit(X, y[:-1])
    clf = MLPClassifier(**SMALL)
    _fit(clf, X, y)
    with pytest.raises(ValueError, match="X has 3 features, but MLPClassifier is expecting 4"):
        clf.predict(X[:, :3])
    with pytest.raises(ValueError, match="Unknown label type"):
        MLPClassifier().fit(X, X[:, 0])
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        MLPClassifier().partial_fit(X, y)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="The validation set is too small"):
        MLPClassifier(early_stopping=True, validation_fraction=0.01).fit(X[:20], y[:20])
    with pytest.raises(AttributeError, match="has no attribute 'partial_fit'") as info:
        MLPRegressor(solver="lbfgs").partial_fit(X, X[:, 0])
    assert "lbfgs is not stochastic" in str(info.value.__cause__)
    diverging = MLPRegressor(solver="sgd", learning_rate_init=1e6, max_iter=5)
    with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
        _fit(diverging, X, 1e30 * X[:, 0])  # NumPy warns of overflows on the way, as sklearn


@pytest.mark.slow
def test_works_in_pipeline_grid_search_and_cross_val_score():
    X, y = _blobs(n=90)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(random_state=0, solver="lbfgs"))
    grid = GridSearchCV(
        pipe, {"mlpclassifier__hidden_layer_sizes": [(4,), (8,)]}, cv=3, n_jobs=2
    ).fit(X, y)
    assert grid.best_score_ > 0.9
    assert grid.best_estimator_.predict(X).shape == (90,)
    scores = cross_val_score(MLPRegressor(solver="lbfgs", random_state=0), X, X[:, 0], cv=3)
    assert scores.min() > 0.9
    assert clone(grid.best_estimator_).get_params()["mlpclassifier__device"] == "cpu"


@pytest.mark.slow
def test_the_tutorial_runs_with_one_changed_import():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from threadpoolctl import threadpool_limits

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16.0, y, random_state=0)
    # one BLAS thread: on shared CI cores spinning thread pools crawl (the host
    # kernels' own pool runs these small layers on the calling thread)
    with threadpool_limits(limits=1):
        clf = MLPClassifier(hidden_layer_sizes=(100, 50), activation="relu", max_iter=500,
                            random_state=42)  # fmt: skip
        assert clf.fit(X_train, y_train).score(X_test, y_test) > 0.95


def test_sim_device_trains_like_the_cpu():
    # "sim" is a device that is not the host and has no float64: the fit must move
    # its data explicitly and read back only through to_numpy
    X, y = _blobs()
    params = {**SMALL, "dtype": "float32"}
    for solver in ("adam", "lbfgs"):
        cpu = MLPClassifier(**params, solver=solver)
        sim = MLPClassifier(**params, solver=solver, device="sim")
        assert _fit(sim, X, y) == _fit(cpu, X, y)
        np.testing.assert_allclose(sim.loss_, cpu.loss_, rtol=1e-4)
        np.testing.assert_allclose(sim.predict_proba(X), cpu.predict_proba(X), atol=1e-4)
        assert type(sim.coefs_[0]) is np.ndarray


def test_one_host_read_per_epoch():
    X, y = _blobs()
    ops = get_ops("sim")
    before = ops.host_syncs
    clf = MLPClassifier(**{**SMALL, "max_iter": 5}, dtype="float32", device="sim")
    _fit(clf, X, y)
    fit_reads = ops.host_syncs - before
    assert fit_reads == 5 + 1  # one per epoch, and the weights at the end


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_cuda_predicts_what_the_cpu_predicts(solver, dtype):
    X, y = _blobs()
    tol = {"float64": 1e-7, "float32": 1e-4}[dtype]
    params = {**SMALL, "solver": solver, "dtype": dtype}
    for cls, target in ((MLPClassifier, y), (MLPRegressor, X[:, 0] ** 2)):
        cpu, gpu = cls(**params), cls(**params, device="cuda")
        assert _fit(gpu, X, target) == _fit(cpu, X, target)
        assert gpu.n_iter_ == cpu.n_iter_ and type(gpu.coefs_[0]) is np.ndarray
        for a, b in zip(gpu.coefs_, cpu.coefs_, strict=True):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
        got = gpu.predict_proba(X) if cls is MLPClassifier else gpu.predict(X)
        ref = cpu.predict_proba(X) if cls is MLPClassifier else cpu.predict(X)
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)
        clone_on_cpu = pickle.loads(pickle.dumps(gpu)).set_params(device="cpu")
        np.testing.assert_allclose(clone_on_cpu.predict(X), gpu.predict(X), rtol=tol, atol=tol)


@pytest.mark.parametrize("out", ["softmax", "logistic", "identity", "exp"])
def test_network_loss_gradient_matches_finite_differences(out):
    """The estimators' objective (data term + L2) through the graph-free step."""
    from gpunet.sklearn._network import Network

    rng = np.random.default_rng(0)
    X, T = rng.standard_normal((9, 4)), rng.uniform(size=(9, 3))
    T = np.eye(3)[rng.integers(0, 3, 9)] if out == "softmax" else T
    net = Network([4, 6, 3], "tanh", out, get_ops("cpu"), "float64")
    net.bind()
    coefs = [rng.standard_normal(s) * 0.5 for s in ((4, 6), (6, 3))]
    net.set_weights(coefs, [rng.standard_normal(n) * 0.5 for n in (6, 3)])
    P0 = net.get_flat()

    # NOTE: scikit-learn's squared-error gradient is n_outputs times that of the
    # loss it reports (deltas = y_pred - y with the loss a mean over outputs too)
    mult, l2 = (3.0, None) if out == "identity" else (1.0, 0.1 / 9)

    def loss_at(flat: np.ndarray) -> float:
        net.group.P[...] = flat
        return mult * float(net.loss_grad(X, T, 1.0 / 9, l2))

    loss_at(P0)
    G = net.group.G.copy()
    eps, numeric = 1e-6, np.empty_like(P0)
    for i in range(P0.size):
        d = np.zeros_like(P0)
        d[i] = eps
        numeric[i] = (loss_at(P0 + d) - loss_at(P0 - d)) / (2 * eps)
    np.testing.assert_allclose(G, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("sizes", [(), 7, np.array([5, 3]), [4, np.int64(2)]], ids=repr)
def test_hidden_layer_sizes_in_any_form_scikit_learn_takes(sizes):
    X, y = _blobs()
    ref = sk.MLPClassifier(hidden_layer_sizes=sizes, max_iter=4, random_state=0)
    got = MLPClassifier(hidden_layer_sizes=sizes, max_iter=4, random_state=0)
    assert _fit(got, X, y) == _fit(ref, X, y)
    _assert_same_fit(ref, got)
