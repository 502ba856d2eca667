"""scikit-learn's own estimator checks, run against both estimators.

scikit-learn's MLPs pass the same checks; the only ones reported as skipped are
those scikit-learn skips for its own MLPs on this machine (pandas absent,
SCIPY_ARRAY_API unset, no ``decision_function``).
"""

from __future__ import annotations

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
