"""Define-by-run autograd at coarse op granularity (Chainer/micrograd style).

Each op records one ``Node``: its parent tensors and a closure mapping the
output gradient to the parents' gradients. ``Tensor.backward()`` walks the graph
once in reverse topological order. A Dense layer with its activation is one node,
so a training step of an MLP records a handful of nodes.

Gradient accumulation: as in PyTorch, ``backward()`` *adds* into the ``.grad`` of
every leaf that requires a gradient (parameters, or tensors made with
``requires_grad=True``); call ``optimizer.zero_grad()`` (or ``model.zero_grad()``)
between steps. Gradients of intermediate tensors are not kept, and a graph can be
walked once: its nodes are freed by ``backward()``.

Example:
    >>> import numpy as np, gpunet as gn
    >>> x = gn.tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    >>> y = (x * x).sum()
    >>> y.backward()
    >>> x.grad.numpy()
    array([ 2., -4.,  6.])
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from gpunet._tensor_more import TensorMore
from gpunet.errors import DeviceError
from gpunet.tensor_ops import TensorMethods

Array = Any
Backward = Callable[[Any], tuple[Any, ...]]


class _GradMode(threading.local):
    """Grad mode is per thread, as in PyTorch: a ``predict`` running in a server
    thread must not switch recording off for the thread that trains."""

    grad = True

    def __init__(self) -> None:
        self.saved: list[bool] = []  # no_grad's previous modes: one decorator may run in
        # several threads at once, so they cannot live on the decorator object


_state = _GradMode()


def is_grad_enabled() -> bool:
    """True unless inside ``no_grad()`` (in this thread)."""
    return _state.grad


class no_grad(contextlib.ContextDecorator):
    """Context manager and decorator: ops inside record no graph.

    Example:
        >>> import gpunet as gn
        >>> with gn.no_grad():
        ...     gn.is_grad_enabled()
        False
    """

    def __enter__(self) -> None:
        _state.saved.append(_state.grad)
        _state.grad = False

    def __exit__(self, *exc: object) -> None:
        _state.grad = _state.saved.pop()


@contextlib.contextmanager
def enable_grad() -> Iterator[None]:
    """Re-enable graph recording inside a ``no_grad`` block."""
    prev = _state.grad
    _state.grad = True
    try:
        yield
    finally:
        _state.grad = prev


class Node:
    """One recorded op: its parents and the closure that backprops through it."""

    __slots__ = ("backward", "name", "parents")

    def __init__(self, parents: tuple[Tensor, ...], backward: Backward, name: str) -> None:
        self.parents = parents
        self.backward = backward
        self.name = name


def _freed(dY: Any) -> tuple[Any, ...]:
    raise RuntimeError(
        "trying to backward through the graph a second time: its buffers were "
        "freed by the first backward(); recompute the forward pass"
    )


class Tensor(TensorMethods, TensorMore):
    """An array on a device, with an optional gradient and the op that made it.

    ``data`` is the backend array (NumPy on ``"cpu"``, CuPy on ``"cuda"``);
    ``grad`` is a Tensor of the same shape, or None (``_grad`` is its array).
    """

    __slots__ = (
        "__weakref__",
        "_gbuf",
        "_grad",
        "_gview",
        "_hooks",
        "_keras_mask",
        "_logits",
        "_node",
        "data",
        "name",
        "ops",
        "requires_grad",
    )
    __array_priority__ = 1000  # so ndarray + Tensor defers to Tensor.__radd__

    def __init__(
        self,
        data: Array,
        ops: Any = None,
        *,
        requires_grad: bool = False,
        name: str | None = None,
    ) -> None:
        if ops is None:
            from gpunet.backend import get_ops

            ops = get_ops("cpu")
        self.data = data
        self.ops = ops
        self.requires_grad = requires_grad
        self.name = name
        self._node: Node | None = None
        self._grad: Array | None = None
        self._gview: Tensor | None = None  # the Tensor that .grad returns
        self._gbuf: Array | None = None  # a view into an optimizer's flat buffer
        self._logits: tuple[Tensor, str] | None = None  # (logits, "sigmoid"|"softmax")
        self._keras_mask: Array | None = None  # (batch, time) bool, True = a real step
        self._hooks: list[Any] | None = None  # register_hook's, called with the gradient

    # -- array-like surface -------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return len(self.data.shape)

    @property
    def device(self) -> str:
        return str(self.ops.device)

    @property
    def is_cuda(self) -> bool:
        """Whether the data lives on a CUDA device (PyTorch's ``tensor.is_cuda``)."""
        return str(self.ops.device).startswith("cuda")

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def numpy(self) -> Any:
        """The values as a host NumPy array (copied from the device if needed)."""
        return self.ops.to_numpy(self.data)

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        import numpy as np

        out = self.numpy()  # np.asarray shares a CPU tensor's memory; np.array copies
        if copy and np.may_share_memory(out, self.data):
            out = out.copy()
        return out if dtype is None else np.asarray(out, dtype=dtype)

    def item(self) -> float:
        """The value of a one-element tensor as a Python number (float, int or bool)."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.numpy().reshape(()).item()  # type: ignore[no-any-return]

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.numpy()!r}, device={self.device!r}{grad})"

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        return Tensor(self.data, self.ops)

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    # -- gradients ----------------------------------------------------------------
    @property
    def grad(self) -> Tensor | None:
        """The accumulated gradient as a Tensor over its array (so ``x.grad.zero_()``
        and ``x.grad += g`` write into it, as in PyTorch), or None."""
        g = self._grad
        if g is None:
            return None
        view = self._gview
        if view is not None and view.data is g:
            return view
        if g is not self._gbuf:  # backward may share one array between leaves: own it
            g = self._grad = self.ops.copy(g)
        view = self._gview = Tensor(g, self.ops)
        return view

    @grad.setter
    def grad(self, value: Any) -> None:
        if isinstance(value, Tensor):
            value = value.data
        if value is None:
            self._grad = None
        elif self._gbuf is not None:
            self.ops.assign(self._gbuf, value)
            self._grad = self._gbuf
        else:
            self._grad = value

    def zero_grad(self) -> None:
        """Forget the gradient (PyTorch's ``set_to_none=True``)."""
        self._grad = None

    def accumulate_grad(self, g: Array) -> None:
        """Add ``g`` to ``.grad`` (the leaf end of ``backward``)."""
        if tuple(g.shape) != self.shape:
            raise ValueError(
                f"gradient of shape {tuple(g.shape)} for a tensor of shape {self.shape}"
            )
        if self._grad is None:
            if self._gbuf is not None:
                self.ops.assign(self._gbuf, g)  # free when g was written there (grad_sink)
                self._grad = self._gbuf
            else:
                self._grad = g
        elif self._grad is self._gbuf:
            self.ops.iadd(self._gbuf, g)
        else:  # g may alias an array the graph still holds: never add in place
            self._grad = self._grad + g

    def backward(self, grad: Array | None = None) -> None:
        """Backpropagate from this tensor into every leaf that requires a gradient.

        ``grad`` defaults to 1 for a one-element tensor (a loss).
        """
        if not self.requires_grad:
            raise RuntimeError(
                "this tensor does not require a gradient: it was computed from "
                "tensors with requires_grad=False, or inside no_grad()"
            )
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"grad can be implied only for a one-element tensor, not {self.shape}"
                )
            seed: Any = 1.0
        else:
            seed = grad.data if isinstance(grad, Tensor) else self.ops.asarray(grad)
        run_backward(self, seed)


def record(
    data: Array, ops: Any, parents: tuple[Tensor, ...], backward: Backward, name: str
) -> Tensor:
    """Wrap an op's output; link it to the graph when a parent needs a gradient."""
    out = Tensor(data, ops)
    if _state.grad:
        for p in parents:
            if p.requires_grad:
                out.requires_grad = True
                out._node = Node(parents, backward, name)
                break
    return out


def grad_sink(t: Tensor | None) -> Any:
    """Where an op may write ``t``'s gradient directly: the empty slot of a leaf's
    flat gradient buffer (saves a copy per parameter per step), else None."""
    if t is None or t._gbuf is None or t._grad is not None or not t.requires_grad:
        return None
    return t._gbuf


def needs_grad(*tensors: Tensor | None) -> bool:
    """True if recording is on and one of ``tensors`` requires a gradient."""
    return _state.grad and any(t is not None and t.requires_grad for t in tensors)


def as_tensor(value: Any, ops: Any, dtype: Any = None) -> Tensor:
    """A constant tensor on ``ops``'s device; host arrays move only to the CPU."""
    if isinstance(value, Tensor):
        if value.ops is not ops:
            raise DeviceError(
                f"tensors on different devices: {value.device!r} and {ops.device!r}; "
                "move one with .to(device) first"
            )
        return value
    if not ops.is_host and hasattr(value, "__array_interface__"):
        raise DeviceError(
            f"a host (NumPy) array was mixed with a tensor on {ops.device!r}; "
            f"move it explicitly with gn.tensor(array, device={ops.device!r})"
        )
    return Tensor(ops.asarray(value, dtype=dtype), ops)


def run_backward(root: Tensor, seed: Any) -> None:
    """Walk the graph below ``root`` once, in reverse topological order."""
    order: list[Tensor] = []
    seen: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:  # iterative post-order DFS: deep graphs need no recursion
        t, done = stack.pop()
        if done:
            order.append(t)
            continue
        if id(t) in seen:
            continue
        seen.add(id(t))
        stack.append((t, True))
        if t._node is not None:
            for p in t._node.parents:
                if p.requires_grad and id(p) not in seen:
                    stack.append((p, False))
    if isinstance(seed, float):
        seed = root.ops.full(root.shape, seed, root.dtype)
    grads: dict[int, Any] = {id(root): seed}
    for t in reversed(order):
        g = grads.pop(id(t), None)
        if g is None:
            continue
        if t._hooks:
            g = _run_hooks(t, g)
        node = t._node
        if node is None:  # backward() called on a leaf itself
            t.accumulate_grad(g)
            continue
        parent_grads = node.backward(g)
        node.backward = _freed
        for p, pg in zip(node.parents, parent_grads, strict=True):
            if pg is None or not p.requires_grad:
                continue
            if p._node is None and not p._hooks:
                p.accumulate_grad(pg)
            elif id(p) in grads:
                grads[id(p)] = grads[id(p)] + pg
            else:
                grads[id(p)] = pg
        node.parents = ()


def _run_hooks(t: Tensor, g: Any) -> Any:
    """``register_hook``'s hooks in order; a returned tensor replaces the gradient."""
    for hook in list(t._hooks or ()):
        out = hook(Tensor(g, t.ops))
        if out is not None:
            g = out.data if isinstance(out, Tensor) else t.ops.asarray(out)
    return g
