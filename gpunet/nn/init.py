"""``torch.nn.init``: fill a weight in place (under ``no_grad``) from the seeded
``init`` stream, with PyTorch's fan and gain rules on PyTorch's weight layouts
(``(out, in, *kernel)``). Each returns the tensor it filled.

Example:
    >>> import gpunet as gn
    >>> w = gn.nn.Linear(4, 3).weight
    >>> gn.nn.init.constant_(w, 0.5) is w, w.numpy().max()
    (True, np.float32(0.5))
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gpunet import random as grandom
from gpunet.autograd import Tensor, no_grad

_GAINS = {"linear": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0, "sigmoid": 1.0,
          "tanh": 5.0 / 3, "relu": math.sqrt(2.0), "selu": 3.0 / 4}  # fmt: skip


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for ``nonlinearity`` (PyTorch's table)."""
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity not in _GAINS:
        raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}; "
                         f"expected one of {sorted([*_GAINS, 'leaky_relu'])}")  # fmt: skip
    return _GAINS[nonlinearity]


def _calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    shape = tensor.shape
    if len(shape) < 2:
        raise ValueError(
            f"fan in and fan out can not be computed for a tensor with fewer than 2 "
            f"dimensions (shape {shape})"
        )
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _fill(tensor: Any, arr: Any) -> Any:
    if not isinstance(tensor, Tensor):
        xp = getattr(tensor, "__array_namespace__", None)
        if xp is None:
            raise TypeError(f"nn.init expects a gpunet Tensor, got {type(tensor).__name__}")
        # ``m.weight.data``, the parameter's own array (as the DCGAN tutorial passes it)
        ns = xp()
        tensor[...] = ns.asarray(np.asarray(arr), dtype=tensor.dtype, device=tensor.device)
        return tensor
    with no_grad():
        tensor.copy_(tensor.ops.asarray(np.asarray(arr), dtype=tensor.dtype))
    return tensor


def _rng() -> np.random.Generator:
    return grandom.generator("init")


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    return _fill(tensor, _rng().uniform(a, b, tensor.shape))


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    return _fill(tensor, _rng().normal(mean, std, tensor.shape))


def constant_(tensor: Tensor, val: float) -> Tensor:
    return _fill(tensor, np.full(tensor.shape, val))


def zeros_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 0.0)


def ones_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 1.0)


def eye_(tensor: Tensor) -> Tensor:
    if tensor.ndim != 2:
        raise ValueError(f"eye_ needs a 2-D tensor, got shape {tensor.shape}")
    return _fill(tensor, np.eye(tensor.shape[0], tensor.shape[1]))


def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0,
                  b: float = 2.0) -> Tensor:  # fmt: skip
    """Normal(mean, std) draws redrawn until inside ``[a, b]`` (the bounds absolute,
    as PyTorch's): a ViT's weight initialization."""
    if not b > a or std <= 0:
        raise ValueError(f"trunc_normal_ needs a < b and std > 0, got a={a}, b={b}, std={std}")
    if not (a - mean) / std < 6 or not (b - mean) / std > -6:
        raise ValueError(f"trunc_normal_: [{a}, {b}] is more than 6 std from the mean {mean}")
    rng, n = _rng(), math.prod(tensor.shape)
    out = rng.normal(mean, std, n)
    bad = (out < a) | (out > b)
    while bad.any():
        out[bad] = rng.normal(mean, std, int(bad.sum()))
        bad = (out < a) | (out > b)
    return _fill(tensor, out.reshape(tensor.shape))  # type: ignore[no-any-return]


def xavier_uniform_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -a, a)


def xavier_normal_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def _kaiming_std(tensor: Tensor, a: float, mode: str, nonlinearity: str) -> float:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode={mode!r}; expected 'fan_in' or 'fan_out'")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu") -> Tensor:  # fmt: skip
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu") -> Tensor:  # fmt: skip
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity))


def orthogonal_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """A (semi-)orthogonal matrix over ``(shape[0], prod(shape[1:]))``, times ``gain``."""
    if tensor.ndim < 2:
        raise ValueError(f"orthogonal_ needs at least 2 dimensions, got shape {tensor.shape}")
    rows, cols = tensor.shape[0], math.prod(tensor.shape[1:])
    A = _rng().normal(0.0, 1.0, (rows, cols))
    if rows < cols:
        A = A.T
    Q, R = np.linalg.qr(A)
    Q *= np.sign(np.diag(R))
    if rows < cols:
        Q = Q.T
    return _fill(tensor, gain * Q.reshape(tensor.shape))


__all__ = [
    "calculate_gain", "constant_", "eye_", "kaiming_normal_", "kaiming_uniform_", "normal_",
    "ones_", "orthogonal_", "trunc_normal_", "uniform_", "xavier_normal_", "xavier_uniform_",
    "zeros_",
]  # fmt: skip
