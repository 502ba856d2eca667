"""``gn.ops``: the Keras 3 ``keras.ops`` names that custom losses and metrics use,
on gpunet's gradient-recording graph ops, so a loss written with them trains.

Most names map onto :mod:`gpunet.functional`; the few ops it lacks (``sqrt``,
``abs``, ``maximum``, ``minimum``, ``clip``, ``where``, ``max``/``min``
reductions, ``transpose`` with axes) are defined here with their backward.
Comparisons, ``argmax``, ``one_hot`` and casts to integer or boolean dtypes carry
no gradient, as in Keras. Results compare elementwise (``a == b`` is a boolean
tensor), as Keras tensors do.

Example:
    >>> import numpy as np, gpunet as gn
    >>> y_true = np.array([[0.0, 1.0]])
    >>> y_pred = gn.tensor(np.array([[0.5, 0.5]]), requires_grad=True)
    >>> loss = gn.ops.mean(gn.ops.square(y_true - y_pred))
    >>> float(loss)
    0.25
    >>> loss.backward()
    >>> y_pred.grad.numpy()
    array([[ 0.5, -0.5]])
"""

from __future__ import annotations

import builtins
from numbers import Number
from typing import Any

import numpy as np

from gpunet import config
from gpunet import functional as F
from gpunet.autograd import Tensor, as_tensor, record

Array = Any


class OpsTensor(Tensor):
    """A :class:`~gpunet.Tensor` whose comparisons are elementwise (Keras tensors')."""

    __slots__ = ()
    __hash__ = Tensor.__hash__

    def __eq__(self, other: Any) -> OpsTensor:  # type: ignore[override]
        return equal(self, other)

    def __ne__(self, other: Any) -> OpsTensor:  # type: ignore[override]
        return not_equal(self, other)

    def __lt__(self, other: Any) -> OpsTensor:
        return less(self, other)

    def __le__(self, other: Any) -> OpsTensor:
        return less_equal(self, other)

    def __gt__(self, other: Any) -> OpsTensor:
        return greater(self, other)

    def __ge__(self, other: Any) -> OpsTensor:
        return greater_equal(self, other)

    def __and__(self, other: Any) -> OpsTensor:
        return logical_and(self, other)

    def __or__(self, other: Any) -> OpsTensor:
        return logical_or(self, other)

    def __invert__(self) -> OpsTensor:
        return logical_not(self)


def _out(t: Tensor) -> OpsTensor:
    """An op's fresh result as an ``OpsTensor`` (same layout: no copy)."""
    if type(t) is Tensor:
        t.__class__ = OpsTensor
    return t  # type: ignore[return-value]


def _view(x: Tensor) -> OpsTensor:
    """The caller's tensor seen as an ``OpsTensor``: an identity node, so the
    caller's object keeps its own class and its gradient still reaches it."""
    if isinstance(x, OpsTensor):
        return x
    out = _out(record(x.data, x.ops, (x,), lambda g: (g,), "view"))
    out._logits = x._logits  # a following cross-entropy may still fuse with it
    return out


def convert_to_tensor(x: Any, dtype: Any = None) -> OpsTensor:
    """``x`` as a tensor: tensors stay (cast if ``dtype`` differs), host data goes
    to the device of the layer whose ``call`` is running, else to the CPU (Python
    floats take the default float dtype)."""
    if isinstance(x, Tensor):
        return cast(x, dtype) if dtype is not None else _view(x)
    as_t = getattr(x, "_as_tensor", None)  # a metric's Variable
    if as_t is not None:
        return convert_to_tensor(as_t(), dtype)
    from gpunet.layers.base import _local

    calls = _local.training  # inside a layer's call: its device, as Keras's default one
    dev = calls[-1][1] if calls else _cpu()
    if not isinstance(x, (np.ndarray, np.generic, Number, list, tuple)):
        raise TypeError(
            f"gn.ops cannot place a {type(x).__name__} on a device; pass a gpunet tensor "
            "(gn.tensor(x, device=...)) or host (NumPy) data"
        )
    arr = np.asarray(x)
    if dtype is None and arr.dtype.kind == "f" and not isinstance(x, np.ndarray):
        dtype = config.floatx()
    return _out(Tensor(dev.asarray(arr, dtype=dtype), dev))


def _cpu() -> Any:
    from gpunet.backend import get_ops

    return get_ops("cpu")


def _t(x: Any, like: Tensor | None = None) -> Tensor:
    if like is not None and not isinstance(x, Tensor) and getattr(x, "_as_tensor", None) is None:
        return as_tensor(x, like.ops, like.dtype)
    return convert_to_tensor(x)


def _like(*xs: Any) -> Tensor | None:
    return next((_t(x) for x in xs if isinstance(x, Tensor) or hasattr(x, "_as_tensor")), None)


def _is_float(dtype: Any) -> bool:
    try:
        return np.dtype(dtype).kind == "f"
    except TypeError:  # array_api_strict's dtype objects print as their names
        return "float" in str(dtype)


# -- creation and casts ------------------------------------------------------------------
def cast(x: Any, dtype: Any) -> OpsTensor:
    """``x`` in ``dtype``; only float-to-float casts carry a gradient."""
    t = _t(x)
    ops = t.ops
    dt = ops.dtype(dtype)
    if t.dtype == dt:
        return _view(t)
    if _is_float(dt) and _is_float(t.dtype):
        return _out(F.cast(t, dt))
    return _out(Tensor(ops.xp.astype(t.data, dt), ops))


def stop_gradient(x: Any) -> OpsTensor:
    return _out(_t(x).detach())


def one_hot(x: Any, num_classes: int, dtype: Any = None) -> OpsTensor:
    """Integer labels ``(n,)`` as ``(n, num_classes)`` rows of 0 and 1."""
    t = _t(x)
    ops = t.ops
    labels = ops.xp.reshape(ops.xp.astype(t.data, ops.dtype("int64")), (-1,))
    Y = ops.onehot(labels, int(num_classes), ops.dtype(dtype or config.floatx()))
    return _out(Tensor(ops.xp.reshape(Y, (*t.shape, int(num_classes))), ops))


def zeros_like(x: Any, dtype: Any = None) -> OpsTensor:
    t = _t(x)
    return _out(Tensor(t.ops.zeros(t.shape, dtype or t.dtype), t.ops))


def ones_like(x: Any, dtype: Any = None) -> OpsTensor:
    t = _t(x)
    return _out(Tensor(t.ops.full(t.shape, 1.0, dtype or t.dtype), t.ops))


def zeros(shape: Any, dtype: Any = None) -> OpsTensor:
    return convert_to_tensor(np.zeros(shape, dtype=dtype or config.floatx()))


def ones(shape: Any, dtype: Any = None) -> OpsTensor:
    return convert_to_tensor(np.ones(shape, dtype=dtype or config.floatx()))


def shape(x: Any) -> tuple[int, ...]:
    return _t(x).shape


# -- arithmetic (functional's graph ops) -------------------------------------------------
def _bin(fn: Any, a: Any, b: Any) -> OpsTensor:
    if not isinstance(a, (Tensor, Number)) and not isinstance(b, Tensor):
        a = _t(a)
    a = _t(a) if hasattr(a, "_as_tensor") else a
    b = _t(b) if hasattr(b, "_as_tensor") else b
    return _out(fn(a, b))


def add(x1: Any, x2: Any) -> OpsTensor:
    return _bin(F.add, x1, x2)


def subtract(x1: Any, x2: Any) -> OpsTensor:
    return _bin(F.sub, x1, x2)


def multiply(x1: Any, x2: Any) -> OpsTensor:
    return _bin(F.mul, x1, x2)


def divide(x1: Any, x2: Any) -> OpsTensor:
    return _bin(F.div, x1, x2)


def divide_no_nan(x1: Any, x2: Any) -> OpsTensor:
    """``x1 / x2``, and 0 where ``x2 == 0`` (no gradient flows there)."""
    b = _t(x2, _like(x1, x2))
    zero = equal(b, 0.0)
    return where(zero, 0.0, divide(x1, where(zero, 1.0, b)))


def negative(x: Any) -> OpsTensor:
    return _out(F.sub(0.0, _t(x)))


def power(x1: Any, x2: float) -> OpsTensor:
    if not isinstance(x2, Number):
        raise TypeError(f"gn.ops.power takes a Python number exponent, got {type(x2).__name__}")
    return _out(F.power(_t(x1), float(x2)))  # type: ignore[arg-type]


def square(x: Any) -> OpsTensor:
    t = _t(x)
    return _out(F.mul(t, t))


def exp(x: Any) -> OpsTensor:
    return _out(F.exp(_t(x)))


def log(x: Any) -> OpsTensor:
    return _out(F.log(_t(x)))


def matmul(x1: Any, x2: Any) -> OpsTensor:
    like = _like(x1, x2)
    return _out(F.matmul(_t(x1, like), _t(x2, like)))


def sum(x: Any, axis: Any = None, keepdims: bool = False) -> OpsTensor:
    return _out(F.sum(_t(x), axis=axis, keepdims=keepdims))


def mean(x: Any, axis: Any = None, keepdims: bool = False) -> OpsTensor:
    return _out(F.mean(_t(x), axis=axis, keepdims=keepdims))


def reshape(x: Any, newshape: Any) -> OpsTensor:
    return _out(F.reshape(_t(x), tuple(newshape)))


def expand_dims(x: Any, axis: int) -> OpsTensor:
    t = _t(x)
    dims = list(t.shape)
    dims.insert(axis % (t.ndim + 1), 1)
    return reshape(t, dims)


def squeeze(x: Any, axis: Any = None) -> OpsTensor:
    t = _t(x)
    axes = {a % t.ndim for a in ((axis,) if isinstance(axis, int) else (axis or ()))}
    if axes and builtins.any(t.shape[a] != 1 for a in axes):  # gn.ops.any shadows it
        raise ValueError(f"cannot squeeze axis {axis} of a tensor of shape {t.shape}")
    keep = [n for i, n in enumerate(t.shape) if (i not in axes if axes else n != 1)]
    return reshape(t, keep)


def concatenate(xs: Any, axis: int = 0) -> OpsTensor:
    return _out(F.concat([_t(x) for x in xs], axis=axis))


def _act(name: str, x: Any, **kw: Any) -> OpsTensor:
    return _out(F.activation(_t(x), name, **kw))


def relu(x: Any) -> OpsTensor:
    return _act("relu", x)


def sigmoid(x: Any) -> OpsTensor:
    return _act("sigmoid", x)


def tanh(x: Any) -> OpsTensor:
    return _act("tanh", x)


def softplus(x: Any) -> OpsTensor:
    return _act("softplus", x)


def softmax(x: Any, axis: int = -1) -> OpsTensor:
    return _act("softmax", x, axis=axis)


# -- ops functional lacks, each with its backward ----------------------------------------
def sqrt(x: Any) -> OpsTensor:
    t = _t(x)
    Y = t.ops.xp.sqrt(t.data)
    return _out(record(Y, t.ops, (t,), lambda g: (g * 0.5 / Y,), "sqrt"))


def abs(x: Any) -> OpsTensor:
    t = _t(x)
    X, xp = t.data, t.ops.xp
    return _out(record(xp.abs(X), t.ops, (t,), lambda g: (g * xp.sign(X),), "abs"))


def _pick(a: Any, b: Any, first: Any, name: str) -> OpsTensor:
    """``maximum``/``minimum``: the gradient goes to the chosen operand, half to
    each on a tie (as PyTorch's)."""
    like = _like(a, b)
    if like is None:
        raise TypeError(f"gn.ops.{name} needs at least one tensor operand")
    ops, xp = like.ops, like.ops.xp
    ta = None if isinstance(a, Number) else _t(a, like)
    tb = None if isinstance(b, Number) else _t(b, like)
    A = float(a) if ta is None else ta.data
    B = float(b) if tb is None else tb.data
    pick_a = xp.astype(first(A, B), like.dtype) + 0.5 * xp.astype(A == B, like.dtype)
    Y = xp.where(first(A, B) | (A == B), A, B)
    parents = tuple(t for t in (ta, tb) if t is not None)

    def backward(g: Array) -> tuple[Any, ...]:
        out = []
        if ta is not None:
            out.append(ops.sum_to_shape(g * pick_a, ta.shape))
        if tb is not None:
            out.append(ops.sum_to_shape(g * (1.0 - pick_a), tb.shape))
        return tuple(out)

    return _out(record(Y, ops, parents, backward, name))


def maximum(x1: Any, x2: Any) -> OpsTensor:
    return _pick(x1, x2, lambda A, B: A > B, "maximum")


def minimum(x1: Any, x2: Any) -> OpsTensor:
    return _pick(x1, x2, lambda A, B: A < B, "minimum")


def clip(x: Any, x_min: float, x_max: float) -> OpsTensor:
    """``x`` limited to ``[x_min, x_max]``; the gradient passes inside the bounds."""
    t = _t(x)
    X, xp = t.data, t.ops.xp
    inside = xp.astype((X >= x_min) & (X <= x_max), t.dtype)
    Y = xp.clip(X, x_min, x_max)
    return _out(record(Y, t.ops, (t,), lambda g: (g * inside,), "clip"))


def where(condition: Any, x1: Any, x2: Any) -> OpsTensor:
    """``x1`` where ``condition`` holds, else ``x2`` (broadcast together)."""
    like = _like(x1, x2, condition)
    if like is None:
        raise TypeError("gn.ops.where needs at least one tensor argument")
    ops, xp = like.ops, like.ops.xp
    dtype = next((t.dtype for t in (x1, x2) if isinstance(t, Tensor)), config.floatx())
    C = xp.astype(_t(condition, like).data, xp.bool)
    ta = None if isinstance(x1, Number) else _t(x1, like)
    tb = None if isinstance(x2, Number) else _t(x2, like)
    A = float(x1) if ta is None else ta.data
    B = float(x2) if tb is None else tb.data
    Y = xp.astype(xp.where(C, A, B), ops.dtype(dtype))
    parents = tuple(t for t in (ta, tb) if t is not None)

    def backward(g: Array) -> tuple[Any, ...]:
        zero = xp.zeros_like(g)
        out = []
        if ta is not None:
            out.append(ops.sum_to_shape(xp.where(C, g, zero), ta.shape))
        if tb is not None:
            out.append(ops.sum_to_shape(xp.where(C, zero, g), tb.shape))
        return tuple(out)

    return _out(record(Y, ops, parents, backward, "where"))


def _extreme(x: Any, axis: Any, keepdims: bool, fn: str) -> OpsTensor:
    """``max``/``min`` over ``axis``; ties share the gradient evenly (``torch.amax``)."""
    t = _t(x)
    ops, xp, X = t.ops, t.ops.xp, t.data
    Yk = getattr(xp, fn)(X, axis=axis, keepdims=True)
    hit = xp.astype(X == Yk, t.dtype)
    share = hit / xp.sum(hit, axis=axis, keepdims=True)
    Y = getattr(xp, fn)(X, axis=axis, keepdims=keepdims)

    def backward(g: Array) -> tuple[Array]:
        return (xp.reshape(g, Yk.shape) * share,)

    return _out(record(Y, ops, (t,), backward, fn))


def max(x: Any, axis: Any = None, keepdims: bool = False) -> OpsTensor:
    return _extreme(x, axis, keepdims, "max")


def min(x: Any, axis: Any = None, keepdims: bool = False) -> OpsTensor:
    return _extreme(x, axis, keepdims, "min")


def transpose(x: Any, axes: Any = None) -> OpsTensor:
    """Permute the axes (all reversed by default, as ``numpy.transpose``)."""
    t = _t(x)
    xp = t.ops.xp
    perm = tuple(reversed(range(t.ndim))) if axes is None else tuple(a % t.ndim for a in axes)
    inverse = tuple(int(i) for i in np.argsort(perm))
    Y = xp.permute_dims(t.data, perm)
    return _out(record(Y, t.ops, (t,), lambda g: (xp.permute_dims(g, inverse),), "transpose"))


# -- no gradient: comparisons, logic, indices --------------------------------------------
def _cmp(a: Any, b: Any, fn: Any) -> OpsTensor:
    like = _like(a, b)
    if like is None:
        like = _t(a)
    A = a if isinstance(a, Number) else _t(a, like).data
    B = b if isinstance(b, Number) else _t(b, like).data
    return _out(Tensor(fn(A, B), like.ops))


def equal(x1: Any, x2: Any) -> OpsTensor:
    return _cmp(x1, x2, lambda A, B: A == B)


def not_equal(x1: Any, x2: Any) -> OpsTensor:
    return _cmp(x1, x2, lambda A, B: A != B)


def greater(x1: Any, x2: Any) -> OpsTensor:
    return _cmp(x1, x2, lambda A, B: A > B)


def greater_equal(x1: Any, x2: Any) -> OpsTensor:
    return _cmp(x1, x2, lambda A, B: A >= B)


def less(x1: Any, x2: Any) -> OpsTensor:
    return _cmp(x1, x2, lambda A, B: A < B)


def less_equal(x1: Any, x2: Any) -> OpsTensor:
    return _cmp(x1, x2, lambda A, B: A <= B)


def _as_bool(x: Any, like: Tensor) -> Any:
    t = _t(x, like)
    return t.ops.xp.astype(t.data, t.ops.xp.bool)


def logical_and(x1: Any, x2: Any) -> OpsTensor:
    like = _like(x1, x2)
    like = like if like is not None else _t(x1)
    return _out(Tensor(_as_bool(x1, like) & _as_bool(x2, like), like.ops))


def logical_or(x1: Any, x2: Any) -> OpsTensor:
    like = _like(x1, x2)
    like = like if like is not None else _t(x1)
    return _out(Tensor(_as_bool(x1, like) | _as_bool(x2, like), like.ops))


def logical_not(x: Any) -> OpsTensor:
    t = _t(x)
    return _out(Tensor(~_as_bool(t, t), t.ops))


def argmax(x: Any, axis: int | None = None, keepdims: bool = False) -> OpsTensor:
    t = _t(x)
    Y = t.ops.xp.argmax(t.data, axis=axis, keepdims=keepdims)
    return _out(Tensor(t.ops.xp.astype(Y, t.ops.dtype("int64")), t.ops))


def argmin(x: Any, axis: int | None = None, keepdims: bool = False) -> OpsTensor:
    t = _t(x)
    Y = t.ops.xp.argmin(t.data, axis=axis, keepdims=keepdims)
    return _out(Tensor(t.ops.xp.astype(Y, t.ops.dtype("int64")), t.ops))


_BASE = [
    "OpsTensor", "abs", "add", "argmax", "argmin", "cast", "clip", "concatenate",
    "convert_to_tensor", "divide", "divide_no_nan", "equal", "exp", "expand_dims", "greater",
    "greater_equal", "less", "less_equal", "log", "logical_and", "logical_not", "logical_or",
    "matmul", "max", "maximum", "mean", "min", "minimum", "multiply", "negative", "not_equal",
    "one_hot", "ones", "ones_like", "power", "relu", "reshape", "shape", "sigmoid", "softmax",
    "softplus", "sqrt", "square", "squeeze", "stop_gradient", "subtract", "sum", "tanh",
    "transpose", "where", "zeros", "zeros_like",
]  # fmt: skip

# the creation, trigonometry, shape and reduction ops custom layers use
from gpunet import _kops_more  # noqa: E402
from gpunet._kops_more import *  # noqa: E402, F403

__all__: list[str] = [*_BASE, *_kops_more.__all__]
