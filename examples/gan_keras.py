"""A DCGAN on scikit-learn's 8x8 digits, written the Keras way.

The discriminator is compiled on its own; the generator is trained through a combined
model (noise -> generator -> discriminator) built with the functional API, in which
the discriminator is frozen. The loop calls ``train_on_batch`` on both.

``trainable`` is read at every step, as in Keras 3, not at ``compile`` (Keras 2 took
a snapshot there): so the loop sets ``discriminator.trainable = True`` before the
discriminator's own steps and ``False`` before the combined model's. The same loop
runs unchanged on Keras 2 and Keras 3.

    python examples/gan_keras.py --epochs 40 --out gan_keras.png

40 epochs (28 batches of 64 each) take about 30 s of CPU time (one core, NumPy).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

import gpunet as gn
from gpunet import layers

LATENT_DIM = 32


def load_digits() -> np.ndarray:
    """The 1797 digits as (n, 8, 8, 1) float32 images scaled from [0, 16] to [-1, 1]."""
    from sklearn.datasets import load_digits as sk_load_digits

    X = sk_load_digits().images.astype(np.float32)
    return (X / 8.0 - 1.0)[..., None]


def make_generator() -> gn.Sequential:
    """Noise (32,) -> 4x4x64 -> upsampled to 8x8x32 -> one tanh channel in [-1, 1]."""
    return gn.Sequential(
        [
            gn.Input((LATENT_DIM,)),
            layers.Dense(4 * 4 * 64),
            layers.BatchNormalization(momentum=0.8),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Reshape((4, 4, 64)),
            layers.Conv2DTranspose(32, 4, strides=2, padding="same"),
            layers.BatchNormalization(momentum=0.8),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Conv2D(1, 3, padding="same", activation="tanh"),
        ],
        name="generator",
    )


def make_discriminator() -> gn.Sequential:
    """An 8x8x1 image -> the probability that it is a real digit."""
    return gn.Sequential(
        [
            gn.Input((8, 8, 1)),
            layers.Conv2D(32, 3, strides=2, padding="same"),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Dropout(0.3),
            layers.Conv2D(64, 3, strides=2, padding="same"),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Dropout(0.3),
            layers.Flatten(),
            layers.Dense(1, activation="sigmoid"),
        ],
        name="discriminator",
    )


def train(epochs: int = 40, seed: int = 0, batch_size: int = 64,
          verbose: bool = True) -> dict[str, Any]:  # fmt: skip
    """Train the GAN; returns the per-epoch mean losses and 32 generated samples."""
    gn.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    images = load_digits()

    discriminator = make_discriminator()
    discriminator.compile(
        optimizer=gn.optimizers.Adam(learning_rate=2e-4, beta_1=0.5),
        loss="binary_crossentropy",
    )
    generator = make_generator()

    # the combined model trains the generator only: freeze the discriminator in it
    discriminator.trainable = False
    noise_in = gn.Input((LATENT_DIM,))
    gan = gn.Model(noise_in, discriminator(generator(noise_in)), name="gan")
    gan.compile(
        optimizer=gn.optimizers.Adam(learning_rate=2e-4, beta_1=0.5),
        loss="binary_crossentropy",
    )

    real_label = np.ones((batch_size, 1), np.float32)
    fake_label = np.zeros((batch_size, 1), np.float32)
    history: dict[str, Any] = {"d_loss": [], "g_loss": []}
    for epoch in range(epochs):
        order = rng.permutation(len(images))
        d_losses, g_losses = [], []
        for start in range(0, len(images) - batch_size + 1, batch_size):
            real = images[order[start : start + batch_size]]
            noise = rng.normal(size=(batch_size, LATENT_DIM)).astype(np.float32)
            fake = generator.predict(noise, verbose=0)

            # 1. the discriminator learns to tell real (1) from generated (0)
            discriminator.trainable = True
            d_real = discriminator.train_on_batch(real, real_label)
            d_fake = discriminator.train_on_batch(fake, fake_label)
            d_losses.append(0.5 * (d_real + d_fake))

            # 2. the generator learns to make the frozen discriminator say "real"
            discriminator.trainable = False
            g_losses.append(gan.train_on_batch(noise, real_label))

        history["d_loss"].append(float(np.mean(d_losses)))
        history["g_loss"].append(float(np.mean(g_losses)))
        if verbose:
            print(
                f"epoch {epoch + 1}/{epochs}  "
                f"d_loss {history['d_loss'][-1]:.3f}  g_loss {history['g_loss'][-1]:.3f}"
            )

    noise = np.random.default_rng(seed + 1).normal(size=(32, LATENT_DIM)).astype(np.float32)
    history["samples"] = generator.predict(noise, verbose=0)[..., 0]
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
    parser.add_argument("--out", default="gan_keras.png", help="PNG of generated samples")
    args = parser.parse_args(argv)
    history = train(args.epochs, args.seed, args.batch_size)
    save_grid(history["samples"], args.out)
    return history


if __name__ == "__main__":
    main()
