"""PyTorch's adaptive pools, ``nn.AdaptiveAvgPool1d/2d`` and ``nn.AdaptiveMaxPool1d/2d``,
for any output size (VGG's ``AdaptiveAvgPool2d((7, 7))``, a text CNN's
``AdaptiveMaxPool1d(1)``), with PyTorch's windows: output cell ``i`` of ``o`` over an
axis of ``n`` covers ``[floor(i n / o), ceil((i + 1) n / o))``.

Both pools are separable over the pooled axes. The average along one axis is a product
with a small ``(o, n)`` matrix of window weights (one GEMM forward and back, on every
backend); the maximum is taken window by window, its gradient going to the first
maximum of each window, as PyTorch's (NaN wins).

Example:
    >>> import numpy as np, gpunet as gn
    >>> x = gn.tensor(np.arange(10.0).reshape(1, 1, 10))
    >>> gn.nn.AdaptiveAvgPool1d(3)(x).tolist(), gn.nn.AdaptiveMaxPool1d(3)(x).tolist()
    ([[[1.5, 4.5, 7.5]]], [[[3.0, 6.0, 9.0]]])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpunet.autograd import Tensor
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers.base import Backprop, Layer
from gpunet.nn._module import TorchModule


def windows(n: int, o: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive windows of ``o`` cells over ``n`` positions."""
    return [(i * n // o, -(-(i + 1) * n // o)) for i in range(o)]


def _weights(n: int, o: int) -> np.ndarray:
    M = np.zeros((o, n))
    for i, (s, e) in enumerate(windows(n, o)):
        M[i, s:e] = 1.0 / (e - s)
    return M


class _Adaptive(TorchModule, Layer):
    RANK = 1
    MAX = False

    def __init__(self, output_size: Any, return_indices: bool = False) -> None:
        super().__init__()
        name, k = type(self).__name__, self.RANK
        sizes = (output_size,) * k if not isinstance(output_size, (tuple, list)) else output_size
        ok = len(sizes) == k and all(
            s is None or (isinstance(s, int) and not isinstance(s, bool) and s >= 1) for s in sizes
        )
        if not ok:
            raise InvalidParameterError(
                f"{name} output_size must be an int >= 1 or a tuple of {k} of them (None keeps "
                f"that axis), got {output_size!r}"
            )
        if return_indices:
            raise InvalidParameterError(f"{name}: return_indices is not supported")
        self.output_size = tuple(sizes)

    def check_input(self, x: Any) -> None:
        k = self.RANK
        if not isinstance(x, Tensor) or x.ndim not in (k + 1, k + 2):
            layout = "(N, C, L)" if k == 1 else "(N, C, H, W)"
            raise InputValidationError(
                f"{type(self).__name__} expects input {layout} (or without N), got shape "
                f"{getattr(x, 'shape', None)}"
            )
        if any(n == 0 for n in x.shape[-k:]):
            raise InputValidationError(
                f"{type(self).__name__}: an input of shape {tuple(x.shape)} has an empty "
                "pooled axis"
            )

    def _sizes(self, shape: tuple[int, ...]) -> list[tuple[int, int]]:
        """(n, o) per pooled axis, last axes first."""
        k = self.RANK
        return [
            (n, n if o is None else o) for n, o in zip(shape[-k:], self.output_size, strict=True)
        ]

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        pool = self._max if self.MAX else self._avg
        steps = []
        for axis, (n, o) in zip(
            range(X.ndim - self.RANK, X.ndim), self._sizes(X.shape), strict=True
        ):
            X, back = pool(ops, X, axis, n, o)
            steps.append(back)

        def backprop(dY: Any, need_dX: bool) -> Any:
            for back in reversed(steps):
                dY = back(dY)
            return dY

        return X, backprop

    @staticmethod
    def _avg(ops: Any, X: Any, axis: int, n: int, o: int) -> tuple[Any, Any]:
        xp = ops.xp
        M = ops.asarray(_weights(n, o), dtype=X.dtype)
        moved = xp.moveaxis(X, axis, -1)  # (..., n) @ M^T -> (..., o)
        Y = xp.moveaxis(xp.matmul(moved, xp.matrix_transpose(M)), -1, axis)
        return Y, lambda dY: xp.moveaxis(xp.matmul(xp.moveaxis(dY, axis, -1), M), -1, axis)

    @staticmethod
    def _max(ops: Any, X: Any, axis: int, n: int, o: int) -> tuple[Any, Any]:
        xp = ops.xp
        moved = xp.moveaxis(X, axis, -1)
        cells, picks = [], []
        for s, e in windows(n, o):
            part = moved[..., s:e]
            nan = xp.isnan(part)
            # the first maximum, or the first NaN (which the maximum propagates)
            first_nan = xp.argmax(xp.astype(nan, xp.int8), axis=-1)
            arg = xp.where(xp.any(nan, axis=-1), first_nan, xp.argmax(part, axis=-1))
            cells.append(xp.max(part, axis=-1))
            picks.append(arg + s)
        Y, picked = xp.stack(cells, axis=-1), xp.stack(picks, axis=-1)

        def back(dY: Any) -> Any:
            g = xp.moveaxis(dY, axis, -1)
            dX = xp.zeros((*g.shape[:-1], n), dtype=g.dtype, **ops.device_kw)
            positions = ops.arange(n)
            zero = xp.zeros_like(dX)
            for i in range(o):  # windows may overlap by one: add, do not overwrite
                dX = dX + xp.where(picked[..., i : i + 1] == positions, g[..., i : i + 1], zero)
            return xp.moveaxis(dX, -1, axis)

        return xp.moveaxis(Y, -1, axis), back

    def compute_output_shape(self, input_shape: Any) -> Any:
        k = self.RANK
        tail = tuple(n if o is None else o for n, o in zip(input_shape[-k:], self.output_size,
                                                            strict=True))  # fmt: skip
        return (*input_shape[:-k], *tail)

    def extra_repr(self) -> str:
        size = self.output_size[0] if self.RANK == 1 else self.output_size
        return f"output_size={size}"


class AdaptiveAvgPool1d(_Adaptive):
    """``nn.AdaptiveAvgPool1d(output_size)`` over (N, C, L)."""


class AdaptiveAvgPool2d(_Adaptive):
    """``nn.AdaptiveAvgPool2d(output_size)`` over (N, C, H, W) (``None``: that axis kept)."""

    RANK = 2


class AdaptiveMaxPool1d(_Adaptive):
    """``nn.AdaptiveMaxPool1d(output_size)`` over (N, C, L)."""

    MAX = True


class AdaptiveMaxPool2d(_Adaptive):
    """``nn.AdaptiveMaxPool2d(output_size)`` over (N, C, H, W)."""

    RANK, MAX = 2, True


def adaptive_avg_pool1d(input: Tensor, output_size: Any) -> Tensor:
    return AdaptiveAvgPool1d(output_size)(input)  # type: ignore[no-any-return]


def adaptive_avg_pool2d(input: Tensor, output_size: Any) -> Tensor:
    return AdaptiveAvgPool2d(output_size)(input)  # type: ignore[no-any-return]


def adaptive_max_pool1d(input: Tensor, output_size: Any, return_indices: bool = False) -> Tensor:
    return AdaptiveMaxPool1d(output_size, return_indices)(input)  # type: ignore[no-any-return]


def adaptive_max_pool2d(input: Tensor, output_size: Any, return_indices: bool = False) -> Tensor:
    return AdaptiveMaxPool2d(output_size, return_indices)(input)  # type: ignore[no-any-return]
