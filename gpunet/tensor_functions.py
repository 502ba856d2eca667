"""PyTorch's top-level tensor functions as ``gn.<name>``: creation (``randn``,
``zeros``, ``arange``, ``linspace``...), ``manual_seed``, and the math that
tutorials call as functions (``gn.argmax(x, dim=1)``, ``gn.cat``, ``gn.where``...),
plus ``gn.save``/``gn.load`` of state dicts in safetensors (no pickle).

Example:
    >>> import gpunet as gn
    >>> gn.manual_seed(0)
    >>> x = gn.linspace(-1.0, 1.0, 5)
    >>> gn.argmax(gn.stack([x, -x]), dim=0).tolist()
    [1, 1, 0, 0, 0]
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from gpunet import config
from gpunet import functional as G
from gpunet import random as grandom
from gpunet.autograd import Tensor
from gpunet.backend import get_ops

float32 = float_ = np.dtype("float32")
float64 = double = np.dtype("float64")
float16 = half = np.dtype("float16")
int64 = long = np.dtype("int64")
int32 = np.dtype("int32")
bool_ = np.dtype("bool")


def device(name: Any = "cpu") -> str:
    """A device name as gpunet takes it (``"cpu"``, ``"cuda"``, ``"cuda:0"``)."""
    return str(name)


def _make(arr: np.ndarray, dtype: Any, device: Any, requires_grad: bool) -> Tensor:
    ops = get_ops(device)
    dt = np.dtype(dtype if dtype is not None else config.floatx())
    return Tensor(ops.asarray(arr, dtype=dt.name), ops, requires_grad=requires_grad)


def _size(size: tuple[Any, ...]) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    return tuple(int(s) for s in size)


def manual_seed(seed: int) -> None:
    """Seed every gpunet random stream (weights, shuffling, dropout, ``randn``)."""
    grandom.set_random_seed(int(seed))


def randn(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Standard normal draws from the seeded ``init`` stream."""
    arr = grandom.generator("init").standard_normal(_size(size))
    return _make(arr, dtype, device, requires_grad)


def rand(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    arr = grandom.generator("init").random(_size(size))
    return _make(arr, dtype, device, requires_grad)


def randint(low: int, high: Any = None, size: Any = None, *, dtype: Any = "int64",
            device: Any = None) -> Tensor:  # fmt: skip
    """``randint(high, size)`` or ``randint(low, high, size)``, as PyTorch."""
    if size is None:
        low, high, size = 0, low, high
    arr = grandom.generator("init").integers(low, high, tuple(size))
    return _make(arr, dtype, device, False)


def zeros(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _make(np.zeros(_size(size)), dtype, device, requires_grad)


def ones(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _make(np.ones(_size(size)), dtype, device, requires_grad)


def full(size: Any, fill_value: float, *, dtype: Any = None, device: Any = None) -> Tensor:
    return _make(np.full(_size((size,)), fill_value), dtype, device, False)


def zeros_like(x: Tensor, *, dtype: Any = None) -> Tensor:
    return Tensor(x.ops.zeros(x.shape, dtype or x.dtype), x.ops)


def ones_like(x: Tensor, *, dtype: Any = None) -> Tensor:
    return Tensor(x.ops.full(x.shape, 1.0, dtype or x.dtype), x.ops)


def arange(start: float, end: float | None = None, step: float = 1, *, dtype: Any = None,
           device: Any = None) -> Tensor:  # fmt: skip
    """``arange(n)`` or ``arange(start, end, step)``: int64 for integer arguments."""
    if end is None:
        start, end = 0, start
    ints = all(isinstance(v, int) for v in (start, end, step))
    arr = np.arange(start, end, step)
    return _make(arr, dtype or ("int64" if ints else None), device, False)


def linspace(start: float, end: float, steps: int, *, dtype: Any = None, device: Any = None,
             requires_grad: bool = False) -> Tensor:  # fmt: skip
    return _make(np.linspace(start, end, int(steps)), dtype, device, requires_grad)


def from_numpy(arr: np.ndarray) -> Tensor:
    """A CPU tensor sharing ``arr``'s memory, as ``torch.from_numpy``."""
    return Tensor(arr, get_ops("cpu"))


def cat(tensors: Any, dim: int = 0) -> Tensor:
    return G.concat(tensors, axis=dim)


concat = cat
stack = G.stack
where = G.where
matmul = G.matmul
flatten = G.flatten


def _f(name: str) -> Any:
    def fn(input: Tensor, *args: Any, **kwargs: Any) -> Any:
        return getattr(input, name)(*args, **kwargs)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"``input.{name}(...)`` as a function (PyTorch's ``torch.{name}``)."
    return fn


argmax, argmin, max, min = _f("argmax"), _f("argmin"), _f("max"), _f("min")
sum, mean, exp, log, sin, cos = _f("sum"), _f("mean"), _f("exp"), _f("log"), _f("sin"), _f("cos")
abs, sqrt, clamp, pow = _f("abs"), _f("sqrt"), _f("clamp"), _f("pow")
sigmoid, tanh, relu = _f("sigmoid"), _f("tanh"), _f("relu")
softmax, log_softmax = _f("softmax"), _f("log_softmax")
reshape, squeeze, unsqueeze, permute = _f("reshape"), _f("squeeze"), _f("unsqueeze"), _f("permute")


def save(obj: Any, f: Any) -> None:
    """Save a state dict (``{name: tensor}``) to ``f`` as safetensors, atomically.

    Only flat mappings of names to tensors or arrays are stored; anything else
    raises ``TypeError`` (there is no pickle to fall back on).
    """
    from gpunet.saving._safetensors import dumps
    from gpunet.saving.atomic import write_atomic

    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise TypeError(
            "gn.save stores a state dict (a mapping of str names to tensors), "
            f"got {type(obj).__name__}"
        )
    arrays = {k: np.asarray(v) for k, v in obj.items()}  # (ascontiguousarray: 0-d -> 1-d)
    write_atomic(f, dumps(arrays, {"format": "gpunet.state_dict"}, ints=True))


def load(f: Any, map_location: Any = None) -> OrderedDict[str, Tensor]:
    """Load a state dict saved by :func:`save` (key order kept)."""
    from gpunet.saving._safetensors import loads

    with open(f, "rb") as fh:
        raw = loads(fh.read(), where=str(f), ints=True)
    ops = get_ops(map_location)
    return OrderedDict((k, Tensor(ops.asarray(np.array(v)), ops)) for k, v in raw.items())
