"""scikit-learn's own estimator checks, run against both estimators.

scikit-learn's MLPs pass the same checks; the only ones reported as skipped are
those scikit-learn skips for its own MLPs on this machine (SCIPY_ARRAY_API unset,
no ``decision_function``). pandas is part of the ``test`` extra so that the
DataFrame and Series checks run rather than skip.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from gpunet.sklearn import MLPClassifier, MLPRegressor


# NOTE: the checks fit for max_iter=200 epochs on tiny data, so Adam often stops at
# the limit; the ConvergenceWarning that says so is expected, as with scikit-learn's MLPs.
@pytest.mark.filterwarnings("ignore", category=ConvergenceWarning)
@parametrize_with_checks([MLPClassifier(), MLPRegressor()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_pandas_is_installed_so_its_checks_run():
    # without pandas scikit-learn skips 4 of the checks above (DataFrame input, a
    # Series of sample weights) and the run still looks green
    try:
        importlib.import_module("pandas")
    except ImportError:
        pytest.fail("pandas is missing: pip install -e '.[test]'")


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_dataframe_and_series_fit_as_their_arrays(Est):
    pd = importlib.import_module("pandas")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    y = (X[:, 0] > 0).astype(int)
    w = rng.uniform(0.5, 2.0, 40)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    kw = {"hidden_layer_sizes": (5,), "max_iter": 5, "random_state": 0}
    with pytest.warns(ConvergenceWarning):
        a = Est(**kw).fit(frame, pd.Series(y), sample_weight=pd.Series(w))
    with pytest.warns(ConvergenceWarning):
        b = Est(**kw).fit(X, y, sample_weight=w)
    assert a.feature_names_in_.tolist() == ["a", "b", "c"]
    assert not hasattr(b, "feature_names_in_")
    for Wa, Wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        np.testing.assert_array_equal(Wa, Wb)
    np.testing.assert_array_equal(a.predict(frame), b.predict(X))
    with pytest.raises(ValueError, match="feature names"):
        a.predict(frame[["c", "b", "a"]])
