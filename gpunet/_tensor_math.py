"""Graph ops behind the rest of PyTorch's ``Tensor`` surface: broadcasting
(``expand``), gathering and scattering along a dim, sorting (``sort``/``topk``),
reductions (``prod``, ``var``, ``norm``, ``logsumexp``, ``amax``), ``roll``,
``einsum``, diagonals and the elementwise ops with a simple derivative.

Each takes ``Tensor`` operands with PyTorch's argument names and records one node
(index and boolean results carry no gradient, as in PyTorch). They use only the
array API (``ops.xp``), so they run on the CPU, the simulated device and CUDA;
``einsum`` needs a namespace with ``einsum`` (NumPy, CuPy).

Example:
    >>> import gpunet as gn
    >>> from gpunet import _tensor_math as M
    >>> x = gn.tensor([[3.0, 1.0, 2.0]], requires_grad=True)
    >>> values, indices = M.topk(x, 2)
    >>> values.tolist(), indices.tolist()
    ([[3.0, 2.0]], [[0, 2]])
    >>> values.sum().backward()
    >>> x.grad.tolist()
    [[1.0, 0.0, 1.0]]
"""

from __future__ import annotations

import builtins
import math
from typing import Any

from gpunet import functional as F
from gpunet.autograd import Tensor, as_tensor, record
from gpunet.errors import InputValidationError

Array = Any


def _dim(x: Tensor, dim: int, name: str = "dim") -> int:
    n = builtins.max(x.ndim, 1)
    if not -n <= int(dim) < n:
        raise IndexError(
            f"{name}={dim} is out of range for a tensor of {x.ndim} dimensions "
            f"(expected in [{-n}, {n - 1}])"
        )
    return int(dim) % n


def _axes(x: Tensor, dim: Any) -> tuple[int, ...] | None:
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    return tuple(_dim(x, d) for d in dims)


def _keep(g: Array, xp: Any, shape: tuple[int, ...], axes: Any, keepdim: bool) -> Array:
    """``g`` of a reduction over ``axes`` reshaped to broadcast against the input."""
    if keepdim:
        return g
    if axes is None:
        return xp.reshape(g, (1,) * len(shape))
    return xp.reshape(g, tuple(1 if i in axes else n for i, n in enumerate(shape)))


# -- broadcasting and shape ------------------------------------------------------------------
def expand(x: Tensor, sizes: tuple[int, ...]) -> Tensor:
    """``x`` broadcast to ``sizes`` (``-1`` keeps a size); the gradient sums back."""
    ops, src = x.ops, x.shape
    lead = len(sizes) - len(src)
    if lead < 0:
        raise RuntimeError(
            f"expand: the number of sizes ({len(sizes)}) must be at least the tensor's "
            f"dimensions ({len(src)})"
        )
    shape = tuple((src[i - lead] if s == -1 and i >= lead else s) for i, s in enumerate(sizes))
    for i, n in enumerate(src):
        if n != 1 and shape[i + lead] != n:
            raise RuntimeError(
                f"expand: size {shape[i + lead]} does not match the tensor's size {n} at "
                f"dim {i + lead} (only size-1 dims expand); sizes={tuple(sizes)}"
            )
    Y = ops.xp.broadcast_to(x.data, shape)
    return record(Y, ops, (x,), lambda g: (ops.sum_to_shape(g, src),), "expand")


def split(x: Tensor, split_size_or_sections: Any, dim: int = 0) -> tuple[Tensor, ...]:
    """Pieces of ``split_size`` (an int) or of the listed sizes along ``dim``."""
    d = _dim(x, dim)
    n = x.shape[d]
    if isinstance(split_size_or_sections, int) or hasattr(split_size_or_sections, "__index__"):
        step = int(split_size_or_sections)
        if step <= 0:
            raise RuntimeError(f"split_size must be positive, got {step}")
        sizes = [builtins.min(step, n - s) for s in range(0, n, step)] or [0]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if builtins.sum(sizes) != n:
            raise RuntimeError(
                f"split_with_sizes expects split_sizes to sum exactly to {n} (dim {d}), got {sizes}"
            )
    out, start = [], 0
    for s in sizes:
        out.append(F.getitem(x, (slice(None),) * d + (slice(start, start + s),)))
        start += s
    return tuple(out)


def roll(x: Tensor, shifts: Any, dims: Any = None) -> Tensor:
    xp = x.ops.xp
    if dims is None:
        flat = F.reshape(x, (-1,))
        return F.reshape(roll(flat, shifts, 0), x.shape)
    sh = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    ax = _axes(x, dims)
    Y = xp.roll(x.data, sh, axis=ax)
    neg = tuple(-s for s in sh)
    return record(Y, x.ops, (x,), lambda g: (xp.roll(g, neg, axis=ax),), "roll")


def setitem(x: Tensor, key: Any, value: Any) -> None:
    """``x[key] = value`` in place, as PyTorch: into the array, or, for a tensor on
    the graph (or a value that requires grad), as an op whose old value is its input."""
    from gpunet.autograd import is_grad_enabled
    from gpunet.tensor_ops import LEAF_INPLACE

    ops, xp = x.ops, x.ops.xp
    parts = key if isinstance(key, tuple) else (key,)
    k = tuple(F._index(p, ops) for p in parts)
    tv = value if isinstance(value, Tensor) else None
    V = xp.astype(tv.data, x.dtype) if tv is not None else value
    if not is_grad_enabled() or not (x.requires_grad or (tv is not None and tv.requires_grad)):
        x.data[k] = V
        return
    if x.requires_grad and x._node is None:
        raise RuntimeError(LEAF_INPLACE)
    src = Tensor(x.data, ops, requires_grad=x.requires_grad)
    src._node = x._node
    Y = ops.copy(x.data)
    Y[k] = V

    def backward(g: Array) -> tuple[Any, ...]:
        dX = ops.copy(g)
        dX[k] = 0
        if tv is None:
            return (dX,)
        return dX, ops.sum_to_shape(g[k], tv.shape)

    out = record(Y, ops, (src,) if tv is None else (src, tv), backward, "setitem")
    x.data, x._node, x.requires_grad = out.data, out._node, out.requires_grad


# -- gather and scatter along a dim ------------------------------------------------------------
def _hits(ops: Any, index: Array, d: int, n: int) -> Array:
    """One-hot of ``index`` along a new axis after ``d``: ``H[..., j, k, ...]`` is
    True where ``index[..., j, ...] == k`` (k < n), for a scatter that needs no
    ``add.at`` (absent from the array API)."""
    xp = index.__array_namespace__() if hasattr(index, "__array_namespace__") else ops.xp
    ks = xp.reshape(ops.arange(n), (n,) + (1,) * (index.ndim - d - 1))
    return xp.expand_dims(index, axis=d + 1) == ks


def _index(x: Tensor, index: Any, d: int, what: str) -> Array:
    idx = as_tensor(index, x.ops)
    if idx.ops.xp.isdtype(idx.dtype, "real floating") or idx.ndim != x.ndim:
        raise InputValidationError(
            f"{what}: index must be an integer tensor with the input's {x.ndim} dimensions, "
            f"got {idx.dtype} of shape {idx.shape}"
        )
    for i, (a, b) in enumerate(zip(idx.shape, x.shape, strict=True)):
        if i != d and a != b:
            raise InputValidationError(
                f"{what}: index shape {idx.shape} must match the input's {x.shape} except "
                f"at dim {d}"
            )
    return idx.data


def gather(x: Tensor, dim: int, index: Any) -> Tensor:
    """``out[..., j, ...] = x[..., index[..., j, ...], ...]`` along ``dim``."""
    ops, xp = x.ops, x.ops.xp
    d = _dim(x, dim)
    I = _index(x, index, d, "gather")
    Y = xp.take_along_axis(x.data, I, axis=d)

    def backward(g: Array) -> tuple[Array]:
        H = _hits(ops, I, d, x.shape[d])
        return (xp.sum(xp.where(H, xp.expand_dims(g, axis=d + 1), 0.0), axis=d),)

    return record(Y, ops, (x,), backward, "gather")


def scatter(x: Tensor, dim: int, index: Any, src: Any, reduce: str | None = None) -> Tensor:
    """``x`` with ``src`` (a tensor or number) written at ``index`` along ``dim``;
    ``reduce="add"`` adds instead (PyTorch's ``scatter_add``)."""
    ops, xp = x.ops, x.ops.xp
    d = _dim(x, dim)
    I = _index(x, index, d, "scatter")
    if reduce not in (None, "add"):
        raise InputValidationError(f"scatter: reduce={reduce!r}; expected None or 'add'")
    ts = as_tensor(src, ops, x.dtype) if isinstance(src, Tensor) else None
    S = ts.data[tuple(slice(0, n) for n in I.shape)] if ts is not None else src
    H = _hits(ops, I, d, x.shape[d])
    S = xp.broadcast_to(ops.asarray(S, dtype=x.dtype), tuple(I.shape)) if ts is None else S
    placed = xp.sum(xp.where(H, xp.expand_dims(S, axis=d + 1), 0.0), axis=d)
    hit = xp.any(H, axis=d)
    Y = x.data + placed if reduce == "add" else xp.where(hit, placed, x.data)

    def backward(g: Array) -> tuple[Any, ...]:
        dx = g if reduce == "add" else xp.where(hit, 0.0, g)
        if ts is None:
            return (dx,)
        dS = xp.take_along_axis(g, I, axis=d)
        full = ops.zeros(ts.shape, ts.dtype)
        full[tuple(slice(0, n) for n in I.shape)] = dS
        return dx, full

    parents = (x,) if ts is None else (x, ts)
    return record(Y, ops, parents, backward, "scatter")


def index_add(x: Tensor, dim: int, index: Any, source: Any, alpha: float = 1.0) -> Tensor:
    """``x`` plus ``alpha * source`` added at positions ``index`` (1-D) along ``dim``."""
    ops, xp = x.ops, x.ops.xp
    d = _dim(x, dim)
    I = as_tensor(index, ops).data
    src = as_tensor(source, ops, x.dtype)
    if I.ndim != 1 or src.shape[d] != I.shape[0]:
        raise InputValidationError(
            f"index_add: index must be 1-D with source.shape[{d}] entries, got index "
            f"shape {tuple(I.shape)} and source shape {src.shape}"
        )
    # M[k, j]: row j of source goes to position k along dim
    M = xp.astype(xp.reshape(ops.arange(x.shape[d]), (-1, 1)) == I, x.dtype)
    S = xp.moveaxis(src.data, d, -1)
    added = xp.moveaxis(xp.matmul(S, xp.matrix_transpose(M)), -1, d)
    Y = x.data + alpha * added

    def backward(g: Array) -> tuple[Array, Array]:
        dS = xp.moveaxis(xp.matmul(xp.moveaxis(g, d, -1), M), -1, d)
        return g, alpha * dS

    return record(Y, ops, (x, src), backward, "index_add")


# -- sorting -------------------------------------------------------------------------------
def argsort(x: Tensor, dim: int = -1, descending: bool = False) -> Tensor:
    xp = x.ops.xp
    d = _dim(x, dim)
    X = x.data
    if xp.isdtype(X.dtype, "bool"):
        X = xp.astype(X, xp.int8)
    return Tensor(xp.argsort(-X if descending else X, axis=d), x.ops)


def sort(x: Tensor, dim: int = -1, descending: bool = False) -> F.MaxResult:
    idx = argsort(x, dim, descending)
    return F.MaxResult((gather(x, _dim(x, dim), idx), idx))


def topk(x: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> Any:
    """The ``k`` largest (``largest=False``: smallest) entries along ``dim`` and
    their indices, as ``torch.topk``."""
    d = _dim(x, dim)
    n = x.shape[d] if x.ndim else 1
    if not 0 <= int(k) <= n:
        raise RuntimeError(f"topk: k={k} is out of range for dim {d} of size {n}")
    order = argsort(x, d, descending=largest).data
    key = (slice(None),) * d + (slice(0, int(k)),)
    idx = Tensor(order[key], x.ops)
    return F.MaxResult((gather(x, d, idx), idx))


def cumsum(x: Tensor, dim: int) -> Tensor:
    xp = x.ops.xp
    d = _dim(x, dim)
    cs = getattr(xp, "cumulative_sum", None) or xp.cumsum  # the array API name, else NumPy's

    def backward(g: Array) -> tuple[Array]:  # each input reaches every later output
        return (xp.flip(cs(xp.flip(g, axis=d), axis=d), axis=d),)

    return record(cs(x.data, axis=d), x.ops, (x,), backward, "cumsum")


# -- reductions ------------------------------------------------------------------------------
def prod(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """The product; its gradient is the product of the others (zeros handled)."""
    ops, xp, X = x.ops, x.ops.xp, x.data
    ax = None if dim is None else _dim(x, dim)
    Y = xp.prod(X, axis=ax, keepdims=keepdim)

    def backward(g: Array) -> tuple[Array]:
        G = _keep(g, xp, x.shape, None if ax is None else (ax,), keepdim)
        src = xp.reshape(X, (-1,)) if ax is None else X
        a = 0 if ax is None else ax
        # exclusive products from both sides: no division, so zeros are exact
        ones = xp.ones_like(xp.take(src, ops.asarray([0]), axis=a))
        left = xp.cumulative_prod(xp.concat([ones, src], axis=a), axis=a)
        n = src.shape[a]
        before = xp.take(left, ops.arange(n), axis=a)
        rev = xp.flip(src, axis=a)
        right = xp.flip(xp.cumulative_prod(xp.concat([ones, rev], axis=a), axis=a), axis=a)
        after = xp.take(right, ops.arange(n) + 1, axis=a)
        return (xp.reshape(before * after, x.shape) * G,)

    return record(Y, ops, (x,), backward, "prod")


def var(x: Tensor, dim: Any = None, *, correction: float = 1, keepdim: bool = False) -> Tensor:
    """The variance with Bessel's ``correction`` (1 by default, as PyTorch)."""
    ax = _axes(x, dim)
    n = x.data.size if ax is None else math.prod(x.shape[a] for a in ax)
    centred = F.sub(x, F.mean(x, axis=ax, keepdims=True))
    total = F.sum(F.mul(centred, centred), axis=ax, keepdims=keepdim)
    return F.mul(total, 1.0 / (n - correction) if n > correction else math.nan)


def norm(x: Tensor, p: Any = 2, dim: Any = None, keepdim: bool = False) -> Tensor:
    """The vector p-norm over ``dim`` (all elements by default): p = 2, 1, inf, or
    any positive number; ``"fro"`` is 2."""
    xp = x.ops.xp
    ax = _axes(x, dim)
    if p == "fro":
        p = 2
    if p in (math.inf, "inf"):
        return amax(F.abs(x), ax, keepdim)
    p = float(p)
    if p <= 0:
        raise InputValidationError(f"norm: p={p}; expected a positive number, inf or 'fro'")
    if p == 2.0:  # d|x|/dx at 0 is 0 (PyTorch's subgradient), not nan
        S = xp.sum(x.data * x.data, axis=ax, keepdims=keepdim)
        Y = xp.sqrt(S)

        def backward(g: Array) -> tuple[Array]:
            Yk = _keep(Y, xp, x.shape, ax, keepdim)
            safe = xp.where(Yk == 0, 1.0, Yk)
            return (xp.where(Yk == 0, 0.0, x.data / safe) * _keep(g, xp, x.shape, ax, keepdim),)

        return record(Y, x.ops, (x,), backward, "norm")
    return F.power(F.sum(F.power(F.abs(x), p), axis=ax, keepdims=keepdim), 1.0 / p)


def logsumexp(x: Tensor, dim: Any, keepdim: bool = False) -> Tensor:
    xp = x.ops.xp
    ax = _axes(x, dim)
    M = xp.max(x.data, axis=ax, keepdims=True)
    M = xp.where(xp.isfinite(M), M, 0.0)
    S = xp.log(xp.sum(xp.exp(x.data - M), axis=ax, keepdims=True)) + M

    def backward(g: Array) -> tuple[Array]:
        return (xp.exp(x.data - S) * _keep(g, xp, x.shape, ax, keepdim),)

    Y = S if keepdim else xp.reshape(S, ()) if ax is None else xp.squeeze(S, axis=ax)
    return record(Y, x.ops, (x,), backward, "logsumexp")


def amax(x: Tensor, dim: Any = (), keepdim: bool = False, _fn: str = "max") -> Tensor:
    """The maximum over ``dim`` (all dims for ``()``); ties share the gradient."""
    xp = x.ops.xp
    ax = _axes(x, None if dim == () else dim)
    Y = getattr(xp, _fn)(x.data, axis=ax, keepdims=keepdim)

    def backward(g: Array) -> tuple[Array]:
        hit = xp.astype(x.data == _keep(Y, xp, x.shape, ax, keepdim), x.dtype)
        count = xp.sum(hit, axis=ax, keepdims=True)
        return (hit / count * _keep(g, xp, x.shape, ax, keepdim),)

    return record(Y, x.ops, (x,), backward, "a" + _fn)


def amin(x: Tensor, dim: Any = (), keepdim: bool = False) -> Tensor:
    return amax(x, dim, keepdim, _fn="min")


# -- elementwise ---------------------------------------------------------------------------
def rsqrt(x: Tensor) -> Tensor:
    xp = x.ops.xp
    Y = 1.0 / xp.sqrt(x.data)
    return record(Y, x.ops, (x,), lambda g: (-0.5 * g * Y * Y * Y,), "rsqrt")


def reciprocal(x: Tensor) -> Tensor:
    Y = 1.0 / x.data
    return record(Y, x.ops, (x,), lambda g: (-g * Y * Y,), "reciprocal")


def softplus(x: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    xp, X = x.ops.xp, x.data
    Z = beta * X
    Y = xp.where(Z > threshold, X, xp.log1p(xp.exp(xp.minimum(Z, threshold))) / beta)
    sig = 1.0 / (1.0 + xp.exp(-Z))
    return record(Y, x.ops, (x,), lambda g: (g * xp.where(Z > threshold, 1.0, sig),), "softplus")


def nan_to_num(x: Tensor, nan: float = 0.0, posinf: Any = None, neginf: Any = None) -> Tensor:
    import numpy as np

    xp, X = x.ops.xp, x.data
    info = np.finfo(str(X.dtype)) if xp.isdtype(X.dtype, "real floating") else None
    hi = posinf if posinf is not None else (info.max if info else 0)
    lo = neginf if neginf is not None else (info.min if info else 0)
    Y = xp.where(xp.isnan(X), nan, xp.where(X == math.inf, hi, xp.where(X == -math.inf, lo, X)))
    Y = xp.astype(Y, X.dtype)
    keep = xp.isfinite(X)
    return record(Y, x.ops, (x,), lambda g: (xp.where(keep, g, 0.0),), "nan_to_num")


def lerp(x: Tensor, end: Any, weight: Any) -> Tensor:
    """``x + weight * (end - x)``."""
    return F.add(x, F.mul(weight, F.sub(end, x)))


# -- diagonals ---------------------------------------------------------------------------
def diagonal(x: Tensor, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Tensor:
    """The diagonal of dims ``dim1``/``dim2``, as the last dim (``torch.diagonal``)."""
    a, b = _dim(x, dim1, "dim1"), _dim(x, dim2, "dim2")
    rest = [i for i in range(x.ndim) if i not in (a, b)]
    moved = F.permute(x, (*rest, a, b))
    n, m = moved.shape[-2:]
    r0, c0 = (0, offset) if offset >= 0 else (-offset, 0)
    k = builtins.max(0, builtins.min(n - r0, m - c0))
    rows = x.ops.arange(k) + r0
    cols = x.ops.arange(k) + c0
    flat = F.reshape(moved, (*moved.shape[:-2], n * m))
    return F.getitem(flat, (Ellipsis, rows * m + cols))


def diag(x: Tensor, diagonal: int = 0) -> Tensor:
    """A 1-D tensor's square diagonal matrix, or a matrix's diagonal."""
    if x.ndim == 2:
        return globals()["diagonal"](x, diagonal)
    if x.ndim != 1:
        raise InputValidationError(f"diag expects a 1-D or 2-D tensor, got {x.ndim}-D")
    xp, ops = x.ops.xp, x.ops
    n = x.shape[0] + builtins.abs(diagonal)
    r0, c0 = (0, diagonal) if diagonal >= 0 else (-diagonal, 0)
    pos = (ops.arange(x.shape[0]) + r0) * n + ops.arange(x.shape[0]) + c0
    H = xp.astype(xp.reshape(ops.arange(n * n), (-1, 1)) == pos, x.dtype)  # (n*n, len)
    Y = xp.reshape(xp.matmul(H, x.data), (n, n))
    return record(Y, ops, (x,), lambda g: (xp.matmul(xp.reshape(g, (1, -1)), H)[0],), "diag")


def triangle(x: Tensor, diagonal: int, upper: bool) -> Tensor:
    import numpy as np

    keep = (np.triu if upper else np.tril)(np.ones(x.shape[-2:], dtype=bool), diagonal)
    K = x.ops.asarray(keep)
    xp = x.ops.xp
    return record(xp.where(K, x.data, 0), x.ops, (x,), lambda g: (xp.where(K, g, 0.0),), "tri")


# -- einsum --------------------------------------------------------------------------------
def einsum(equation: str, *operands: Any) -> Tensor:
    """``torch.einsum`` (explicit or implicit output, no ``...``); the gradient of
    each operand is an einsum of the output gradient with the others."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    ts = [o for o in operands if isinstance(o, Tensor)]
    if not ts:
        raise InputValidationError("einsum needs at least one tensor operand")
    ops = ts[0].ops
    xp = ops.xp
    if not hasattr(xp, "einsum"):
        raise NotImplementedError(f"einsum is not available on device {ops.device!r}")
    eq = equation.replace(" ", "")
    if "..." in eq:
        raise NotImplementedError("einsum with '...' is not supported here; name every axis")
    lhs, _, out = eq.partition("->")
    ins = lhs.split(",")
    if not _:
        letters = "".join(ins)
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    tensors = [as_tensor(o, ops) for o in operands]
    if len(ins) != len(tensors):
        raise InputValidationError(
            f"einsum: equation {equation!r} names {len(ins)} operands, got {len(tensors)}"
        )
    for sub, t in zip(ins, tensors, strict=True):  # refused at the call, not in backward
        if t.requires_grad and len(set(sub)) != len(sub):
            raise NotImplementedError(
                f"einsum's gradient with a repeated index in {sub!r} is not supported; "
                "take the diagonal with torch.diagonal first"
            )
    arrays = [t.data for t in tensors]
    Y = xp.einsum(f"{','.join(ins)}->{out}", *arrays)

    def backward(g: Array) -> tuple[Any, ...]:
        grads: list[Any] = []
        for i, (sub, t) in enumerate(zip(ins, tensors, strict=True)):
            if not t.requires_grad:
                grads.append(None)
                continue
            others = [(s, a) for j, (s, a) in enumerate(zip(ins, arrays, strict=True)) if j != i]
            seen = set(out).union(*(set(s) for s, _a in others))
            target = "".join(c for c in sub if c in seen)
            spec = ",".join([out, *(s for s, _a in others)]) + "->" + target
            G = xp.einsum(spec, g, *(a for _s, a in others))
            shape = tuple(n if c in seen else 1 for c, n in zip(sub, t.shape, strict=True))
            grads.append(xp.broadcast_to(xp.reshape(G, shape), t.shape))
        return tuple(grads)

    return record(Y, ops, tuple(tensors), backward, "einsum")


class HookHandle:
    """What ``register_hook`` returns: ``remove()`` unregisters the hook."""

    def __init__(self, hooks: list[Any], hook: Any) -> None:
        self.hooks, self.hook = hooks, hook

    def remove(self) -> None:
        if self.hook in self.hooks:
            self.hooks.remove(self.hook)


def vecmat(a: Any, b: Any) -> Any:
    """``torch.matmul`` with a 1-D operand: it is promoted to a matrix and the
    added dim dropped from the result."""
    if a.ndim == 1:
        out = F.matmul(F.reshape(a, (1, -1)), b)
        return F.reshape(out, (*out.shape[:-2], out.shape[-1]))
    out = F.matmul(a, F.reshape(b, (-1, 1)))
    return F.reshape(out, out.shape[:-1])


def unique(x: Tensor, return_inverse: bool, return_counts: bool, dim: Any) -> Any:
    """``torch.unique`` (sorted, of the flattened tensor), computed on the host."""
    import numpy as np

    if dim is not None:
        raise NotImplementedError("unique(dim=...) is not supported; flatten first")
    found: Any = np.unique(x.numpy(), return_inverse=True, return_counts=True)
    vals, inv, counts = found
    ops = x.ops
    out = [Tensor(ops.asarray(vals), ops)]
    if return_inverse:
        out.append(Tensor(ops.asarray(inv.reshape(x.shape).astype("int64")), ops))
    if return_counts:
        out.append(Tensor(ops.asarray(counts.astype("int64")), ops))
    return out[0] if len(out) == 1 else tuple(out)
