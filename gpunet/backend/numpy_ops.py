"""``NumpyOps``: the CPU backend. Same results as the reference ``Ops``, faster:
in-place ufuncs with ``out=`` so a step allocates little."""

from __future__ import annotations

from typing import Any

import numpy as np

from gpunet.backend.ops import Ops

Array = Any


class NumpyOps(Ops):
    name = "numpy"
    xp = np
    device = "cpu"
    accum_dtype = "float64"

    def to_numpy(self, X: Array) -> np.ndarray:
        return np.asarray(X)  # host memory already: not a sync

    def assign(self, dst: Array, src: Any) -> None:
        np.copyto(dst, src)

    def iadd(self, dst: Array, src: Array) -> None:
        np.add(dst, src, out=dst)
