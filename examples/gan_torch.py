"""A DCGAN on scikit-learn's 8x8 digits, written the PyTorch way with ``gpunet.nn``.

Two modules, two optimizers and a hand-written loop: the discriminator steps on real
images and on ``fake.detach()`` (so its loss does not reach the generator), then the
generator steps on the discriminator's verdict on the same fakes. Images are NCHW, as
in PyTorch; the discriminator returns logits and the loss is ``BCEWithLogitsLoss``.

    python examples/gan_torch.py --epochs 40 --out gan_torch.png

40 epochs (28 batches of 64 each) take about 30 s of CPU time (one core, NumPy).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

import gpunet as gn
from gpunet import nn

LATENT_DIM = 32


def load_digits() -> np.ndarray:
    """The 1797 digits as (n, 1, 8, 8) float32 images scaled from [0, 16] to [-1, 1]."""
    from sklearn.datasets import load_digits as sk_load_digits

    X = sk_load_digits().images.astype(np.float32)
    return (X / 8.0 - 1.0)[:, None]


class Generator(nn.Module):
    """Noise (32,) -> 64x4x4 -> upsampled to 32x8x8 -> one tanh channel in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(LATENT_DIM, 64 * 4 * 4),
            nn.BatchNorm1d(64 * 4 * 4),
            nn.LeakyReLU(0.2),
            nn.Unflatten(1, (64, 4, 4)),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1),
            nn.BatchNorm2d(32),
            nn.LeakyReLU(0.2),
            nn.Conv2d(32, 1, 3, padding=1),
            nn.Tanh(),
        )

    def forward(self, z: Any) -> Any:
        return self.net(z)


class Discriminator(nn.Module):
    """A 1x8x8 image -> one logit: > 0 means "real"."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Dropout(0.3),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Dropout(0.3),
            nn.Flatten(),
            nn.Linear(64 * 2 * 2, 1),
        )

    def forward(self, x: Any) -> Any:
        return self.net(x)


def train_step(G: Any, D: Any, opt_G: Any, opt_D: Any, criterion: Any, real: Any, noise: Any,
               real_label: Any, fake_label: Any) -> tuple[float, float]:  # fmt: skip
    """One step of each network on one batch; returns the two losses.

    This is PyTorch code: given torch modules, optimizers and tensors it runs unchanged
    (tests/test_gan_examples.py runs it on both and compares the weights).
    """
    fake = G(noise)

    # 1. the discriminator learns to tell real (1) from generated (0);
    #    detach(): this loss must not flow back into the generator
    opt_D.zero_grad()
    d_real = criterion(D(real), real_label)
    d_fake = criterion(D(fake.detach()), fake_label)
    d_loss = 0.5 * (d_real + d_fake)
    d_loss.backward()
    opt_D.step()

    # 2. the generator learns to make the discriminator say "real"; the gradients
    #    this leaves on D's weights are cleared by D's next zero_grad
    opt_G.zero_grad()
    g_loss = criterion(D(fake), real_label)
    g_loss.backward()
    opt_G.step()
    return d_loss.item(), g_loss.item()


def train(epochs: int = 40, seed: int = 0, batch_size: int = 64,
          verbose: bool = True) -> dict[str, Any]:  # fmt: skip
    """Train the GAN; returns the per-epoch mean losses and 32 generated samples."""
    gn.manual_seed(seed)
    images = gn.tensor(load_digits())
    loader = gn.data.DataLoader(
        gn.data.TensorDataset(images), batch_size=batch_size, shuffle=True, drop_last=True
    )

    G, D = Generator(), Discriminator()
    opt_G = gn.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_D = gn.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    criterion = nn.BCEWithLogitsLoss()
    real_label = gn.ones(batch_size, 1)
    fake_label = gn.zeros(batch_size, 1)

    history: dict[str, Any] = {"d_loss": [], "g_loss": []}
    for epoch in range(epochs):
        d_losses, g_losses = [], []
        for (real,) in loader:
            noise = gn.randn(batch_size, LATENT_DIM)
            d_loss, g_loss = train_step(
                G, D, opt_G, opt_D, criterion, real, noise, real_label, fake_label
            )
            d_losses.append(d_loss)
            g_losses.append(g_loss)

        history["d_loss"].append(float(np.mean(d_losses)))
        history["g_loss"].append(float(np.mean(g_losses)))
        if verbose:
            print(
                f"epoch {epoch + 1}/{epochs}  "
                f"d_loss {history['d_loss'][-1]:.3f}  g_loss {history['g_loss'][-1]:.3f}"
            )

    G.eval()  # BatchNorm uses its running statistics
    with gn.no_grad():
        gn.manual_seed(seed + 1)
        history["samples"] = G(gn.randn(32, LATENT_DIM)).numpy()[:, 0]
    return history


def save_grid(samples: np.ndarray, path: str) -> bool:
    """Save the samples as a 4x8 PNG grid; False (with a message) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed: {path} was not written (pip install matplotlib)")
        return False
    fig, axes = plt.subplots(4, 8, figsize=(8, 4))
    for image, ax in zip(samples, axes.flat, strict=False):
        ax.imshow(image, cmap="gray_r", vmin=-1.0, vmax=1.0)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"saved {len(samples)} samples to {path}")
    return True


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", default="gan_torch.png", help="PNG of generated samples")
    args = parser.parse_args(argv)
    history = train(args.epochs, args.seed, args.batch_size)
    save_grid(history["samples"], args.out)
    return history


if __name__ == "__main__":
    main()
