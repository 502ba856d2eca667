"""More of PyTorch's top-level functions (``gn.<name>``): the tensor methods of
:mod:`gpunet._tensor_more` as functions (``gn.topk(x, 2)``), ``randperm`` and
``multinomial`` on the seeded streams, ``eye``/``empty``/``full_like``,
``allclose``/``equal``, ``is_tensor`` and the grad-mode managers
``set_grad_enabled`` and ``inference_mode``.

Example:
    >>> import gpunet as gn
    >>> gn.manual_seed(0)
    >>> sorted(gn.randperm(4).tolist())
    [0, 1, 2, 3]
    >>> gn.topk(gn.tensor([1.0, 3.0, 2.0]), 2).indices.tolist()
    [1, 2]
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from gpunet import autograd, config
from gpunet import functional as G
from gpunet import random as grandom
from gpunet.autograd import Tensor
from gpunet.saving._tensors import dtype_name
from gpunet.tensor_functions import _f, _make, _size


def randperm(n: int, *, dtype: Any = "int64", device: Any = None) -> Tensor:
    """A random permutation of ``0..n-1`` from the seeded ``init`` stream."""
    return _make(grandom.generator("init").permutation(int(n)), dtype, device, False)


def multinomial(input: Tensor, num_samples: int, replacement: bool = False, *,
                generator: Any = None) -> Tensor:  # fmt: skip
    """Draw ``num_samples`` indices per row with probability proportional to the
    row's (non-negative) weights, from the seeded ``init`` stream."""
    W = np.asarray(input.numpy(), dtype=np.float64)
    if W.ndim not in (1, 2):
        raise RuntimeError(f"multinomial: prob_dist must be 1 or 2 dim, got {W.ndim}")
    rows = W.reshape(-1, W.shape[-1])
    if (rows < 0).any() or not np.isfinite(rows).all():
        raise RuntimeError("multinomial: probability tensor contains inf, nan or element < 0")
    n = int(num_samples)
    if not replacement and n > rows.shape[1]:
        raise RuntimeError(
            f"multinomial: cannot sample num_samples={n} > {rows.shape[1]} categories "
            "without replacement"
        )
    rng = grandom.generator("init")
    out = np.empty((rows.shape[0], n), dtype=np.int64)
    for i, w in enumerate(rows):
        total = w.sum()
        if total <= 0:
            raise RuntimeError(
                "multinomial: invalid multinomial distribution (sum of probabilities <= 0)"
            )
        out[i] = rng.choice(w.size, size=n, replace=replacement, p=w / total)
    out = out.reshape((*W.shape[:-1], n))
    return Tensor(input.ops.asarray(out), input.ops)


def get_default_dtype() -> Any:
    """The dtype Python floats and new weights take (``config.floatx``; float32)."""
    return np.dtype(config.floatx())


def set_default_dtype(d: Any) -> None:
    """Set the dtype Python floats and new weights take: float32, float64 or float16
    (process-wide, as PyTorch's and ``config.set_floatx``)."""
    name = np.dtype(d).name
    if name not in config.FLOAT_DTYPES:
        raise TypeError(f"only floating-point types are supported as the default type, got {d}")
    config.set_floatx(name)


def _no_generator(fn: str, generator: Any) -> None:
    if generator is not None:
        raise NotImplementedError(f"{fn}: generator= is not supported; seed with gn.manual_seed")


def normal(
    mean: Any, std: Any = 1.0, size: Any = None, *, generator: Any = None, dtype: Any = None,
    device: Any = None, requires_grad: bool = False,
) -> Tensor:  # fmt: skip
    """Normal draws of ``mean`` and ``std`` (tensors, elementwise and broadcast, or
    numbers with ``size``) from the seeded ``init`` stream, as ``torch.normal``."""
    _no_generator("normal", generator)
    like = next((t for t in (mean, std) if isinstance(t, Tensor)), None)
    m, s = (t.numpy() if isinstance(t, Tensor) else np.asarray(t, np.float64) for t in (mean, std))
    if like is None and size is None:
        raise TypeError("normal: give size= when mean and std are both numbers")
    if (s < 0).any():
        raise RuntimeError(f"normal expects all elements of std >= 0.0, got {s.min()}")
    shape = _size((size,)) if size is not None else np.broadcast_shapes(m.shape, s.shape)
    draws = grandom.generator("init").standard_normal(shape) * s + m
    if like is not None and device is None:
        return _make(draws, dtype or dtype_name(like.dtype), like.ops, requires_grad)
    kept = None if like is None else dtype_name(like.dtype)  # a tensor's dtype, any device
    return _make(draws, dtype or kept, device, requires_grad)


def bernoulli(input: Tensor, p: float | None = None, *, generator: Any = None) -> Tensor:
    """0/1 draws (in ``input``'s dtype) with the probabilities ``input`` (or ``p``)."""
    _no_generator("bernoulli", generator)
    probs = input.numpy() if p is None else np.full(input.shape, float(p))
    if not ((probs >= 0) & (probs <= 1)).all():
        bad = probs[~((probs >= 0) & (probs <= 1))].reshape(-1)[0]
        raise RuntimeError(f"bernoulli: expected all probabilities in [0, 1], got {bad}")
    draws = grandom.generator("init").random(probs.shape) < probs
    return Tensor(input.ops.asarray(draws, dtype=input.dtype), input.ops)


def dropout(input: Tensor, p: float = 0.5, train: bool = True) -> Tensor:
    """``nn.functional.dropout`` as ``torch.dropout(input, p, train)``."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    return G.dropout(input, float(p), bool(train))


def empty(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _make(np.zeros(_size(size)), dtype, device, requires_grad)


def empty_like(x: Tensor, *, dtype: Any = None) -> Tensor:
    return Tensor(x.ops.zeros(x.shape, dtype or x.dtype), x.ops)


def full_like(x: Tensor, fill_value: Any, *, dtype: Any = None) -> Tensor:
    return Tensor(x.ops.full(x.shape, fill_value, dtype or x.dtype), x.ops)


def eye(n: int, m: int | None = None, *, dtype: Any = None, device: Any = None,
        requires_grad: bool = False) -> Tensor:  # fmt: skip
    return _make(np.eye(int(n), None if m is None else int(m)), dtype, device, requires_grad)


def is_tensor(obj: Any) -> bool:
    return isinstance(obj, Tensor)


def numel(input: Tensor) -> int:
    return int(input.data.size)


def allclose(input: Tensor, other: Tensor, rtol: float = 1e-5, atol: float = 1e-8,
             equal_nan: bool = False) -> bool:  # fmt: skip
    return bool(np.allclose(input.numpy(), other.numpy(), rtol, atol, equal_nan))


def equal(input: Tensor, other: Tensor) -> bool:
    """True if both have the same shape and elements."""
    return input.shape == other.shape and bool(np.array_equal(input.numpy(), other.numpy()))


class set_grad_enabled(contextlib.ContextDecorator):
    """Switch graph recording on or off: a context manager, or a plain call."""

    def __init__(self, mode: bool) -> None:
        self.prev = autograd._state.grad
        self.mode = bool(mode)
        autograd._state.grad = self.mode  # effective at once, as torch.set_grad_enabled(False)

    def __enter__(self) -> None:
        autograd._state.grad = self.mode

    def __exit__(self, *exc: object) -> None:
        autograd._state.grad = self.prev


@contextlib.contextmanager
def inference_mode(mode: bool = True) -> Iterator[None]:
    """``no_grad`` (PyTorch's faster variant has the same effect on results)."""
    prev = autograd._state.grad
    autograd._state.grad = not mode
    try:
        yield
    finally:
        autograd._state.grad = prev


def randn_like(input: Tensor, *, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Standard normal draws of ``input``'s shape, dtype and device (a VAE's noise)."""
    return _make(grandom.generator("init").standard_normal(input.shape), dtype or input.dtype,
                 input.ops, requires_grad)  # fmt: skip


def rand_like(input: Tensor, *, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _make(grandom.generator("init").random(input.shape), dtype or input.dtype,
                 input.ops, requires_grad)  # fmt: skip


def as_tensor(data: Any, dtype: Any = None, device: Any = None) -> Tensor:
    """``data`` itself when it is a tensor of that dtype and device, else a tensor of it
    (sharing a NumPy array's memory on the CPU where the dtype allows, as PyTorch)."""
    if isinstance(data, Tensor):
        moved = data if device is None else data.to(device)
        same = dtype is None or moved.data.dtype == moved.ops.dtype(np.dtype(dtype).name)
        return moved if same else G.cast(moved, np.dtype(dtype).name)
    from gpunet import tensor

    arr = np.asarray(data)
    if dtype is None and arr.dtype.kind == "f" and not hasattr(data, "dtype"):
        dtype = config.floatx()  # Python floats: the default dtype, as torch.tensor
    return tensor(arr, dtype=dtype, device=device)


def _extremum(input: Tensor, other: Any, bigger: bool) -> Tensor:
    """``maximum``/``minimum``: NaN propagates; a tie splits the gradient in halves."""
    a = input if isinstance(input, Tensor) else autograd.as_tensor(np.asarray(input), other.ops)
    b = autograd.as_tensor(other, a.ops, a.dtype if not isinstance(other, Tensor) else None)
    xp, ops = a.ops.xp, a.ops
    A, B = a.data, b.data
    Y = xp.maximum(A, B) if bigger else xp.minimum(A, B)
    if not autograd.needs_grad(a, b):
        return Tensor(Y, ops)

    def backward(g: Any) -> tuple[Any, Any]:  # PyTorch's rule: a NaN's gradient goes to both
        base = xp.where(A == B, g * 0.5, g)
        zero = xp.zeros_like(base)
        ga = xp.where(A < B if bigger else A > B, zero, base)
        gb = xp.where(A > B if bigger else A < B, zero, base)
        return ops.sum_to_shape(ga, a.shape), ops.sum_to_shape(gb, b.shape)

    return autograd.record(Y, ops, (a, b), backward, "maximum" if bigger else "minimum")


def maximum(input: Tensor, other: Any) -> Tensor:
    return _extremum(input, other, True)


def minimum(input: Tensor, other: Any) -> Tensor:
    return _extremum(input, other, False)


def einsum(equation: str, *operands: Any) -> Tensor:
    from gpunet import _tensor_math  # on first use: import gpunet stays light

    return _tensor_math.einsum(equation, *operands)


def transpose(input: Tensor, dim0: int, dim1: int) -> Tensor:
    return input.transpose(dim0, dim1)


def split(tensor: Tensor, split_size_or_sections: Any, dim: int = 0) -> tuple[Tensor, ...]:
    return tensor.split(split_size_or_sections, dim)


def chunk(input: Tensor, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
    return input.chunk(chunks, dim)


topk, sort, argsort, gather, masked_fill = (
    _f("topk"), _f("sort"), _f("argsort"), _f("gather"), _f("masked_fill"),
)  # fmt: skip
mm, bmm, outer, diag, tril, triu = (
    _f("mm"), _f("bmm"), _f("outer"), _f("diag"), _f("tril"), _f("triu"),
)  # fmt: skip
clip, cumsum, logsumexp, norm = _f("clip"), _f("cumsum"), _f("logsumexp"), _f("norm")
isnan, isfinite, prod, var, std = _f("isnan"), _f("isfinite"), _f("prod"), _f("var"), _f("std")
amax, amin, roll, flip = _f("amax"), _f("amin"), _f("roll"), _f("flip")
index_select, narrow, unbind = _f("index_select"), _f("narrow"), _f("unbind")
rsqrt, sign, floor, ceil, round = _f("rsqrt"), _f("sign"), _f("floor"), _f("ceil"), _f("round")
dot, nan_to_num, lerp, diagonal = _f("dot"), _f("nan_to_num"), _f("lerp"), _f("diagonal")
repeat_interleave, count_nonzero = _f("repeat_interleave"), _f("count_nonzero")
nonzero, masked_select, unique = _f("nonzero"), _f("masked_select"), _f("unique")

__all__ = [
    "allclose",
    "amax",
    "amin",
    "argsort",
    "as_tensor",
    "bernoulli",
    "bmm",
    "ceil",
    "chunk",
    "clip",
    "count_nonzero",
    "cumsum",
    "diag",
    "diagonal",
    "dot",
    "dropout",
    "einsum",
    "empty",
    "empty_like",
    "equal",
    "eye",
    "flip",
    "floor",
    "full_like",
    "gather",
    "get_default_dtype",
    "index_select",
    "inference_mode",
    "is_tensor",
    "isfinite",
    "isnan",
    "lerp",
    "logsumexp",
    "masked_fill",
    "masked_select",
    "maximum",
    "minimum",
    "mm",
    "multinomial",
    "nan_to_num",
    "narrow",
    "nonzero",
    "norm",
    "normal",
    "numel",
    "outer",
    "prod",
    "rand_like",
    "randn_like",
    "randperm",
    "repeat_interleave",
    "roll",
    "round",
    "rsqrt",
    "set_default_dtype",
    "set_grad_enabled",
    "sign",
    "sort",
    "split",
    "std",
    "topk",
    "transpose",
    "tril",
    "triu",
    "unbind",
    "unique",
    "var",
]  # fmt: skip
