"""fit/evaluate/predict/train_on_batch for functional models of several inputs and
outputs: per-output losses, loss_weights and metrics, x and y as lists or dicts;
checked against the same model in Keras 3 (same initial weights, same batches), and
bad data and hostile compile sections rejected with errors that name the problem."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest

import gpunet as gn
from gpunet.errors import InputValidationError, InvalidParameterError, ModelFileError

RNG = np.random.default_rng(7)
N = 40
XA = RNG.normal(size=(N, 4)).astype("float32")
XB = RNG.normal(size=(N, 3)).astype("float32")
Y_PRICE = RNG.normal(size=(N, 1)).astype("float32")
Y_CLS = RNG.integers(0, 3, size=N)
SW = RNG.uniform(0.0, 2.0, size=N)  # one weight per sample, for every output
SW_CLS = RNG.uniform(0.0, 1.0, size=N)
X_LIST, Y_LIST = [XA, XB], [Y_PRICE, Y_CLS]
X_DICT, Y_DICT = {"b": XB, "a": XA}, {"cls": Y_CLS, "price": Y_PRICE}
COMPILE = {
    "loss": ["mse", "sparse_categorical_crossentropy"],
    "loss_weights": [1.0, 0.5],
    "metrics": {"cls": ["accuracy"], "price": ["mse", "mae"]},
}


def _graph(lib=gn):
    """Two inputs, a Dense shared by both, a residual Add, a regression head and a
    classification head; ``lib`` is gpunet or keras (same layer names)."""
    layers = lib.layers
    a, b = lib.Input(shape=(4,), name="a"), lib.Input(shape=(3,), name="b")
    shared = layers.Dense(5, activation="tanh", name="shared")
    h = layers.Add(name="join")([shared(a), shared(layers.Dense(4, name="lift")(b))])
    r = layers.Add(name="residual")([h, layers.Dense(5, activation="relu", name="mix")(h)])
    price = layers.Dense(1, name="price")(r)
    cls = layers.Dense(3, activation="softmax", name="cls")(r)
    return [a, b], [price, cls]


def _model(lib=gn):
    inputs, outputs = _graph(lib)
    return lib.Model(inputs=inputs, outputs=outputs)


def _compiled(**overrides):
    gn.utils.set_random_seed(3)
    model = _model()
    model.compile(optimizer=gn.optimizers.SGD(learning_rate=0.1), **{**COMPILE, **overrides})
    return model


@pytest.fixture(scope="module")
def keras_run():
    """The Keras 3 oracle: the same model, weights and batches, trained the same way."""
    os.environ["KERAS_BACKEND"] = "torch"
    keras = pytest.importorskip("keras")
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    ours = _compiled()
    km = _model(keras)
    for layer in ours.layers:
        km.get_layer(layer.name).set_weights([np.array(w) for w in layer.get_weights()])
    km.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), **COMPILE)
    with warnings.catch_warnings():  # keras' arrays trip NumPy 2's copy-keyword warning
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        return _keras_results(km, ours)


def _keras_results(km, ours):
    history = km.fit(X_LIST, Y_LIST, batch_size=16, epochs=3, shuffle=False, verbose=0,
                     validation_data=(X_LIST, Y_LIST))  # fmt: skip
    return {
        "model": ours,
        "history": history.history,
        "evaluate": km.evaluate(X_LIST, Y_LIST, batch_size=16, verbose=0, return_dict=True),
        "evaluate_list": km.evaluate(X_LIST, Y_LIST, batch_size=16, verbose=0),
        "predict": km.predict(X_LIST, batch_size=16, verbose=0),
        "weighted": km.evaluate(
            X_LIST, Y_LIST, batch_size=16, verbose=0, return_dict=True, sample_weight=SW
        ),
        "per_output": km.evaluate(
            X_LIST, Y_LIST, batch_size=16, verbose=0, return_dict=True, sample_weight=[SW, SW_CLS]
        ),
        "train_on_batch": km.train_on_batch(X_LIST, Y_LIST, return_dict=True),
    }


def _close(ours, theirs, rtol=1e-5):
    assert set(ours) == set(theirs)
    for k in theirs:
        np.testing.assert_allclose(ours[k], theirs[k], rtol=rtol, atol=1e-6, err_msg=k)


@pytest.mark.slow  # importing Keras
def test_fit_evaluate_predict_match_keras(keras_run):
    model = keras_run["model"]
    history = model.fit(X_LIST, Y_LIST, batch_size=16, epochs=3, shuffle=False, verbose=0,
                        validation_data=(X_LIST, Y_LIST))  # fmt: skip
    logs = ["loss", "price_loss", "cls_loss", "cls_accuracy", "price_mae", "price_mse"]
    assert set(history.history) == {*logs, *("val_" + k for k in logs)}
    _close(history.history, keras_run["history"])
    _close(model.evaluate(X_LIST, Y_LIST, batch_size=16, verbose=0, return_dict=True),
           keras_run["evaluate"])  # fmt: skip
    # the list form in Keras' order: loss, the per-output losses, then the metrics
    np.testing.assert_allclose(
        model.evaluate(X_LIST, Y_LIST, batch_size=16, verbose=0),
        keras_run["evaluate_list"],
        rtol=1e-5,
    )
    pred = model.predict(X_LIST, batch_size=16)
    assert isinstance(pred, list) and [p.shape for p in pred] == [(N, 1), (N, 3)]
    for p, q in zip(pred, keras_run["predict"], strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-6)
    weighted = model.evaluate(X_LIST, Y_LIST, batch_size=16, verbose=0, return_dict=True,
                              sample_weight=SW)  # fmt: skip
    _close(weighted, keras_run["weighted"])
    for sw in ([SW, SW_CLS], {"cls": SW_CLS, "price": SW}):  # one array per output
        per_output = model.evaluate(X_LIST, Y_LIST, batch_size=16, verbose=0, return_dict=True,
                                    sample_weight=sw)  # fmt: skip
        _close(per_output, keras_run["per_output"])
    _close(model.train_on_batch(X_LIST, Y_LIST, return_dict=True), keras_run["train_on_batch"])


def _fit(x, y, epochs=2, **kw):
    model = _compiled()
    history = model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, **kw)
    return model, history.history


def test_list_and_dict_data_train_identically():
    m1, h1 = _fit(X_LIST, Y_LIST, validation_data=(X_LIST, Y_LIST))
    m2, h2 = _fit(X_DICT, Y_DICT, validation_data=(X_DICT, Y_DICT))
    assert h1 == h2 and len(h1["loss"]) == 2
    for w1, w2 in zip(m1.get_weights(), m2.get_weights(), strict=True):
        np.testing.assert_array_equal(w1, w2)
    p1, p2 = m1.predict(X_LIST), m2.predict(X_DICT)
    for a, b in zip(p1, p2, strict=True):
        np.testing.assert_array_equal(a, b)
    assert m1.evaluate(X_LIST, Y_LIST, verbose=0) == m2.evaluate(X_DICT, Y_DICT, verbose=0)
    assert m1.test_on_batch(X_LIST, Y_LIST) == m2.test_on_batch(X_DICT, Y_DICT)
    for a, b in zip(m1.predict_on_batch(X_LIST), p1, strict=True):
        np.testing.assert_array_equal(a, b)


def test_shuffle_uses_one_permutation_for_every_array():
    gn.utils.set_random_seed(3)
    model = _model()
    model.compile(optimizer=gn.optimizers.SGD(learning_rate=0.1), **COMPILE)
    model.fit(X_LIST, Y_LIST, batch_size=16, epochs=1, verbose=0, shuffle=True)
    gn.utils.set_random_seed(3)
    again = _model()
    again.compile(optimizer=gn.optimizers.SGD(learning_rate=0.1), **COMPILE)
    perm = gn.random.generator("shuffle").permutation(N)  # the draw fit makes
    again.fit([XA[perm], XB[perm]], [Y_PRICE[perm], Y_CLS[perm]], batch_size=16, epochs=1,
              verbose=0, shuffle=False)  # fmt: skip
    for w1, w2 in zip(model.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(w1, w2)


def test_validation_split_holds_out_the_last_rows_of_every_array():
    _, split = _fit(X_LIST, Y_LIST, validation_split=0.25, shuffle=False)
    head = [[A[:30] for A in X_LIST], [A[:30] for A in Y_LIST]]
    tail = ([A[30:] for A in X_LIST], [A[30:] for A in Y_LIST])
    _, explicit = _fit(*head, validation_data=tail, shuffle=False)
    assert split == explicit and "val_cls_accuracy" in split


def test_streamed_batches_of_lists_train_like_arrays():
    def batches():
        for i in range(0, N, 16):
            yield [A[i : i + 16] for A in X_LIST], {k: v[i : i + 16] for k, v in Y_DICT.items()}

    _, arrays = _fit(X_LIST, Y_LIST, shuffle=False, epochs=1)
    model = _compiled()
    streamed = model.fit(batches(), epochs=1, verbose=0).history
    assert streamed == arrays


def test_regularization_counts_in_loss_but_not_in_the_output_losses():
    gn.utils.set_random_seed(3)
    a, b = gn.Input(shape=(4,), name="a"), gn.Input(shape=(3,), name="b")
    dense = gn.layers.Dense(3, kernel_regularizer=gn.regularizers.L2(0.5), name="h")
    h = dense(gn.layers.Concatenate()([a, b]))
    model = gn.Model([a, b], [gn.layers.Dense(1, name="price")(h),
                              gn.layers.Dense(3, activation="softmax", name="cls")(h)])  # fmt: skip
    model.compile(optimizer="sgd", loss=COMPILE["loss"], loss_weights=[2.0, 0.5])
    kernel = dense.get_weights()[0].astype("float64")  # before the step: its loss's weights
    logs = model.train_on_batch(X_LIST, Y_LIST, return_dict=True)
    penalty = 0.5 * float(np.sum(kernel**2))
    expected = 2.0 * logs["price_loss"] + 0.5 * logs["cls_loss"] + penalty
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-5)


def _two_in_one_out():
    gn.utils.set_random_seed(1)
    a, b = gn.Input(shape=(4,), name="a"), gn.Input(shape=(3,), name="b")
    return gn.Model([a, b], gn.layers.Dense(1, name="out")(gn.layers.Concatenate()([a, b])))


def test_several_inputs_one_output_and_one_output_given_as_list_or_dict():
    m1 = _two_in_one_out()
    m1.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    h1 = m1.fit(X_DICT, Y_PRICE, batch_size=16, epochs=2, verbose=0).history
    assert set(h1) == {"loss", "mae"}
    assert m1.predict(X_LIST).shape == (N, 1)
    m2 = _two_in_one_out()
    m2.compile(optimizer="sgd", loss={"out": "mse"}, metrics={"out": ["mae"]})
    assert m2.fit(X_LIST, [Y_PRICE], batch_size=16, epochs=2, verbose=0).history == h1
    a = gn.Input(shape=(4,), name="a")
    single = gn.Model(a, gn.layers.Dense(2, name="two")(a))
    single.compile(optimizer="sgd", loss=["mse"])
    single.fit({"a": XA}, {"two": np.zeros((N, 2))}, epochs=1, verbose=0)
    assert single.predict([XA]).shape == (N, 2)


@pytest.mark.parametrize(
    "x, y, match",
    [
        ([XA], Y_LIST, r"2 inputs \['a', 'b'\], got a list of 1 arrays"),
        (
            XA,
            Y_LIST,
            r"2 inputs \['a', 'b'\]: pass a list of 2 arrays or a dict by name, got one "
            r"ndarray of shape \(40, 4\)",
        ),
        ([XA, XB], [Y_PRICE, Y_CLS, Y_CLS], r"2 outputs \['price', 'cls'\], got a list of 3"),
        ([XA, XB[:-1]], Y_LIST, r"same number of samples.*input 'a': 40, input 'b': 39"),
        ([XA, XB], [Y_PRICE[:-2], Y_CLS], r"input 'b': 40, output 'price': 38"),
        ({"a": XA, "b": XB, "c": XB}, Y_LIST, r"unknown input name\(s\) \['c'\]"),
        (X_DICT, {"price": Y_PRICE}, r"no array for output\(s\) \['cls'\]"),
        (X_DICT, {"price": Y_PRICE, "cls": Y_CLS, "kind": Y_CLS}, r"unknown output name.*'kind'"),
        ([XA, XB[:, :2]], Y_LIST, r"input 'b'.*expects shape \(None, 3\), got \(1, 2\)"),
        (X_LIST, [Y_PRICE, Y_CLS + 3], r"label 5 outside \[0, 3\)"),
        (X_LIST, [np.ones((N, 2)), Y_CLS], r"y\['price'\] has 2 columns"),
        (X_LIST, None, "y is required"),
    ],
)
def test_bad_data_raises_errors_naming_the_input_or_output(x, y, match):
    model = _compiled()
    with pytest.raises(InputValidationError, match=match):
        model.fit(x, y, epochs=1, verbose=0)
    if y is not None:
        with pytest.raises(InputValidationError, match=match):
            model.evaluate(x, y, verbose=0)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"loss": ["mse"]}, r"loss must hold one entry per output \(2: \['price', 'cls'\]\)"),
        ({"loss": {"price": "mse", "kind": "mse"}}, r"unknown \['kind'\]"),
        ({"loss": {"price": "mse"}}, r"missing \['cls'\]"),
        ({"loss_weights": [1.0, "big"]}, r"loss_weights\['cls'\] must be a number, got 'big'"),
        ({"loss_weights": 2.0}, "loss_weights must be a list or a dict"),
        ({"metrics": ["accuracy"]}, "metrics must hold one entry per output"),
        ({"metrics": {"kind": ["accuracy"]}}, r"unknown \['kind'\]"),
    ],
)
def test_bad_compile_arguments_name_the_problem(kw, match):
    with pytest.raises(InvalidParameterError, match=match):
        _compiled(**kw)


def test_class_weight_and_bad_per_output_sample_weights_are_refused_clearly():
    model = _compiled()
    with pytest.raises(InvalidParameterError, match="class_weight is only supported"):
        model.fit(X_LIST, Y_LIST, class_weight={0: 1.0}, verbose=0)
    with pytest.raises(InputValidationError, match=r"sample_weight: no array for output.*'cls'"):
        model.fit(X_LIST, Y_LIST, sample_weight={"price": SW}, verbose=0)
    with pytest.raises(InputValidationError, match="sample_weight has 39 entries, expected 40"):
        model.fit(X_LIST, Y_LIST, sample_weight=[SW, SW[:-1]], verbose=0)


def test_per_output_sample_weights_train_each_loss_with_its_own():
    zero_cls = _fit(X_LIST, Y_LIST, shuffle=False, sample_weight=[SW, np.zeros(N)])[0]
    price_only = _compiled(loss_weights=[1.0, 0.0])
    price_only.fit(X_LIST, Y_LIST, batch_size=16, epochs=2, verbose=0, shuffle=False,
                   sample_weight=SW)  # fmt: skip
    for w1, w2 in zip(zero_cls.get_weights(), price_only.get_weights(), strict=True):
        np.testing.assert_allclose(w1, w2, rtol=1e-6, atol=1e-7)


def test_saving_keeps_per_output_losses_weights_and_metrics(tmp_path):
    losses = {"price": gn.losses.Huber(delta=0.5), "cls": "sparse_categorical_crossentropy"}
    model = _compiled(loss=losses, loss_weights={"price": 2.0, "cls": 0.25})
    model.fit(X_LIST, Y_LIST, batch_size=16, epochs=1, verbose=0)
    path = tmp_path / "multi.gpunet"
    model.save(path)
    back = gn.models.load_model(path)
    loss = back.compiled_loss
    assert [type(fn).__name__ for fn in loss.losses] == ["Huber", "SparseCategoricalCrossentropy"]
    assert loss.losses[0].delta == 0.5 and loss.loss_weights == [2.0, 0.25]
    assert loss.log_names == ["price_loss", "cls_loss", "cls_accuracy", "price_mae", "price_mse"]
    assert back.evaluate(X_LIST, Y_LIST, verbose=0) == model.evaluate(X_LIST, Y_LIST, verbose=0)
    h1 = model.fit(X_LIST, Y_LIST, batch_size=16, epochs=1, verbose=0, shuffle=False).history
    h2 = back.fit(X_LIST, Y_LIST, batch_size=16, epochs=1, verbose=0, shuffle=False).history
    assert h1 == h2  # the optimizer state came back too


def test_a_compile_section_by_output_name_loads(tmp_path):
    from gpunet.saving import _container

    model = _compiled()
    model.save(tmp_path / "m.gpunet")
    doc, tensors = _container.read(tmp_path / "m.gpunet")
    c = doc["compile"]
    c.update(loss=dict(zip(["price", "cls"], c["loss"], strict=True)),
             loss_weights={"cls": 0.5, "price": 1.0},
             metrics=dict(zip(["price", "cls"], c["metrics"], strict=True)))  # fmt: skip
    back = gn.models.load_model(_container.pack(json.loads(json.dumps(doc)), tensors))
    assert back.compiled_loss.loss_weights == [1.0, 0.5]
    assert back.evaluate(X_LIST, Y_LIST, verbose=0) == model.evaluate(X_LIST, Y_LIST, verbose=0)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c["loss"].append(c["loss"][0]), "loss must hold one entry per output"),
        (
            lambda c: c.update(loss_weights=[1.0, "x"]),
            r"expected a finite number.*loss_weights\[1\]",
        ),
        (lambda c: c.update(loss_weights=[1.0, True]), r"loss_weights\[1\]"),
        (lambda c: c.update(loss_weights=[1.0]), "loss_weights must hold one entry per output"),
        (lambda c: c.update(loss_weights=3.0), "expected a list or an object"),
        (
            lambda c: c.update(loss={"price": c["loss"][0], "../x": c["loss"][1]}),
            "looks like a path",
        ),
        (
            lambda c: c.update(loss={"price": c["loss"][0], "other": c["loss"][1]}),
            r"unknown \['other'\]",
        ),
        (lambda c: c["loss"][1].update(class_name="os.system"), "unknown loss 'os.system'"),
        (lambda c: c["loss"][0]["config"].update(run="rm"), "unknown key 'run'"),
        (lambda c: c.update(metrics=[["accuracy"], ["evil"]]), "unknown metric 'evil'"),
        (lambda c: c.update(metrics=[[]] * 3), "metrics must hold one entry per output"),
        (lambda c: c.update(loss=[c["loss"][0]] * 65), "at most 64"),
    ],
)
def test_hostile_compile_sections_are_rejected(tmp_path, edit, match):
    from gpunet.saving import _container

    model = _compiled()
    path = tmp_path / "m.gpunet"
    model.save(path)
    doc, tensors = _container.read(path)
    edit(doc["compile"])
    bad = _container.pack(json.loads(json.dumps(doc)), tensors)
    with pytest.raises(ModelFileError, match=match):
        gn.models.load_model(bad)


def test_outputs_as_a_list_of_one_or_a_dict_fit_as_keras_names_them():
    a, b = gn.Input(shape=(4,), name="a"), gn.Input(shape=(3,), name="b")
    listed = gn.Model(a, [gn.layers.Dense(2, name="o")(a)])
    listed.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    assert set(listed.fit(XA, np.zeros((N, 2)), verbose=0).history) == {"loss", "mae"}
    assert listed.predict(XA).shape == (N, 2)  # Keras unwraps outputs=[y] as well
    named = gn.Model({"x": a, "z": b}, {"p": gn.layers.Dense(1)(a), "q": gn.layers.Dense(1)(b)})
    named.compile(optimizer="sgd", loss={"p": "mse", "q": "mae"})
    history = named.fit({"x": XA, "z": XB}, {"q": Y_PRICE, "p": Y_PRICE}, verbose=0).history
    assert set(history) == {"loss", "p_loss", "q_loss"}  # the dicts' keys name them
    pred = named.predict({"x": XA, "z": XB})
    assert set(pred) == {"p", "q"} and pred["q"].shape == (N, 1)
    # train_on_batch reports the loss of the weights it started from: evaluate's
    model = _compiled()
    sw = {"price": SW, "cls": SW_CLS}
    before = model.evaluate(X_LIST, Y_LIST, batch_size=N, sample_weight=sw, verbose=0)
    assert model.train_on_batch(X_LIST, Y_LIST, sample_weight=sw) == before


def test_several_inputs_and_outputs_train_on_a_device_as_on_the_cpu():
    """On the simulated device ("sim": mixing host and device arrays and hidden reads
    raise), the lists of arrays live and are batched on the device."""
    pytest.importorskip("array_api_strict")
    out = {}
    for device in ("cpu", "sim"):
        gn.utils.set_random_seed(3)
        model = gn.Model(*_graph(), device=device)
        model.compile(optimizer=gn.optimizers.SGD(learning_rate=0.1), **COMPILE)
        history = model.fit(X_DICT, Y_LIST, batch_size=16, epochs=2, verbose=0,
                            validation_split=0.25, sample_weight=[SW, SW_CLS])  # fmt: skip
        out[device] = (history.history, model.evaluate(X_LIST, Y_LIST, verbose=0),
                       model.predict(X_LIST), model.train_on_batch(X_LIST, Y_LIST))  # fmt: skip
    (h0, e0, p0, t0), (h1, e1, p1, t1) = out["cpu"], out["sim"]
    _close(h1, h0)
    np.testing.assert_allclose(e1, e0, rtol=1e-5)
    np.testing.assert_allclose(t1, t0, rtol=1e-5)
    for a, b in zip(p1, p0, strict=True):
        assert isinstance(a, np.ndarray)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_one_output_compiled_by_name_rejects_an_unknown_name():
    a = gn.Input(shape=(4,), name="a")
    model = gn.Model(a, gn.layers.Dense(1, name="out")(a))
    for kw in ({"loss": {"other": "mse"}}, {"loss": "mse", "metrics": {"other": "mae"}}):
        with pytest.raises(InvalidParameterError, match=r"unknown \['other'\]"):
            model.compile(optimizer="sgd", **kw)
    model.compile(optimizer="sgd", loss="mse", metrics={"out": "mae"})
    assert set(model.fit(XA, Y_PRICE, verbose=0).history) == {"loss", "mae"}
