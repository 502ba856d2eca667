"""``gpunet demo --model cnn``: the convnet on scikit-learn's digits reaches 0.98, and
the same convnet trains to the CPU's numbers on the simulated device."""

from __future__ import annotations

import re

import numpy as np
import pytest

import gpunet as gn
from gpunet.cli import _cnn, main

pytest.importorskip("sklearn")


@pytest.mark.slow
def test_cnn_demo_reaches_98_percent_and_reports_it(capsys):
    assert main(["demo", "--model", "cnn"]) == 0
    out = capsys.readouterr().out
    assert "digits: 1437 training and 360 test images of 8x8 pixels" in out
    assert "Conv2D" in out and "MaxPooling2D" in out and "(None, 8, 8, 16)" in out
    took = re.search(r"trained (\d+) epochs in ([\d.]+) s", out)
    assert took is not None and int(took.group(1)) == 40, out
    acc = re.search(r"test accuracy: ([\d.]+)", out)
    assert acc is not None, out
    assert float(acc.group(1)) >= 0.98, out


def test_model_flag_rejects_an_unknown_model(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--model", "rnn"])
    assert "invalid choice: 'rnn'" in capsys.readouterr().err


def test_mlp_stays_the_default(capsys):
    assert main(["demo", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "Dense" in out and "Conv2D" not in out
    assert "trained 1 epochs" in out


@pytest.mark.parametrize("fast", [True, False], ids=["graph-free-step", "graph-step"])
def test_the_demo_convnet_fits_on_sim_to_the_cpus_numbers(fast):
    rng = np.random.default_rng(1)
    X = rng.uniform(size=(96, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, size=96)
    out = {}
    for device in ("cpu", "sim"):
        gn.utils.set_random_seed(0)
        model = _cnn(gn, device)
        model.use_fastpath = fast
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])  # fmt: skip
        hist = model.fit(X, y, epochs=2, batch_size=32, validation_split=0.25, verbose=0)
        assert (model._step_plan is not None) == fast, device
        out[device] = (hist.history, model.predict(X[:5]), model.get_weights())
    (h0, p0, w0), (h1, p1, w1) = out["cpu"], out["sim"]
    assert h0.keys() == h1.keys() and "val_loss" in h0
    for key in h0:
        np.testing.assert_allclose(h1[key], h0[key], rtol=1e-5, err_msg=key)
    np.testing.assert_allclose(p1, p0, rtol=1e-5, atol=1e-6)
    assert len(w0) == 6  # two conv kernels and biases, the dense kernel and bias
    for a, b in zip(w1, w0, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
