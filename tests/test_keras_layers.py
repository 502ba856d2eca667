"""Softmax and the merge layers against Keras 3 (torch backend): outputs and input
gradients on the same inputs, the functional forms, and saving."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

import gpunet as gn
from gpunet import saving

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")
torch.set_num_threads(1)

R = np.random.default_rng(0)
A, B, C = (R.normal(size=(4, 3)) for _ in range(3))


def _keras_out_and_grads(layer: object, xs: list[np.ndarray]) -> tuple[np.ndarray, list[Any]]:
    ts = [torch.tensor(x, requires_grad=True) for x in xs]
    out = layer(ts if len(ts) > 1 else ts[0])  # type: ignore[operator]
    (out * torch.tensor(np.arange(out.numel()).reshape(out.shape) / 7.0)).sum().backward()
    return out.detach().numpy(), [t.grad.numpy() for t in ts]


def _ours_out_and_grads(layer: object, xs: list[np.ndarray]) -> tuple[np.ndarray, list[Any]]:
    ts = [gn.tensor(x, dtype="float64", requires_grad=True) for x in xs]
    out = layer(ts if len(ts) > 1 else ts[0])  # type: ignore[operator]
    w = gn.tensor(np.arange(out.numel()).reshape(out.shape) / 7.0, dtype="float64")
    (out * w).sum().backward()
    return out.numpy(), [np.asarray(t.grad) for t in ts]


CASES = [
    ("Softmax", {}, [A]),
    ("Softmax", {"axis": 0}, [A]),
    ("Softmax", {"axis": 1}, [R.normal(size=(2, 3, 4))]),
    ("Add", {}, [A, B, C]),
    ("Subtract", {}, [A, B]),
    ("Average", {}, [A, B, C]),
    ("Multiply", {}, [A, B, C]),
    ("Maximum", {}, [A, B, C]),
    ("Minimum", {}, [A, B, C]),
    ("Concatenate", {"axis": 0}, [A, B]),
    ("LeakyReLU", {}, [A]),
    ("LeakyReLU", {"negative_slope": 0.2}, [A]),
    ("ReLU", {}, [A]),
    ("ReLU", {"max_value": 0.5, "negative_slope": 0.1, "threshold": 0.2}, [A]),
    ("ReLU", {"max_value": 1.0}, [A]),
    ("ELU", {"alpha": 0.5}, [A]),
    ("Identity", {}, [A]),
    ("RepeatVector", {"n": 3}, [A]),
    ("Permute", {"dims": (2, 1)}, [R.normal(size=(2, 3, 4))]),
    ("Permute", {"dims": (3, 1, 2)}, [R.normal(size=(2, 3, 4, 5))]),
    ("Rescaling", {"scale": 1 / 255, "offset": -0.5}, [A]),
    ("GaussianNoise", {"stddev": 0.5}, [A]),  # called outside training: identity
    ("GaussianDropout", {"rate": 0.3}, [A]),
    ("SpatialDropout1D", {"rate": 0.3}, [R.normal(size=(2, 3, 4))]),
]


@pytest.mark.parametrize(("name", "kw", "xs"), CASES, ids=[f"{c[0]}{c[1]}" for c in CASES])
def test_layer_matches_keras(name: str, kw: dict[str, Any], xs: list[np.ndarray]) -> None:
    want, want_grads = _keras_out_and_grads(getattr(keras.layers, name)(dtype="float64", **kw), xs)
    got, got_grads = _ours_out_and_grads(getattr(gn.layers, name)(dtype="float64", **kw), xs)
    tol = 1e-12 if want.dtype == np.float64 else 1e-6  # Keras computes some in float32
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    for g, w in zip(got_grads, want_grads, strict=True):
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


@pytest.mark.parametrize(
    "fn", ["add", "subtract", "average", "multiply", "maximum", "minimum", "concatenate"]
)
def test_functional_forms_match_keras(fn: str) -> None:
    want = getattr(keras.layers, fn)([A, B]).detach().numpy()
    got = getattr(gn.layers, fn)([A, B]).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    x1, x2 = gn.Input(shape=(3,)), gn.Input(shape=(3,))
    model = gn.Model([x1, x2], gn.layers.Dense(2)(getattr(gn.layers, fn)([x1, x2])))
    assert model([A, B]).shape == (4, 2)


def test_merge_layers_reject_bad_inputs() -> None:
    with pytest.raises(gn.errors.InputValidationError, match="exactly 2 inputs"):
        gn.layers.Subtract()([A, B, C])
    with pytest.raises(gn.errors.InputValidationError, match="shapes"):
        gn.layers.Multiply()([A, R.normal(size=(4, 2))])
    with pytest.raises(gn.errors.InputValidationError, match="list of at least 2"):
        gn.layers.Maximum()(A)
    with pytest.raises(gn.errors.InvalidParameterError, match="out of range"):
        gn.layers.Softmax(axis=3)(A)


def test_new_layers_save_and_load(tmp_path: Any) -> None:
    x1, x2 = gn.Input(shape=(3,)), gn.Input(shape=(3,))
    h = gn.layers.maximum([gn.layers.Dense(4)(x1), gn.layers.Dense(4)(x2)])
    h = gn.layers.subtract([h, gn.layers.multiply([h, h])])
    out = gn.layers.Softmax(axis=-1)(gn.layers.average([h, gn.layers.minimum([h, h])]))
    model = gn.Model([x1, x2], out)
    path = tmp_path / "m.gpunet"
    model.save(path)
    again = gn.models.load_model(path)
    np.testing.assert_array_equal(again([A, B]).numpy(), model([A, B]).numpy())


# -- the Keras Layer API: add_weight, add_loss, layer.input / layer.output ---------------
def test_add_weight_takes_both_keras_spellings() -> None:
    ours, theirs = gn.layers.Layer(), keras.layers.Layer()
    for layer in (ours, theirs):
        layer.add_weight(shape=(2, 3), initializer="ones", trainable=True, name="w")
        layer.add_weight(shape=(3,), initializer="zeros", trainable=False, name="b")
        layer.add_variable(shape=(4,), initializer="ones", name="v")
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    assert [w.trainable for w in ours.weights] == [w.trainable for w in theirs.weights]
    for a, b in zip(ours.weights, theirs.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.value.detach().numpy())
    old = gn.layers.Layer().add_weight("kernel", (2, 2), "ones", trainable=False)
    assert old.name.endswith("/kernel") and not old.trainable
    default = gn.layers.Layer(dtype="float64").add_weight(shape=(50, 40))
    limit = np.sqrt(6 / 90)  # Keras' default initializer is glorot_uniform
    assert 0.5 * limit < np.abs(default.numpy()).max() <= limit
    with pytest.raises(gn.errors.InvalidParameterError, match="constraint"):
        gn.layers.Layer().add_weight(shape=(2,), constraint="non_neg")


def _penalty_layer(lib: Any) -> Any:
    class ActivityPenalty(lib.layers.Layer):
        def call(self, inputs: Any) -> Any:
            self.add_loss(0.1 * lib.ops.sum(inputs * inputs))
            return inputs

    return ActivityPenalty()


def _model_of(lib: Any, kind: str, dense: Any) -> Any:
    if kind == "sequential":
        return lib.Sequential([lib.Input(shape=(3,)), dense, _penalty_layer(lib)])
    if kind == "functional":
        x = lib.Input(shape=(3,))
        return lib.Model(x, _penalty_layer(lib)(dense(x)))

    class Subclassed(lib.Model):
        def __init__(self) -> None:
            super().__init__()
            self.dense, self.penalty = dense, _penalty_layer(lib)

        def call(self, x: Any) -> Any:
            return self.penalty(self.dense(x))

    model = Subclassed()
    model(np.zeros((1, 3), "float32"))
    return model


@pytest.mark.parametrize("kind", ["sequential", "functional", "subclassed"])
def test_add_loss_joins_the_training_loss_as_in_keras(kind: str) -> None:
    W = R.normal(size=(3, 2))
    X, Y = R.normal(size=(8, 3)), R.normal(size=(8, 2))
    results = []
    for lib in (gn, keras):
        dense = lib.layers.Dense(2, use_bias=False)
        model = _model_of(lib, kind, dense)
        dense.set_weights([W.astype("float32")])
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss="mse")
        loss = model.train_on_batch(X.astype("float32"), Y.astype("float32"))
        loss = loss[0] if isinstance(loss, list) else loss
        results.append((float(loss), _host(dense.weights[0])))
        layer_losses = model.layers[-1].losses
        assert len(layer_losses) == 1
    (ours, w_ours), (theirs, w_theirs) = results
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    np.testing.assert_allclose(w_ours, w_theirs, rtol=1e-5, atol=1e-6)


def test_layer_input_and_output_are_the_first_symbolic_call() -> None:
    x = gn.Input(shape=(3,))
    dense = gn.layers.Dense(2)
    y = dense(x)
    dense(gn.Input(shape=(3,)))  # a second call does not move them (Keras: node 0)
    assert dense.input is x and dense.output is y
    with pytest.raises(AttributeError, match="never been called on symbolic"):
        _ = gn.layers.Dense(2).output


def _host(w: Any) -> np.ndarray:
    value = getattr(w, "value", w)  # a Keras variable holds a torch tensor
    return value.detach().numpy() if hasattr(value, "detach") else np.asarray(w.numpy())


# -- custom layers: register_serializable, train, save, load -----------------------------
def _linear_class(lib: Any) -> Any:
    """The Linear layer of the keras-io guide "Making new layers and models via
    subclassing", written once for both libraries."""

    class Linear(lib.layers.Layer):
        def __init__(self, units: int = 32, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape: Any) -> None:
            self.w = self.add_weight(
                shape=(input_shape[-1], self.units), initializer="random_normal", trainable=True
            )
            self.b = self.add_weight(shape=(self.units,), initializer="zeros", trainable=True)

        def call(self, inputs: Any) -> Any:
            return lib.ops.matmul(inputs, self.w) + self.b

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "units": self.units}

    return Linear


Linear = saving.register_serializable(package="Guide")(_linear_class(gn))


def test_guide_custom_layer_trains_as_in_keras_and_round_trips(tmp_path: Any) -> None:
    KLinear = _linear_class(keras)
    X, Y = R.normal(size=(16, 3)).astype("float32"), R.normal(size=(16, 2)).astype("float32")
    ours = gn.Sequential([gn.Input(shape=(3,)), Linear(4), gn.layers.Dense(2)])
    theirs = keras.Sequential([keras.Input(shape=(3,)), KLinear(4), keras.layers.Dense(2)])
    assert [w.shape for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    ours.set_weights([_host(w) for w in theirs.weights])
    for model, lib in ((ours, gn), (theirs, keras)):
        model.compile(optimizer=lib.optimizers.SGD(0.05), loss="mse")
        for _ in range(3):
            model.train_on_batch(X, Y)
    for a, b in zip(ours.weights, theirs.weights, strict=True):
        np.testing.assert_allclose(_host(a), _host(b), rtol=1e-5, atol=1e-6)
    path = tmp_path / "linear.gpunet"
    ours.save(path)
    again = gn.models.load_model(path)
    assert type(again.layers[0]) is Linear and again.layers[0].units == 4
    for a, b in zip(again.weights, ours.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(again.predict(X), ours.predict(X))


def test_registration_infers_config_or_asks_for_it() -> None:
    assert Linear.CONFIG == {"units": gn.layers.spec.Int(-(2**31), 2**31)}

    class Named(gn.layers.Layer):
        def __init__(self, mode: str = "a", **kwargs: Any) -> None:
            super().__init__(**kwargs)

    with pytest.raises(gn.errors.InvalidParameterError, match="declare CONFIG"):
        saving.register_serializable()(Named)
    with pytest.raises(gn.errors.InvalidParameterError, match="gpunet layer classes"):
        saving.register_serializable()(dict)

    @saving.register_serializable()
    class ScaledDense(gn.layers.Dense):  # a built-in's fields keep their types
        def __init__(self, units: int, scale: float = 2.0, **kwargs: Any) -> None:
            super().__init__(units, **kwargs)
            self.scale = scale

        def call(self, x: Any) -> Any:
            return super().call(x) * self.scale

    assert ScaledDense.CONFIG == {**gn.layers.Dense.CONFIG, "scale": gn.layers.spec.Float()}
    model = gn.Sequential([ScaledDense(3, scale=0.5, input_shape=(2,))])
    again = gn.models.load_model(_saved_bytes(model))
    assert again.layers[0].scale == 0.5
    np.testing.assert_array_equal(again.predict(A[:, :2]), model.predict(A[:, :2]))

    class Unregistered(gn.layers.Layer):
        def call(self, x: Any) -> Any:
            return x

    with pytest.raises(gn.errors.InvalidParameterError, match="unknown layer type"):
        gn.Sequential([gn.Input(shape=(2,)), Unregistered()]).save("never.gpunet")


def test_a_hostile_config_is_checked_before_anything_is_allocated(tmp_path: Any) -> None:
    import json

    from hostile_files import parts, seal

    model = gn.Sequential([gn.Input(shape=(3,)), Linear(4)])
    model.save(tmp_path / "m.gpunet")
    text, payload = parts((tmp_path / "m.gpunet").read_bytes())
    doc = json.loads(text)
    doc["model"]["config"]["layers"][0]["config"]["units"] = 2**30  # 12 GB of weights
    with pytest.raises(gn.errors.ModelFileError, match="too large to find its output shape"):
        gn.models.load_model(seal(json.dumps(doc).encode(), payload))
    doc["model"]["config"]["layers"][0]["config"]["units"] = "4"
    with pytest.raises(gn.errors.ModelFileError, match="units"):
        gn.models.load_model(seal(json.dumps(doc).encode(), payload))


def test_a_user_attribute_named_input_or_output_wins() -> None:
    class Net(gn.nn.Module):  # PyTorch code often names its layers so
        def __init__(self) -> None:
            super().__init__()
            self.input = gn.nn.Linear(2, 3)
            self.output = gn.nn.Linear(3, 1)

        def forward(self, x: Any) -> Any:
            return self.output(self.input(x))

    net = Net()
    assert net(gn.ones(4, 2)).shape == (4, 1)
    assert len(net.parameters()) == 4


def _saved_bytes(model: Any) -> bytes:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        model.save(Path(d) / "m.gpunet")
        return (Path(d) / "m.gpunet").read_bytes()


def test_a_softmax_output_layer_fuses_with_cross_entropy_as_the_activation_does() -> None:
    X, labels = R.normal(size=(16, 4)), R.integers(0, 3, 16)
    losses, weights = [], []
    for last in (gn.layers.Softmax(), None):
        gn.utils.set_random_seed(3)
        dense = gn.layers.Dense(3, activation=None if last else "softmax", input_shape=(4,))
        model = gn.Sequential([dense, last] if last else [dense])
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        losses.append([float(model.train_on_batch(X, labels)) for _ in range(3)])
        assert model.prob_activation == "softmax"  # the loss takes the logits
        assert model._step_plan is not None  # and the graph-free step runs it
        weights.append(dense.get_weights())
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-6)
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    probs = gn.Sequential([gn.layers.Softmax(input_shape=(4,))]).predict(X)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)


def test_leaky_relu_saves_its_slope_and_rejects_a_bad_one(tmp_path: Any) -> None:
    model = gn.Sequential([gn.Input((3,)), gn.layers.Dense(4), gn.layers.LeakyReLU(0.1)])
    model.save(tmp_path / "m.gpunet")
    again = gn.models.load_model(tmp_path / "m.gpunet")
    assert again.layers[-1].negative_slope == 0.1
    np.testing.assert_array_equal(again(A).numpy(), model(A).numpy())
    for bad in (-0.1, "0.2", True):
        with pytest.raises(gn.errors.InvalidParameterError, match="negative_slope"):
            gn.layers.LeakyReLU(bad)  # type: ignore[arg-type]


def test_noise_layers_draw_keras_noise_while_training() -> None:
    gn.utils.set_random_seed(0)
    X = np.ones((400, 50))
    noisy = gn.layers.GaussianNoise(0.5)(X, training=True).numpy() - 1.0
    assert abs(noisy.mean()) < 0.01 and abs(noisy.std() - 0.5) < 0.01
    scaled = gn.layers.GaussianDropout(0.2)(X, training=True).numpy()
    assert abs(scaled.mean() - 1.0) < 0.01 and abs(scaled.std() - 0.5) < 0.01  # sqrt(.2/.8)
    seq = gn.layers.SpatialDropout1D(0.5)(np.ones((200, 6, 8)), training=True).numpy()
    assert set(np.unique(seq)) == {0.0, 2.0}
    assert (seq == seq[:, :1, :]).all()  # a whole channel goes at once
    assert abs((seq == 0).mean() - 0.5) < 0.03


def test_small_layers_save_and_load_and_check_their_arguments(tmp_path: Any) -> None:
    L = gn.layers
    model = gn.Sequential([gn.Input((3,)), L.Dense(3), L.ReLU(max_value=6.0), L.RepeatVector(2),
                           L.Permute((2, 1)), L.Rescaling(2.0, 0.5), L.ELU(0.3), L.Identity(),
                           L.GaussianNoise(0.1), L.GaussianDropout(0.1), L.Permute((2, 1)),
                           L.SpatialDropout1D(0.2), L.GlobalAvgPool1D(), L.Dense(1)])  # fmt: skip
    path = tmp_path / "m.gpunet"
    model.save(path)
    again = gn.models.load_model(path)
    np.testing.assert_array_equal(again.predict(A, verbose=0), model.predict(A, verbose=0))
    assert [type(x).__name__ for x in again.layers] == [type(x).__name__ for x in model.layers]
    lam = gn.Sequential([gn.Input((3,)), L.Lambda(lambda t: t * 2.0)])
    np.testing.assert_allclose(lam.predict(A, verbose=0), 2 * A, rtol=1e-6)
    with pytest.raises(gn.errors.GpunetError, match=r"unknown layer type 'Lambda'.*save_weights"):
        lam.save(tmp_path / "lam.gpunet")
    assert not (tmp_path / "lam.gpunet").exists()
    with pytest.raises(gn.errors.InputValidationError, match=r"rank 2 \(batch, features\)"):
        L.RepeatVector(2)(np.ones((2, 3, 4)))
    with pytest.raises(gn.errors.InputValidationError, match="rank 3"):
        L.Permute((2, 1))(np.ones((2, 3)))
    for bad in (lambda: L.Permute((1, 3)), lambda: L.RepeatVector(0),
                lambda: L.GaussianNoise(-1.0), lambda: L.ReLU(threshold=-0.1),
                lambda: L.GaussianDropout(1.0), lambda: L.Lambda(3)):  # fmt: skip
        with pytest.raises(gn.errors.InvalidParameterError):
            bad()
    assert L.MaxPool2D is L.MaxPooling2D and L.GlobalAvgPool1D is L.GlobalAveragePooling1D


def _small_layers_model(device: str) -> Any:
    L = gn.layers
    gn.utils.set_random_seed(0)
    model = gn.Sequential([gn.Input((3,)), L.Dense(4), L.ReLU(max_value=2.0, threshold=0.1),
                           L.RepeatVector(5), L.GaussianNoise(0.2), L.Permute((2, 1)),
                           L.Rescaling(0.5, 0.1), L.ELU(), L.GaussianDropout(0.2), L.Identity(),
                           L.SpatialDropout1D(0.3), L.GlobalAvgPool1D(), L.Dense(2)],
                          device=device)  # fmt: skip
    model.compile(optimizer="adam", loss="mse")
    return model


def test_small_layers_train_alike_on_the_graph_free_step_and_the_simulated_device() -> None:
    X, Y = R.normal(size=(32, 3)), R.normal(size=(32, 2))
    runs = {}
    for key, device, fast in (("fast", "cpu", True), ("graph", "cpu", False), ("sim", "sim", True)):
        model = _small_layers_model(device)
        model.use_fastpath = fast
        model.fit(X, Y, epochs=2, batch_size=8, verbose=0)
        runs[key] = model
    assert runs["fast"]._step_plan is not None and runs["graph"]._step_plan is None
    for other, tol in (("graph", 0.0), ("sim", 1e-6)):
        for a, b in zip(runs["fast"].get_weights(), runs[other].get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_a_direct_call_is_inference_as_in_keras_and_a_torch_module_starts_training() -> None:
    X = R.normal(size=(64, 3)) + 3.0
    for lib in (gn, keras):
        L = lib.layers
        model = lib.Sequential([lib.Input((3,)), L.Dropout(0.5), L.BatchNormalization()])
        out = np.asarray(model(X)) if lib is gn else model(X).detach().numpy()
        # inference: no unit dropped, and batch norm on its initial moving statistics
        np.testing.assert_allclose(out, X / np.sqrt(1 + 1e-3), rtol=1e-5, err_msg=lib.__name__)
        drop = L.Dropout(0.5)
        kept = np.asarray(drop(X, training=True)) if lib is gn else drop(X, training=True).numpy()
        assert (kept == 0).any(), lib.__name__
    torch_dropout = gn.nn.Dropout(0.5)
    assert torch_dropout.training and (torch_dropout(gn.tensor(X)).numpy() == 0).any()
    torch_dropout.eval()
    np.testing.assert_allclose(torch_dropout(gn.tensor(X)).numpy(), X, rtol=1e-6)
