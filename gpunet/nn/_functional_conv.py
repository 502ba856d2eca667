"""``torch.nn.functional``'s convolutions over weights a caller holds: ``conv1d``,
``conv2d``, ``conv_transpose1d`` and ``conv_transpose2d`` (a fixed blur or Sobel
kernel, weight standardization, hypernetworks). They run the modules' pass
(:class:`gpunet.nn.conv._ConvNd`'s geometry, the backend's NHWC kernels) as one
graph node whose parents are the input, the weight and the bias.

Example:
    >>> import numpy as np, gpunet as gn
    >>> x = gn.tensor(np.ones((1, 1, 4, 4)))
    >>> box = gn.tensor(np.ones((1, 1, 3, 3)) / 9)
    >>> gn.nn.functional.conv2d(x, box, padding=1).numpy()[0, 0, 0].round(3).tolist()
    [0.444, 0.667, 0.667, 0.444]
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from gpunet.autograd import Tensor, record
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.nn._functional_norms import _tensor, same_dtype
from gpunet.nn.conv import _ConvNd, _pair


class _Geometry(SimpleNamespace):
    """What :class:`_ConvNd`'s geometry methods read, as attributes, with those methods."""

    _pads, _geo, _out_sizes = _ConvNd._pads, _ConvNd._geo, _ConvNd._out_sizes
    _to_nhwc, _from_nhwc, check_input = _ConvNd._to_nhwc, _ConvNd._from_nhwc, _ConvNd.check_input


# one class per function, named as it, for the methods' messages (type(self).__name__)
_KINDS = {(r, t): type(f"conv{'_transpose' if t else ''}{r}d", (_Geometry,), {})
          for r in (1, 2) for t in (False, True)}  # fmt: skip


def _geometry(rank: int, transposed: bool, W: Tensor, stride: Any, padding: Any,
              dilation: Any, groups: int, output_padding: Any) -> Any:  # fmt: skip
    """The call's :class:`_Geometry`, its channels and kernel read from ``W``'s shape."""
    name = f"conv{'_transpose' if transposed else ''}{rank}d"
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise InvalidParameterError(f"{name}: groups must be an int >= 1, got {groups!r}")
    if W.ndim != rank + 2:
        raise InputValidationError(
            f"{name}: weight must be {rank + 2}-D, got shape {tuple(W.shape)}"
        )
    a, b = int(W.shape[0]), int(W.shape[1])
    if a % groups:
        what = "in_channels" if transposed else "out_channels"
        raise InputValidationError(
            f"{name}: weight of shape {tuple(W.shape)} has {a} {what} (its first axis), "
            f"not a multiple of groups={groups}"
        )
    g = _KINDS[(rank, transposed)](
        rank=rank, transposed=transposed, groups=groups, kernel_size=tuple(W.shape[2:]),
        in_channels=a if transposed else b * groups, out_channels=b * groups if transposed else a,
        stride=_pair(stride, rank, f"{name} stride"),
        dilation=_pair(dilation, rank, f"{name} dilation"),
        output_padding=_pair(output_padding, rank, f"{name} output_padding", lo=0),
    )  # fmt: skip
    if isinstance(padding, str):
        if padding not in ("valid", "same") or transposed:
            raise InvalidParameterError(f"{name}: padding {padding!r} is not supported")
        g.padding = padding
    else:
        g.padding = _pair(padding, rank, f"{name} padding", lo=0)
    if any(o >= max(s, d) for o, s, d in zip(g.output_padding, g.stride, g.dilation, strict=True)):
        raise InvalidParameterError(
            f"{name}: output_padding {g.output_padding} must be smaller than stride "
            f"{g.stride} or dilation {g.dilation}"
        )
    return g


def _conv(
    rank: int, transposed: bool, input: Any, weight: Any, bias: Any, stride: Any,
    padding: Any, dilation: Any, groups: int, output_padding: Any = 0,
) -> Tensor:  # fmt: skip
    x = _tensor(input)
    W = _tensor(weight, x)
    b = None if bias is None else _tensor(bias, x)
    g = _geometry(rank, transposed, W, stride, padding, dilation, groups, output_padding)
    g.check_input(x)
    same_dtype(type(g).__name__, x, weight=W, bias=b)
    if b is not None and tuple(b.shape) != (g.out_channels,):
        raise InputValidationError(
            f"{type(g).__name__}: bias must have shape ({g.out_channels},), got {tuple(b.shape)}"
        )
    ops, xp = x.ops, x.ops.xp
    strides, pads, dil = g._geo()
    Wd = W.data if rank == 2 else xp.reshape(W.data, (*W.shape[:2], 1, W.shape[2]))
    Wl = xp.permute_dims(Wd, (2, 3, 1, 0))
    Xl = g._to_nhwc(xp, x.data)
    geo = {"strides": strides, "dilation": dil, "groups": groups}
    bd = None if b is None else b.data
    out = g._out_sizes(tuple(x.shape))  # (checked: an empty output raises, naming the shape)
    if transposed:
        Y, saved = ops.conv2d_transpose(Xl, Wl, bd, out, tuple(p[0] for p in pads), **geo)
    else:
        Y, saved = ops.conv2d(Xl, Wl, bd, padding=pads, **geo)
    parents = (x, W) if b is None else (x, W, b)

    def backward(dY: Any) -> tuple[Any, ...]:
        back = ops.backprop_conv2d_transpose if transposed else ops.backprop_conv2d
        dX, dW, db = back(g._to_nhwc(xp, dY), saved, need_dX=x.requires_grad,
                          need_db=b is not None)  # fmt: skip
        dW = xp.permute_dims(dW, (3, 2, 0, 1))
        grads = [None if dX is None else g._from_nhwc(xp, dX),
                 dW if rank == 2 else xp.reshape(dW, W.shape)]  # fmt: skip
        return tuple(grads) if b is None else (*grads, db)

    return record(g._from_nhwc(xp, Y), ops, parents, backward, type(g).__name__)


def conv1d(input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Tensor:  # fmt: skip
    """Of ``input (N, C, L)`` by ``weight (out, C / groups, k)``."""
    return _conv(1, False, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Tensor:  # fmt: skip
    """Of ``input (N, C, H, W)`` by ``weight (out, C / groups, kh, kw)``."""
    return _conv(2, False, input, weight, bias, stride, padding, dilation, groups)


def conv_transpose1d(input: Any, weight: Any, bias: Any = None, stride: Any = 1,
                     padding: Any = 0, output_padding: Any = 0, groups: int = 1,
                     dilation: Any = 1) -> Tensor:  # fmt: skip
    """The gradient of :func:`conv1d` as a layer: ``weight (C, out / groups, k)``."""
    return _conv(1, True, input, weight, bias, stride, padding, dilation, groups, output_padding)


def conv_transpose2d(input: Any, weight: Any, bias: Any = None, stride: Any = 1,
                     padding: Any = 0, output_padding: Any = 0, groups: int = 1,
                     dilation: Any = 1) -> Tensor:  # fmt: skip
    """The gradient of :func:`conv2d` as a layer: ``weight (C, out / groups, kh, kw)``."""
    return _conv(2, True, input, weight, bias, stride, padding, dilation, groups, output_padding)


__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"]
