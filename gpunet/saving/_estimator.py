"""Saving the scikit-learn estimators (``MLPClassifier``, ``MLPRegressor``) in the
same safe ``.gpunet`` container: constructor parameters and fitted numbers as
checked JSON, ``coefs_``/``intercepts_`` and optimizer slots as tensors.

Class labels and feature names are data, not configuration: they are stored as
JSON values of a declared type (never unpickled objects) and are the only
strings exempt from the path-or-URL rule.

Example:
    >>> import os, tempfile, warnings, numpy as np
    >>> from gpunet.sklearn import MLPClassifier
    >>> from gpunet.saving import load_estimator
    >>> X, y = np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=5).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "clf.gpunet")
    >>> clf.save(path)
    >>> bool(np.all(load_estimator(path).predict(X) == clf.predict(X)))
    True
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

import numpy as np

from gpunet.errors import GpunetError, InvalidParameterError, ModelFileError
from gpunet.saving import _model, _schema
from gpunet.saving import _tensors as T
from gpunet.saving._schema import (
    array,
    boolean,
    fail,
    integer,
    number,
    obj,
    one_of,
    optional,
)

_INT64 = integer(-(2**63), 2**63 - 1)
_SPECIAL = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _float(v: Any, path: str) -> float:
    if isinstance(v, str):
        return one_of(*_SPECIAL, what="number")(v, path)  # type: ignore[no-any-return]
    return number()(v, path)  # type: ignore[no-any-return]


def _either(*checks: Any) -> Any:
    def check(v: Any, path: str) -> Any:
        for c in checks[:-1]:
            try:
                return c(v, path)
            except ModelFileError:
                pass
        return checks[-1](v, path)

    return check


PARAMS = {
    "hidden_layer_sizes": _either(integer(1), array(integer(1), 1000)),
    "activation": one_of("identity", "logistic", "tanh", "relu", what="activation"),
    "solver": one_of("lbfgs", "sgd", "adam", what="solver"),
    "alpha": number(0.0),
    "batch_size": _either(one_of("auto"), integer(1)),
    "learning_rate": one_of("constant", "invscaling", "adaptive", what="learning_rate"),
    "learning_rate_init": number(0.0, above=True),
    "power_t": number(0.0),
    "max_iter": integer(1),
    "shuffle": boolean,
    "random_state": optional(integer(0, 2**32 - 1)),
    "tol": number(0.0),
    "verbose": _either(boolean, integer(0, 1000)),
    "warm_start": boolean,
    "momentum": number(0.0, 1.0),
    "nesterovs_momentum": boolean,
    "early_stopping": boolean,
    "validation_fraction": number(0.0, 1.0),
    "beta_1": number(0.0, 1.0),
    "beta_2": number(0.0, 1.0),
    "epsilon": number(0.0, above=True),
    "n_iter_no_change": _either(one_of("inf"), integer(1)),
    "max_fun": integer(1),
    "dtype": optional(one_of("float32", "float64", what="dtype")),
    "loss": one_of("squared_error", "poisson", what="loss"),
}
_LABEL_KINDS: dict[str, Any] = {
    "int64": _INT64, "float64": number(), "bool": boolean,
    "str": lambda v, p: v if isinstance(v, str) and len(v) <= 1000 else _bad_label(v, p),
}  # fmt: skip
FITTED = {
    "n_features_in_": integer(1), "n_outputs_": integer(1), "n_iter_": integer(0),
    "t_": integer(0, 2**62), "n_layers_": integer(2, 1002),
    "out_activation_": one_of("identity", "logistic", "softmax", "exp", what="output activation"),
    "loss_": optional(_float), "loss_curve_": optional(array(_float, 10**6)),
    "best_loss_": optional(_float), "validation_scores_": optional(array(_float, 10**6)),
    "best_validation_score_": optional(_float), "_no_improvement_count": integer(0),
    "classes": optional(lambda v, p: _labels(v, p)),
    "y_type": optional(one_of("binary", "multiclass", "multilabel-indicator", what="y type")),
    "feature_names_in_": optional(array(lambda v, p: _LABEL_KINDS["str"](v, p), 10**6)),
    "optimizer": optional(obj({"iterations": integer(0, 2**62), "learning_rate": number(0.0)},
                              ("iterations", "learning_rate"))),
}  # fmt: skip
ESTIMATOR = obj(
    {"class_name": one_of("MLPClassifier", "MLPRegressor", what="estimator"),
     "params": obj(PARAMS), "fitted": optional(obj(FITTED, ("n_features_in_", "n_outputs_")))},
    ("class_name", "params", "fitted"),
)  # fmt: skip
_DATA = ("$.estimator.fitted.classes", "$.estimator.fitted.feature_names_in_")
_schema.register_kind("estimator", {"estimator": ESTIMATOR}, ("estimator",), data_paths=_DATA)


def _bad_label(v: Any, path: str) -> Any:
    raise fail(path, f"expected a label string of at most 1000 characters, got {type(v).__name__}")


def _labels(v: Any, path: str) -> dict[str, Any]:
    kind = one_of(*_LABEL_KINDS, what="label type")(
        v.get("dtype") if isinstance(v, dict) else None, f"{path}.dtype")  # fmt: skip
    out = obj({"dtype": lambda x, p: x, "values": array(_LABEL_KINDS[kind], 10**6)},
              ("dtype", "values"))(v, path)  # fmt: skip
    values = out["values"]
    if len(values) < 1 or any(a >= b for a, b in pairwise(values)):
        raise fail(f"{path}.values", "class labels must be unique and sorted")
    return out


def _enc(x: Any) -> Any:
    if x is None:
        return None
    if isinstance(x, (list, tuple)):
        return [_enc(v) for v in x]
    x = float(x)
    return x if math.isfinite(x) else ("nan" if math.isnan(x) else ("inf" if x > 0 else "-inf"))


def _dec(x: Any) -> Any:
    if isinstance(x, list):
        return [_dec(v) for v in x]
    return _SPECIAL.get(x, x) if isinstance(x, str) else x


def save_estimator(est: Any, path: Any) -> None:
    """Save a gpunet ``MLPClassifier``/``MLPRegressor`` (fitted or not), atomically."""
    name = type(est).__name__
    if name not in ("MLPClassifier", "MLPRegressor"):
        raise InvalidParameterError(f"cannot save a {name}: only gpunet's MLP estimators")
    # the device and the strategy belong to the process that saves, not to the model
    params = {k: v for k, v in est.get_params().items() if k not in ("device", "strategy")}
    if params["random_state"] is not None and not isinstance(params["random_state"], int):
        params["random_state"] = None  # a RandomState object's stream is not stored
    hidden = params["hidden_layer_sizes"]  # an int stays an int; a sequence loads as a tuple
    params["hidden_layer_sizes"] = (
        [int(h) for h in hidden] if hasattr(hidden, "__iter__") else int(hidden)
    )
    if params["n_iter_no_change"] == math.inf:
        params["n_iter_no_change"] = "inf"
    if params["dtype"] is not None:
        params["dtype"] = np.dtype(params["dtype"]).name
    state = est.__getstate__()  # NumPy only: device objects already exported
    fitted, tensors = None, {}
    if "coefs_" in state:
        fitted = {k: state[k] for k in ("n_features_in_", "n_outputs_", "n_iter_", "t_",
                                        "n_layers_", "out_activation_", "_no_improvement_count")
                  if k in state}  # fmt: skip
        for key in ("loss_", "loss_curve_", "best_loss_", "validation_scores_",
                    "best_validation_score_"):  # fmt: skip
            if key in state:  # lbfgs has no curves; None is a value of its own
                fitted[key] = _enc(state[key])
        if "classes_" in state:
            classes = np.asarray(state["classes_"])
            kind = {"i": "int64", "u": "int64", "f": "float64", "b": "bool"}.get(
                classes.dtype.kind, "str"
            )
            fitted["classes"] = {
                "dtype": kind,
                "values": classes.astype(
                    {"int64": np.int64, "float64": np.float64, "bool": bool, "str": str}[kind]
                ).tolist(),
            }
            fitted["y_type"] = state["_label_binarizer"].y_type_
        if "feature_names_in_" in state:
            fitted["feature_names_in_"] = [str(f) for f in state["feature_names_in_"]]
        for i, (W, b) in enumerate(zip(state["coefs_"], state["intercepts_"], strict=True)):
            tensors[f"coefs.{i}"], tensors[f"intercepts.{i}"] = W, b
        if state.get("_best_params") is not None:
            tensors["best_params"] = state["_best_params"]
        opt = state.get("_optimizer_state")
        if opt is not None:
            fitted["optimizer"] = {"iterations": int(opt["iterations"]),
                                   "learning_rate": float(opt["learning_rate"])}  # fmt: skip
            tensors.update({T.OPT + k: v for k, v in opt["slots"].items()})
    doc = _model.document("estimator", estimator={"class_name": name, "params": params,
                                                  "fitted": fitted})  # fmt: skip
    _model.write(path, doc, tensors)


def load_estimator(source: Any, device: Any = "cpu", allow_nonfinite: bool = False) -> Any:
    """Load an estimator saved by ``est.save(path)`` onto ``device``.

    Raises:
        ModelFileError: for a damaged, malformed or hostile file, naming the problem.
    """
    from gpunet.sklearn import MLPClassifier, MLPRegressor

    doc, tensors, where = _model.read(source, ("estimator",))
    with T.in_file(where):
        spec = doc["estimator"]
        cls = MLPClassifier if spec["class_name"] == "MLPClassifier" else MLPRegressor
        params = dict(spec["params"])
        if "loss" in params and cls is MLPClassifier:
            raise fail("$.estimator.params", "unknown key 'loss'")
        hidden = params["hidden_layer_sizes"]
        params["hidden_layer_sizes"] = tuple(hidden) if isinstance(hidden, list) else hidden
        params["n_iter_no_change"] = _dec(params["n_iter_no_change"])
        est = cls(**params, device=device)
        fitted = spec["fitted"]
        if fitted is None:
            T.check(tensors, {}, allow_nonfinite)
            return est
        try:
            _restore(est, params, fitted, tensors, allow_nonfinite)
        except (GpunetError, TypeError) as exc:  # ModelFileError is a GpunetError too
            raise exc if isinstance(exc, ModelFileError) else ModelFileError(
                f"the estimator cannot be rebuilt: {exc}") from None  # fmt: skip
    return est


def _restore(est: Any, params: dict[str, Any], fitted: dict[str, Any], tensors: dict[str, Any],
             allow_nonfinite: bool) -> None:  # fmt: skip
    from sklearn.preprocessing import LabelBinarizer

    hidden = params["hidden_layer_sizes"]
    hidden = list(hidden) if isinstance(hidden, (list, tuple)) else [hidden]
    units = [fitted["n_features_in_"], *hidden, fitted["n_outputs_"]]
    first = tensors.get("coefs.0")
    dtype = first.dtype.name if first is not None and first.dtype.name != "float16" else "float64"
    expected: dict[str, Any] = {}
    for i, (a, b) in enumerate(pairwise(units)):
        expected[f"coefs.{i}"], expected[f"intercepts.{i}"] = ((a, b), dtype), ((b,), dtype)
    n_params = sum(a * b + b for a, b in pairwise(units))
    if "best_params" in tensors:
        expected["best_params"] = ((n_params,), dtype)
    if fitted.get("optimizer") is not None:
        for slot in est._make_optimizer().slots:
            expected[f"{T.OPT}{slot}.0"] = ((n_params,), dtype)
    T.check(tensors, expected, allow_nonfinite)
    is_clf = type(est).__name__ == "MLPClassifier"
    if is_clf != (fitted.get("classes") is not None and fitted.get("y_type") is not None):
        raise fail("$.estimator.fitted", "classes and y_type belong to classifiers only")
    n = len(units) - 1
    est.coefs_ = [np.array(tensors[f"coefs.{i}"]) for i in range(n)]
    est.intercepts_ = [np.array(tensors[f"intercepts.{i}"]) for i in range(n)]
    best = tensors.get("best_params")
    est._best_params = None if best is None else np.array(best)
    for key in ("n_features_in_", "n_outputs_", "n_iter_", "t_", "out_activation_",
                "_no_improvement_count"):  # fmt: skip
        if key in fitted:
            setattr(est, key, fitted[key])
    est.n_layers_ = len(units)
    for key in ("loss_", "loss_curve_", "best_loss_", "validation_scores_",
                "best_validation_score_"):  # fmt: skip
        if key in fitted:
            setattr(est, key, _dec(fitted[key]))
    if fitted.get("feature_names_in_") is not None:
        est.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)
    if is_clf:
        labels = fitted["classes"]
        kinds = {"int64": np.int64, "float64": np.float64, "bool": bool, "str": str}
        classes = np.asarray(labels["values"], dtype=kinds[labels["dtype"]])
        binarizer = LabelBinarizer()
        binarizer.classes_, binarizer.y_type_, binarizer.sparse_input_ = (
            classes, fitted["y_type"], False)  # fmt: skip
        est._label_binarizer, est.classes_ = binarizer, classes
    opt = fitted.get("optimizer")
    if opt is not None:
        est._optimizer_state = {
            "iterations": opt["iterations"], "learning_rate": opt["learning_rate"],
            "slots": {k[len(T.OPT):]: np.array(v) for k, v in tensors.items()
                      if k.startswith(T.OPT)},
        }  # fmt: skip
