"""A character-level LSTM language model on the standard library's docstrings (text
every Python installation carries; see ``_text.py``), scored in bits per character
on a held-out tail and compared with the text's unigram entropy, then sampled.

    python examples/char_lstm.py                 # 8 epochs, a few minutes on 2 cores
    python examples/char_lstm.py --epochs 1 --units 64
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _text

import gpunet as gn


def build(vocab: int, units: int, length: int, lr: float = 3e-3) -> gn.Sequential:
    model = gn.Sequential(
        [
            gn.Input((length,), dtype="int32"),
            gn.layers.Embedding(vocab, 32),
            gn.layers.LSTM(units, return_sequences=True),
            gn.layers.Dense(vocab),  # logits: the loss applies the softmax
        ]
    )
    model.compile(
        optimizer=gn.optimizers.Adam(lr, clipnorm=1.0),
        loss=gn.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def sample(model: gn.Sequential, corpus: _text.CharCorpus, prompt: str, n: int, length: int,
           temperature: float = 0.8, seed: int = 0) -> str:  # fmt: skip
    """``n`` characters after ``prompt``, each drawn from the model's softmax at ``temperature``."""
    rng = np.random.default_rng(seed)
    ids = list(corpus.encode(prompt))
    for _ in range(n):
        window = np.array(ids[-length:], dtype=np.int32)
        window = np.pad(window, (length - len(window), 0))  # left-pad short prompts
        logits = model.predict(window[None], verbose=0)[0, -1].astype(np.float64) / temperature
        p = np.exp(logits - logits.max())
        ids.append(int(rng.choice(len(p), p=p / p.sum())))
    return corpus.decode(np.array(ids))


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--units", type=int, default=256)
    p.add_argument("--length", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--chars", type=int, default=0, help="use only the first N characters (0: all)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    gn.utils.set_random_seed(a.seed)
    text = _text.docstrings()
    corpus = _text.CharCorpus(text[: a.chars] if a.chars else text)
    X, Y = corpus.windows(corpus.train, a.length, stride=a.length // 2)
    Xv, Yv = corpus.windows(corpus.val, a.length)
    print(f"{len(corpus.text):,} characters, {len(corpus.vocab)} symbols; "
          f"unigram entropy {corpus.unigram_bits():.2f} bits/char")  # fmt: skip
    model = build(len(corpus.vocab), a.units, a.length, a.lr)
    history = model.fit(
        X, Y, validation_data=(Xv, Yv), epochs=a.epochs, batch_size=a.batch_size, verbose=1
    )
    bits = history.history["val_loss"][-1] / math.log(2)
    print(f"validation: {bits:.2f} bits/char (unigram {corpus.unigram_bits():.2f})")
    print(sample(model, corpus, "Return the ", 200, a.length))
    return {"val_bits_per_char": bits, "unigram_bits": corpus.unigram_bits()}


if __name__ == "__main__":
    main()
