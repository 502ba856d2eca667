"""The rest of PyTorch's ``Tensor`` methods that public example programs call:
``new_zeros``, ``narrow``, ``expand``, ``repeat``, ``chunk``/``split``,
``masked_fill``, ``gather``/``scatter``, ``topk``/``sort``, more reductions,
comparisons by name, in-place random fills, hooks and ``retain_grad``.

A mixin of :class:`gpunet.Tensor` (no state of its own); the math lives in
:mod:`gpunet._tensor_math`, :mod:`gpunet.functional` and :mod:`gpunet._kops_more`.
In-place methods (``masked_fill_``, ``uniform_``...) return ``self`` and follow
the rules of :mod:`gpunet.tensor_ops`.

Example:
    >>> import gpunet as gn
    >>> x = gn.arange(6).view(2, 3)
    >>> x.narrow(1, 1, 2).tolist(), x.new_zeros(2).tolist()
    ([[1, 2], [4, 5]], [0, 0])
    >>> x.float().masked_fill(x > 3, -1.0).tolist()
    [[0.0, 1.0, 2.0], [3.0, -1.0, -1.0]]
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from gpunet.tensor_ops import _F, _dims


@functools.cache
def _M() -> Any:
    from gpunet import _tensor_math

    return _tensor_math


@functools.cache
def _K() -> Any:
    from gpunet import _kops_more

    return _kops_more


def _T() -> Any:
    from gpunet.autograd import Tensor

    return Tensor


def _plain(t: Any) -> Any:
    """A ``gn.ops`` result as a plain ``Tensor`` (comparisons stay PyTorch's)."""
    if type(t) is not _T():
        t.__class__ = _T()
    return t


def _floatx() -> str:
    from gpunet import config

    return config.floatx()


def _dtype_of(dtype: Any, default: Any) -> Any:
    if dtype is None:
        return default
    return np.dtype(dtype if isinstance(dtype, str) else getattr(dtype, "name", dtype))


_NUMPY = object()  # NumPy always passes ``out=``; PyTorch callers never do


def _numpy_kw(fn: Any) -> Any:
    """``np.any(t, axis=0)``/``np.std(t)`` call ``t.any(axis=0, out=None)``: give
    them NumPy's result on the host values, as before the method existed."""

    @functools.wraps(fn)
    def method(self: Any, *args: Any, out: Any = _NUMPY, **kw: Any) -> Any:
        if out is _NUMPY:
            return fn(self, *args, **kw)
        return getattr(np, fn.__name__)(self.numpy(), *args, out=out, **kw)

    return method


class TensorMore:
    """More of ``torch.Tensor``'s methods (a mixin of ``Tensor``)."""

    __slots__ = ()
    data: Any
    ops: Any
    requires_grad: bool
    _node: Any
    _hooks: Any

    if TYPE_CHECKING:  # Tensor's own, for the type checker

        @property
        def shape(self) -> tuple[int, ...]: ...

        @property
        def dtype(self) -> Any: ...

        @property
        def ndim(self) -> int: ...

        def numpy(self) -> Any: ...

    # -- creation like self ----------------------------------------------------------------
    def _new(self, arr: Any, dtype: Any, requires_grad: bool = False) -> Any:
        dt = _dtype_of(dtype, self.data.dtype)
        ops = self.ops
        data = ops.xp.astype(ops.asarray(arr), ops.dtype(np.dtype(dt).name))
        return _T()(data, ops, requires_grad=requires_grad)

    def new_zeros(self, *size: Any, dtype: Any = None, requires_grad: bool = False) -> Any:
        """Zeros of ``size`` with this tensor's dtype and device."""
        return self._new(np.zeros(_dims(size)), dtype, requires_grad)

    def new_ones(self, *size: Any, dtype: Any = None, requires_grad: bool = False) -> Any:
        return self._new(np.ones(_dims(size)), dtype, requires_grad)

    def new_empty(self, *size: Any, dtype: Any = None, requires_grad: bool = False) -> Any:
        return self._new(np.zeros(_dims(size)), dtype, requires_grad)

    def new_full(self, size: Any, fill_value: Any, *, dtype: Any = None,
                 requires_grad: bool = False) -> Any:  # fmt: skip
        return self._new(np.full(_dims((size,)), fill_value), dtype, requires_grad)

    def new_tensor(self, data: Any, *, dtype: Any = None, requires_grad: bool = False) -> Any:
        arr = data.numpy() if isinstance(data, _T()) else np.asarray(data)
        return self._new(arr, dtype, requires_grad)

    # -- shape and views ---------------------------------------------------------------------
    def view_as(self, other: Any) -> Any:
        return _F().reshape(self, tuple(other.shape))

    def contiguous(self, memory_format: Any = None) -> Any:
        return self  # every array here is laid out as its shape says

    def is_contiguous(self, memory_format: Any = None) -> bool:
        return True

    def narrow(self, dim: int, start: int, length: int) -> Any:
        """``length`` entries of ``dim`` from ``start`` (a slice, as ``torch.narrow``)."""
        d = _M()._dim(self, dim)
        n = self.shape[d]
        s = int(start) + (n if int(start) < 0 else 0)
        if not (0 <= s and 0 <= int(length) and s + int(length) <= n):
            raise IndexError(
                f"narrow: start ({start}) + length ({length}) exceeds dim {d} of size {n}"
            )
        return _F().getitem(self, (slice(None),) * d + (slice(s, s + int(length)),))

    def expand(self, *sizes: Any) -> Any:
        return _M().expand(self, _dims(sizes))

    def expand_as(self, other: Any) -> Any:
        return _M().expand(self, tuple(other.shape))

    def repeat(self, *sizes: Any) -> Any:
        """Tile ``sizes[i]`` times along dim ``i`` (``numpy.tile``, not ``numpy.repeat``)."""
        reps = _dims(sizes)
        if len(reps) < self.ndim:
            raise RuntimeError(
                f"repeat: number of repeat dims ({len(reps)}) can not be smaller than the "
                f"tensor's dimensions ({self.ndim})"
            )
        return _plain(_K().tile(self, reps))

    def repeat_interleave(self, repeats: int, dim: int | None = None) -> Any:
        return _plain(_K().repeat(self, repeats, dim))

    def transpose(self, dim0: int, dim1: int) -> Any:
        M = _M()
        a, b = M._dim(self, dim0, "dim0"), M._dim(self, dim1, "dim1")
        perm = list(range(self.ndim))
        perm[a], perm[b] = perm[b], perm[a]
        return _F().permute(self, tuple(perm))

    swapaxes = transpose

    def unflatten(self, dim: int, sizes: Any) -> Any:
        d = _M()._dim(self, dim)
        return _F().reshape(self, (*self.shape[:d], *_dims((sizes,)), *self.shape[d + 1 :]))

    def flip(self, *dims: Any) -> Any:
        return _plain(_K().flip(self, _dims(dims)))

    def roll(self, shifts: Any, dims: Any = None) -> Any:
        return _M().roll(self, shifts, dims)

    def chunk(self, chunks: int, dim: int = 0) -> tuple[Any, ...]:
        """``chunks`` pieces along ``dim`` (the last may be smaller), as PyTorch."""
        if int(chunks) <= 0:
            raise RuntimeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
        n = self.shape[_M()._dim(self, dim)]
        return self.split(max(-(-n // int(chunks)), 1), dim)

    def split(self, split_size_or_sections: Any, dim: int = 0) -> tuple[Any, ...]:
        """Pieces of ``split_size`` (an int) or of the listed sizes along ``dim``."""
        return _M().split(self, split_size_or_sections, dim)

    def unbind(self, dim: int = 0) -> tuple[Any, ...]:
        d = _M()._dim(self, dim)
        lead = (slice(None),) * d
        return tuple(_F().getitem(self, (*lead, i)) for i in range(self.shape[d]))

    def squeeze_(self, dim: int | None = None) -> Any:
        return self._reshape_(self.squeeze(dim))  # type: ignore[attr-defined]

    def unsqueeze_(self, dim: int) -> Any:
        return self._reshape_(self.unsqueeze(dim))  # type: ignore[attr-defined]

    def _reshape_(self, out: Any) -> Any:
        me: Any = self
        me.data, me._node = out.data, (out._node if out.requires_grad else self._node)
        return self

    def __setitem__(self, key: Any, value: Any) -> None:
        _M().setitem(self, key, value)

    # -- indexing ------------------------------------------------------------------------------
    def masked_fill(self, mask: Any, value: Any) -> Any:
        """``value`` where ``mask`` is True (broadcast), else ``self``."""
        T = _T()
        M = mask.data if isinstance(mask, T) else self.ops.asarray(mask)
        if not self.ops.xp.isdtype(M.dtype, "bool"):
            raise RuntimeError(
                f"masked_fill only supports boolean masks, but got mask with dtype {M.dtype}"
            )
        v = value.data if isinstance(value, T) and value.ndim == 0 else value
        if not isinstance(v, (int, float, bool)):
            v = self.ops.xp.astype(v, self.data.dtype)
            v = T(v, self.ops)
        out = _F().where(T(M, self.ops), v, self)
        if out.dtype != self.dtype:
            out = _F().cast(out, self.dtype)
        return out

    def masked_fill_(self, mask: Any, value: Any) -> Any:
        return self._set_(lambda t: t.masked_fill(mask, value), "masked_fill_")

    def _set_(self, fn: Any, what: str) -> Any:
        """``self = fn(self)`` in place: into the array, or, for a tensor on the
        graph, as the op's output (its old value stays the op's input)."""
        from gpunet.autograd import is_grad_enabled, no_grad
        from gpunet.tensor_ops import LEAF_INPLACE

        if not is_grad_enabled() or not self.requires_grad:
            with no_grad():
                out = fn(self)
            self._write(out.data, what)  # type: ignore[attr-defined]
            return self
        if self._node is None:
            raise RuntimeError(LEAF_INPLACE)
        src = _T()(self.data, self.ops, requires_grad=True)
        src._node = self._node
        out = fn(src)
        me: Any = self
        me.data, me._node = out.data, out._node
        return self

    def masked_select(self, mask: Any) -> Any:
        M = mask.data if isinstance(mask, _T()) else self.ops.asarray(mask)
        shape = tuple(np.broadcast_shapes(self.shape, tuple(M.shape)))
        return _F().getitem(_M().expand(self, shape), self.ops.xp.broadcast_to(M, shape))

    def index_select(self, dim: int, index: Any) -> Any:
        d = _M()._dim(self, dim)
        idx = (
            index
            if isinstance(index, _T())
            else _T()(self.ops.asarray(np.asarray(index)), self.ops)
        )
        if idx.ndim != 1:
            raise IndexError(f"index_select(): index must be 1-D, got shape {idx.shape}")
        return _F().getitem(self, (slice(None),) * d + (idx,))

    def gather(self, dim: int, index: Any) -> Any:
        return _M().gather(self, dim, index)

    def scatter(self, dim: int, index: Any, src: Any = None, *, value: Any = None,
                reduce: str | None = None) -> Any:  # fmt: skip
        return _M().scatter(self, dim, index, value if src is None else src, reduce)

    def scatter_(self, dim: int, index: Any, src: Any = None, *, value: Any = None) -> Any:
        return self._set_(lambda t: t.scatter(dim, index, src, value=value), "scatter_")

    def scatter_add(self, dim: int, index: Any, src: Any) -> Any:
        return _M().scatter(self, dim, index, src, "add")

    def index_add_(self, dim: int, index: Any, source: Any, *, alpha: float = 1.0) -> Any:
        return self._set_(lambda t: _M().index_add(t, dim, index, source, alpha), "index_add_")

    def index_add(self, dim: int, index: Any, source: Any, *, alpha: float = 1.0) -> Any:
        return _M().index_add(self, dim, index, source, alpha)

    def nonzero(self, *, as_tuple: bool = False) -> Any:
        xp = self.ops.xp
        idx = xp.nonzero(self.data)
        if as_tuple:
            return tuple(_T()(i, self.ops) for i in idx)
        return _T()(xp.stack(idx, axis=-1), self.ops)

    def count_nonzero(self, dim: Any = None) -> Any:
        xp = self.ops.xp
        return _T()(xp.astype(xp.count_nonzero(self.data, axis=dim), xp.int64), self.ops)

    def unique(self, sorted: bool = True, return_inverse: bool = False,
               return_counts: bool = False, dim: Any = None) -> Any:  # fmt: skip
        return _M().unique(self, return_inverse, return_counts, dim)

    # -- sorting ---------------------------------------------------------------------------------
    def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> Any:
        return _M().topk(self, k, dim, largest, sorted)

    def sort(self, dim: int = -1, descending: bool = False, stable: bool = False) -> Any:
        return _M().sort(self, dim, descending)

    def argsort(self, dim: int = -1, descending: bool = False, stable: bool = False) -> Any:
        return _M().argsort(self, dim, descending)

    # -- reductions ------------------------------------------------------------------------------
    def cumsum(self, dim: int, *, dtype: Any = None) -> Any:
        out = _M().cumsum(self, dim)
        return out if dtype is None else out.type(dtype)  # type: ignore[attr-defined]

    @_numpy_kw
    def prod(self, dim: int | None = None, keepdim: bool = False) -> Any:
        return _M().prod(self, dim, keepdim)

    @_numpy_kw
    def var(self, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False, *,
            correction: float | None = None) -> Any:  # fmt: skip
        c = correction if correction is not None else (0 if unbiased is False else 1)
        return _M().var(self, dim, correction=c, keepdim=keepdim)

    @_numpy_kw
    def std(self, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False, *,
            correction: float | None = None) -> Any:  # fmt: skip
        return _F().power(self.var(dim, unbiased, keepdim, correction=correction), 0.5)

    def norm(self, p: Any = "fro", dim: Any = None, keepdim: bool = False) -> Any:
        return _M().norm(self, p, dim, keepdim)

    def logsumexp(self, dim: Any, keepdim: bool = False) -> Any:
        return _M().logsumexp(self, dim, keepdim)

    def amax(self, dim: Any = (), keepdim: bool = False) -> Any:
        return _M().amax(self, dim, keepdim)

    def amin(self, dim: Any = (), keepdim: bool = False) -> Any:
        return _M().amin(self, dim, keepdim)

    @_numpy_kw
    def all(self, dim: Any = None, keepdim: bool = False) -> Any:
        return _plain(_K().all(self, dim, keepdim))

    @_numpy_kw
    def any(self, dim: Any = None, keepdim: bool = False) -> Any:
        return _plain(_K().any(self, dim, keepdim))

    # -- comparisons and tests (no gradient) -------------------------------------------------
    def eq(self, other: Any) -> Any:
        return self == other

    def ne(self, other: Any) -> Any:
        return self != other

    def lt(self, other: Any) -> Any:
        return self < other  # type: ignore[operator]

    def le(self, other: Any) -> Any:
        return self <= other  # type: ignore[operator]

    def gt(self, other: Any) -> Any:
        return self > other  # type: ignore[operator]

    def ge(self, other: Any) -> Any:
        return self >= other  # type: ignore[operator]

    def isnan(self) -> Any:
        return _plain(_K().isnan(self))

    def isfinite(self) -> Any:
        return _plain(_K().isfinite(self))

    def sign(self) -> Any:
        return _plain(_K().sign(self))

    def floor(self) -> Any:
        return _plain(_K().floor(self))

    def ceil(self) -> Any:
        return _plain(_K().ceil(self))

    def round(self) -> Any:
        return _plain(_K().round(self))

    def where(self, condition: Any, other: Any) -> Any:
        return _F().where(condition, self, other)

    # -- arithmetic by name ----------------------------------------------------------------------
    def add(self, other: Any, *, alpha: float = 1.0) -> Any:
        return _F().add(self, other if alpha == 1.0 else other * alpha)

    def sub(self, other: Any, *, alpha: float = 1.0) -> Any:
        return _F().sub(self, other if alpha == 1.0 else other * alpha)

    def mul(self, other: Any) -> Any:
        return _F().mul(self, other)

    multiply = mul

    def div(self, other: Any, *, rounding_mode: str | None = None) -> Any:
        """True division (integers give the default float dtype, as PyTorch)."""
        ints = not self.ops.xp.isdtype(self.data.dtype, "real floating")
        a = _F().cast(self, _floatx()) if ints and rounding_mode is None else self
        out = _F().div(a, other)
        if rounding_mode is None:
            return out
        if rounding_mode not in ("trunc", "floor"):
            raise ValueError(f"div expected rounding_mode to be one of None, 'trunc', or "
                             f"'floor' but found {rounding_mode!r}")  # fmt: skip
        xp = self.ops.xp
        Y = getattr(xp, rounding_mode)(out.data)
        if not xp.isdtype(self.data.dtype, "real floating"):
            Y = xp.astype(Y, self.data.dtype)
        return _T()(Y, self.ops)

    divide = true_divide = div

    def neg(self) -> Any:
        return _F().mul(self, -1.0)

    negative = neg

    def rsqrt(self) -> Any:
        return _M().rsqrt(self)

    def reciprocal(self) -> Any:
        return _M().reciprocal(self)

    def square(self) -> Any:
        return _F().mul(self, self)

    def softplus(self, beta: float = 1.0, threshold: float = 20.0) -> Any:
        return _M().softplus(self, beta, threshold)

    def erf(self) -> Any:
        return _plain(_K().erf(self))

    def lerp(self, end: Any, weight: Any) -> Any:
        return _M().lerp(self, end, weight)

    def nan_to_num(self, nan: float = 0.0, posinf: Any = None, neginf: Any = None) -> Any:
        return _M().nan_to_num(self, nan, posinf, neginf)

    def clip(self, min: Any = None, max: Any = None) -> Any:
        return self.clamp(min, max)  # type: ignore[attr-defined]

    def clamp_(self, min: Any = None, max: Any = None) -> Any:
        return self._set_(lambda t: t.clamp(min, max), "clamp_")

    clip_ = clamp_

    def exp_(self) -> Any:
        return self._set_(lambda t: t.exp(), "exp_")

    # -- linear algebra -----------------------------------------------------------------------
    def matmul(self, other: Any) -> Any:
        """``torch.matmul``: a 1-D operand is a vector (``dot``, or a matrix-vector product)."""
        if min(self.ndim, other.ndim) >= 2:
            return _F().matmul(self, other)
        return self.dot(other) if self.ndim == 1 == other.ndim else _M().vecmat(self, other)

    def mm(self, mat2: Any) -> Any:
        if self.ndim != 2 or mat2.ndim != 2:
            raise RuntimeError(f"mm: expected 2-D tensors, got {self.ndim}-D and {mat2.ndim}-D")
        return _F().matmul(self, mat2)

    def bmm(self, mat2: Any) -> Any:
        if self.ndim != 3 or mat2.ndim != 3:
            raise RuntimeError(f"bmm: expected 3-D tensors, got {self.ndim}-D and {mat2.ndim}-D")
        return _F().matmul(self, mat2)

    def dot(self, other: Any) -> Any:
        if self.ndim != 1 or other.ndim != 1:
            raise RuntimeError(
                f"1D tensors expected, but got {self.ndim}D and {other.ndim}D tensors"
            )
        return _F().sum(_F().mul(self, other))

    def outer(self, vec2: Any) -> Any:
        return _F().mul(_F().reshape(self, (-1, 1)), _F().reshape(vec2, (1, -1)))

    def tril(self, diagonal: int = 0) -> Any:
        return _M().triangle(self, diagonal, upper=False)

    def triu(self, diagonal: int = 0) -> Any:
        return _M().triangle(self, diagonal, upper=True)

    def diag(self, diagonal: int = 0) -> Any:
        return _M().diag(self, diagonal)

    def diagonal(self, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Any:
        return _M().diagonal(self, offset, dim1, dim2)

    # -- dtype, device, sizes -----------------------------------------------------------------
    def half(self) -> Any:
        return self.type("float16")  # type: ignore[attr-defined]

    def bfloat16(self) -> Any:
        raise TypeError("bfloat16 is not supported: NumPy has no bfloat16 dtype; use half()")

    def type_as(self, other: Any) -> Any:
        return self.type(other.dtype)  # type: ignore[attr-defined]

    def element_size(self) -> int:
        return int(np.dtype(str(self.data.dtype)).itemsize)

    def nelement(self) -> int:
        return int(self.data.size)

    def cuda(self, device: Any = None) -> Any:
        name = "cuda" if device is None else str(device)
        return self.to(f"cuda:{device}" if isinstance(device, int) else name)  # type: ignore[attr-defined]

    def detach_(self) -> Any:
        me: Any = self
        me._node, me.requires_grad = None, False
        return self

    # -- random fills (the seeded ``init`` stream, as ``gn.randn``) ---------------------------
    def _fill_host(self, arr: Any, what: str) -> Any:
        from gpunet.autograd import as_tensor

        values = as_tensor(self.ops.asarray(arr, dtype=self.data.dtype), self.ops)
        return self._overwrite(values, what)  # type: ignore[attr-defined]

    def uniform_(self, a: float = 0.0, b: float = 1.0) -> Any:
        from gpunet import random as grandom

        return self._fill_host(grandom.generator("init").uniform(a, b, self.shape), "uniform_")

    def normal_(self, mean: float = 0.0, std: float = 1.0) -> Any:
        from gpunet import random as grandom

        return self._fill_host(grandom.generator("init").normal(mean, std, self.shape), "normal_")

    # -- autograd ----------------------------------------------------------------------------------
    @property
    def grad_fn(self) -> Any:
        """The node that made this tensor (its ``name`` is the op), or None for a leaf."""
        return self._node

    def register_hook(self, hook: Any) -> Any:
        """Call ``hook(grad)`` with this tensor's gradient during ``backward``; a
        returned tensor replaces the gradient. Returns a handle with ``remove()``."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        me: Any = self
        if me._hooks is None:
            me._hooks = []
        me._hooks.append(hook)
        return _M().HookHandle(me._hooks, hook)

    def retain_grad(self) -> None:
        """Keep this non-leaf tensor's gradient in ``.grad`` after ``backward``."""
        if self._node is None:
            return
        me: Any = self
        self.register_hook(lambda g: me.accumulate_grad(g.data))
