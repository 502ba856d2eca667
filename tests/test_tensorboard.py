"""callbacks.TensorBoard writes real event files: read back through the TFRecord
framing (checksums checked) and tensorboardX's Event protobuf."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest

import gpunet as gn


def test_without_tensorboardx_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ImportError, match=r"gpunet\[tensorboard\]"):
        gn.callbacks.TensorBoard(log_dir="logs")


def _events(run: Path) -> list:
    event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")
    from tensorboardX.record_writer import masked_crc32c

    (path,) = run.glob("events.out.tfevents.*")
    raw, out, i = path.read_bytes(), [], 0
    while i < len(raw):
        header = raw[i : i + 8]
        (n,) = struct.unpack("<Q", header)
        assert struct.unpack("<I", raw[i + 8 : i + 12])[0] == masked_crc32c(header)
        data = raw[i + 12 : i + 12 + n]
        assert struct.unpack("<I", raw[i + 12 + n : i + 16 + n])[0] == masked_crc32c(data)
        event = event_pb2.Event()
        event.ParseFromString(data)
        out.append(event)
        i += 16 + n
    return out


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    found: dict[str, list[tuple[int, float]]] = {}
    for e in _events(run):
        for v in e.summary.value:
            if v.HasField("simple_value"):
                found.setdefault(v.tag, []).append((e.step, v.simple_value))
    return found


@pytest.mark.slow
def test_scalars_of_two_epochs_read_back(tmp_path):
    pytest.importorskip("tensorboardX")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 3)), rng.normal(size=32)
    model = gn.Sequential([gn.layers.Dense(4, activation="relu", input_shape=(3,)),
                           gn.layers.Dense(1)])  # fmt: skip
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    cb = gn.callbacks.TensorBoard(log_dir=tmp_path, histogram_freq=1, update_freq=2)
    h = model.fit(x, y, epochs=2, batch_size=8, validation_data=(x[:8], y[:8]), callbacks=[cb],
                  verbose=0).history  # fmt: skip
    train, val = _scalars(tmp_path / "train"), _scalars(tmp_path / "validation")
    for name in ("loss", "mean_absolute_error" if "mean_absolute_error" in h else "mae"):
        got = train[f"epoch_{name}"]
        assert [s for s, _ in got] == [0, 1]
        np.testing.assert_allclose([v for _, v in got], h[name], rtol=1e-6)
        np.testing.assert_allclose([v for _, v in val[f"epoch_{name}"]], h[f"val_{name}"],
                                   rtol=1e-6)  # fmt: skip
    assert [s for s, _ in train["batch_loss"]] == [2, 4, 6, 8]  # 4 batches an epoch, every 2
    hists = {
        v.tag for e in _events(tmp_path / "train") for v in e.summary.value if v.HasField("histo")
    }
    assert hists == {w.name for w in model.weights}


def test_bad_update_freq_is_named():
    pytest.importorskip("tensorboardX")
    with pytest.raises(gn.errors.InvalidParameterError, match="update_freq"):
        gn.callbacks.TensorBoard(update_freq="sometimes")
