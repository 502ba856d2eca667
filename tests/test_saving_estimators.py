"""est.save / gpunet.sklearn.load: the estimators in the same safe file format."""

from __future__ import annotations

import copy
import json
import warnings

import numpy as np
import pytest
from hostile_files import parts, seal

from gpunet.errors import ModelFileError

sklearn = pytest.importorskip("gpunet.sklearn")
MLPClassifier, MLPRegressor, load = sklearn.MLPClassifier, sklearn.MLPRegressor, sklearn.load

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 4)).astype("float32")
LABELS = np.arange(40) % 3


def _fit(est, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: few iterations on purpose
        return est.fit(X, y)


CASES = [
    (lambda: MLPClassifier(hidden_layer_sizes=(6,), max_iter=4, random_state=0), LABELS),
    (lambda: MLPClassifier(hidden_layer_sizes=(6, 3), solver="sgd", max_iter=4, random_state=1),
     np.array(["n/a", "http://x", "C:\\y"])[LABELS]),  # labels are data, even path-like
    (lambda: MLPClassifier(hidden_layer_sizes=5, activation="tanh", max_iter=4), LABELS % 2 == 0),
    (lambda: MLPClassifier(hidden_layer_sizes=(4,), max_iter=4, early_stopping=True,
                           validation_fraction=0.25, random_state=2), LABELS * 1.0),
    (lambda: MLPClassifier(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=5),
     np.eye(3, dtype=int)[LABELS]),  # multi-label
    (lambda: MLPRegressor(hidden_layer_sizes=(6,), max_iter=4, random_state=0), X[:, :2]),
    (lambda: MLPRegressor(hidden_layer_sizes=(6,), max_iter=4, loss="poisson",
                          n_iter_no_change=np.inf), np.abs(X[:, 0])),
    (lambda: MLPRegressor(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=4,
                          dtype="float64"), X[:, 0]),
]  # fmt: skip


@pytest.mark.parametrize(("make", "y"), CASES)
def test_estimator_roundtrip_predicts_the_same_and_trains_on_identically(tmp_path, make, y):
    est = _fit(make(), y)
    est.save(tmp_path / "e.gpunet")
    again = load(tmp_path / "e.gpunet")
    assert type(again) is type(est) and again.get_params() == est.get_params()
    assert np.array_equal(again.predict(X), est.predict(X))
    if hasattr(est, "classes_"):
        assert np.array_equal(again.classes_, est.classes_)
        assert again.classes_.dtype.kind == est.classes_.dtype.kind
        assert np.array_equal(again.predict_proba(X), est.predict_proba(X))
    fitted = [k for k in vars(est) if k.endswith("_") and not k.startswith("_")]
    assert sorted(k for k in vars(again) if k.endswith("_") and not k.startswith("_")) == sorted(
        fitted
    )
    for key in fitted:
        if key not in ("coefs_", "intercepts_", "classes_"):
            assert getattr(again, key) == getattr(est, key), key
    # continuing to train gives the same weights: optimizer state and counters came back
    for model in (est, again):
        model.set_params(warm_start=True, random_state=3)
        _fit(model, y)
    assert all(np.array_equal(a, b) for a, b in zip(est.coefs_, again.coefs_, strict=True))


def test_partial_fit_continues_with_the_saved_optimizer_state(tmp_path):
    est = MLPClassifier(hidden_layer_sizes=(5,), random_state=0)
    est.partial_fit(X, LABELS, classes=[0, 1, 2])
    est.save(tmp_path / "e.gpunet")
    again = load(tmp_path / "e.gpunet")
    est.partial_fit(X, LABELS)
    again.partial_fit(X, LABELS)
    assert all(np.array_equal(a, b) for a, b in zip(est.coefs_, again.coefs_, strict=True))


def test_unfitted_estimator_and_another_device(tmp_path):
    MLPRegressor(alpha=0.5).save(tmp_path / "u.gpunet")
    unfitted = load(tmp_path / "u.gpunet")
    assert unfitted.alpha == 0.5 and not hasattr(unfitted, "coefs_")
    est = _fit(MLPClassifier(hidden_layer_sizes=(4,), max_iter=3), LABELS)
    est.save(tmp_path / "e.gpunet")
    on_sim = load(tmp_path / "e.gpunet", device="sim")
    assert on_sim.device == "sim"
    assert np.array_equal(on_sim.predict(X), est.predict(X))


def _file(tmp_path):
    est = _fit(MLPClassifier(hidden_layer_sizes=(4,), max_iter=3), LABELS)
    est.save(tmp_path / "e.gpunet")
    data = (tmp_path / "e.gpunet").read_bytes()
    text, payload = parts(data)
    return json.loads(text), payload


def _changed(doc, payload, change):
    d = copy.deepcopy(doc)
    change(d["estimator"])
    return seal(json.dumps(d).encode(), payload)


BAD = [
    (lambda e: e["params"].update(pickle="x"), "unknown key 'pickle'"),
    (lambda e: e.update(class_name="sklearn.svm.SVC"), "unknown estimator 'sklearn.svm.SVC'"),
    (lambda e: e["params"].update(activation="os.system"), "unknown activation"),
    (lambda e: e["params"].update(loss="squared_error"), "unknown key 'loss'"),
    (lambda e: e["params"].update(hidden_layer_sizes=[2**30]),
     r"expected float32 \(4, 1073741824\)"),
    (lambda e: e["params"].update(beta_1=1.0), "cannot be rebuilt.*beta_1"),
    (lambda e: e["fitted"].update(n_features_in_=5), r"expected float32 \(5, 4\)"),
    (lambda e: e["fitted"]["classes"].update(values=[2, 1, 0]), "unique and sorted"),
    (lambda e: e["fitted"]["classes"].update(dtype="object"), "unknown label type 'object'"),
    (lambda e: e["fitted"]["classes"].update(values=[0, 1, "/etc/passwd"]), "expected an int"),
    (lambda e: e["fitted"].update(y_type="continuous"), "unknown y type 'continuous'"),
    (lambda e: e["fitted"].update(out_activation_="eval"), "unknown output activation"),
    (lambda e: e["fitted"].update(classes=None), "classifiers only"),
    (lambda e: e["fitted"].update(loss_="1e999"), "unknown number '1e999'"),
    (lambda e: e["fitted"].update(optimizer=None), "unexpected tensor 'optimizer."),
    (lambda e: e["fitted"].pop("n_outputs_"), "missing key 'n_outputs_'"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "message"), BAD)
def test_malformed_estimator_files_are_rejected(tmp_path, change, message):
    doc, payload = _file(tmp_path)
    with pytest.raises(ModelFileError, match=message):
        load(_changed(doc, payload, change))


def test_estimator_loader_refuses_other_files(tmp_path):
    doc, payload = _file(tmp_path)
    doc["kind"] = "model"
    with pytest.raises(ModelFileError, match="this is a 'model' file; expected 'estimator'"):
        load(seal(json.dumps(doc).encode(), payload))
    with pytest.raises(ModelFileError, match="bad magic"):
        load(b"\x80\x04\x95" + bytes(64))  # a pickle is never read
