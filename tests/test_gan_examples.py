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
  pixels): untrained -0.33 to 0.14, after these 3 epochs 0.73-0.82. This is the check
  that catches a discriminator that never trains (the Keras 2 loop, without setting
  ``trainable`` back to True, gives -0.11 while its losses stay inside their bands).

The PyTorch-style step is also run on torch.nn itself, from the same weights.
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


def _torch_mirror(torch: Any, example: ModuleType) -> tuple[Any, Any]:
    """The example's generator and discriminator in torch.nn, dropout left out."""
    tnn, latent = torch.nn, example.LATENT_DIM
    G = tnn.Sequential(
        tnn.Linear(latent, 64 * 4 * 4), tnn.BatchNorm1d(64 * 4 * 4), tnn.LeakyReLU(0.2),
        tnn.Unflatten(1, (64, 4, 4)),
        tnn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), tnn.BatchNorm2d(32),
        tnn.LeakyReLU(0.2), tnn.Conv2d(32, 1, 3, padding=1), tnn.Tanh(),
    )  # fmt: skip
    D = tnn.Sequential(
        tnn.Conv2d(1, 32, 3, stride=2, padding=1), tnn.LeakyReLU(0.2), tnn.Identity(),
        tnn.Conv2d(32, 64, 3, stride=2, padding=1), tnn.LeakyReLU(0.2), tnn.Identity(),
        tnn.Flatten(), tnn.Linear(64 * 2 * 2, 1),
    )  # fmt: skip
    return G, D


# gn.nn.BatchNorm1d keeps the Keras names of BatchNormalization
_TORCH_NAME = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
               "moving_variance": "running_var"}  # fmt: skip


def _state(module: Any) -> dict[str, np.ndarray]:
    out = {}
    for key, value in module.state_dict().items():
        head, _, last = key.rpartition(".")
        name = key if head.startswith("net") else f"net.{key}"
        out[name.rpartition(".")[0] + "." + _TORCH_NAME.get(last, last)] = np.asarray(value)
    return out


@pytest.mark.slow
def test_gan_torch_train_step_is_pytorch_code() -> None:
    """The example's train_step, run on gn.nn and on torch.nn from the same weights,
    lands on the same losses, weights and running statistics (two steps)."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    import gpunet as gn

    example = _example("gan_torch")
    gn.manual_seed(0)
    G, D = example.Generator(), example.Discriminator()
    for layer in D.net:
        if isinstance(layer, gn.nn.Dropout):
            layer.rate = 0.0  # the two libraries draw different masks
    tG, tD = _torch_mirror(torch, example)
    for ours, theirs in ((G, tG), (D, tD)):
        want = {k.removeprefix("net."): torch.tensor(v) for k, v in _state(ours).items()}
        theirs.load_state_dict(want, strict=False)
    # SGD, not the example's Adam: a bias feeding a BatchNorm has a zero gradient up to
    # rounding, which Adam would scale up to a full step in either library differently
    opts = [gn.optim.SGD(m.parameters(), lr=0.1) for m in (G, D)]
    t_opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (tG, tD)]
    rng = np.random.default_rng(0)
    for _ in range(2):
        real = rng.uniform(-1, 1, size=(8, 1, 8, 8)).astype(np.float32)
        noise = rng.normal(size=(8, example.LATENT_DIM)).astype(np.float32)
        ones, zeros = np.ones((8, 1), np.float32), np.zeros((8, 1), np.float32)
        arrays = (real, noise, ones, zeros)
        got = example.train_step(
            G, D, *opts, gn.nn.BCEWithLogitsLoss(), *(gn.tensor(a) for a in arrays)
        )
        want = example.train_step(
            tG, tD, *t_opts, torch.nn.BCEWithLogitsLoss(), *(torch.tensor(a) for a in arrays)
        )
        np.testing.assert_allclose(got, want, rtol=1e-5)
    for ours, theirs in ((G, tG), (D, tD)):
        t_state = {f"net.{k}": v.detach().numpy() for k, v in theirs.state_dict().items()}
        for key, value in _state(ours).items():
            np.testing.assert_allclose(value, t_state[key], rtol=1e-4, atol=1e-6, err_msg=key)
