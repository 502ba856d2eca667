"""Graph ops: each computes its forward with the backend and records one node
whose closure calls the matching ``backprop_*`` (forward and backward together).

These are what layers, losses and ``Tensor`` operators are made of; users may
call them directly in a subclassed model's ``call``.

Example:
    >>> import numpy as np, gpunet as gn
    >>> a = gn.tensor(np.ones((2, 3)), requires_grad=True)
    >>> b = gn.tensor(np.ones((2, 2)), requires_grad=True)
    >>> gn.functional.concat([a, b], axis=-1).shape
    (2, 5)
"""

from __future__ import annotations

from numbers import Number
from typing import Any

from gpunet.autograd import Tensor, as_tensor, grad_sink, needs_grad, record

Array = Any
PROB_ACTIVATIONS = ("sigmoid", "softmax")


def _pair(a: Any, b: Any) -> tuple[Any, Tensor | None, Tensor | None, Any, Any]:
    """Operands of a binary op: tensors stay tensors, Python numbers stay scalars."""
    ops = a.ops if isinstance(a, Tensor) else b.ops
    like = a if isinstance(a, Tensor) else b
    ta = None if isinstance(a, Number) else as_tensor(a, ops, like.dtype)
    tb = None if isinstance(b, Number) else as_tensor(b, ops, like.dtype)
    A = float(a) if ta is None else ta.data
    B = float(b) if tb is None else tb.data
    return ops, ta, tb, A, B


def _binary(a: Any, b: Any, fwd: Any, bwd_a: Any, bwd_b: Any, name: str) -> Tensor:
    ops, ta, tb, A, B = _pair(a, b)
    Y = fwd(A, B)
    parents = tuple(t for t in (ta, tb) if t is not None)

    def backward(dY: Array) -> tuple[Any, ...]:
        grads = []
        if ta is not None:
            grads.append(ops.sum_to_shape(bwd_a(dY, A, B), ta.shape) if ta.requires_grad else None)
        if tb is not None:
            grads.append(ops.sum_to_shape(bwd_b(dY, A, B), tb.shape) if tb.requires_grad else None)
        return tuple(grads)

    return record(Y, ops, parents, backward, name)


def add(a: Any, b: Any) -> Tensor:
    """``a + b`` with broadcasting (a residual connection is ``add(x, f(x))``)."""
    return _binary(a, b, lambda A, B: A + B, lambda g, A, B: g, lambda g, A, B: g, "add")


def sub(a: Any, b: Any) -> Tensor:
    return _binary(a, b, lambda A, B: A - B, lambda g, A, B: g, lambda g, A, B: -g, "sub")


def mul(a: Any, b: Any) -> Tensor:
    return _binary(a, b, lambda A, B: A * B, lambda g, A, B: g * B, lambda g, A, B: g * A, "mul")


def div(a: Any, b: Any) -> Tensor:
    return _binary(
        a,
        b,
        lambda A, B: A / B,
        lambda g, A, B: g / B,
        lambda g, A, B: -g * A / (B * B),
        "div",
    )


def power(x: Tensor, exponent: float) -> Tensor:
    """``x ** exponent`` for a Python number ``exponent``."""
    X, p = x.data, float(exponent)
    return record(X**p, x.ops, (x,), lambda g: (g * (p * X ** (p - 1.0)),), "power")


def exp(x: Tensor) -> Tensor:
    Y = x.ops.xp.exp(x.data)
    return record(Y, x.ops, (x,), lambda g: (g * Y,), "exp")


def log(x: Tensor) -> Tensor:
    X = x.data
    return record(x.ops.xp.log(X), x.ops, (x,), lambda g: (g / X,), "log")


def cast(x: Tensor, dtype: Any) -> Tensor:
    """``x`` in another float dtype; the gradient is cast back."""
    ops, src = x.ops, x.dtype
    dt = ops.dtype(dtype)
    if src == dt:
        return x
    return record(ops.xp.astype(x.data, dt), ops, (x,), lambda g: (ops.xp.astype(g, src),), "cast")


def matmul(a: Any, b: Any) -> Tensor:
    """``a @ b`` for operands of 2 or more dimensions."""
    ops, ta, tb, A, B = _pair(a, b)
    if ta is None or tb is None or min(A.ndim, B.ndim) < 2:
        raise ValueError("matmul needs two tensors with at least 2 dimensions")

    def backward(g: Array) -> tuple[Any, Any]:
        dA = ops.sum_to_shape(ops.gemm(g, B, trans2=True), ta.shape) if ta.requires_grad else None
        dB = ops.sum_to_shape(ops.gemm(A, g, trans1=True), tb.shape) if tb.requires_grad else None
        return dA, dB

    return record(ops.gemm(A, B), ops, (ta, tb), backward, "matmul")


def sum(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    ops, shape = x.ops, x.shape
    xp = ops.xp
    Y = xp.sum(x.data, axis=axis, keepdims=keepdims)

    def backward(g: Array) -> tuple[Array]:
        if not keepdims and axis is not None:
            axes = (axis,) if isinstance(axis, int) else tuple(axis)
            g = xp.reshape(
                g,
                tuple(1 if i in {a % len(shape) for a in axes} else n for i, n in enumerate(shape)),
            )
        elif not keepdims:
            g = xp.reshape(g, (1,) * len(shape))
        return (ops.zeros(shape, x.dtype) + g,)

    return record(Y, ops, (x,), backward, "sum")


def mean(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    if axis is None:
        n = x.data.size
    else:
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
        n = 1
        for a in axes:
            n *= x.shape[a]
    return mul(sum(x, axis=axis, keepdims=keepdims), 1.0 / max(n, 1))


def reshape(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    xp, src = x.ops.xp, x.shape
    Y = xp.reshape(x.data, tuple(shape))
    return record(Y, x.ops, (x,), lambda g: (xp.reshape(g, src),), "reshape")


def transpose(x: Tensor) -> Tensor:
    """Swap the last two axes (``x.T`` of a matrix)."""
    xp = x.ops.xp
    Y = xp.matrix_transpose(x.data)
    return record(Y, x.ops, (x,), lambda g: (xp.matrix_transpose(g),), "transpose")


def getitem(x: Tensor, key: Any) -> Tensor:
    """Basic indexing (ints, slices, ``...``, ``None``) with a scatter backward."""
    ops = x.ops
    full = key if isinstance(key, tuple) else (key,)
    if any(not isinstance(k, (int, slice, type(Ellipsis), type(None))) for k in full):
        raise TypeError("tensor indexing takes ints, slices, ... and None only")
    if Ellipsis not in full:
        key = (*full, Ellipsis)

    def backward(g: Array) -> tuple[Array]:
        dX = ops.zeros(x.shape, x.dtype)
        dX[key] = g
        return (dX,)

    return record(x.data[key], ops, (x,), backward, "getitem")


def concat(tensors: Any, axis: int = -1) -> Tensor:
    """Join tensors along ``axis`` (Keras ``Concatenate``)."""
    ts = list(tensors)
    if not ts:
        raise ValueError("concat needs at least one tensor")
    ops = next(t.ops for t in ts if isinstance(t, Tensor))
    ts = [as_tensor(t, ops) for t in ts]
    ndim = ts[0].ndim
    ax = axis % ndim
    Y = ops.xp.concat([t.data for t in ts], axis=ax)
    sizes = [t.shape[ax] for t in ts]

    def backward(g: Array) -> tuple[Array, ...]:
        out, start = [], 0
        for n in sizes:
            idx = tuple(slice(start, start + n) if i == ax else slice(None) for i in range(ndim))
            out.append(g[idx])
            start += n
        return tuple(out)

    return record(Y, ops, tuple(ts), backward, "concat")


def activation(x: Tensor, name: str, **kw: Any) -> Tensor:
    """Apply a named activation; sigmoid/softmax outputs remember their logits so a
    following cross-entropy can fuse with them (gradient ``p - y``)."""
    ops, X = x.ops, x.data
    Y = ops.activation(name, X, **kw)

    def backward(g: Array) -> tuple[Array]:
        return (ops.backprop_activation(name, g, X, Y, **kw),)

    out = record(Y, ops, (x,), backward, name)
    if name in PROB_ACTIVATIONS and kw.get("axis", -1) in (-1, x.ndim - 1):
        out._logits = (x, name)
    return out


def dense(
    x: Tensor, W: Tensor, b: Tensor | None, activation_name: str = "linear", **kw: Any
) -> Tensor:
    """``activation(x @ W + b)`` as one node (GEMM, bias and activation fused)."""
    if activation_name in PROB_ACTIVATIONS:  # keep the logits visible to the loss
        return activation(dense(x, W, b, "linear"), activation_name, **kw)
    if x.ndim != 2:  # Keras applies Dense to the last axis
        lead = x.shape[:-1]
        flat = dense(reshape(x, (-1, x.shape[-1])), W, b, activation_name, **kw)
        return reshape(flat, (*lead, W.shape[1]))
    ops = W.ops
    X, Wd, bd = x.data, W.data, (None if b is None else b.data)
    Y, Z = ops.dense(X, Wd, bd, activation_name, **kw)
    if not needs_grad(x, W, b):
        return Tensor(Y, ops)
    need_dX, need_db = x.requires_grad, b is not None and b.requires_grad

    def backward(dY: Array) -> tuple[Any, ...]:
        dX, dW, db = ops.backprop_dense(
            dY, X, Wd, Z, Y, activation_name, need_dX=need_dX, need_db=need_db,
            dW_out=grad_sink(W), db_out=grad_sink(b), **kw,
        )  # fmt: skip
        return (dX, dW) if b is None else (dX, dW, db)

    parents = (x, W) if b is None else (x, W, b)
    return record(Y, ops, parents, backward, "dense")


def dropout(x: Tensor, rate: float, training: bool) -> Tensor:
    """Inverted dropout: identity unless ``training``."""
    if not training or rate == 0.0:
        return x
    ops = x.ops
    mask = ops.dropout_mask(x.shape, rate, x.dtype)
    return record(x.data * mask, ops, (x,), lambda g: (g * mask,), "dropout")


def fused_loss(kind: str, y_pred: Tensor, T: Array, scale: Any, **kw: Any) -> Tensor:
    """``sum_i scale_i * L_i`` of backend loss ``kind``, gradient from the same call."""
    ops = y_pred.ops
    L, dP = getattr(ops, kind)(y_pred.data, T, scale=scale, **kw)
    xp = ops.xp
    total = xp.sum(L) * scale if isinstance(scale, Number) else xp.sum(L * scale)
    return record(total, ops, (y_pred,), lambda g: (dP * g,), kind)
