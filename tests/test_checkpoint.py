"""ModelCheckpoint and BackupAndRestore: what they write, and that a resumed run is
bit-identical (weights, optimizer state, random state) to an uninterrupted one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import gpunet as gn
from gpunet.errors import InvalidParameterError, ModelFileError

RNG = np.random.default_rng(0)
X = RNG.normal(size=(60, 5)).astype("float32")
Y = RNG.integers(0, 3, 60)
FIT = {"epochs": 4, "batch_size": 8, "verbose": 0, "validation_split": 0.2}


def _make(seed, optimizer="adam"):
    gn.utils.set_random_seed(seed)
    model = gn.Sequential([
        gn.layers.Dense(16, activation="relu", input_shape=(5,)),
        gn.layers.Dropout(0.3),
        gn.layers.BatchNormalization(),
        gn.layers.Dense(3, activation="softmax"),
    ])  # fmt: skip
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])  # fmt: skip
    return model


def _state(model):
    opt = model.optimizer
    return ([w.tobytes() for w in model.get_weights()],
            {k: v.tobytes() for k, v in opt.state_arrays().items()},
            opt.iterations, opt.learning_rate, gn.random.get_state())  # fmt: skip


class StopAfter(gn.callbacks.Callback):
    """Simulate a crash: raise once epoch ``k`` has ended (after the backup)."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.k:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop"])
@pytest.mark.parametrize("crash_epoch", [0, 1, 2])
def test_resumed_run_is_bit_identical(tmp_path, crash_epoch, optimizer):
    straight = _make(1, optimizer)
    straight.fit(X, Y, **FIT)
    expected = _state(straight)

    first = _make(1, optimizer)
    backup = gn.callbacks.BackupAndRestore(tmp_path)
    with pytest.raises(RuntimeError, match="simulated crash"):
        first.fit(X, Y, **FIT, callbacks=[backup, StopAfter(crash_epoch)])
    assert os.listdir(tmp_path) == ["latest.gpunet"]
    resumed = _make(99, optimizer)  # different initial weights and random streams
    history = resumed.fit(X, Y, **FIT, callbacks=[gn.callbacks.BackupAndRestore(tmp_path)])
    assert history.epoch == list(range(crash_epoch + 1, 4))
    assert _state(resumed) == expected  # ==, not a tolerance
    assert os.listdir(tmp_path) == []  # delete_checkpoint=True after a finished fit


RUN = textwrap.dedent("""
    import json, os, sys
    import numpy as np, gpunet as gn
    crash, backup_dir, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5)).astype("float32"); Y = rng.integers(0, 3, 60)
    gn.utils.set_random_seed(int(sys.argv[4]))
    model = gn.Sequential([gn.layers.Dense(16, activation="relu", input_shape=(5,)),
                           gn.layers.Dropout(0.3), gn.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    class Kill(gn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == crash:
                os._exit(17)  # no cleanup, no on_train_end: as a killed process
    cbs = [gn.callbacks.BackupAndRestore(backup_dir)] if backup_dir != "-" else []
    model.fit(X, Y, epochs=4, batch_size=8, verbose=0, callbacks=cbs + [Kill()])
    model.save(out)
    print(json.dumps(gn.random.get_state()))
""")


def _run(*args):
    return subprocess.run([sys.executable, "-c", RUN, *map(str, args)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_resume_in_a_fresh_process_is_bit_identical(tmp_path):
    straight = _run(-1, "-", tmp_path / "a.gpunet", 1)
    assert straight.returncode == 0, straight.stderr
    killed = _run(1, tmp_path / "backup", tmp_path / "unused.gpunet", 1)
    assert killed.returncode == 17, killed.stderr
    resumed = _run(-1, tmp_path / "backup", tmp_path / "b.gpunet", 5)  # another seed
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == json.loads(straight.stdout)  # random streams
    a, b = (gn.models.load_model(tmp_path / f) for f in ("a.gpunet", "b.gpunet"))
    assert [w.tobytes() for w in a.get_weights()] == [w.tobytes() for w in b.get_weights()]
    sa, sb = a.optimizer.state_arrays(), b.optimizer.state_arrays()
    assert {k: v.tobytes() for k, v in sa.items()} == {k: v.tobytes() for k, v in sb.items()}
    assert a.optimizer.iterations == b.optimizer.iterations == 4 * 8


def test_a_damaged_latest_backup_falls_back_to_the_previous(tmp_path):
    straight = _make(1)
    straight.fit(X, Y, **FIT)
    first = _make(1)
    double = gn.callbacks.BackupAndRestore(tmp_path, double_checkpoint=True)
    with pytest.raises(RuntimeError):
        first.fit(X, Y, **FIT, callbacks=[double, StopAfter(2)])
    assert sorted(os.listdir(tmp_path)) == ["latest.gpunet", "previous.gpunet"]
    (tmp_path / "latest.gpunet").write_bytes(b"0")
    resumed = _make(5)
    with pytest.warns(UserWarning, match="resuming from the previous backup"):
        history = resumed.fit(X, Y, **FIT, callbacks=[
            gn.callbacks.BackupAndRestore(tmp_path, double_checkpoint=True)])  # fmt: skip
    assert history.epoch == [2, 3]  # the previous backup was taken after epoch 1
    assert _state(resumed) == _state(straight)


def test_a_damaged_single_backup_is_an_error_not_a_fresh_start(tmp_path):
    (tmp_path / "latest.gpunet").write_bytes(b"not a model")
    model = _make(1)
    with pytest.raises(ModelFileError, match=r"latest.gpunet.*bad magic"):
        model.fit(X, Y, **FIT, callbacks=[gn.callbacks.BackupAndRestore(tmp_path)])


def test_a_backup_of_another_architecture_names_the_tensor(tmp_path):
    other = gn.Sequential([gn.layers.Dense(4, input_shape=(5,)), gn.layers.Dense(3)])
    other.compile(optimizer="adam", loss="mse")
    with pytest.raises(RuntimeError):
        other.fit(X, np.eye(3)[Y], epochs=2, verbose=0,
                  callbacks=[gn.callbacks.BackupAndRestore(tmp_path), StopAfter(0)])  # fmt: skip
    with pytest.raises(ModelFileError, match=r"missing tensor 'layers\.2\.gamma'"):
        _make(1).fit(X, Y, **FIT, callbacks=[gn.callbacks.BackupAndRestore(tmp_path)])


def test_backup_every_n_batches_and_keep_on_request(tmp_path):
    seen = []

    class Look(gn.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(os.path.exists(tmp_path / "latest.gpunet"))

    backup = gn.callbacks.BackupAndRestore(tmp_path, save_freq=3, delete_checkpoint=False)
    _make(1).fit(X, Y, epochs=1, batch_size=8, verbose=0, callbacks=[backup, Look()])
    assert seen == [False, False, True, True, True, True, True, True]
    assert os.listdir(tmp_path) == ["latest.gpunet"]
    with pytest.raises(InvalidParameterError, match="save_freq"):
        gn.callbacks.BackupAndRestore(tmp_path, save_freq=0)


def test_model_checkpoint_formats_names_and_keeps_the_best(tmp_path):
    model = _make(1)
    best = gn.callbacks.ModelCheckpoint(tmp_path / "best.gpunet", monitor="val_loss",
                                        save_best_only=True)  # fmt: skip
    every = gn.callbacks.ModelCheckpoint(tmp_path / "e{epoch:02d}-{val_loss:.2f}.gpunet")
    history = model.fit(X, Y, **FIT, callbacks=[best, every])
    losses = history.history["val_loss"]
    names = sorted(p for p in os.listdir(tmp_path) if p.startswith("e"))
    assert names == [f"e{i + 1:02d}-{v:.2f}.gpunet" for i, v in enumerate(losses)]
    assert best.best == min(losses)
    kept = gn.models.load_model(tmp_path / "best.gpunet")
    epoch = int(np.argmin(losses))
    at_best = gn.models.load_model(tmp_path / names[epoch])
    assert [w.tobytes() for w in kept.get_weights()] == [w.tobytes() for w in at_best.get_weights()]


def test_model_checkpoint_threshold_batches_and_weights_only(tmp_path):
    model = _make(1)
    never = gn.callbacks.ModelCheckpoint(
        tmp_path / "never.gpunet", monitor="loss", save_best_only=True, initial_value_threshold=0.0
    )
    batches = gn.callbacks.ModelCheckpoint(tmp_path / "b{epoch}-{batch}.gpunet", save_freq=4,
                                           save_weights_only=True)  # fmt: skip
    model.fit(X, Y, epochs=2, batch_size=8, verbose=0, callbacks=[never, batches])
    assert sorted(os.listdir(tmp_path)) == ["b1-4.gpunet", "b1-8.gpunet", "b2-4.gpunet",
                                            "b2-8.gpunet"]  # fmt: skip
    _make(7).load_weights(tmp_path / "b2-8.gpunet")
    with pytest.raises(ModelFileError, match="'weights' file"):
        gn.models.load_model(tmp_path / "b2-8.gpunet")


def test_model_checkpoint_errors_and_warnings(tmp_path):
    model = _make(1)
    with pytest.warns(UserWarning, match="'val_auc' is not in the logs"):
        model.fit(X, Y, epochs=1, verbose=0, callbacks=[gn.callbacks.ModelCheckpoint(
            tmp_path / "m.gpunet", monitor="val_auc", save_best_only=True)])  # fmt: skip
    with pytest.raises(InvalidParameterError, match=r"cannot format.*'nope'"):
        model.fit(
            X,
            Y,
            epochs=1,
            verbose=0,
            callbacks=[gn.callbacks.ModelCheckpoint(tmp_path / "{nope}.gpunet")],
        )

    class Sub(gn.Model):
        def __init__(self):
            super().__init__()
            self.d = gn.layers.Dense(3)

        def call(self, x):
            return self.d(x)

    sub = Sub()
    sub.compile(optimizer="sgd", loss="mse")
    with pytest.raises(InvalidParameterError, match="save_weights_only=True"):
        sub.fit(
            X,
            np.eye(3)[Y],
            verbose=0,
            callbacks=[gn.callbacks.ModelCheckpoint(tmp_path / "s.gpunet")],
        )
    sub.fit(X, np.eye(3)[Y], verbose=0, callbacks=[gn.callbacks.ModelCheckpoint(
        tmp_path / "s.gpunet", save_weights_only=True)])  # fmt: skip
    assert (tmp_path / "s.gpunet").exists()
    assert not (tmp_path / "m.gpunet").exists()


def test_only_the_chief_writes(tmp_path):
    class NotChief(gn.strategy.LocalStrategy):
        rank = 1

    model = _make(1)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  strategy=NotChief())  # fmt: skip
    model.fit(X, Y, epochs=2, verbose=0, callbacks=[
        gn.callbacks.ModelCheckpoint(tmp_path / "m.gpunet"),
        gn.callbacks.BackupAndRestore(tmp_path / "backup", delete_checkpoint=False)])  # fmt: skip
    assert os.listdir(tmp_path) == []
