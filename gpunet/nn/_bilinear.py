"""``nn.Bilinear`` / ``F.bilinear`` (``y = x1^T A x2 + b``, a pairwise scoring layer)
and ``F.gumbel_softmax`` (the relaxed categorical sample of VAEs with discrete codes
and of GANs over tokens).

Example:
    >>> import numpy as np, gpunet as gn
    >>> m = gn.nn.Bilinear(2, 3, 4)
    >>> m(gn.tensor(np.ones((5, 2), "float32")), gn.tensor(np.ones((5, 3), "float32"))).shape
    (5, 4)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gpunet import random as grandom
from gpunet.autograd import Tensor
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers.base import Layer
from gpunet.nn._functional_norms import _tensor, same_dtype
from gpunet.nn._module import TorchModule, torch_param


def bilinear(input1: Any, input2: Any, weight: Any, bias: Any = None) -> Tensor:
    """``y[..., o] = sum_ij input1[..., i] weight[o, i, j] input2[..., j] + bias[o]``."""
    a = _tensor(input1)
    b, W = _tensor(input2, a), _tensor(weight, a)
    B = None if bias is None else _tensor(bias, a)
    same_dtype("bilinear", a, input2=b, weight=W, bias=B)
    if W.ndim != 3 or a.shape[-1] != W.shape[1] or b.shape[-1] != W.shape[2]:
        raise InputValidationError(
            f"bilinear: weight (out, in1, in2) of shape {tuple(W.shape)} does not fit inputs "
            f"of shapes {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.shape[:-1] != b.shape[:-1]:
        raise InputValidationError(
            f"bilinear: the inputs' batch shapes differ: {tuple(a.shape)} and {tuple(b.shape)}"
        )
    lead = tuple(a.shape[:-1])
    a2, b2 = a.reshape(1, -1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    # (1, N, in1) @ (out, in1, in2): per output, the rows times its matrix, then dotted
    # with input2's rows: products and sums every backend has (no einsum)
    y = ((a2 @ W) * b2).sum(dim=-1)  # (out, N)
    y = y.T.reshape(*lead, W.shape[0])
    return y if B is None else y + B


class Bilinear(TorchModule, Layer):
    """``nn.Bilinear(in1_features, in2_features, out_features, bias=True)``: ``weight``
    ``(out, in1, in2)`` and ``bias`` uniform in ``+-1/sqrt(in1_features)``, as PyTorch."""

    def __init__(self, in1_features: int, in2_features: int, out_features: int,
                 bias: bool = True, device: Any = None, dtype: Any = None) -> None:  # fmt: skip
        super().__init__(dtype=None if dtype is None else np.dtype(dtype).name)
        for what, v in (("in1_features", in1_features), ("in2_features", in2_features),
                        ("out_features", out_features)):  # fmt: skip
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidParameterError(f"Bilinear {what} must be an int >= 1, got {v!r}")
        self.in1_features, self.in2_features = in1_features, in2_features
        self.out_features = out_features
        bound, rng = 1.0 / math.sqrt(in1_features), grandom.generator("init")
        shape = (out_features, in1_features, in2_features)
        self.weight = torch_param(self, "weight", rng.uniform(-bound, bound, shape))
        self.bias = (
            torch_param(self, "bias", rng.uniform(-bound, bound, out_features)) if bias else None
        )
        self.built = True
        if device is not None:
            self.to(device)

    def call(self, input1: Any, input2: Any, training: bool = False) -> Tensor:  # type: ignore[override]
        return bilinear(input1, input2, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")  # fmt: skip


def gumbel_softmax(logits: Any, tau: float = 1.0, hard: bool = False, eps: float = 1e-10,
                   dim: int = -1) -> Tensor:  # fmt: skip
    """``softmax((logits + g) / tau)`` with Gumbel(0, 1) noise ``g`` from the seeded
    stream; ``hard``: the one-hot of its argmax forward, the soft sample's gradient
    backward (straight-through), as PyTorch's."""
    x = _tensor(logits)
    if not tau > 0:
        raise InvalidParameterError(f"gumbel_softmax: tau must be > 0, got {tau!r}")
    ops = x.ops
    u = grandom.generator("init").exponential(size=tuple(x.shape))
    g = Tensor(ops.asarray(-np.log(u), dtype=x.dtype), ops)
    y = ((x + g) / float(tau)).softmax(dim)
    if not hard:
        return y  # type: ignore[no-any-return]
    xp = ops.xp
    idx = xp.argmax(y.data, axis=dim, keepdims=True)
    positions = xp.reshape(ops.arange(y.shape[dim]), [-1 if a == dim % y.ndim else 1
                                                      for a in range(y.ndim)])  # fmt: skip
    onehot = Tensor(xp.astype(idx == positions, y.data.dtype), ops)
    return onehot - y.detach() + y  # type: ignore[no-any-return]


__all__ = ["Bilinear", "bilinear", "gumbel_softmax"]
