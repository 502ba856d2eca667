"""What ``MLPClassifier`` and ``MLPRegressor`` share: parameters, fitting, the forward
pass for prediction, and pickling.

The fitted state is plain NumPy (``coefs_``, ``intercepts_`` and the other fitted
attributes) plus the constructor parameters; the gpunet network and optimizer on the
device are a working copy, rebuilt from that state when needed and left out of pickles.
So is the ``strategy``: it stands for the processes running now, not for the model.
Validation, label handling and messages are scikit-learn's own utilities, so bad input
fails exactly as it does with scikit-learn's MLPs.
"""

from __future__ import annotations

from itertools import pairwise
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state

# NOTE: private scikit-learn helpers, used so parameter and sample-weight errors carry
# scikit-learn's exact wording; the test suite runs scikit-learn's checks against them.
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import _check_sample_weight, validate_data

from gpunet import optimizers
from gpunet.backend import get_ops
from gpunet.sklearn._network import Network
from gpunet.sklearn._parallel import own_ops, shards
from gpunet.sklearn._solvers import fit_lbfgs, fit_stochastic
from gpunet.strategy import LocalStrategy

PREDICT_CHUNK = 65536  # rows per forward pass at prediction: bounds device memory


class BaseMLP(BaseEstimator):
    """Base of the estimators; use :class:`MLPClassifier` or :class:`MLPRegressor`."""

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "device": [str, Interval(Integral, 0, None, closed="left")],
        "dtype": [
            None,
            StrOptions({"float32", "float64"}),
            Options(type, {np.float32, np.float64}),
        ],
        "strategy": [None, LocalStrategy],
    }

    def _check_solver(self) -> bool:
        """``partial_fit`` exists for the stochastic solvers only (as scikit-learn's)."""
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. {self.solver} is "
                "not stochastic."
            )
        return True

    def __init__(
        self,
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
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.device = device
        self.dtype = dtype
        self.strategy = strategy

    # -- subclass hooks ----------------------------------------------------------------
    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> tuple[Any, Any]:
        raise NotImplementedError  # pragma: no cover - each estimator defines it

    def _output_activation(self) -> str:
        raise NotImplementedError  # pragma: no cover - each estimator defines it

    # -- fitting -----------------------------------------------------------------------
    def _fit(self, X: Any, y: Any, sample_weight: Any = None, incremental: bool = False) -> Any:
        self._validate_params()
        hidden = self.hidden_layer_sizes
        hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
        if np.any(np.array(hidden) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
        hidden = [int(h) for h in hidden]  # NumPy integers too
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        self.n_outputs_ = y.shape[1]
        layer_units = [X.shape[1], *hidden, self.n_outputs_]
        self._random_state = check_random_state(self.random_state)
        par = shards(self.strategy)  # None: this process alone
        if par is not None:  # same draws on every process: weights, shuffles, split
            par.sync_random(self._random_state)
        if first_pass:
            self._initialize(layer_units, self._train_dtype(X))
        X = X.toarray() if hasattr(X, "toarray") else X  # sparse input is densified
        net = self._network(layer_units, reuse_optimizer=incremental)
        if par is not None:
            par.start(self, net, X, y, sample_weight)
        if self.solver == "lbfgs":
            fit_lbfgs(self, net, X, y, sample_weight, par)
        else:
            fit_stochastic(self, net, X, y, sample_weight, incremental, par)
        flat = net.get_flat()
        self.coefs_, self.intercepts_ = net.unpack(flat)
        if not np.all(np.isfinite(flat)):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain "
                "large values and need to be preprocessed."
            )
        return self

    def _train_dtype(self, X: Any) -> np.dtype:
        # None follows the input as scikit-learn does: float32 stays, the rest is float64
        if self.dtype is None:
            return np.dtype(np.float32 if X.dtype == np.float32 else np.float64)
        return np.dtype(self.dtype)

    def _initialize(self, layer_units: list[int], dtype: np.dtype) -> None:
        """Fitted attributes of a fresh model, and weights drawn on the host.

        Glorot-uniform bounds ``sqrt(factor / (fan_in + fan_out))`` (factor 2 for the
        logistic activation, 6 otherwise), kernel then bias per layer, from the
        ``random_state`` stream: the same draws, in the same order, as scikit-learn's
        MLPs, so the same seed starts from the same weights, on every device.
        """
        self.n_iter_ = 0
        self.t_ = 0
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._output_activation()
        factor = 2.0 if self.activation == "logistic" else 6.0
        self.coefs_, self.intercepts_ = [], []
        for fan_in, fan_out in pairwise(layer_units):
            bound = np.sqrt(factor / (fan_in + fan_out))
            W = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
            b = self._random_state.uniform(-bound, bound, fan_out)
            self.coefs_.append(W.astype(dtype, copy=False))
            self.intercepts_.append(b.astype(dtype, copy=False))
        self._best_params = None
        self.__dict__.pop("_optimizer", None)
        self.__dict__.pop("_optimizer_state", None)
        if self.solver != "lbfgs":
            self.loss_curve_: list[float] = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_: list[float] | None = []
                self.best_validation_score_: float | None = -np.inf
                self.best_loss_: float | None = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _network(self, layer_units: list[int], *, reuse_optimizer: bool) -> Network:
        """The device network holding ``coefs_``/``intercepts_``, with its optimizer.

        A stochastic ``fit`` starts a fresh optimizer; ``partial_fit`` continues the
        previous one (its moments and step count), also after pickling.
        """
        ops = get_ops(self.device)
        if self.strategy is not None:
            ops = own_ops(self.strategy, ops)
        dtype = self.coefs_[0].dtype
        key = (tuple(layer_units), self.activation, self.out_activation_, ops, dtype)
        net = self.__dict__.get("_net")
        if net is None or net.key != key:
            net = Network(layer_units, self.activation, self.out_activation_, ops, dtype)
            net.key = key
            self._net = net
        opt = self.__dict__.get("_optimizer")
        if self.solver == "lbfgs":
            if net.group is None or opt is not None:
                net.bind(None)
            self.__dict__.pop("_optimizer", None)
        elif not (reuse_optimizer and opt is not None and opt.groups[0] is net.group):
            state = None
            if reuse_optimizer:
                state = _export(opt) if opt is not None else self.__dict__.get("_optimizer_state")
            opt = self._make_optimizer()
            net.bind(opt)
            if state is not None:
                opt.load_state_arrays(state["slots"])
                opt.iterations = state["iterations"]
                opt.learning_rate = state["learning_rate"]
            self._optimizer = opt
        self.__dict__.pop("_optimizer_state", None)
        net.set_weights(self.coefs_, self.intercepts_)
        return net

    def _make_optimizer(self) -> optimizers.Optimizer:
        if self.solver == "sgd":
            return optimizers.SGD(
                learning_rate=self.learning_rate_init,
                momentum=self.momentum,
                nesterov=self.nesterovs_momentum,
            )
        return optimizers.Adam(
            learning_rate=self.learning_rate_init,
            beta_1=self.beta_1,
            beta_2=self.beta_2,
            epsilon=self.epsilon,
        )

    # -- prediction --------------------------------------------------------------------
    def _forward(self, X: Any) -> np.ndarray:
        """Output activations for ``X`` on ``device``, as a NumPy array."""
        X = validate_data(
            self, X, accept_sparse=["csr", "csc"], dtype=(np.float64, np.float32), reset=False
        )
        ops = get_ops(self.device)
        if self.strategy is not None:
            ops = own_ops(self.strategy, ops)
        dtype = self.coefs_[0].dtype
        # the same model and step as training, with the weights as they are now
        # (scikit-learn lets users edit coefs_ after fit)
        units = [W.shape[0] for W in self.coefs_] + [self.coefs_[-1].shape[1]]
        net = Network(units, self.activation, self.out_activation_, ops, dtype)
        net.bind()
        net.set_weights(self.coefs_, self.intercepts_)
        out = []
        for start in range(0, X.shape[0], PREDICT_CHUNK):
            rows = X[start : start + PREDICT_CHUNK]
            rows = rows.toarray() if hasattr(rows, "toarray") else rows
            Y = net.forward(ops.asarray(rows, dtype=dtype))
            out.append(ops.to_numpy(Y))
        return out[0] if len(out) == 1 else np.concatenate(out)

    # -- saving: the safe .gpunet file (pickling below is for trusted data only) --------
    def save(self, path: Any) -> None:
        """Save to one safe ``.gpunet`` file, atomically; ``gpunet.sklearn.load`` reads it."""
        from gpunet.saving import save_estimator

        save_estimator(self, path)

    # -- pickling: device objects become NumPy ---------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        if state.get("strategy") is not None:
            state["strategy"] = None  # MPI communicators are not pickled: one process
        state.pop("_net", None)
        opt = state.pop("_optimizer", None)
        if opt is not None:
            state["_optimizer_state"] = _export(opt)
        return state

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def _export(opt: optimizers.Optimizer) -> dict[str, Any]:
    """An optimizer's state as NumPy arrays and numbers."""
    return {
        "iterations": opt.iterations,
        "learning_rate": opt.learning_rate,
        "slots": opt.state_arrays(),
    }
