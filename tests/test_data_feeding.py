"""gn.data (Dataset, TensorDataset, Subset, random_split, DataLoader), streamed
input to fit/evaluate/predict (generators, PyDataset), and saving friction."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

import gpunet as gn
from gpunet.errors import InputValidationError, InvalidParameterError


def _xy(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, 4)).astype("float32"), rng.integers(0, 3, n)


def _model(metrics: Any = ("accuracy",)) -> Any:
    gn.utils.set_random_seed(0)
    m = gn.Sequential([gn.layers.Dense(8, activation="relu", input_shape=(4,)),
                       gn.layers.Dense(3, activation="softmax")])  # fmt: skip
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=list(metrics))
    return m


def test_dataloader_batches_drop_last_and_seeded_shuffle() -> None:
    X, y = _xy(10)
    ds = gn.data.TensorDataset(X, y)
    assert len(ds) == 10 and ds[3][0].shape == (4,)
    sizes = [len(xb) for xb, _ in gn.data.DataLoader(ds, batch_size=4)]
    assert sizes == [4, 4, 2]
    assert len(gn.data.DataLoader(ds, batch_size=4, drop_last=True)) == 2
    a = [yb.numpy() for _, yb in gn.data.DataLoader(ds, batch_size=3, shuffle=True, generator=7)]
    b = [yb.numpy() for _, yb in gn.data.DataLoader(ds, batch_size=3, shuffle=True, generator=7)]
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    assert sorted(np.concatenate(a).tolist()) == sorted(y.tolist())
    first = next(iter(gn.data.DataLoader(ds, batch_size=4)))
    assert isinstance(first[0], gn.Tensor) and np.array_equal(first[0].numpy(), X[:4])


def test_dataloader_custom_dataset_and_collate() -> None:
    class Squares(gn.data.Dataset):
        def __len__(self) -> int:
            return 5

        def __getitem__(self, i: int) -> tuple[float, int]:
            return float(i * i), i

    xb, yb = next(iter(gn.data.DataLoader(Squares(), batch_size=5)))
    assert xb.numpy().tolist() == [0.0, 1.0, 4.0, 9.0, 16.0] and yb.numpy().tolist() == [
        0,
        1,
        2,
        3,
        4,
    ]
    summed = list(gn.data.DataLoader(Squares(), batch_size=2, collate_fn=lambda s: len(s)))
    assert summed == [2, 2, 1]


def test_random_split_and_subset() -> None:
    ds = gn.data.TensorDataset(np.arange(10))
    a, b = gn.data.random_split(ds, [0.8, 0.2], generator=np.random.default_rng(0))
    idx = a.indices + b.indices
    assert (len(a), len(b)) == (8, 2) and sorted(idx) == list(range(10))
    c, d, e = gn.data.random_split(ds, [3, 3, 4], generator=1)
    assert (len(c), len(d), len(e)) == (3, 3, 4)
    assert int(gn.data.Subset(ds, [9, 2])[0][0]) == 9
    with pytest.raises(InvalidParameterError, match="does not equal the length"):
        gn.data.random_split(ds, [3, 3])


def test_bad_loader_arguments() -> None:
    with pytest.raises(InvalidParameterError, match="batch_size"):
        gn.data.DataLoader(gn.data.TensorDataset(np.zeros(3)), batch_size=0)
    with pytest.raises(InputValidationError, match="Size mismatch"):
        gn.data.TensorDataset(np.zeros(3), np.zeros(4))
    with pytest.raises(InvalidParameterError, match="generator"):
        gn.data.DataLoader(gn.data.TensorDataset(np.zeros(3)), shuffle=True, generator="x")


def _gen(X: np.ndarray, y: np.ndarray, bs: int, repeat: bool = True) -> Any:
    while True:
        for i in range(0, len(X), bs):
            yield X[i : i + bs], y[i : i + bs]
        if not repeat:
            return


def test_fit_on_a_generator_equals_fit_on_arrays() -> None:
    X, y = _xy(40)
    a, b = _model(), _model()
    ha = a.fit(X, y, batch_size=10, epochs=3, shuffle=False, verbose=0,
               validation_data=(X, y)).history  # fmt: skip
    hb = b.fit(_gen(X, y, 10), steps_per_epoch=4, epochs=3, verbose=0,
               validation_data=_gen(X, y, 10), validation_steps=4).history  # fmt: skip
    for k in ha:
        assert hb[k] == pytest.approx(ha[k], rel=1e-6), k
    assert b.evaluate(_gen(X, y, 10), steps=4, verbose=0) == pytest.approx(
        a.evaluate(X, y, batch_size=10, verbose=0), rel=1e-6
    )
    got = b.predict(X[i : i + 10] for i in range(0, 40, 10))
    assert np.allclose(got, a.predict(X), rtol=1e-6)


def test_a_spent_generator_warns_and_stops() -> None:
    X, y = _xy(20)
    m = _model()
    with pytest.warns(UserWarning, match="ran out of data"):
        h = m.fit(_gen(X, y, 10, repeat=False), epochs=5, verbose=0)
    assert len(h.history["loss"]) == 1


def test_pydataset_weights_and_epoch_end() -> None:
    X, y = _xy(30)

    class Seq(gn.utils.PyDataset):
        ends = 0

        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int) -> tuple[Any, ...]:
            s = slice(i * 10, (i + 1) * 10)
            return X[s], y[s], np.full(10, 2.0)

        def on_epoch_begin(self) -> None:
            self.begins += 1

        def on_epoch_end(self) -> None:
            self.ends += 1

    seq = Seq(workers=2)
    seq.begins = 0
    m = _model()
    m.fit(seq, epochs=2, verbose=0)
    assert seq.ends == 2 and seq.begins == 2
    weighted = m.evaluate(seq, verbose=0)
    same = m.evaluate(X, y, batch_size=10, sample_weight=np.full(30, 2.0), verbose=0)
    assert weighted == pytest.approx(same, rel=1e-6)


def test_endless_pydataset_with_steps_per_epoch() -> None:
    X, y = _xy(20)

    class Endless(gn.utils.PyDataset):
        @property
        def num_batches(self) -> None:
            return None

        def __getitem__(self, i: int) -> tuple[Any, ...]:
            s = slice((i % 2) * 10, (i % 2 + 1) * 10)
            return X[s], y[s]

    a, b = _model(), _model()
    ha = a.fit(Endless(), steps_per_epoch=2, epochs=2, verbose=0).history
    hb = b.fit(X, y, batch_size=10, epochs=2, shuffle=False, verbose=0).history
    assert ha["loss"] == pytest.approx(hb["loss"], rel=1e-6)


def test_stream_rejects_y_and_validation_split() -> None:
    X, y = _xy(20)
    with pytest.raises(InvalidParameterError, match="list of Callback"):
        _model().fit(X, y, callbacks=gn.callbacks.History(), verbose=0)
    with pytest.raises(InvalidParameterError, match="batches hold y"):
        _model().fit(_gen(X, y, 10), y, verbose=0)
    with pytest.raises(InputValidationError, match=r"\(x, y\)"):
        _model().fit((X[i : i + 5] for i in range(0, 20, 5)), verbose=0)


def test_metric_objects_are_saved_and_loaded(tmp_path: Any) -> None:
    X, y = _xy(20)
    m = _model([gn.metrics.SparseCategoricalAccuracy(), "accuracy"])
    m.fit(X, y, epochs=1, verbose=0)
    path = tmp_path / "m.gpunet"
    m.save(path)
    again = gn.models.load_model(path)
    assert [type(x).__name__ for x in again.compiled_metrics] == [
        "SparseCategoricalAccuracy", "SparseCategoricalAccuracy",
    ]  # fmt: skip
    assert again.evaluate(X, y, verbose=0) == pytest.approx(m.evaluate(X, y, verbose=0))


def test_model_checkpoint_refuses_an_unsavable_model_before_training(tmp_path: Any) -> None:
    class MyAccuracy(gn.metrics.SparseCategoricalAccuracy):
        pass

    X, y = _xy(20)
    m = _model([MyAccuracy()])
    before = [w.copy() for w in m.get_weights()]
    ckpt = gn.callbacks.ModelCheckpoint(str(tmp_path / "c.gpunet"))
    with pytest.raises(InvalidParameterError, match=r"MyAccuracy.*save_weights_only=True"):
        m.fit(X, y, epochs=2, verbose=0, callbacks=[ckpt])
    assert all(np.array_equal(a, b) for a, b in zip(before, m.get_weights(), strict=True))
    # the advice works
    ok = gn.callbacks.ModelCheckpoint(str(tmp_path / "c.gpunet"), save_weights_only=True)
    m.fit(X, y, epochs=1, verbose=0, callbacks=[ok])
    assert os.path.exists(tmp_path / "c.gpunet")
    with pytest.raises(InvalidParameterError, match="include_optimizer=False"):
        m.save(tmp_path / "x.gpunet")
    m.save(tmp_path / "x.gpunet", include_optimizer=False)


def test_save_weights_creates_the_folder(tmp_path: Any) -> None:
    m = _model()
    path = tmp_path / "checkpoints" / "my_checkpoint"
    m.save_weights(path)
    m.load_weights(path)
    assert os.path.exists(path)


def _sim_model(ops: Any) -> Any:
    gn.utils.set_random_seed(3)
    m = gn.Sequential([gn.layers.Dense(8, activation="relu", input_shape=(4,)),
                       gn.layers.Dense(3, activation="softmax")], device=ops)  # fmt: skip
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


@pytest.mark.parametrize("batch_size", [20, 4])
def test_streamed_fit_on_the_simulated_device(batch_size: int) -> None:
    """On a device that is not the host (mixing arrays raises, reads are counted), a
    generator trains to the CPU's numbers and reads the device a number of times
    per epoch that does not grow with the batches; hooks that read no logs cost none."""
    pytest.importorskip("array_api_strict")
    from gpunet.backend.strict_ops import StrictOps

    X, y = _xy(40)
    steps = 40 // batch_size
    ops = StrictOps()
    sim, cpu2 = _sim_model(ops), _sim_model("cpu")
    for m in (sim, cpu2):  # builds the optimizer: its first reads are not per epoch
        m.fit(_gen(X, y, batch_size), steps_per_epoch=steps, epochs=1, verbose=0)
    before = ops.host_syncs
    h_sim = sim.fit(_gen(X, y, batch_size), steps_per_epoch=steps, epochs=2, verbose=0,
                    callbacks=[gn.callbacks.Callback()])  # fmt: skip
    h_cpu = cpu2.fit(_gen(X, y, batch_size), steps_per_epoch=steps, epochs=2, verbose=0).history
    assert (ops.host_syncs - before) / 2 == 5  # loss and accuracy sums, the finite flag
    for k in h_cpu:
        np.testing.assert_allclose(h_sim.history[k], h_cpu[k], rtol=1e-5, err_msg=k)
    rec: list[str] = []
    cb = gn.callbacks.LambdaCallback(
        on_test_batch_end=lambda b, logs: rec.append("t"),
        on_predict_batch_end=lambda b, logs: rec.append("p"),
    )
    got = sim.evaluate(_gen(X, y, batch_size), steps=steps, callbacks=[cb], verbose=0)
    np.testing.assert_allclose(got, cpu2.evaluate(X, y, batch_size=batch_size, verbose=0),
                               rtol=1e-5)  # fmt: skip
    out = sim.predict((X[i : i + batch_size] for i in range(0, 40, batch_size)), callbacks=[cb])
    np.testing.assert_allclose(out, cpu2.predict(X), rtol=1e-5, atol=1e-6)
    assert rec == ["t"] * steps + ["p"] * steps


def test_progress_bar_for_a_generator_of_unknown_length(capsys: Any, monkeypatch: Any) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "tqdm", None)  # the plain text bar
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    X, y = _xy(20)
    _model().fit(_gen(X, y, 10, repeat=False), epochs=1, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/1" in out and "loss:" in out and "None" not in out
