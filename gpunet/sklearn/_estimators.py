"""``MLPClassifier`` and ``MLPRegressor``: scikit-learn's multi-layer perceptrons, trained
by gpunet on the CPU or a CUDA GPU."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import column_or_1d
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from gpunet.sklearn._base import BaseMLP

_PARAMS_DOC = """
    Args:
        hidden_layer_sizes: Widths of the hidden layers, e.g. ``(100, 50)``.
        activation: Hidden activation: ``"identity"``, ``"logistic"``, ``"tanh"`` or
            ``"relu"``.
        solver: ``"adam"``, ``"sgd"`` (minibatches) or ``"lbfgs"`` (full batch, on
            ``device``).
        alpha: L2 penalty ``alpha / (2 * n_samples) * sum(W**2)`` per batch (kernels only).
        batch_size: Minibatch size; ``"auto"`` is ``min(200, n_samples)``.
        learning_rate: ``"constant"``, ``"invscaling"`` or ``"adaptive"`` (SGD only).
        learning_rate_init: Initial step size of Adam and SGD.
        power_t: Exponent of the ``"invscaling"`` schedule.
        max_iter: Epochs (Adam, SGD) or iterations (L-BFGS).
        shuffle: Reshuffle the samples every epoch.
        random_state: Seed or ``RandomState`` of the initial weights, the shuffling and
            the early-stopping split.
        tol: Smallest improvement of the loss (or validation score) that counts.
        verbose: Print the loss every epoch.
        warm_start: Continue from the previous fit's weights.
        momentum: SGD momentum.
        nesterovs_momentum: Use Nesterov's momentum with SGD.
        early_stopping: Hold out ``validation_fraction`` of the data and stop when its
            score stops improving; keep the best weights.
        validation_fraction: Size of the held-out set.
        beta_1, beta_2, epsilon: Adam's decay rates and its epsilon (added to sqrt(v)).
        n_iter_no_change: Epochs without improvement before stopping.
        max_fun: Most loss evaluations of L-BFGS.
        device: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        dtype: ``"float32"`` or ``"float64"``; None (default) follows ``X`` as
            scikit-learn does (float32 stays float32, anything else is float64).
            ``"float32"`` trains about twice as fast on the CPU.
        strategy: None (default: this process alone) or a
            ``gpunet.distributed.MPIStrategy``: every process of ``mpiexec`` runs the
            same ``fit`` on the same data, computes its share of the rows of every
            batch, and ends with the same fitted attributes as one process would.
            Pickles and saved files leave it out (they load as None).
"""


class MLPClassifier(ClassifierMixin, BaseMLP):
    __doc__ = (
        """Multi-layer perceptron classifier: scikit-learn's ``MLPClassifier``, trained
    by gpunet (log-loss through a fused softmax or sigmoid on the logits).

    Same parameters, defaults, fitted attributes (``coefs_``, ``loss_curve_``,
    ``classes_``, ...; NumPy arrays on every device), warnings and errors as
    ``sklearn.neural_network.MLPClassifier``, plus ``device``, ``dtype`` and ``strategy``.
    Binary and multi-label targets use a logistic output, multiclass a softmax.
"""
        + _PARAMS_DOC
        + """
    Example:
        >>> from sklearn.datasets import load_iris
        >>> from gpunet.sklearn import MLPClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> clf = MLPClassifier(hidden_layer_sizes=(16,), solver="lbfgs", random_state=0)
        >>> clf.fit(X, y).score(X, y) > 0.95
        True
        >>> clf.predict_proba(X[:1]).shape
        (1, 3)
    """
    )

    loss = "log_loss"  # what the solver minimises; not a parameter

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> tuple[Any, Any]:
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in "
                        f"the previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has "
                    f"{self.classes_}. 'y' has {classes}."
                )
        return X, self._label_binarizer.transform(y).astype(bool)

    def _output_activation(self) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPClassifier:
        """Fit the network to data ``X`` and labels ``y`` (1-d, or a 2-d indicator
        matrix for multi-label); returns ``self``."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)  # type: ignore[no-any-return]

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(
        self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None
    ) -> MLPClassifier:
        """One epoch over ``X, y``; ``classes`` (all labels) is required on the first call."""
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)  # type: ignore[no-any-return]

    def predict(self, X: Any) -> np.ndarray:
        """Class labels (an indicator matrix for multi-label targets)."""
        check_is_fitted(self)
        Y = self._forward(X)
        if self.n_outputs_ == 1:
            Y = Y.ravel()
        return self._label_binarizer.inverse_transform(Y)  # type: ignore[no-any-return]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape ``(n_samples, n_classes)`` (per label for
        multi-label targets)."""
        check_is_fitted(self)
        Y = self._forward(X)
        if self.n_outputs_ == 1:
            p = Y.ravel()
            return np.vstack([1 - p, p]).T
        return Y

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """``log(predict_proba(X))``."""
        P = self.predict_proba(X)
        return np.log(P, out=P)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, BaseMLP):
    __doc__ = (
        """Multi-layer perceptron regressor: scikit-learn's ``MLPRegressor``, trained by
    gpunet.

    ``loss="squared_error"`` (identity output, half the squared error) or
    ``"poisson"`` (exp output, half the Poisson deviance). Everything else as
    :class:`MLPClassifier`.
"""
        + _PARAMS_DOC
        + """
    Example:
        >>> import numpy as np
        >>> from gpunet.sklearn import MLPRegressor
        >>> X = np.linspace(-1, 1, 40).reshape(-1, 1)
        >>> reg = MLPRegressor(hidden_layer_sizes=(16,), solver="lbfgs", random_state=0)
        >>> reg = reg.fit(X, X[:, 0] ** 2)
        >>> reg.score(X, X[:, 0] ** 2) > 0.9
        True
    """
    )

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(
        self,
        loss: str = "squared_error",
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: Any = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 0.001,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: Any = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: Any = 10,
        max_fun: int = 15000,
        device: Any = "cpu",
        dtype: Any = None,
        strategy: Any = None,
    ) -> None:
        # scikit-learn reads the parameters from this signature: list them, no **kwargs
        super().__init__(
            hidden_layer_sizes,
            activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
            device=device,
            dtype=dtype,
            strategy=strategy,
        )
        self.loss = loss

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> tuple[Any, Any]:
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            y_numeric=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _output_activation(self) -> str:
        return "exp" if self.loss == "poisson" else "identity"

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """Fit the network to data ``X`` and targets ``y`` (1-d or 2-d); returns ``self``."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)  # type: ignore[no-any-return]

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """One epoch over ``X, y``, continuing from the current weights."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)  # type: ignore[no-any-return]

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets, shape ``(n_samples,)`` or ``(n_samples, n_outputs)``."""
        check_is_fitted(self)
        Y = self._forward(X)
        return Y.ravel() if Y.shape[1] == 1 else Y
