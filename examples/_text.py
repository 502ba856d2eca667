"""Real text that every machine has: the docstrings of part of Python's standard
library, read from the source files with ``ast`` (nothing is imported or
downloaded). The character-level language models of ``examples/`` train on it.

The corpus depends on the Python version (docstrings change between releases), so
the examples print its size and its unigram entropy, the baseline a model must beat.
"""

from __future__ import annotations

import ast
import math
import sysconfig
from collections import Counter
from pathlib import Path

import numpy as np

# a fixed, ordered set of pure-Python modules with long prose docstrings
MODULES = (
    "argparse", "ast", "bisect", "calendar", "collections/__init__", "contextlib", "csv",
    "dataclasses", "datetime", "decimal", "difflib", "enum", "fractions", "functools",
    "heapq", "inspect", "ipaddress", "json/__init__", "logging/__init__", "pathlib",
    "pickle", "random", "shutil", "statistics", "string", "subprocess", "tarfile",
    "textwrap", "threading", "typing", "unittest/case", "zipfile",
)  # fmt: skip


def docstrings(modules: tuple[str, ...] = MODULES) -> str:
    """The docstrings of ``modules`` (module, class and function ones, in source
    order), separated by blank lines. Modules missing from this Python are skipped."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts: list[str] = []
    for name in modules:
        path = root / f"{name}.py"
        if not path.is_file():
            path = root / name / "__init__.py"
        if not path.is_file():
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 40:
                    parts.append(doc.strip())
    return "\n\n".join(parts)


class CharCorpus:
    """A text as integer ids over its own alphabet, split into a train head and a
    validation tail (the last ``val_fraction`` of the characters).

    Example:
        >>> c = CharCorpus("abab" * 10, val_fraction=0.25)
        >>> c.vocab, len(c.train), len(c.val)
        ('ab', 30, 10)
        >>> c.decode(c.encode("ba"))
        'ba'
        >>> round(c.unigram_bits(), 3)
        1.0
    """

    def __init__(self, text: str, val_fraction: float = 0.1) -> None:
        self.text = text
        self.vocab = "".join(sorted(set(text)))
        self._index = {ch: i for i, ch in enumerate(self.vocab)}
        ids = self.encode(text)
        cut = int(len(ids) * (1.0 - val_fraction))
        self.train, self.val = ids[:cut], ids[cut:]

    def encode(self, s: str) -> np.ndarray:
        return np.array([self._index[ch] for ch in s], dtype=np.int32)

    def decode(self, ids: np.ndarray) -> str:
        return "".join(self.vocab[int(i)] for i in ids)

    def unigram_bits(self) -> float:
        """Bits per character of the train text's own character frequencies, the
        score of a model that ignores context (validation text, train counts)."""
        counts = Counter(self.train.tolist())
        n = len(self.train)
        val = Counter(self.val.tolist()) if len(self.val) else counts
        m = sum(val.values())
        # train frequencies scored on the validation text (add-one for unseen chars)
        return -sum(
            c / m * math.log2((counts.get(k, 0) + 1) / (n + len(self.vocab)))
            for k, c in val.items()
        )

    def windows(
        self, ids: np.ndarray, length: int, stride: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Inputs ``(N, length)`` and next-character targets ``(N, length)`` cut from ``ids``."""
        stride = stride or length
        starts = np.arange(0, len(ids) - length - 1, stride)
        X = np.stack([ids[s : s + length] for s in starts])
        Y = np.stack([ids[s + 1 : s + length + 1] for s in starts])
        return X, Y


def stdlib_corpus(val_fraction: float = 0.1) -> CharCorpus:
    """The standard library's docstrings as a :class:`CharCorpus`."""
    return CharCorpus(docstrings(), val_fraction)


if __name__ == "__main__":
    c = stdlib_corpus()
    print(f"{len(c.text):,} characters, {len(c.vocab)} distinct; "
          f"unigram entropy {c.unigram_bits():.3f} bits/char")  # fmt: skip
