"""PyTorch's ``nn.LayerNorm``, ``nn.BatchNorm1d`` and ``nn.BatchNorm2d``: its
arguments, its parameter and buffer names (``weight``, ``bias``, ``running_mean``,
``running_var``, ``num_batches_tracked``), so a PyTorch ``state_dict`` loads as it
is, over the Keras layers' kernels (``LayerNormalization``, ``BatchNormalization``).

A ``state_dict`` written before ``nn.LayerNorm`` and ``nn.BatchNorm1d`` took
PyTorch's names (``gamma``, ``beta``, ``moving_mean``, ``moving_variance``) still
loads: ``load_state_dict`` reads those keys as the new ones (``_module.LEGACY_KEYS``).

Example:
    >>> import numpy as np
    >>> from gpunet import nn
    >>> ln = nn.LayerNorm(2)
    >>> sorted(ln.state_dict())
    ['bias', 'weight']
    >>> np.round(ln(np.array([[1.0, 3.0]], dtype="float32")).numpy(), 3)
    array([[-1.,  1.]], dtype=float32)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gpunet.autograd import Tensor
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers import BatchNormalization, LayerNormalization
from gpunet.layers._protocol import record_pass
from gpunet.layers.base import Backprop, add_grad
from gpunet.layers.base import Parameter as _Parameter
from gpunet.mixed_precision import autocasting, compute_of
from gpunet.nn._module import TorchModule


def _dtype(dtype: Any) -> str | None:
    return None if dtype is None else np.dtype(getattr(dtype, "name", dtype)).name


class LayerNorm(TorchModule, LayerNormalization):
    """``nn.LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True, bias=True)``
    over the last ``len(normalized_shape)`` axes, with PyTorch's ``weight`` and ``bias``
    of that shape (None without ``elementwise_affine``; ``bias`` None without ``bias``)."""

    def __init__(
        self, normalized_shape: Any, eps: float = 1e-5, elementwise_affine: bool = True,
        bias: bool = True, device: Any = None, dtype: Any = None,
    ) -> None:  # fmt: skip
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
        try:
            dims = tuple(int(d) for d in shape)
        except (TypeError, ValueError):
            dims = ()
        if not dims or min(dims) < 1:
            raise InvalidParameterError(
                "nn.LayerNorm: normalized_shape must be a positive int or a non-empty "
                f"sequence of them, got {normalized_shape!r}"
            )
        super().__init__(epsilon=eps, dtype=_dtype(dtype))
        self.normalized_shape = dims
        self.elementwise_affine = bool(elementwise_affine)
        affine, with_bias = self.elementwise_affine, self.elementwise_affine and bool(bias)
        self.weight = self.add_weight("weight", dims, "ones") if affine else None
        self.bias = self.add_weight("bias", dims, "zeros") if with_bias else None
        self._unit: dict[Any, tuple[Any, Any]] = {}  # (ones, zeros) by (ops, dtype)
        self.built = True
        if device is not None:
            self.to(device)

    def check_input(self, x: Any) -> None:
        k = len(self.normalized_shape)
        if not isinstance(x, Tensor) or x.ndim < k or tuple(x.shape[-k:]) != self.normalized_shape:
            want = ", ".join(map(str, self.normalized_shape))
            raise InputValidationError(
                f"LayerNorm({list(self.normalized_shape)}) expects inputs of shape "
                f"(*, {want}), got {getattr(x, 'shape', None)}"
            )

    def _affine(self, ops: Any, dtype: Any) -> tuple[Any, Any]:
        """Flat scale and shift: the weights' data, or ones and zeros without them."""
        w, b = self.weight, self.bias
        if w is not None and b is not None and len(self.normalized_shape) == 1:
            return w.data, b.data  # (the usual case: no reshape calls on the hot path)
        n = math.prod(self.normalized_shape)
        unit = self._unit.get((ops, dtype))
        if unit is None:
            unit = self._unit[(ops, dtype)] = (
                ops.asarray(np.ones(n), dtype=dtype),
                ops.asarray(np.zeros(n), dtype=dtype),
            )
        xp = ops.xp
        g = unit[0] if w is None else xp.reshape(w.data, (n,))
        return g, unit[1] if b is None else xp.reshape(b.data, (n,))

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        """Of ``X``, or of ``x + r`` for ``X = [x, r]`` (:meth:`of_sum`)."""
        xp, k = ops.xp, len(self.normalized_shape)
        x, r = X if isinstance(X, list) else (X, None)
        shape = tuple(x.shape)
        if k > 1:  # the normalized axes as one
            flat = (*shape[:-k], math.prod(self.normalized_shape))
            x, r = xp.reshape(x, flat), None if r is None else xp.reshape(r, flat)
        g, b = self._affine(ops, x.dtype)
        Y, Xhat, inv = ops.layernorm(x, g, b, epsilon=self.epsilon, residual=r)
        w, bias = self.weight, self.bias

        def backprop(dY: Any, need_dX: bool) -> Any:
            dX, dg, db = ops.backprop_layernorm(dY if k == 1 else xp.reshape(dY, Xhat.shape),
                                                Xhat, inv, g)  # fmt: skip
            if w is not None:
                add_grad(w, dg if k == 1 else xp.reshape(dg, w.shape))
            if bias is not None:
                add_grad(bias, db if k == 1 else xp.reshape(db, bias.shape))
            return dX if k == 1 else xp.reshape(dX, shape)

        if k > 1:
            Y = xp.reshape(Y, shape)
        if r is None:
            return Y, backprop
        return Y, lambda dY, need_dX: [backprop(dY, need_dX)] * 2

    def of_sum(self, x: Tensor, r: Tensor) -> Tensor:
        """``self(x + r)`` as one node, the sum formed inside the norm's pass (a post-norm
        block's residual): one array pass and one node fewer. A subclass, a mixed dtype
        policy or autocast gets the composition, as PyTorch runs it."""
        plain = type(self) is LayerNorm and compute_of(self) is None and not autocasting()
        same = x.ops is r.ops is self.ops and x.shape == r.shape and x.dtype == r.dtype
        w = self.weight  # (without weights the norm runs in the input's dtype)
        if not plain or not same or (w is not None and w.dtype != x.dtype):
            return self(x + r)  # type: ignore[no-any-return]
        self.check_input(x)
        return record_pass(self, [x, r], False)  # type: ignore[no-any-return]

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.epsilon}, "
                f"elementwise_affine={self.elementwise_affine}")  # fmt: skip


class _BatchNorm(TorchModule, BatchNormalization):
    """PyTorch's batch norm over axis 1 of inputs of rank ``RANKS``: its momentum (the
    weight of the new batch), its unbiased running variance and its state_dict names."""

    RANKS: tuple[int, ...] = ()
    SHAPES = ""

    def __init__(
        self, num_features: int, eps: float = 1e-5, momentum: Any = 0.1, affine: bool = True,
        track_running_stats: bool = True, device: Any = None, dtype: Any = None,
    ) -> None:  # fmt: skip
        if momentum is None or not affine or not track_running_stats:
            raise InvalidParameterError(
                f"nn.{type(self).__name__}: a running average with momentum, a weight and "
                f"a bias are supported, got momentum={momentum!r}, affine={affine!r}, "
                f"track_running_stats={track_running_stats!r}"
            )
        super().__init__(momentum=1.0 - momentum, epsilon=eps, input_dim=num_features,
                         dtype=_dtype(dtype))  # fmt: skip
        self.num_features = int(num_features)
        self.unbiased_moving_variance = True
        # the aliases come later in vars(), so state_dict names them PyTorch's way
        self.weight, self.bias = self.gamma, self.beta
        self.running_mean, self.running_var = self.moving_mean, self.moving_variance
        count = self.ops.asarray(np.zeros((), dtype=np.int64))
        self.num_batches_tracked = _Parameter(  # a buffer, as PyTorch's
            count, self.ops, name=f"{self.name}/nbt", trainable=False)  # fmt: skip
        self._params.append(self.num_batches_tracked)
        if device is not None:
            self.to(device)

    def check_input(self, x: Any) -> None:
        ok = isinstance(x, Tensor) and x.ndim in self.RANKS
        if not ok or x.shape[1] != self.num_features:
            raise InputValidationError(
                f"{type(self).__name__}({self.num_features}) expects input "
                f"{self.SHAPES.format(C=self.num_features)}, got shape {getattr(x, 'shape', None)}"
            )

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Any]:  # type: ignore[override]  # (no Keras masks)
        xp, shape, C = ops.xp, tuple(X.shape), X.shape[1]
        last = (0, *range(2, X.ndim), 1)  # channels last, rows = every other position
        back_axes = (0, X.ndim - 1, *range(1, X.ndim - 1))
        lead = tuple(shape[i] for i in last)
        X2 = X if X.ndim == 2 else xp.reshape(xp.permute_dims(X, last), (-1, C))
        Y2, back = super().forward_pass(ops, X2, training)
        if training:
            nbt = self.num_batches_tracked.data
            ops.assign(nbt, nbt + 1)

        def restore(A2: Any) -> Any:
            return A2 if X.ndim == 2 else xp.permute_dims(xp.reshape(A2, lead), back_axes)

        def backprop(dY: Any, need_dX: bool) -> Any:
            dY2 = dY if X.ndim == 2 else xp.reshape(xp.permute_dims(dY, last), (-1, C))
            dX2 = back(dY2, need_dX)
            return None if dX2 is None else restore(dX2)

        return restore(Y2), backprop

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.epsilon}, momentum={1.0 - self.momentum:g}"


class BatchNorm1d(_BatchNorm):
    """``nn.BatchNorm1d(num_features, eps=1e-5, momentum=0.1)`` over (N, C) or (N, C, L)."""

    RANKS = (2, 3)
    SHAPES = "(N, {C}) or (N, {C}, L)"


class BatchNorm2d(_BatchNorm):
    """``nn.BatchNorm2d(num_features, eps=1e-5, momentum=0.1)`` over (N, C, H, W)."""

    RANKS = (4,)
    SHAPES = "(N, {C}, H, W)"
