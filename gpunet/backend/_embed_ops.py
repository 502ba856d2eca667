"""The embedding's weight gradient: a deterministic segment sum of the output
gradient's rows by id (never a one-hot GEMM, never atomics).

The reference sorts the ids (stably), takes the running sum of the sorted rows and
differences it at each id's first and last place, which ``searchsorted`` finds: fixed
shapes throughout, so it runs on the strict simulated device (no ``add.at``, no
data-dependent shapes) and on CuPy alike, with the running sum kept in the
backend's accumulation dtype (float64 on NumPy and CuPy) against cancellation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

Array = Any


class EmbeddingOps:
    """``embedding_backward``: the gradient of ``W[ids]`` with respect to ``W``."""

    xp: Any
    accum_dtype: str
    if TYPE_CHECKING:  # defined by Ops

        def dtype(self, name: Any) -> Any: ...
        def arange(self, n: int, dtype: Any = "int64") -> Array: ...
        def assign(self, dst: Array, src: Any) -> None: ...

    def embedding_backward(self, ids: Array, dY: Array, n: int, out: Array | None = None) -> Array:
        """``dW`` of shape ``(n, D)``: row ``v`` sums the rows of ``dY`` (ids' shape plus
        ``D``) where ``ids == v``; written into ``out`` when given.

        Example:
            >>> import numpy as np
            >>> from gpunet.backend.ops import Ops
            >>> Ops().embedding_backward(np.array([2, 0, 2]), np.ones((3, 1)), 4).ravel()
            array([1., 0., 2., 0.])
        """
        xp = self.xp
        flat = xp.reshape(ids, (-1,))
        G = xp.reshape(dY, (flat.shape[0], dY.shape[-1]))
        order = xp.argsort(flat, stable=True)
        keys = xp.take(flat, order)
        wide = self.dtype("float64") if dY.dtype == self.dtype("float64") else None
        acc = wide if wide is not None else self.dtype(self.accum_dtype)
        C = xp.cumulative_sum(xp.astype(xp.take(G, order, axis=0), acc), axis=0,
                              include_initial=True)  # fmt: skip
        v = self.arange(n, dtype=keys.dtype)
        hi = xp.searchsorted(keys, v, side="right")
        lo = xp.searchsorted(keys, v, side="left")
        dW = xp.astype(xp.take(C, hi, axis=0) - xp.take(C, lo, axis=0), dY.dtype)
        if out is None:
            return dW
        self.assign(out, dW)
        return out
