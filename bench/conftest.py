"""pytest-benchmark setup for bench/: import path, and torch pinned to NumPy's
BLAS thread count, so every implementation runs with the same threads."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session", autouse=True)
def _same_threads() -> None:
    import _machine

    try:
        import _peers
    except ImportError:
        return
    try:
        _peers.torch_threads(_machine.numpy_blas_threads())
    except ImportError:  # torch is optional: its rows skip
        pass
