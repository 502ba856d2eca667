"""PyTorch's ``Tensor`` methods on gpunet's ``Tensor``: operators, in-place updates,
shape methods, reductions and conversions, each a graph op of ``gpunet.functional``
(or a plain read where PyTorch gives no gradient: ``argmax``, comparisons).

In-place operators follow PyTorch: ``p -= lr * p.grad`` inside ``no_grad()`` writes
into ``p``'s array (so a parameter stays a view of its optimizer's flat buffer); on a
leaf that requires a gradient, outside ``no_grad()``, it raises as PyTorch does. A
tensor is never silently rebound to a new object.

Example:
    >>> import gpunet as gn
    >>> w = gn.tensor([1.0, 2.0], requires_grad=True)
    >>> (w * w).sum().backward()
    >>> with gn.no_grad():
    ...     w -= 0.5 * w.grad
    >>> w.tolist()
    [0.0, 0.0]
"""

from __future__ import annotations

import functools
from typing import Any

LEAF_INPLACE = "a leaf Variable that requires grad is being used in an in-place operation."


@functools.cache
def _F() -> Any:
    from gpunet import functional

    return functional


def _dims(args: tuple[Any, ...]) -> tuple[int, ...]:
    """``f(2, 3)`` or ``f((2, 3))`` as a tuple of ints (PyTorch's size arguments)."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    return tuple(int(a) for a in args)


def _axis(dim: Any, axis: Any) -> Any:
    return axis if dim is None else dim


class TensorMethods:
    """The operator and method surface of ``Tensor`` (a mixin: no state of its own)."""

    __slots__ = ()
    data: Any
    ops: Any
    requires_grad: bool
    _node: Any

    # -- arithmetic -----------------------------------------------------------------
    def __add__(self, other: Any) -> Any:
        return _F().add(self, other)

    def __radd__(self, other: Any) -> Any:
        return _F().add(other, self)

    def __sub__(self, other: Any) -> Any:
        return _F().sub(self, other)

    def __rsub__(self, other: Any) -> Any:
        return _F().sub(other, self)

    def __mul__(self, other: Any) -> Any:
        return _F().mul(self, other)

    def __rmul__(self, other: Any) -> Any:
        return _F().mul(other, self)

    def __truediv__(self, other: Any) -> Any:
        return _F().div(self, other)

    def __rtruediv__(self, other: Any) -> Any:
        return _F().div(other, self)

    def __neg__(self) -> Any:
        return _F().mul(self, -1.0)

    def __pow__(self, exponent: Any) -> Any:
        return _F().power(self, exponent)

    def __rpow__(self, base: Any) -> Any:
        return _F().power(base, self)

    def __matmul__(self, other: Any) -> Any:
        return _F().matmul(self, other)

    def __rmatmul__(self, other: Any) -> Any:
        return _F().matmul(other, self)

    def __getitem__(self, key: Any) -> Any:
        return _F().getitem(self, key)

    def __abs__(self) -> Any:
        return _F().abs(self)

    # -- comparisons (no gradient, as in PyTorch) --------------------------------------
    def _compare(self, other: Any, name: str) -> Any:
        from gpunet.autograd import Tensor

        B = other.data if isinstance(other, Tensor) else other
        return Tensor(getattr(self.data, name)(B), self.ops)

    def __eq__(self, other: Any) -> Any:  # type: ignore[override]
        return self._compare(other, "__eq__")

    def __ne__(self, other: Any) -> Any:  # type: ignore[override]
        return self._compare(other, "__ne__")

    def __lt__(self, other: Any) -> Any:
        return self._compare(other, "__lt__")

    def __le__(self, other: Any) -> Any:
        return self._compare(other, "__le__")

    def __gt__(self, other: Any) -> Any:
        return self._compare(other, "__gt__")

    def __ge__(self, other: Any) -> Any:
        return self._compare(other, "__ge__")

    __hash__ = object.__hash__  # identity, as PyTorch's: tensors key dicts and sets

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise RuntimeError(
                f"Boolean value of Tensor with more than one value is ambiguous "
                f"(shape {tuple(self.data.shape)})"
            )
        return bool(self.data.reshape(()))

    # -- in-place updates --------------------------------------------------------------
    def _inplace(self, other: Any, op: str) -> Any:
        from gpunet.autograd import Tensor, is_grad_enabled, no_grad

        fn = getattr(_F(), op)
        other_rg = isinstance(other, Tensor) and other.requires_grad
        if not is_grad_enabled() or not (self.requires_grad or other_rg):
            with no_grad():
                out = fn(self, other)
            self._write(out.data, op)
            return self
        if self.requires_grad and self._node is None:
            raise RuntimeError(LEAF_INPLACE)
        if self.requires_grad:
            raise RuntimeError(
                f"in-place {op} on a tensor computed in an autograd graph is not supported "
                f"here; write the out-of-place form (x = x {_SYMBOL[op]} y)"
            )
        # a constant updated by a tensor that requires grad becomes that op's output
        out = fn(Tensor(self.data, self.ops), other)
        me: Any = self
        me.data, me._node, me.requires_grad = out.data, out._node, out.requires_grad
        return self

    def _write(self, Y: Any, what: str) -> None:
        """Store ``Y`` into this tensor's own array (PyTorch's in-place semantics)."""
        xp = self.ops.xp
        if tuple(Y.shape) != tuple(self.data.shape):
            raise RuntimeError(
                f"in-place {what}: the result has shape {tuple(Y.shape)}, which does not "
                f"match the tensor's shape {tuple(self.data.shape)}"
            )
        if Y.dtype != self.data.dtype:
            src, dst = _kind(Y.dtype), _kind(self.data.dtype)
            if "biuf".index(src) > "biuf".index(dst):
                raise RuntimeError(
                    f"in-place {what}: result type {Y.dtype} can't be cast to the "
                    f"tensor's dtype {self.data.dtype}"
                )
            Y = xp.astype(Y, self.data.dtype)
        self.ops.assign(self.data, Y)

    def __iadd__(self, other: Any) -> Any:
        return self._inplace(other, "add")

    def __isub__(self, other: Any) -> Any:
        return self._inplace(other, "sub")

    def __imul__(self, other: Any) -> Any:
        return self._inplace(other, "mul")

    def __itruediv__(self, other: Any) -> Any:
        return self._inplace(other, "div")

    def __imatmul__(self, other: Any) -> Any:
        return self._inplace(other, "matmul")  # PyTorch 2 allows it when the shape holds

    def add_(self, other: Any, alpha: float = 1.0) -> Any:
        """``self += alpha * other`` in place."""
        return self._inplace(other if alpha == 1.0 else other * alpha, "add")

    def sub_(self, other: Any, alpha: float = 1.0) -> Any:
        return self._inplace(other if alpha == 1.0 else other * alpha, "sub")

    def mul_(self, other: Any) -> Any:
        return self._inplace(other, "mul")

    def div_(self, other: Any) -> Any:
        return self._inplace(other, "div")

    def _overwrite(self, value: Any, what: str) -> Any:
        from gpunet.autograd import Tensor, is_grad_enabled

        if is_grad_enabled() and self.requires_grad:
            raise RuntimeError(LEAF_INPLACE if self._node is None else f"{what} on a graph tensor")
        if isinstance(value, Tensor):
            value = value.data
        xp = self.ops.xp
        Y = xp.broadcast_to(self.ops.asarray(value, dtype=self.data.dtype), self.data.shape)
        self._write(Y, what)
        return self

    def zero_(self) -> Any:
        """Fill with zeros in place (``x.grad.zero_()``)."""
        return self._overwrite(0, "zero_")

    def fill_(self, value: float) -> Any:
        return self._overwrite(value, "fill_")

    def copy_(self, src: Any) -> Any:
        """Copy ``src``'s values in (broadcast to this shape), as ``Tensor.copy_``."""
        from gpunet.autograd import as_tensor

        return self._overwrite(as_tensor(src, self.ops).data, "copy_")

    def requires_grad_(self, requires_grad: bool = True) -> Any:
        if self._node is not None and not requires_grad:
            raise RuntimeError("you can only change requires_grad flags of leaf variables")
        me: Any = self
        me.requires_grad = bool(requires_grad)
        return self

    # -- shape -------------------------------------------------------------------------
    def reshape(self, *shape: Any) -> Any:
        return _F().reshape(self, _dims(shape))

    view = reshape

    def size(self, dim: int | None = None) -> Any:
        shape = tuple(self.data.shape)
        return shape if dim is None else shape[dim]

    def dim(self) -> int:
        return len(self.data.shape)

    def numel(self) -> int:
        return int(self.data.size)

    def unsqueeze(self, dim: int) -> Any:
        shape = list(self.data.shape)
        d = dim if dim >= 0 else dim + len(shape) + 1
        return _F().reshape(self, (*shape[:d], 1, *shape[d:]))

    def squeeze(self, dim: int | None = None) -> Any:
        shape = tuple(self.data.shape)
        if dim is None:
            new = tuple(n for n in shape if n != 1)
        else:
            d = dim % max(len(shape), 1)
            new = shape[:d] + shape[d + 1 :] if shape and shape[d] == 1 else shape
        return _F().reshape(self, new)

    def permute(self, *dims: Any) -> Any:
        return _F().permute(self, _dims(dims))

    def t(self) -> Any:
        if self.dim() > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, got {self.dim()}")
        return self if self.dim() < 2 else _F().transpose(self)

    @property
    def T(self) -> Any:
        return _F().transpose(self)

    @property
    def mT(self) -> Any:
        """The last two axes swapped (of each matrix in a batch)."""
        return _F().transpose(self)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Any:
        return _F().flatten(self, start_dim, end_dim)

    # -- reductions ----------------------------------------------------------------------
    def sum(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None,
            keepdims: bool | None = None) -> Any:  # fmt: skip
        keep = keepdim if keepdims is None else keepdims
        return _F().sum(self, axis=_axis(dim, axis), keepdims=keep)

    def mean(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None,
             keepdims: bool | None = None) -> Any:  # fmt: skip
        keep = keepdim if keepdims is None else keepdims
        return _F().mean(self, axis=_axis(dim, axis), keepdims=keep)

    def max(self, dim: int | None = None, keepdim: bool = False) -> Any:
        """The maximum; with ``dim``, ``(values, indices)`` as PyTorch returns."""
        return _F().max(self, dim, keepdim)

    def min(self, dim: int | None = None, keepdim: bool = False) -> Any:
        return _F().min(self, dim, keepdim)

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> Any:
        return _F().argmax(self, dim, keepdim)

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> Any:
        return _F().argmax(self, dim, keepdim, fn="argmin")

    # -- elementwise ------------------------------------------------------------------
    def pow(self, exponent: Any) -> Any:
        return _F().power(self, exponent)

    def exp(self) -> Any:
        return _F().exp(self)

    def log(self) -> Any:
        return _F().log(self)

    def sin(self) -> Any:
        return _F().sin(self)

    def cos(self) -> Any:
        return _F().cos(self)

    def abs(self) -> Any:
        return _F().abs(self)

    def sqrt(self) -> Any:
        return _F().power(self, 0.5)

    def relu(self) -> Any:
        return _F().activation(self, "relu")

    def sigmoid(self) -> Any:
        return _F().activation(self, "sigmoid")

    def tanh(self) -> Any:
        return _F().activation(self, "tanh")

    def softmax(self, dim: int = -1) -> Any:
        return _F().activation(self, "softmax", axis=dim)

    def log_softmax(self, dim: int = -1) -> Any:
        return _F().activation(self, "log_softmax", axis=dim)

    def clamp(self, min: float | None = None, max: float | None = None) -> Any:
        return _F().clamp(self, min, max)

    # -- dtype, device and copies --------------------------------------------------------
    def to(self, *args: Any, dtype: Any = None, device: Any = None) -> Any:
        """``.to(dtype)``, ``.to(device)`` or both (PyTorch's argument forms)."""
        for a in args:
            if isinstance(a, str) or type(a).__name__ == "device":
                device = a
            else:
                dtype = a
        out = self
        if device is not None:
            out = _F().to_device(out, str(device))
        return out if dtype is None else out.type(dtype)

    def type(self, dtype: Any = None) -> Any:
        """The dtype's name without an argument; else a copy in ``dtype``."""
        if dtype is None:
            return str(self.data.dtype)
        return _F().cast(self, dtype)

    def float(self) -> Any:
        return self.type("float32")

    def double(self) -> Any:
        return self.type("float64")

    def long(self) -> Any:
        return self.type("int64")

    def int(self) -> Any:
        return self.type("int32")

    def bool(self) -> Any:
        return self.type("bool")

    def clone(self) -> Any:
        """A copy that stays on the graph (its gradient flows back to ``self``)."""
        return _F().clone(self)

    def cpu(self) -> Any:
        return self.to("cpu")

    def tolist(self) -> Any:
        return self.ops.to_numpy(self.data).tolist()


def _kind(dtype: Any) -> str:
    import numpy as np

    k = np.dtype(str(dtype)).kind
    return "f" if k in "fc" else ("i" if k in "iu" else k)


_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/", "matmul": "@"}
