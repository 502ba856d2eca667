"""More of PyTorch's modules that example programs use, each composed of autograd
ops (so their gradients come from those ops' backward) with PyTorch's arguments,
parameter names and edge rules:

* activations ``nn.ReLU6``, ``nn.Hardtanh`` (gradient 0 at the bounds, as
  PyTorch's), ``nn.Mish``, ``nn.PReLU`` (a learned slope per channel or one);
* ``nn.GroupNorm`` and ``nn.InstanceNorm1d/2d`` (statistics per sample);
* ``nn.PixelShuffle`` / ``nn.PixelUnshuffle`` (the super-resolution example's);
* padding ``nn.ZeroPad2d``, ``nn.ConstantPad1d/2d``, ``nn.ReflectionPad1d/2d``,
  ``nn.ReplicationPad1d/2d`` over ``F.pad``'s modes.

Example:
    >>> import numpy as np
    >>> from gpunet import nn
    >>> nn.PixelShuffle(2)(np.arange(8.0, dtype="float32").reshape(1, 4, 1, 2)).shape
    (1, 1, 2, 4)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpunet import functional as G
from gpunet.autograd import Tensor, record
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers.base import Layer
from gpunet.nn._module import TorchModule, torch_param


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    """``clamp(input, min_val, max_val)``; the gradient passes strictly inside."""
    X, xp = input.data, input.ops.xp
    inside = (X > min_val) & (X < max_val)
    Y = xp.clip(X, min_val, max_val)
    return record(Y, input.ops, (input,), lambda g: (xp.where(inside, g, 0.0),), "hardtanh")


def relu6(input: Tensor) -> Tensor:
    return hardtanh(input, 0.0, 6.0)


def mish(input: Tensor) -> Tensor:
    """``x * tanh(softplus(x))``."""
    return input * G.activation(G.activation(input, "softplus"), "tanh")


def logsigmoid(input: Tensor) -> Tensor:
    return -G.activation(-input, "softplus")


def softsign(input: Tensor) -> Tensor:
    return input / (1.0 + G.abs(input))


def prelu(input: Tensor, weight: Tensor) -> Tensor:
    """``x`` where positive, else ``weight * x``, the weight per channel (axis 1)."""
    w = weight
    if weight.shape[0] > 1:
        w = G.reshape(weight, (1, weight.shape[0], *[1] * max(input.ndim - 2, 0)))
    return G.where(input.data > 0, input, w * input)


class _Module(TorchModule, Layer):
    """A weightless PyTorch module: ``call`` on the input; no dtype cast."""

    def __init__(self) -> None:
        super().__init__()
        self.built = True


class Hardtanh(_Module):
    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        if not max_val > min_val:
            raise InvalidParameterError(
                f"Hardtanh needs max_val > min_val, got {min_val}, {max_val}"
            )
        self.min_val, self.max_val = float(min_val), float(max_val)

    def call(self, x: Tensor, training: bool = False) -> Tensor:  # type: ignore[override]
        return hardtanh(x, self.min_val, self.max_val)

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}"


class ReLU6(Hardtanh):
    def __init__(self, inplace: bool = False) -> None:
        super().__init__(0.0, 6.0)


class Mish(_Module):
    def __init__(self, inplace: bool = False) -> None:
        super().__init__()

    def call(self, x: Tensor, training: bool = False) -> Tensor:  # type: ignore[override]
        return mish(x)


class PReLU(TorchModule, Layer):
    """``nn.PReLU(num_parameters=1, init=0.25)``: ``weight`` of shape (num_parameters,)."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25, device: Any = None,
                 dtype: Any = None) -> None:  # fmt: skip
        super().__init__(dtype=None if dtype is None else np.dtype(dtype).name)
        if (
            isinstance(num_parameters, bool)
            or not isinstance(num_parameters, int)
            or num_parameters < 1
        ):
            raise InvalidParameterError(
                f"PReLU num_parameters must be an int >= 1, got {num_parameters!r}"
            )
        self.num_parameters = num_parameters
        self.weight = torch_param(self, "weight", np.full(num_parameters, float(init)))
        self.built = True
        if device is not None:
            self.to(device)

    def check_input(self, x: Any) -> None:
        n = self.num_parameters
        if n > 1 and (not isinstance(x, Tensor) or x.ndim < 2 or x.shape[1] != n):
            raise InputValidationError(
                f"PReLU({n}) expects {n} channels at axis 1, got shape {getattr(x, 'shape', None)}"
            )

    def call(self, x: Tensor, training: bool = False) -> Tensor:  # type: ignore[override]
        return prelu(x, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class _Affine(TorchModule, Layer):
    """A norm with an optional per-channel ``weight`` and ``bias`` (see ``_per_channel``)."""

    weight: Any
    bias: Any
    affine: bool


class GroupNorm(_Affine):
    """``nn.GroupNorm(num_groups, num_channels, eps=1e-5, affine=True)`` over (N, C, *):
    each sample's channels in ``num_groups`` groups, each group normalized over its
    channels and positions (biased variance); ``weight``/``bias`` per channel."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, device: Any = None, dtype: Any = None) -> None:  # fmt: skip
        super().__init__(dtype=None if dtype is None else np.dtype(dtype).name)
        if num_groups < 1 or num_channels % num_groups:
            raise InvalidParameterError(
                f"num_channels must be divisible by num_groups, got {num_channels} and {num_groups}"
            )
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, float(eps)
        self.affine = bool(affine)
        _per_channel(self, num_channels, device)

    def check_input(self, x: Any) -> None:
        if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[1] != self.num_channels:
            raise InputValidationError(
                f"{type(self).__name__}({self.num_groups}, {self.num_channels}) expects input "
                f"(N, {self.num_channels}, *), got shape {getattr(x, 'shape', None)}"
            )

    def call(self, x: Tensor, training: bool = False) -> Tensor:  # type: ignore[override]
        y = _group_normalized(x, self.num_groups, self.eps)
        return _channel_affine(y, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


def _per_channel(m: Any, n: int, device: Any) -> None:
    """``m.weight`` (ones) and ``m.bias`` (zeros) of ``n`` channels where ``m.affine``,
    else None; the module built and moved to ``device``."""
    m.weight = torch_param(m, "weight", np.ones(n)) if m.affine else None
    m.bias = torch_param(m, "bias", np.zeros(n)) if m.affine else None
    m.built = True
    if device is not None:
        m.to(device)


def _group_normalized(x: Tensor, groups: int, eps: float) -> Tensor:
    shape = tuple(x.shape)
    g = G.reshape(x, (shape[0], groups, -1))
    mean = g.mean(dim=-1, keepdim=True)
    d = g - mean
    var = (d * d).mean(dim=-1, keepdim=True)
    return G.reshape(d / (var + eps).sqrt(), shape)


def _channel_affine(y: Tensor, weight: Any, bias: Any) -> Tensor:
    if weight is None:
        return y
    per = (1, weight.shape[0], *[1] * (y.ndim - 2))
    return y * G.reshape(weight, per) + G.reshape(bias, per)


class _InstanceNorm(_Affine):
    """Each (sample, channel) normalized over its positions; ``weight``/``bias`` with
    ``affine``; running statistics are not kept (``track_running_stats=False``,
    PyTorch's default)."""

    RANK = 0

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = False, track_running_stats: bool = False, device: Any = None,
                 dtype: Any = None) -> None:  # fmt: skip
        super().__init__(dtype=None if dtype is None else np.dtype(dtype).name)
        if track_running_stats:
            raise InvalidParameterError(
                f"nn.{type(self).__name__}: track_running_stats=True is not supported"
            )
        self.num_features, self.eps, self.affine = num_features, float(eps), bool(affine)
        _per_channel(self, num_features, device)

    def check_input(self, x: Any) -> None:
        ok = isinstance(x, Tensor) and x.ndim == self.RANK and x.shape[1] == self.num_features
        if not ok:
            dims = "L" if self.RANK == 3 else "H, W"
            raise InputValidationError(
                f"{type(self).__name__}({self.num_features}) expects input "
                f"(N, {self.num_features}, {dims}), got shape {getattr(x, 'shape', None)}"
            )

    def call(self, x: Tensor, training: bool = False) -> Tensor:  # type: ignore[override]
        y = _group_normalized(x, self.num_features, self.eps)
        return _channel_affine(y, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}"


class InstanceNorm1d(_InstanceNorm):
    RANK = 3


class InstanceNorm2d(_InstanceNorm):
    RANK = 4


class PixelShuffle(_Module):
    """(N, C r^2, H, W) -> (N, C, H r, W r), as PyTorch orders the channels."""

    def __init__(self, upscale_factor: int) -> None:
        super().__init__()
        self.r = _positive(upscale_factor, "upscale_factor")

    def check_input(self, x: Any) -> None:
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] % (self.r * self.r):
            raise InputValidationError(
                f"PixelShuffle({self.r}) expects (N, C*{self.r * self.r}, H, W), got shape "
                f"{getattr(x, 'shape', None)}"
            )

    def call(self, x: Tensor, training: bool = False) -> Tensor:  # type: ignore[override]
        N, C, H, W = x.shape
        r = self.r
        y = G.permute(G.reshape(x, (N, C // (r * r), r, r, H, W)), (0, 1, 4, 2, 5, 3))
        return G.reshape(y, (N, C // (r * r), H * r, W * r))

    def extra_repr(self) -> str:
        return f"upscale_factor={self.r}"


class PixelUnshuffle(_Module):
    """(N, C, H r, W r) -> (N, C r^2, H, W): the inverse of :class:`PixelShuffle`."""

    def __init__(self, downscale_factor: int) -> None:
        super().__init__()
        self.r = _positive(downscale_factor, "downscale_factor")

    def check_input(self, x: Any) -> None:
        r = self.r
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[2] % r or x.shape[3] % r:
            raise InputValidationError(
                f"PixelUnshuffle({r}) expects (N, C, H, W) with H and W multiples of {r}, got "
                f"shape {getattr(x, 'shape', None)}"
            )

    def call(self, x: Tensor, training: bool = False) -> Tensor:  # type: ignore[override]
        N, C, H, W = x.shape
        r = self.r
        y = G.permute(G.reshape(x, (N, C, H // r, r, W // r, r)), (0, 1, 3, 5, 2, 4))
        return G.reshape(y, (N, C * r * r, H // r, W // r))

    def extra_repr(self) -> str:
        return f"downscale_factor={self.r}"


def _positive(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise InvalidParameterError(f"{what} must be an int >= 1, got {v!r}")
    return v


class _Pad(_Module):
    MODE, DIMS = "constant", 2

    def __init__(self, padding: Any, value: float = 0.0) -> None:
        super().__init__()
        n = 2 * self.DIMS
        pads = (padding,) * n if isinstance(padding, int) else tuple(padding)
        if len(pads) != n or not all(isinstance(p, int) and p >= 0 for p in pads):
            raise InvalidParameterError(
                f"{type(self).__name__} padding must be an int or {n} ints >= 0, got {padding!r}"
            )
        self.padding, self.value = pads, float(value)

    def call(self, x: Tensor, training: bool = False) -> Tensor:  # type: ignore[override]
        from gpunet.nn.functional import pad

        return pad(x, self.padding, self.MODE, self.value)

    def extra_repr(self) -> str:
        return f"{self.padding}" + (f", value={self.value}" if self.MODE == "constant" else "")


def _pad_class(name: str, mode: str, dims: int) -> type:
    return type(
        name,
        (_Pad,),
        {
            "MODE": mode,
            "DIMS": dims,
            "__doc__": f"``nn.{name}(padding)``: "
            f"``F.pad(x, padding, {mode!r})`` over the last {dims} axes.",
        },
    )


ZeroPad2d = _pad_class("ZeroPad2d", "constant", 2)
ConstantPad1d = _pad_class("ConstantPad1d", "constant", 1)
ConstantPad2d = _pad_class("ConstantPad2d", "constant", 2)
ReflectionPad1d = _pad_class("ReflectionPad1d", "reflect", 1)
ReflectionPad2d = _pad_class("ReflectionPad2d", "reflect", 2)
ReplicationPad1d = _pad_class("ReplicationPad1d", "replicate", 1)
ReplicationPad2d = _pad_class("ReplicationPad2d", "replicate", 2)


def pad_index(n: int, before: int, after: int, mode: str) -> np.ndarray:
    """For each padded position of an axis of length ``n``, the input position it reads
    (``reflect``: mirrored without the edge; ``replicate``: the nearest edge)."""
    i = np.arange(-before, n + after)
    if mode == "replicate":
        return np.clip(i, 0, n - 1)
    if before >= n or after >= n:
        raise ValueError(f"reflect padding ({before}, {after}) must be smaller than the axis ({n})")
    i = np.abs(i)
    return np.where(i > n - 1, 2 * (n - 1) - i, i)


def gather_pad(x: Tensor, widths: list[tuple[int, int]], mode: str) -> Tensor:
    """``x`` padded by index gathers along each axis, with the transpose as backward (a
    one-hot product, so every backend runs it without a scatter)."""
    out = x
    for axis, (a, b) in enumerate(widths):
        if a or b:
            out = _take(out, pad_index(x.shape[axis], a, b, mode), axis)
    return out


def _take(x: Tensor, idx: np.ndarray, axis: int) -> Tensor:
    ops, xp = x.ops, x.ops.xp
    index = ops.asarray(idx)
    Y = xp.take(x.data, index, axis=axis)
    onehot = ops.asarray(idx[:, None] == np.arange(x.shape[axis])[None, :], dtype=x.data.dtype)

    def backward(g: Any) -> tuple[Any]:
        moved = xp.moveaxis(g, axis, -1)
        return (xp.moveaxis(xp.matmul(moved, onehot), -1, axis),)

    return record(Y, ops, (x,), backward, "pad")


class ParameterList(TorchModule, Layer):
    """``nn.ParameterList(values)``: parameters held by index (``"0"``, ``"1"``, ... in
    ``state_dict``, as PyTorch), seen by the parent's ``parameters()``."""

    def __init__(self, values: Any = None) -> None:
        super().__init__()
        self._count = 0
        self.built = True
        self.extend(values or ())

    def append(self, value: Any) -> ParameterList:
        from gpunet.nn.modules import Parameter

        p = value if isinstance(value, Parameter) else Parameter(value)
        setattr(self, str(self._count), p)
        self._count += 1
        return self

    def extend(self, values: Any) -> ParameterList:
        for v in values:
            self.append(v)
        return self

    def __getitem__(self, i: int) -> Any:
        n = self._count
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for a ParameterList of {n}")
        return getattr(self, str(i % n))

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Any:
        return (getattr(self, str(i)) for i in range(self._count))


class ParameterDict(TorchModule, Layer):
    """``nn.ParameterDict(parameters)``: parameters held by name."""

    def __init__(self, parameters: Any = None) -> None:
        super().__init__()
        self._names: list[str] = []
        self.built = True
        for k, v in dict(parameters or {}).items():
            self[k] = v

    def __setitem__(self, key: str, value: Any) -> None:
        from gpunet.nn.modules import Parameter

        if not isinstance(key, str) or not key.isidentifier():
            raise KeyError(f"ParameterDict keys must be identifiers, got {key!r}")
        setattr(self, key, value if isinstance(value, Parameter) else Parameter(value))
        if key not in self._names:
            self._names.append(key)

    def __getitem__(self, key: str) -> Any:
        if key not in self._names:
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self._names

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Any:
        return iter(list(self._names))

    def keys(self) -> list[str]:
        return list(self._names)

    def values(self) -> list[Any]:
        return [getattr(self, k) for k in self._names]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self._names]
