"""scikit-learn estimators trained by gpunet: ``MLPClassifier`` and ``MLPRegressor``.

A drop-in for ``sklearn.neural_network``: the same parameters, defaults, fitted
attributes, warnings and errors, plus ``device`` (``"cpu"``, ``"cuda"``), ``dtype`` and
``strategy`` (data-parallel fits over MPI processes: ``gpunet.distributed``).
scikit-learn is an optional dependency (``pip install 'gpunet[sklearn]'``), imported
only when this module is.

Example:
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import train_test_split
    >>> from gpunet.sklearn import MLPClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> X_train, X_test, y_train, y_test = train_test_split(X / 16, y, random_state=0)
    >>> clf = MLPClassifier(hidden_layer_sizes=(64,), early_stopping=True, random_state=0)
    >>> clf.fit(X_train, y_train).score(X_test, y_test) > 0.9
    True
"""

from __future__ import annotations

try:
    import sklearn
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "gpunet.sklearn needs scikit-learn >= 1.6: pip install 'gpunet[sklearn]'"
    ) from exc

if tuple(int(p) for p in sklearn.__version__.split(".")[:2]) < (1, 6):  # pragma: no cover
    raise ImportError(
        f"gpunet.sklearn needs scikit-learn >= 1.6 (found {sklearn.__version__}): "
        "pip install -U 'scikit-learn>=1.6'"
    )

from gpunet.saving import load_estimator as load
from gpunet.sklearn._estimators import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor", "load"]
