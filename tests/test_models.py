"""The Keras-style Model/Sequential surface and the PyTorch-style pieces."""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 4)).astype("float32")
Y = (X[:, 0] + X[:, 1] > 0).astype("float32")


def _binary_model(**kw):
    model = gn.Sequential(
        [
            gn.layers.Dense(8, activation="relu", input_shape=(4,)),
            gn.layers.Dense(1, activation="sigmoid"),
        ],
        **kw,
    )
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return model


def test_weights_in_keras_layout_and_roundtrip():
    model = _binary_model()
    ws = model.get_weights()
    assert [w.shape for w in ws] == [(4, 8), (8,), (8, 1), (1,)]
    assert model.count_params() == 4 * 8 + 8 + 8 + 1
    model.set_weights([np.full_like(w, 0.5) for w in ws])
    assert all(np.all(w == 0.5) for w in model.get_weights())
    with pytest.raises(gn.errors.InputValidationError, match="has 4 weights"):
        model.set_weights(ws[:2])
    with pytest.raises(gn.errors.InputValidationError, match=r"shape \(4, 8\)"):
        model.set_weights([ws[0].T, *ws[1:]])


def test_add_pop_and_lazy_build():
    model = gn.Sequential()
    model.add(gn.layers.Dense(5, activation="tanh"))
    model.add(gn.layers.Dense(2))
    assert not model.layers[0].built
    out = model.predict(X)
    assert out.shape == (64, 2) and model.layers[0].kernel.shape == (4, 5)
    popped = model.pop()
    assert popped.units == 2 and model.predict(X).shape == (64, 5)
    with pytest.raises(gn.errors.InvalidParameterError):
        model.add("dense")


def test_fit_options_history_and_batch_methods(tmp_path):
    model = _binary_model()
    w = np.where(Y > 0, 2.0, 1.0)
    h = model.fit(
        X,
        Y,
        epochs=3,
        batch_size=16,
        verbose=0,
        sample_weight=w,
        validation_data=(X, Y),
        initial_epoch=1,
    )
    assert h.epoch == [1, 2] and set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    h = model.fit(X, Y, epochs=1, verbose=0, class_weight={0: 1.0, 1: 3.0}, shuffle=False)
    assert len(h.history["loss"]) == 1
    loss = model.train_on_batch(X[:16], Y[:16])
    assert isinstance(loss, list) and len(loss) == 2
    logs = model.test_on_batch(X[:16], Y[:16], return_dict=True)
    assert set(logs) == {"loss", "accuracy"}
    assert model.predict_on_batch(X[:5]).shape == (5, 1)
    assert model.evaluate(X, Y, verbose=0, return_dict=True)["accuracy"] >= 0.0
    assert isinstance(model.evaluate(X, Y, verbose=0), list)


def test_history_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="History.plot draws with matplotlib")
    model = _binary_model()
    h = model.fit(X, Y, epochs=2, verbose=0)
    path = h.plot(str(tmp_path / "h.png"))
    from pathlib import Path

    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_lists_layers_shapes_and_counts():
    lines = []
    _binary_model().summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "(None, 8)" in text and "(None, 1)" in text and "Total params: 49" in text


def test_to_device_keeps_weights_and_optimizer_state():
    model = _binary_model()
    model.fit(X, Y, epochs=1, verbose=0)
    before = model.get_weights()
    state = model.optimizer.state_arrays()
    model.to("cpu")
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    for k, v in model.optimizer.state_arrays().items():
        assert np.array_equal(v, state[k])
    model.fit(X, Y, epochs=1, verbose=0)  # still trains after the move


def test_same_seed_repeats_bit_for_bit_and_other_seed_differs():
    def run(seed):
        gn.utils.set_random_seed(seed)
        model = gn.Sequential(
            [
                gn.layers.Dense(8, activation="relu", input_shape=(4,)),
                gn.layers.Dropout(0.3),
                gn.layers.Dense(1, activation="sigmoid"),
            ]
        )
        model.compile(optimizer="adam", loss="binary_crossentropy")
        model.fit(X, Y, epochs=3, batch_size=8, verbose=0)
        return model.get_weights()

    a, b, c = run(5), run(5), run(6)
    assert all(np.array_equal(x, z) for x, z in zip(a, b, strict=True))
    assert not all(np.array_equal(x, z) for x, z in zip(a, c, strict=True))


@pytest.mark.parametrize("floatx", ["float32", "float64"])
def test_no_silent_upcast_in_a_training_step(floatx):
    gn.config.set_floatx(floatx)
    model = gn.Sequential(
        [
            gn.layers.Dense(8, activation="gelu", input_shape=(4,), kernel_regularizer="l2"),
            gn.layers.BatchNormalization(),
            gn.layers.Dropout(0.2),
            gn.layers.LayerNormalization(),
            gn.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    seen = []
    from gpunet.layers import base

    def record(layer, out):
        seen.append(out.dtype)

    base.call_hooks.append(record)
    try:
        model.fit(
            X.astype("float64"), (X[:, 0] > 0).astype(int), epochs=1, batch_size=16, verbose=0
        )
    finally:
        base.call_hooks.remove(record)
    assert seen and all(d == np.dtype(floatx) for d in seen)
    for p in model.weights:
        assert p.dtype == np.dtype(floatx)
        if p.requires_grad:
            assert p.grad is not None and p.grad.dtype == np.dtype(floatx)
    for slots in model.optimizer.state_arrays().values():
        assert slots.dtype == np.dtype(floatx)


def test_gradients_accumulate_until_zero_grad_and_no_grad_records_nothing():
    layer = gn.layers.Dense(2, input_shape=(4,))
    layer(X).sum().backward()
    g1 = np.array(layer.kernel.grad)
    layer(X).sum().backward()
    np.testing.assert_allclose(layer.kernel.grad, 2 * g1, rtol=1e-6)
    layer.zero_grad()
    assert layer.kernel.grad is None
    with gn.no_grad():
        out = layer(X).sum()
    assert not out.requires_grad
    with pytest.raises(RuntimeError, match="does not require a gradient"):
        out.backward()
    loss = layer(X).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_train_and_eval_mode():
    model = gn.Sequential([gn.layers.Dropout(0.5, input_shape=(4,))])
    ones = np.ones((100, 4), dtype="float32")
    model.train()
    assert (model(ones).numpy() == 0).any()
    model.eval()
    assert np.array_equal(model(ones).numpy(), ones)
    assert np.array_equal(model.predict(ones), ones)  # predict is always inference


def test_subclassed_model_with_concat_shared_layer_and_fit():
    class Net(gn.Model):
        def __init__(self):
            super().__init__()
            self.shared = gn.layers.Dense(6, activation="relu")
            self.merge = gn.layers.Concatenate()
            self.out = gn.layers.Dense(1, activation="sigmoid")

        def call(self, x):
            a = self.shared(x)
            b = self.shared(x * 2.0)  # the same layer used twice
            return self.out(self.merge([a, b]) + 0.0)

    net = Net()
    net.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    h = net.fit(X, Y, epochs=20, batch_size=16, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert len(net.weights) == 4 and net.count_params() == 4 * 6 + 6 + 12 + 1


def test_torch_style_modules_and_optimizers():
    from gpunet import nn, optim

    net = nn.Sequential(
        nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.1), nn.BatchNorm1d(16), nn.Linear(16, 1)
    )
    opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.BCEWithLogitsLoss()
    first = None
    for _ in range(50):
        loss = loss_fn(net(X), Y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first or loss.item()
    assert loss.item() < first
    assert isinstance(net, gn.Model)


def test_regularization_losses_are_added_in_fit():
    model = gn.Sequential(
        [
            gn.layers.Dense(
                1,
                input_shape=(4,),
                kernel_regularizer=gn.regularizers.L2(10.0),
                kernel_initializer="ones",
            )
        ]
    )
    model.compile(optimizer=gn.optimizers.SGD(0.01), loss="mse")
    model.fit(X, np.zeros(64), epochs=30, verbose=0)
    assert np.abs(model.get_weights()[0]).max() < 0.05  # the penalty pulled the weights to 0
    assert len(model.collect_losses()) == 1


def test_callbacks(tmp_path):
    model = _binary_model()
    seen = []
    lam = gn.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append((e, logs["loss"])))
    csv = gn.callbacks.CSVLogger(tmp_path / "log.csv")
    sched = gn.callbacks.LearningRateScheduler(lambda epoch, lr: 0.01 / (epoch + 1))
    plateau = gn.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=10.0)
    model.fit(X, Y, epochs=3, verbose=0, callbacks=[lam, csv, sched, plateau])
    assert [e for e, _ in seen] == [0, 1, 2]
    rows = (tmp_path / "log.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,") and len(rows) == 4
    assert model.optimizer.learning_rate == pytest.approx(0.01 / 3 * 0.5)
    with pytest.raises(gn.errors.InvalidParameterError, match="on_epoch_ends"):
        gn.callbacks.LambdaCallback(on_epoch_ends=print)


def test_early_stopping_restores_best_weights():
    model = _binary_model()
    snapshots = []
    keep = gn.callbacks.LambdaCallback(
        on_epoch_end=lambda e, l: snapshots.append(model.get_weights())
    )
    # the monitored value is made to rise after epoch 0 by an impossible min_delta
    stop = gn.callbacks.EarlyStopping(
        monitor="loss", patience=2, min_delta=5.0, restore_best_weights=True
    )
    stop.baseline = None
    h = model.fit(X, Y, epochs=10, verbose=0, callbacks=[keep, stop])
    assert len(h.epoch) == 3
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), snapshots[0], strict=True))


def test_terminate_on_nan_stops_like_on_nan_stop():
    big = gn.initializers.Constant(1e5)
    model = gn.Sequential(
        [gn.layers.Dense(2, activation="relu", kernel_initializer=big, input_shape=(4,))]
        + [gn.layers.Dense(2, activation="relu", kernel_initializer=big) for _ in range(4)]
        + [gn.layers.Dense(1)]
    )
    model.compile(optimizer="sgd", loss="mse")
    h = model.fit(
        X * 1e3, Y, epochs=20, verbose=0, on_nan="ignore", callbacks=[gn.callbacks.TerminateOnNaN()]
    )
    assert len(h.history["loss"]) == 1 and not np.isfinite(h.history["loss"][0])
    with pytest.raises(gn.errors.NonFiniteError, match=r"epoch 1, batch 1.*Dense 'dense_"):
        model.fit(X * 1e3, Y, epochs=2, verbose=0)


def test_to_categorical_as_keras():
    np.testing.assert_array_equal(
        gn.utils.to_categorical([2, 0], 3), np.array([[0, 0, 1], [1, 0, 0]], dtype="float32")
    )
    assert gn.utils.to_categorical(np.array([[1], [0]])).shape == (2, 2)
    with pytest.raises(gn.errors.InputValidationError, match=r"label 5 is outside \[0, 3\)"):
        gn.utils.to_categorical([0, 5], num_classes=3)
    with pytest.raises(gn.errors.InputValidationError, match="integer labels"):
        gn.utils.to_categorical([0.5])


@pytest.mark.parametrize("reduction", [None, "none", "mean"])
def test_a_compiled_loss_of_any_reduction_trains_and_saves_as_keras(tmp_path, reduction):
    """Keras' trainer takes the batch mean of a per-sample loss; every reduction and an
    amsgrad Adam also round-trip through a model file."""
    X = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    histories = []
    for red in ("sum_over_batch_size", reduction):
        gn.utils.set_random_seed(0)
        m = gn.Sequential([gn.layers.Dense(1, input_shape=(3,))])
        m.compile(optimizer=gn.optimizers.Adam(amsgrad=True),
                  loss=gn.losses.MeanSquaredError(reduction=red))  # fmt: skip
        histories.append(m.fit(X, X[:, :1], epochs=2, batch_size=4, verbose=0, shuffle=False))
        m.save(tmp_path / "m.gpunet")
        back = gn.models.load_model(tmp_path / "m.gpunet")
        assert back.compiled_loss.reduction == red
    np.testing.assert_allclose(histories[1].history["loss"], histories[0].history["loss"])


def test_a_subclass_passing_inputs_and_outputs_to_model_is_told_to_define_call():
    class Wrapped(gn.Model):
        def __init__(self, inputs, outputs):
            super().__init__(inputs, outputs)

    x = gn.Input(shape=(2,))
    with pytest.raises(gn.errors.InvalidParameterError, match="defines call"):
        Wrapped(x, gn.layers.Dense(1)(x))
