"""The two GAN examples (examples/gan_keras.py, examples/gan_torch.py), run short.

Each runs 3 epochs on the first 1024 digits (48 steps of batch 64; the examples
themselves state 40 epochs on all 1797). The bands, from seeds 0-2 of both examples:

- discriminator loss, each epoch's mean: observed 0.62-0.69 (ln 2 = 0.693 is where D
  cannot tell real from fake). Below 0.3 D separates them almost perfectly (G's
  gradient vanishes: a collapse); above 1.0 D does worse than guessing (diverged).
- spread across samples (the per-pixel std over 32 samples, averaged): untrained
  generators give 0.04-0.07, trained ones 0.20-0.49; a generator emitting one image
  for every noise vector gives ~0.
- the mean generated image against the mean real digit (correlation of the 64
  pixels): untrained -0.33 to 0.14, after these 3 epochs 0.73-0.82.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

pytest.importorskip("sklearn")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gan_keras", "gan_torch"])
def test_gan_example_trains(name: str, tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    example = _example(name)
    every_digit = example.load_digits
    monkeypatch.setattr(example, "load_digits", lambda: every_digit()[:1024])
    out = tmp_path / "samples.png"
    history = example.main(["--epochs", "3", "--seed", "0", "--out", str(out)])

    d_loss, g_loss = np.array(history["d_loss"]), np.array(history["g_loss"])
    assert d_loss.shape == g_loss.shape == (3,)
    assert np.isfinite(d_loss).all() and np.isfinite(g_loss).all()
    assert ((d_loss > 0.3) & (d_loss < 1.0)).all(), d_loss
    assert (g_loss < 3.0).all(), g_loss
    printed = capsys.readouterr().out
    assert "epoch 3/3  d_loss" in printed and "g_loss" in printed

    samples = history["samples"]
    assert samples.shape == (32, 8, 8)
    assert np.isfinite(samples).all()
    assert samples.min() >= -1.0 and samples.max() <= 1.0  # tanh
    assert samples.std(axis=0).mean() > 0.1, "the generator ignores its noise"
    real_mean = every_digit().reshape(-1, 64).mean(axis=0)
    corr = np.corrcoef(samples.reshape(32, 64).mean(axis=0), real_mean)[0, 1]
    assert corr > 0.5, f"the samples do not look like digits on average (corr {corr:.2f})"

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not out.exists() and "matplotlib is not installed" in printed
    else:
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_save_grid_says_so_without_matplotlib(tmp_path: Path, monkeypatch: Any,
                                              capsys: Any) -> None:  # fmt: skip
    example = _example("gan_keras")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = tmp_path / "samples.png"
    assert example.save_grid(np.zeros((32, 8, 8)), str(out)) is False
    assert not out.exists()
    assert "matplotlib is not installed" in capsys.readouterr().out
