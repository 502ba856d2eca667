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

import builtins
from numbers import Number
from typing import Any

import numpy as np

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


def power(x: Any, exponent: Any) -> Tensor:
    """``x ** exponent``; either may be a tensor (an integer exponent tensor takes
    ``x``'s float dtype, as PyTorch's type promotion gives)."""
    if isinstance(x, Tensor) and isinstance(exponent, Number):
        X, p = x.data, float(exponent)  # type: ignore[arg-type]
        return record(X**p, x.ops, (x,), lambda g: (g * (p * X ** (p - 1.0)),), "power")
    if isinstance(x, Tensor) and isinstance(exponent, Tensor) and _is_int(exponent):
        exponent = cast(exponent, x.dtype)
    xp = (x if isinstance(x, Tensor) else exponent).ops.xp
    return _binary(
        x,
        exponent,
        lambda A, B: A**B,
        lambda g, A, B: g * B * A ** (B - 1.0),
        lambda g, A, B: g * xp.log(A) * A**B,
        "power",
    )


def _is_int(t: Tensor) -> bool:
    return not t.ops.xp.isdtype(t.dtype, "real floating")


def exp(x: Tensor) -> Tensor:
    Y = x.ops.xp.exp(x.data)
    return record(Y, x.ops, (x,), lambda g: (g * Y,), "exp")


def log(x: Tensor) -> Tensor:
    X = x.data
    return record(x.ops.xp.log(X), x.ops, (x,), lambda g: (g / X,), "log")


def cast(x: Tensor, dtype: Any) -> Tensor:
    """``x`` in another dtype; between float dtypes the gradient is cast back
    (a cast to or from integers or bools is cut from the graph, as in PyTorch)."""
    ops, src = x.ops, x.dtype
    dt = ops.dtype(dtype if isinstance(dtype, str) else np.dtype(dtype).name)
    if src == dt:
        return x
    Y = ops.xp.astype(x.data, dt)
    if _is_int(x) or not ops.xp.isdtype(dt, "real floating"):
        return Tensor(Y, ops)
    return record(Y, ops, (x,), lambda g: (ops.xp.astype(g, src),), "cast")


def matmul(a: Any, b: Any) -> Tensor:
    """``a @ b`` for operands of 2 or more dimensions."""
    ops, ta, tb, A, B = _pair(a, b)
    if ta is None or tb is None or builtins.min(A.ndim, B.ndim) < 2:
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
    return mul(sum(x, axis=axis, keepdims=keepdims), 1.0 / builtins.max(n, 1))


def reshape(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    xp, src = x.ops.xp, x.shape
    Y = xp.reshape(x.data, tuple(shape))
    return record(Y, x.ops, (x,), lambda g: (xp.reshape(g, src),), "reshape")


def transpose(x: Tensor) -> Tensor:
    """Swap the last two axes (``x.T`` of a matrix)."""
    xp = x.ops.xp
    Y = xp.matrix_transpose(x.data)
    return record(Y, x.ops, (x,), lambda g: (xp.matrix_transpose(g),), "transpose")


def _index(k: Any, ops: Any) -> Any:
    """One part of an indexing key as the backend takes it (tensors, lists and
    ranges become integer or boolean arrays on ``ops``'s device)."""
    if isinstance(k, Tensor):
        return as_tensor(k, ops).data
    if isinstance(k, (range, list)):
        return ops.asarray(np.asarray(k))
    if isinstance(k, np.ndarray) and ops.device != "cpu":
        return ops.asarray(k)
    return k


def getitem(x: Tensor, key: Any) -> Tensor:
    """Indexing as NumPy and PyTorch do it: ints, slices, ``...``, ``None``, and
    integer or boolean arrays (``x[range(n), target]``), with a scatter backward
    that adds up repeated indices."""
    ops = x.ops
    full = tuple(_index(k, ops) for k in (key if isinstance(key, tuple) else (key,)))
    advanced = any(hasattr(k, "shape") for k in full)
    key = full if advanced or Ellipsis in full else (*full, Ellipsis)

    def backward(g: Array) -> tuple[Array]:
        dX = ops.zeros(x.shape, x.dtype)
        if not advanced:
            dX[key] = g
            return (dX,)
        add_at = getattr(getattr(ops.xp, "add", None), "at", None)
        if add_at is None:
            raise NotImplementedError(f"array indexing backward on {ops.device!r}")
        add_at(dX, key, g)
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


# -- PyTorch's tensor functions (reductions, shape, elementwise) ----------------------
def sin(x: Tensor) -> Tensor:
    X, xp = x.data, x.ops.xp
    return record(xp.sin(X), x.ops, (x,), lambda g: (g * xp.cos(X),), "sin")


def cos(x: Tensor) -> Tensor:
    X, xp = x.data, x.ops.xp
    return record(xp.cos(X), x.ops, (x,), lambda g: (-g * xp.sin(X),), "cos")


def abs(x: Tensor) -> Tensor:
    X, xp = x.data, x.ops.xp
    return record(xp.abs(X), x.ops, (x,), lambda g: (g * xp.sign(X),), "abs")


def clamp(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:
    """``x`` limited to ``[min, max]``; the gradient passes where ``x`` is inside."""
    X, xp = x.data, x.ops.xp
    Y, inside = X, None
    if min is not None:
        Y, inside = xp.maximum(Y, min), X >= min
    if max is not None:
        Y = xp.minimum(Y, max)
        inside = X <= max if inside is None else inside & (X <= max)
    mask = inside

    def backward(g: Array) -> tuple[Array]:
        return (g if mask is None else xp.where(mask, g, 0.0),)

    return record(Y, x.ops, (x,), backward, "clamp")


def where(condition: Any, a: Any, b: Any) -> Tensor:
    """``a`` where ``condition`` holds, else ``b`` (each may broadcast)."""
    C = condition.data if isinstance(condition, Tensor) else condition
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        ops = condition.ops
        return Tensor(ops.xp.where(C, a, b), ops)
    xp = (a if isinstance(a, Tensor) else b).ops.xp
    return _binary(
        a,
        b,
        lambda A, B: xp.where(C, A, B),
        lambda g, A, B: xp.where(C, g, 0.0),
        lambda g, A, B: xp.where(C, 0.0, g),
        "where",
    )


class MaxResult(tuple):  # type: ignore[type-arg]
    """``(values, indices)`` of ``max(dim)``/``min(dim)``, ``topk`` and ``sort``, as
    ``torch.return_types`` (readable by position or by name)."""

    @property
    def values(self) -> Tensor:
        return self[0]  # type: ignore[no-any-return]

    @property
    def indices(self) -> Tensor:
        return self[1]  # type: ignore[no-any-return]


def max(x: Tensor, dim: int | None = None, keepdim: bool = False, _sign: float = 1.0) -> Any:
    """The maximum (ties share the gradient equally); with ``dim``, the maxima and
    their indices along it (the gradient goes to the index, as in PyTorch)."""
    ops, X = x.ops, x.data
    xp = ops.xp
    S = X if _sign > 0 else -X
    if dim is None:
        Y = xp.max(S) * _sign
        mask = xp.astype(X == Y, X.dtype)
        return record(Y, ops, (x,), lambda g: (g * mask / xp.sum(mask),), "max")
    d = dim % x.ndim
    idx = xp.argmax(S, axis=d, keepdims=True)
    pos = xp.reshape(ops.arange(x.shape[d]), tuple(-1 if i == d else 1 for i in range(x.ndim)))
    hit = pos == idx
    vals = xp.sum(xp.where(hit, X, 0.0), axis=d, keepdims=True)
    Y = vals if keepdim else xp.squeeze(vals, axis=d)

    def backward(g: Array) -> tuple[Array]:
        G = g if keepdim else xp.expand_dims(g, axis=d)
        return (xp.where(hit, G, 0.0),)

    I = idx if keepdim else xp.squeeze(idx, axis=d)
    return MaxResult((record(Y, ops, (x,), backward, "max"), Tensor(I, ops)))


def min(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Any:
    return max(x, dim, keepdim, _sign=-1.0)


def argmax(x: Tensor, dim: int | None = None, keepdim: bool = False, fn: str = "argmax") -> Tensor:
    """Index of the maximum (of the flattened tensor when ``dim`` is None)."""
    xp = x.ops.xp
    if dim is None:
        return Tensor(getattr(xp, fn)(xp.reshape(x.data, (-1,))), x.ops)
    return Tensor(getattr(xp, fn)(x.data, axis=dim, keepdims=keepdim), x.ops)


def permute(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    xp = x.ops.xp
    inv = tuple(int(i) for i in np.argsort(dims))
    Y = xp.permute_dims(x.data, dims)
    return record(Y, x.ops, (x,), lambda g: (xp.permute_dims(g, inv),), "permute")


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge axes ``start_dim..end_dim`` into one (``torch.flatten``)."""
    shape = x.shape
    if not shape:
        return reshape(x, (1,))
    s, e = start_dim % len(shape), end_dim % len(shape)
    n = 1
    for d in shape[s : e + 1]:
        n *= d
    return reshape(x, (*shape[:s], n, *shape[e + 1 :]))


def stack(tensors: Any, dim: int = 0) -> Tensor:
    """Join same-shape tensors along a new axis ``dim``."""
    ts = list(tensors)
    if not ts:
        raise ValueError("stack needs at least one tensor")
    ops = next(t.ops for t in ts if isinstance(t, Tensor))
    ts = [as_tensor(t, ops) for t in ts]
    d = dim % (ts[0].ndim + 1)
    return concat([reshape(t, (*t.shape[:d], 1, *t.shape[d:])) for t in ts], axis=d)


def clone(x: Tensor) -> Tensor:
    return record(x.ops.copy(x.data), x.ops, (x,), lambda g: (g,), "clone")


def to_device(x: Tensor, device: str) -> Tensor:
    """``x`` on ``device``; the gradient comes back to ``x``'s device."""
    from gpunet.backend import get_ops

    src, dst = x.ops, get_ops(device)
    if dst is src:
        return x
    Y = dst.asarray(src.to_numpy(x.data))
    return record(Y, dst, (x,), lambda g: (src.asarray(dst.to_numpy(g)),), "to")


def linear(x: Any, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` with PyTorch's ``(out, in)`` weight, as one node."""
    ops = weight.ops
    x = as_tensor(x, ops, weight.dtype)
    if x.ndim != 2:
        lead = x.shape[:-1]
        flat = linear(reshape(x, (-1, x.shape[-1])), weight, bias)
        return reshape(flat, (*lead, weight.shape[0]))
    X, W = x.data, weight.data
    Y = ops.bias_activation(ops.gemm(X, W, trans2=True), None if bias is None else bias.data)[0]
    if not needs_grad(x, weight, bias):
        return Tensor(Y, ops)

    def backward(g: Array) -> tuple[Any, ...]:
        dX = ops.gemm(g, W) if x.requires_grad else None
        dW = ops.gemm(g, X, trans1=True, out=grad_sink(weight))
        if bias is None:
            return dX, dW
        db = ops.backprop_bias_activation(g, None, Y, need_db=bias.requires_grad)[1]
        return dX, dW, _into(ops, grad_sink(bias), db)

    parents = (x, weight) if bias is None else (x, weight, bias)
    return record(Y, ops, parents, backward, "linear")


def _into(ops: Any, sink: Any, value: Array) -> Array:
    if sink is None:
        return value
    ops.assign(sink, value)
    return sink
