"""The keras-io guides "Training & evaluation with the built-in methods" and
"Writing your own callbacks", run with gpunet: the code as written there, with
``keras`` replaced by ``gpunet`` and MNIST by scikit-learn's digits (64 features).

Changed beyond the imports: the guides' functional-API model (``keras.Input`` ->
Dense 64 -> Dense 64 -> Dense 10) is written as the same ``Sequential`` stack.
Skipped: the multi-input/multi-output, custom loss/metric subclass, ``add_loss``
layer, ``tf.data`` and TensorBoard parts (the functional API and custom metric
classes are other work). Where the computation is deterministic (same weights,
``shuffle=False``) the numbers are compared with Keras 3 on the torch backend.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

import gpunet as gn
import gpunet as keras  # the guides' code below runs unchanged on this name

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def digits() -> tuple[Any, ...]:
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = datasets.load_digits(return_X_y=True)
    X = (X / 16.0).astype("float32")
    # as the guide: hold out samples for validation, and a test set
    return X[:1000], y[:1000], X[1000:1300], y[1000:1300], X[1300:], y[1300:]


def get_uncompiled_model() -> Any:
    return keras.Sequential([
        keras.layers.Dense(64, activation="relu", name="dense_1", input_shape=(64,)),
        keras.layers.Dense(64, activation="relu", name="dense_2"),
        keras.layers.Dense(10, activation="softmax", name="predictions"),
    ])  # fmt: skip


def get_compiled_model() -> Any:
    model = get_uncompiled_model()
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
    )
    return model


def test_api_overview_fit_evaluate_predict(digits: Any) -> None:
    x_train, y_train, x_val, y_val, x_test, y_test = digits
    gn.utils.set_random_seed(0)
    model = get_compiled_model()
    history = model.fit(x_train, y_train, batch_size=64, epochs=2,
                        validation_data=(x_val, y_val), verbose=0)  # fmt: skip
    assert sorted(history.history) == [
        "loss", "sparse_categorical_accuracy", "val_loss", "val_sparse_categorical_accuracy",
    ]  # fmt: skip
    results = model.evaluate(x_test, y_test, batch_size=128, verbose=0)
    assert len(results) == 2 and results[1] > 0.5  # two epochs of RMSprop learn digits
    predictions = model.predict(x_test[:3])
    assert predictions.shape == (3, 10)


def test_validation_split_sample_and_class_weights(digits: Any) -> None:
    x_train, y_train, *_ = digits
    model = get_compiled_model()
    h = model.fit(x_train, y_train, batch_size=64, validation_split=0.2, epochs=1, verbose=0)
    assert "val_loss" in h.history
    class_weight = {i: 1.0 for i in range(10)}
    class_weight[5] = 2.0
    model.fit(x_train, y_train, class_weight=class_weight, batch_size=64, epochs=1, verbose=0)
    sample_weight = np.ones(shape=(len(y_train),))
    sample_weight[y_train == 5] = 2.0
    model.fit(x_train, y_train, sample_weight=sample_weight, batch_size=64, epochs=1, verbose=0)


def test_early_stopping_model_checkpoint_and_schedule(digits: Any, tmp_path: Any,
                                                      monkeypatch: Any) -> None:  # fmt: skip
    x_train, y_train, *_ = digits
    monkeypatch.chdir(tmp_path)
    model = get_compiled_model()
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=1e-2, patience=2, verbose=1),
        keras.callbacks.ModelCheckpoint(filepath="mymodel_{epoch}.keras", save_best_only=True,
                                        monitor="val_loss", verbose=1),
    ]  # fmt: skip
    model.fit(x_train, y_train, epochs=3, batch_size=64, callbacks=callbacks,
              validation_split=0.2, verbose=0)  # fmt: skip
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert saved and all(p.startswith("mymodel_") for p in saved)
    again = keras.models.load_model(saved[-1])  # metric objects were stored
    assert type(again.compiled_metrics[0]).__name__ == "SparseCategoricalAccuracy"
    checkpoint_dir = "./ckpt"
    if not os.path.exists(checkpoint_dir):
        os.makedirs(checkpoint_dir)
    cb = keras.callbacks.ModelCheckpoint(filepath=checkpoint_dir + "/model-loss={loss:.2f}.keras",
                                         save_freq=10)  # fmt: skip
    model.fit(x_train, y_train, epochs=1, batch_size=64, callbacks=[cb], verbose=0)
    assert len(os.listdir(checkpoint_dir)) >= 1
    initial_learning_rate = 0.1
    lr_schedule = keras.optimizers.schedules.ExponentialDecay(
        initial_learning_rate, decay_steps=100000, decay_rate=0.96, staircase=True
    )
    optimizer = keras.optimizers.RMSprop(learning_rate=lr_schedule)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0)


class LossHistory(keras.callbacks.Callback):
    def on_train_begin(self, logs):  # type: ignore[no-untyped-def]  # the guide's signature
        self.per_batch_losses = []

    def on_batch_end(self, batch, logs):  # type: ignore[no-untyped-def]
        self.per_batch_losses.append(logs.get("loss"))


def test_custom_callback_on_batch_end_alias(digits: Any) -> None:
    x_train, y_train, *_ = digits
    model = get_compiled_model()
    cb = LossHistory()
    model.fit(x_train, y_train, epochs=1, batch_size=64, callbacks=[cb], verbose=0)
    assert len(cb.per_batch_losses) == 16 and all(np.isfinite(cb.per_batch_losses))


class ExamplePyDataset(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.x = x
        self.y = y
        self.batch_size = batch_size

    def __len__(self):  # type: ignore[no-untyped-def]
        return int(np.ceil(len(self.x) / float(self.batch_size)))

    def __getitem__(self, idx):  # type: ignore[no-untyped-def]
        batch_x = self.x[idx * self.batch_size : (idx + 1) * self.batch_size]
        batch_y = self.y[idx * self.batch_size : (idx + 1) * self.batch_size]
        return batch_x, batch_y


def test_pydataset_and_dataloader_match_arrays(digits: Any) -> None:
    x_train, y_train, x_val, y_val, *_ = digits
    results = []
    for kind in ("arrays", "pydataset", "dataloader"):
        gn.utils.set_random_seed(1)
        model = get_compiled_model()
        if kind == "arrays":
            h = model.fit(x_train, y_train, batch_size=32, validation_data=(x_val, y_val),
                          epochs=1, shuffle=False, verbose=0)  # fmt: skip
        elif kind == "pydataset":
            train_py_dataset = ExamplePyDataset(x_train, y_train, batch_size=32)
            val_py_dataset = ExamplePyDataset(x_val, y_val, batch_size=32)
            h = model.fit(train_py_dataset, validation_data=val_py_dataset, epochs=1,
                          shuffle=False, verbose=0)  # fmt: skip
        else:
            train = gn.data.DataLoader(gn.data.TensorDataset(x_train, y_train), batch_size=32)
            val = gn.data.DataLoader(gn.data.TensorDataset(x_val, y_val), batch_size=32)
            h = model.fit(train, validation_data=val, epochs=1, verbose=0)
        results.append(h.history)
    for other in results[1:]:
        for k, v in results[0].items():
            assert other[k] == pytest.approx(v, rel=1e-6), k


# -- "Writing your own callbacks" ---------------------------------------------------------
class CustomCallback(keras.callbacks.Callback):
    def _say(self, text: str) -> None:  # the guide prints; kept to assert on
        self.__dict__.setdefault("lines", []).append(text)

    def on_train_begin(self, logs=None):  # type: ignore[no-untyped-def]
        keys = list(logs.keys())
        self._say(f"Starting training; got log keys: {keys}")

    def on_train_end(self, logs=None):  # type: ignore[no-untyped-def]
        keys = list(logs.keys())
        self._say(f"Stop training; got log keys: {keys}")

    def on_epoch_begin(self, epoch, logs=None):  # type: ignore[no-untyped-def]
        keys = list(logs.keys())
        self._say(f"Start epoch {epoch} of training; got log keys: {keys}")

    def on_epoch_end(self, epoch, logs=None):  # type: ignore[no-untyped-def]
        keys = list(logs.keys())
        self._say(f"End epoch {epoch} of training; got log keys: {keys}")

    def on_test_begin(self, logs=None):  # type: ignore[no-untyped-def]
        keys = list(logs.keys())
        self._say(f"Start testing; got log keys: {keys}")

    def on_test_end(self, logs=None):  # type: ignore[no-untyped-def]
        keys = list(logs.keys())
        self._say(f"Stop testing; got log keys: {keys}")

    def on_predict_begin(self, logs=None):  # type: ignore[no-untyped-def]
        keys = list(logs.keys())
        self._say(f"Start predicting; got log keys: {keys}")

    def on_predict_end(self, logs=None):  # type: ignore[no-untyped-def]
        keys = list(logs.keys())
        self._say(f"Stop predicting; got log keys: {keys}")

    def on_train_batch_begin(self, batch, logs=None):  # type: ignore[no-untyped-def]
        keys = list(logs.keys())
        self._say(f"...Training: start of batch {batch}; got log keys: {keys}")

    def on_train_batch_end(self, batch, logs=None):  # type: ignore[no-untyped-def]
        keys = list(logs.keys())
        self._say(f"...Training: end of batch {batch}; got log keys: {keys}")

    def on_test_batch_begin(self, batch, logs=None):  # type: ignore[no-untyped-def]
        keys = list(logs.keys())
        self._say(f"...Evaluating: start of batch {batch}; got log keys: {keys}")

    def on_test_batch_end(self, batch, logs=None):  # type: ignore[no-untyped-def]
        keys = list(logs.keys())
        self._say(f"...Evaluating: end of batch {batch}; got log keys: {keys}")

    def on_predict_batch_begin(self, batch, logs=None):  # type: ignore[no-untyped-def]
        keys = list(logs.keys())
        self._say(f"...Predicting: start of batch {batch}; got log keys: {keys}")

    def on_predict_batch_end(self, batch, logs=None):  # type: ignore[no-untyped-def]
        keys = list(logs.keys())
        self._say(f"...Predicting: end of batch {batch}; got log keys: {keys}")


def get_model() -> Any:
    model = keras.Sequential()
    model.add(keras.layers.Dense(1))
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=0.1),
        loss="mean_squared_error",
        metrics=["mean_absolute_error"],
    )
    return model


def _guide_run(lib: Any, x_train: Any, y_train: Any, x_test: Any, y_test: Any) -> list[str]:
    cb = CustomCallback() if lib is keras else _keras_custom_callback(lib)()
    model = get_model() if lib is keras else _keras_get_model(lib)
    model.fit(x_train, y_train, batch_size=128, epochs=1, verbose=0, validation_split=0.5,
              callbacks=[cb])  # fmt: skip
    model.evaluate(x_test, y_test, batch_size=128, verbose=0, callbacks=[cb])
    model.predict(x_test, batch_size=128, callbacks=[cb], verbose=0)
    return cb.lines


def _keras_custom_callback(lib: Any) -> Any:
    ns = {k: v for k, v in vars(CustomCallback).items() if not k.startswith("__")}
    return type("CustomCallback", (lib.callbacks.Callback,), ns)


def _keras_get_model(lib: Any) -> Any:
    model = lib.Sequential()
    model.add(lib.layers.Dense(1))
    model.compile(optimizer=lib.optimizers.RMSprop(learning_rate=0.1),
                  loss="mean_squared_error", metrics=["mean_absolute_error"])  # fmt: skip
    return model


@pytest.mark.slow  # importing Keras and its first fit on torch
def test_custom_callback_lines_match_keras(digits: Any) -> None:
    os.environ["KERAS_BACKEND"] = "torch"
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    real_keras = pytest.importorskip("keras")
    x, y, _, _, x_test, y_test = digits
    x, y, x_test, y_test = x[:500], y[:500].astype("float32"), x_test[:300], y_test[:300]
    want = _guide_run(real_keras, x, y, x_test, y_test)
    got = _guide_run(keras, x, y, x_test, y_test)
    assert got == want


class LossAndErrorPrintingCallback(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):  # type: ignore[no-untyped-def]
        print("Up to batch {}, the average loss is {:7.2f}.".format(batch, logs["loss"]))

    def on_test_batch_end(self, batch, logs=None):  # type: ignore[no-untyped-def]
        print("Up to batch {}, the average loss is {:7.2f}.".format(batch, logs["loss"]))

    def on_epoch_end(self, epoch, logs=None):  # type: ignore[no-untyped-def]
        print(
            "The average loss for epoch {} is {:7.2f} and mean absolute error is {:7.2f}.".format(
                epoch, logs["loss"], logs["mean_absolute_error"]
            )
        )


class EarlyStoppingAtMinLoss(keras.callbacks.Callback):
    def __init__(self, patience=0):  # type: ignore[no-untyped-def]
        super().__init__()
        self.patience = patience
        self.best_weights = None

    def on_train_begin(self, logs=None):  # type: ignore[no-untyped-def]
        self.wait = 0
        self.stopped_epoch = 0
        self.best = np.inf

    def on_epoch_end(self, epoch, logs=None):  # type: ignore[no-untyped-def]
        current = logs.get("loss")
        if np.less(current, self.best):
            self.best = current
            self.wait = 0
            self.best_weights = self.model.get_weights()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = epoch
                self.model.stop_training = True
                print("Restoring model weights from the end of the best epoch.")
                self.model.set_weights(self.best_weights)

    def on_train_end(self, logs=None):  # type: ignore[no-untyped-def]
        if self.stopped_epoch > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")


def test_printing_and_early_stopping_callbacks(digits: Any, capsys: Any) -> None:
    x_train, y_train, *_ = digits
    y_train = y_train.astype("float32")
    model = get_model()
    model.fit(x_train, y_train, batch_size=128, epochs=2, verbose=0,
              callbacks=[LossAndErrorPrintingCallback()])  # fmt: skip
    out = capsys.readouterr().out
    assert "The average loss for epoch 1 is" in out and "Up to batch 7" in out
    model = get_model()
    model.fit(x_train, y_train, batch_size=64, steps_per_epoch=5, epochs=30, verbose=0,
              callbacks=[LossAndErrorPrintingCallback(), EarlyStoppingAtMinLoss()])  # fmt: skip
    assert "early stopping" in capsys.readouterr().out  # RMSprop(0.1) overshoots


class CustomLearningRateScheduler(keras.callbacks.Callback):
    def __init__(self, schedule):  # type: ignore[no-untyped-def]
        super().__init__()
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):  # type: ignore[no-untyped-def]
        if not hasattr(self.model.optimizer, "learning_rate"):
            raise ValueError('Optimizer must have a "learning_rate" attribute.')
        lr = self.model.optimizer.learning_rate
        scheduled_lr = self.schedule(epoch, lr)
        self.model.optimizer.learning_rate = scheduled_lr
        print(f"\nEpoch {epoch}: Learning rate is {float(np.array(scheduled_lr))}.")


LR_SCHEDULE = [(3, 0.05), (6, 0.01), (9, 0.005), (12, 0.001)]


def lr_schedule(epoch, lr):  # type: ignore[no-untyped-def]
    if epoch < LR_SCHEDULE[0][0] or epoch > LR_SCHEDULE[-1][0]:
        return lr
    for i in range(len(LR_SCHEDULE)):
        if epoch == LR_SCHEDULE[i][0]:
            return LR_SCHEDULE[i][1]
    return lr


def test_custom_learning_rate_scheduler(digits: Any, capsys: Any) -> None:
    x_train, y_train, *_ = digits
    model = get_model()
    model.fit(x_train, y_train.astype("float32"), batch_size=64, steps_per_epoch=2, epochs=8,
              verbose=0, callbacks=[CustomLearningRateScheduler(lr_schedule)])  # fmt: skip
    out = capsys.readouterr().out
    assert "Epoch 3: Learning rate is 0.05" in out and "Epoch 6: Learning rate is 0.01" in out
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)


def test_api_overview_numbers_match_keras(digits: Any) -> None:
    """Same weights, ``shuffle=False``: the guide's fit/evaluate give Keras's numbers."""
    os.environ["KERAS_BACKEND"] = "torch"
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    real = pytest.importorskip("keras")
    x_train, y_train, x_val, y_val, x_test, y_test = digits
    km = real.Sequential([real.Input((64,)), real.layers.Dense(64, activation="relu"),
                          real.layers.Dense(64, activation="relu"),
                          real.layers.Dense(10, activation="softmax")])  # fmt: skip
    km.compile(optimizer=real.optimizers.RMSprop(learning_rate=1e-3),
               loss=real.losses.SparseCategoricalCrossentropy(),
               metrics=[real.metrics.SparseCategoricalAccuracy()])  # fmt: skip
    model = get_compiled_model()
    model.set_weights([w.value.detach().numpy() for w in km.weights])
    fit = {"batch_size": 64, "epochs": 2, "validation_data": (x_val, y_val), "shuffle": False,
           "verbose": 0}  # fmt: skip
    want = km.fit(x_train, y_train, **fit).history
    got = model.fit(x_train, y_train, **fit).history
    assert sorted(got) == sorted(want)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=2e-4, abs=1e-5), k
    assert model.evaluate(x_test, y_test, batch_size=128, verbose=0) == pytest.approx(
        km.evaluate(x_test, y_test, batch_size=128, verbose=0), rel=2e-4, abs=1e-5
    )


def test_pytorch_dataloader_as_in_the_guide(digits: Any) -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    x_train, y_train, x_val, y_val, *_ = digits

    class ExampleTorchDataset(torch.utils.data.Dataset):
        def __init__(self, x, y):  # type: ignore[no-untyped-def]
            self.x = x
            self.y = y

        def __len__(self):  # type: ignore[no-untyped-def]
            return len(self.x)

        def __getitem__(self, idx):  # type: ignore[no-untyped-def]
            return self.x[idx], self.y[idx]

    train_torch_dataset = ExampleTorchDataset(x_train, y_train)
    val_torch_dataset = ExampleTorchDataset(x_val, y_val)
    train_dataloader = torch.utils.data.DataLoader(train_torch_dataset, batch_size=32)
    val_dataloader = torch.utils.data.DataLoader(val_torch_dataset, batch_size=32)
    gn.utils.set_random_seed(2)
    model = get_compiled_model()
    got = model.fit(train_dataloader, validation_data=val_dataloader, epochs=1, verbose=0)
    gn.utils.set_random_seed(2)
    same = get_compiled_model().fit(x_train, y_train, batch_size=32, epochs=1, shuffle=False,
                                    validation_data=(x_val, y_val), verbose=0)  # fmt: skip
    for k, v in same.history.items():
        assert got.history[k] == pytest.approx(v, rel=1e-6), k


def test_a_learning_rate_set_by_a_callback_is_the_one_used(digits: Any) -> None:
    x_train, y_train, *_ = digits
    y_train = y_train.astype("float32")
    runs = []
    for lr, callbacks in ((0.1, [CustomLearningRateScheduler(lambda e, lr: 0.01)]), (0.01, [])):
        gn.utils.set_random_seed(4)
        model = keras.Sequential([keras.layers.Dense(1, input_shape=(64,))])
        model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=lr), loss="mse")
        model.fit(x_train, y_train, batch_size=64, epochs=2, shuffle=False, verbose=0,
                  callbacks=callbacks)  # fmt: skip
        runs.append(model.get_weights())
    for a, b in zip(*runs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
