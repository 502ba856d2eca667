"""``gpunet demo --model cnn``: the convnet on scikit-learn's digits reaches 0.98."""

from __future__ import annotations

import re

import pytest

from gpunet.cli import main

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
