"""The rest of the ``keras.ops`` names that custom layers reach for: ranges and
constant tensors (position ids, causal masks), trigonometry (sinusoidal encodings),
stacking, tiling, cumulative sums, variance, padding and the activations by name.

They join :mod:`gpunet.kops` (``gn.ops``); ops on float tensors record their
backward, creation ops and integer results carry no gradient, as in Keras.

Example:
    >>> import gpunet as gn
    >>> gn.ops.arange(4).numpy()
    array([0, 1, 2, 3], dtype=int32)
    >>> gn.ops.tril(gn.ops.ones((2, 2))).numpy()
    array([[1., 0.],
           [1., 1.]], dtype=float32)
"""

from __future__ import annotations

import builtins
import itertools
import math
from typing import Any

import numpy as np

from gpunet import config
from gpunet import functional as F
from gpunet.autograd import Tensor, record
from gpunet.backend import _special
from gpunet.kops import (
    OpsTensor,
    _act,
    _out,
    _t,
    convert_to_tensor,
    mean,
    sqrt,
    square,
    subtract,
)

Array = Any


def _host(X: Any, dtype: Any = None) -> OpsTensor:
    return convert_to_tensor(np.asarray(X, dtype=dtype))


def _floats(dtype: Any) -> Any:
    return dtype or config.floatx()


# -- creation (no gradient) --------------------------------------------------------------
def arange(start: Any, stop: Any = None, step: Any = 1, dtype: Any = None) -> OpsTensor:
    """``[start, stop)`` by ``step``; int32 for integer bounds, as Keras."""
    if stop is None:
        start, stop = 0, start
    ints = builtins.all(isinstance(v, (int, np.integer)) for v in (start, stop, step))
    return _host(np.arange(start, stop, step), dtype or ("int32" if ints else config.floatx()))


def full(shape: Any, fill_value: Any, dtype: Any = None) -> OpsTensor:
    return _host(np.full(shape, fill_value), _floats(dtype))


def full_like(x: Any, fill_value: Any, dtype: Any = None) -> OpsTensor:
    t = _t(x)
    return _out(Tensor(t.ops.full(t.shape, fill_value, dtype or t.dtype), t.ops))


def eye(N: int, M: int | None = None, k: int = 0, dtype: Any = None) -> OpsTensor:
    return _host(np.eye(N, M, k), _floats(dtype))


def linspace(start: float, stop: float, num: int = 50, endpoint: bool = True,
             dtype: Any = None) -> OpsTensor:  # fmt: skip
    return _host(np.linspace(start, stop, num, endpoint=endpoint), _floats(dtype))


def convert_to_numpy(x: Any) -> np.ndarray:
    return _t(x).numpy() if isinstance(x, Tensor) else np.asarray(x)


# -- elementwise with a backward ---------------------------------------------------------
def _unary(x: Any, fn: str, grad: Any, name: str) -> OpsTensor:
    t = _t(x)
    X, xp = t.data, t.ops.xp
    return _out(record(getattr(xp, fn)(X), t.ops, (t,), lambda g: (g * grad(X, xp),), name))


def sin(x: Any) -> OpsTensor:
    return _out(F.sin(_t(x)))


def cos(x: Any) -> OpsTensor:
    return _out(F.cos(_t(x)))


def log1p(x: Any) -> OpsTensor:
    return _unary(x, "log1p", lambda X, xp: 1.0 / (1.0 + X), "log1p")


def erf(x: Any) -> OpsTensor:
    t = _t(x)
    ops, X = t.ops, t.data
    Y = _special.erf(ops.xp, X)
    scale = 2.0 / math.sqrt(math.pi)
    return _out(record(Y, ops, (t,), lambda g: (g * scale * ops.xp.exp(-X * X),), "erf"))


def _masked(x: Any, keep: Any, name: str) -> OpsTensor:
    t = _t(x)
    K = t.ops.asarray(keep(t.shape), dtype=t.dtype)
    return _out(record(t.data * K, t.ops, (t,), lambda g: (g * K,), name))


def tril(x: Any, k: int = 0) -> OpsTensor:
    """The lower triangle of the last two axes (above diagonal ``k`` set to 0)."""
    return _masked(x, lambda s: np.tril(np.ones(s[-2:]), k), "tril")


def triu(x: Any, k: int = 0) -> OpsTensor:
    return _masked(x, lambda s: np.triu(np.ones(s[-2:]), k), "triu")


# -- no gradient: rounding and tests -----------------------------------------------------
def _plain(x: Any, fn: str) -> OpsTensor:
    t = _t(x)
    return _out(Tensor(getattr(t.ops.xp, fn)(t.data), t.ops))


def sign(x: Any) -> OpsTensor:
    return _plain(x, "sign")


def floor(x: Any) -> OpsTensor:
    return _plain(x, "floor")


def ceil(x: Any) -> OpsTensor:
    return _plain(x, "ceil")


def round(x: Any) -> OpsTensor:
    return _plain(x, "round")


def isnan(x: Any) -> OpsTensor:
    return _plain(x, "isnan")


def isfinite(x: Any) -> OpsTensor:
    return _plain(x, "isfinite")


def any(x: Any, axis: Any = None, keepdims: bool = False) -> OpsTensor:
    t = _t(x)
    xp = t.ops.xp
    return _out(Tensor(xp.any(xp.astype(t.data, xp.bool), axis=axis, keepdims=keepdims), t.ops))


def all(x: Any, axis: Any = None, keepdims: bool = False) -> OpsTensor:
    t = _t(x)
    xp = t.ops.xp
    return _out(Tensor(xp.all(xp.astype(t.data, xp.bool), axis=axis, keepdims=keepdims), t.ops))


# -- activations by name -----------------------------------------------------------------
def gelu(x: Any, approximate: bool = True) -> OpsTensor:
    """GELU; the tanh approximation by default, as ``keras.ops.gelu`` (the layer
    activation ``"gelu"`` is exact, as Keras')."""
    return _act("gelu", x, approximate=approximate)


def silu(x: Any) -> OpsTensor:
    return _act("silu", x)


swish = silu


def elu(x: Any, alpha: float = 1.0) -> OpsTensor:
    return _act("elu", x, alpha=alpha)


def selu(x: Any) -> OpsTensor:
    return _act("selu", x)


def leaky_relu(x: Any, negative_slope: float = 0.2) -> OpsTensor:
    return _act("leaky_relu", x, alpha=negative_slope)


def log_softmax(x: Any, axis: int = -1) -> OpsTensor:
    return _act("log_softmax", x, axis=axis)


# -- shape ops ---------------------------------------------------------------------------
def stack(xs: Any, axis: int = 0) -> OpsTensor:
    return _out(F.stack([_t(x) for x in xs], dim=axis))


def split(x: Any, indices_or_sections: Any, axis: int = 0) -> list[OpsTensor]:
    """Equal sections (an int) or cuts at the given indices, as ``numpy.split``."""
    t = _t(x)
    n = t.shape[axis]
    if isinstance(indices_or_sections, (int, np.integer)):
        if n % int(indices_or_sections):
            raise ValueError(f"gn.ops.split: axis {axis} of size {n} does not split into "
                             f"{indices_or_sections} equal sections")  # fmt: skip
        step = n // int(indices_or_sections)
        cuts = list(range(step, n, step))
    else:
        cuts = [int(i) for i in indices_or_sections]
    edges = [0, *cuts, n]
    lead = (builtins.slice(None),) * (axis % t.ndim)
    return [_out(F.getitem(t, (*lead, builtins.slice(a, b)))) for a, b in itertools.pairwise(edges)]


def tile(x: Any, repeats: Any) -> OpsTensor:
    """``x`` repeated ``repeats[i]`` times along axis ``i`` (``numpy.tile``)."""
    t = _t(x)
    reps = (
        (int(repeats),)
        if isinstance(repeats, (int, np.integer))
        else tuple(int(r) for r in repeats)
    )
    shape = (1,) * (len(reps) - t.ndim) + t.shape
    reps = (1,) * (len(shape) - len(reps)) + reps
    xp = t.ops.xp
    Y = xp.tile(xp.reshape(t.data, shape), reps)

    def backward(g: Array) -> tuple[Array]:
        split_shape = builtins.sum(((r, s) for r, s in zip(reps, shape, strict=True)), ())
        summed = xp.sum(xp.reshape(g, split_shape), axis=tuple(range(0, len(split_shape), 2)))
        return (xp.reshape(summed, t.shape),)

    return _out(record(Y, t.ops, (t,), backward, "tile"))


def repeat(x: Any, repeats: int, axis: int | None = None) -> OpsTensor:
    """Each element repeated ``repeats`` times along ``axis`` (flattened if None)."""
    t = _t(x)
    if not isinstance(repeats, (int, np.integer)):
        raise TypeError("gn.ops.repeat takes an int number of repeats")
    src = F.reshape(t, (-1,)) if axis is None else t
    ax = 0 if axis is None else axis % t.ndim
    xp, r = t.ops.xp, int(repeats)
    Y = xp.repeat(src.data, r, axis=ax)

    def backward(g: Array) -> tuple[Array]:
        s = src.shape
        return (xp.sum(xp.reshape(g, (*s[:ax], s[ax], r, *s[ax + 1 :])), axis=ax + 1),)

    return _out(record(Y, t.ops, (src,), backward, "repeat"))


def flip(x: Any, axis: Any = None) -> OpsTensor:
    t = _t(x)
    xp = t.ops.xp
    return _out(record(xp.flip(t.data, axis=axis), t.ops, (t,),
                       lambda g: (xp.flip(g, axis=axis),), "flip"))  # fmt: skip


def cumsum(x: Any, axis: int | None = None) -> OpsTensor:
    t = _t(x)
    src = F.reshape(t, (-1,)) if axis is None else t
    ax, xp = (0 if axis is None else axis), t.ops.xp

    def backward(g: Array) -> tuple[Array]:  # each input reaches every later output
        return (xp.flip(xp.cumsum(xp.flip(g, axis=ax), axis=ax), axis=ax),)

    return _out(record(xp.cumsum(src.data, axis=ax), t.ops, (src,), backward, "cumsum"))


def pad(x: Any, pad_width: Any, mode: str = "constant", constant_values: Any = None) -> OpsTensor:
    """Pad with a constant (``mode="constant"``, the only mode here): ``pad_width``
    is ``((before, after),)`` per axis, as ``numpy.pad``."""
    if mode != "constant":
        raise ValueError(f"gn.ops.pad: mode={mode!r}; only 'constant' is supported")
    t = _t(x)
    width = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (t.ndim, 2))
    xp = t.ops.xp
    Y = xp.pad(t.data, [tuple(int(v) for v in w) for w in width],
               constant_values=0 if constant_values is None else constant_values)  # fmt: skip
    inner = tuple(
        builtins.slice(int(a), int(a) + n) for (a, _), n in zip(width, t.shape, strict=True)
    )
    return _out(record(Y, t.ops, (t,), lambda g: (g[inner],), "pad"))


def slice(x: Any, start_indices: Any, shape: Any) -> OpsTensor:
    """The block of ``shape`` starting at ``start_indices`` (``keras.ops.slice``)."""
    t = _t(x)
    key = tuple(
        builtins.slice(int(a), int(a) + int(n)) for a, n in zip(start_indices, shape, strict=True)
    )
    return _out(F.getitem(t, key))


# -- reductions --------------------------------------------------------------------------
def var(x: Any, axis: Any = None, keepdims: bool = False) -> OpsTensor:
    """The population variance (``ddof=0``), as ``keras.ops.var``."""
    t = _t(x)
    return mean(square(subtract(t, mean(t, axis=axis, keepdims=True))), axis, keepdims)


def std(x: Any, axis: Any = None, keepdims: bool = False) -> OpsTensor:
    return sqrt(var(x, axis, keepdims))


def dot(x1: Any, x2: Any) -> OpsTensor:
    from gpunet.kops import matmul

    return matmul(x1, x2)


__all__: list[str] = [
    "all", "any", "arange", "ceil", "convert_to_numpy", "cos", "cumsum", "dot", "elu", "erf",
    "eye", "flip", "floor", "full", "full_like", "gelu", "isfinite", "isnan", "leaky_relu",
    "linspace", "log1p", "log_softmax", "pad", "repeat", "round", "selu", "sign", "silu", "sin",
    "slice", "split", "stack", "std", "swish", "tile", "tril", "triu", "var",
]  # fmt: skip
