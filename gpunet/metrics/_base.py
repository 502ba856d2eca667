"""The metric base class and its state: named sums on the model's device.

A metric keeps its state in ``self.state`` (name -> device array; empty until the
first update) so the strategies can sum it over processes. Keras-style subclasses
reach the same state through :class:`Variable` objects made with
``add_variable`` / ``add_weight``.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from gpunet.autograd import Tensor, no_grad
from gpunet.backend import get_ops
from gpunet.errors import InvalidParameterError

_OWN = ("gpunet.metrics._base", "gpunet.metrics._classification", "gpunet.metrics._regression")


def _arrays(y_true: Any, y_pred: Any) -> tuple[Any, Any, Any]:
    """``(ops, T, P)``: device arrays of the targets and predictions (2-d ``P``)."""
    if isinstance(y_pred, Tensor):
        ops, P = y_pred.ops, y_pred.data
    else:
        ops = get_ops("cpu")
        P = ops.asarray(np.asarray(y_pred, dtype=np.float64))
    if isinstance(y_true, Tensor):
        T = y_true.data
    elif isinstance(y_true, (np.ndarray, list, tuple)):
        T = ops.asarray(np.asarray(y_true))
    else:
        T = y_true
    if P.ndim == 1:
        P = ops.xp.reshape(P, (-1, 1))
    return ops, T, P


def _weights(ops: Any, sample_weight: Any, dtype: Any) -> Any:
    """Sample weights as a device array of ``dtype`` (None stays None)."""
    if sample_weight is None:
        return None
    w = sample_weight.data if isinstance(sample_weight, Tensor) else sample_weight
    if isinstance(w, (np.ndarray, list, tuple, float, int)):
        w = ops.asarray(np.asarray(w))
    return ops.xp.astype(w, dtype)


def _initial(initializer: Any, shape: tuple[int, ...]) -> np.ndarray:
    if initializer is None or initializer == "zeros":
        return np.zeros(shape)
    if initializer == "ones":
        return np.ones(shape)
    if isinstance(initializer, (int, float)):
        return np.full(shape, float(initializer))
    if callable(initializer):  # gn.initializers objects: init(shape, dtype)
        return np.asarray(initializer(shape, "float64"), dtype=np.float64).reshape(shape)
    raise InvalidParameterError(
        f"metric variable initializer must be 'zeros', 'ones', a number or an "
        f"initializer, got {initializer!r}"
    )


class Variable:
    """One named piece of a metric's state (Keras' metric variable).

    ``assign`` / ``assign_add`` / ``assign_sub`` take tensors, arrays or numbers;
    arithmetic on a variable reads its value as a tensor.
    """

    def __init__(self, metric: Metric, name: str, shape: tuple[int, ...], init: np.ndarray) -> None:
        self._metric, self.name, self.shape, self._init = metric, name, shape, init

    def _as_tensor(self) -> Tensor:
        from gpunet import kops

        m = self._metric
        if m.state:
            return kops.convert_to_tensor(Tensor(m.state[self.name], m._ops))
        ops = m._ops or get_ops("cpu")
        return kops.convert_to_tensor(Tensor(ops.asarray(self._init, ops.accum_dtype), ops))

    @property
    def value(self) -> Tensor:
        return self._as_tensor()

    def numpy(self) -> np.ndarray:
        return self._as_tensor().numpy()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self.numpy(), dtype=dtype)

    def __float__(self) -> float:
        return float(self.numpy())

    def __repr__(self) -> str:
        return f"<Variable {self.name!r} shape={self.shape} value={self.numpy()!r}>"

    def _place(self, value: Any) -> tuple[Any, Any]:
        """``(ops, array)``: the value on the device the state will live on. A device
        value wins over host state (which moves once); a host value joins device state."""
        m = self._metric
        v = value._as_tensor() if isinstance(value, Variable) else value
        here = m._ops if m.state else None
        if isinstance(v, Tensor):
            ops, V = v.ops, v.data
            if here is not None and here is not ops and ops.device == "cpu":
                ops, V = here, here.asarray(ops.to_numpy(V), dtype=here.accum_dtype)
        else:
            ops = here or get_ops("cpu")
            V = v if isinstance(v, (int, float)) else np.asarray(v, dtype=np.float64)
            if not isinstance(V, (int, float)):
                V = ops.asarray(V, dtype=ops.accum_dtype)
        m._ensure(ops)
        if not isinstance(V, (int, float)):
            V = ops.xp.astype(V, ops.dtype(ops.accum_dtype))
        return ops, V

    def assign(self, value: Any) -> None:
        ops, V = self._place(value)
        self._metric.state[self.name] = ops.zeros(self.shape, ops.accum_dtype) + V

    def assign_add(self, value: Any) -> None:
        _, V = self._place(value)
        self._metric.state[self.name] = self._metric.state[self.name] + V

    def assign_sub(self, value: Any) -> None:
        _, V = self._place(value)
        self._metric.state[self.name] = self._metric.state[self.name] - V

    def __add__(self, other: Any) -> Any:
        return self._as_tensor() + _tensor_or_number(other)

    def __radd__(self, other: Any) -> Any:
        return _tensor_or_number(other) + self._as_tensor()

    def __sub__(self, other: Any) -> Any:
        return self._as_tensor() - _tensor_or_number(other)

    def __rsub__(self, other: Any) -> Any:
        return _tensor_or_number(other) - self._as_tensor()

    def __mul__(self, other: Any) -> Any:
        return self._as_tensor() * _tensor_or_number(other)

    def __rmul__(self, other: Any) -> Any:
        return _tensor_or_number(other) * self._as_tensor()

    def __truediv__(self, other: Any) -> Any:
        return self._as_tensor() / _tensor_or_number(other)

    def __rtruediv__(self, other: Any) -> Any:
        return _tensor_or_number(other) / self._as_tensor()


def _tensor_or_number(x: Any) -> Any:
    return x._as_tensor() if isinstance(x, Variable) else x


class ResultArray(np.ndarray):
    """A vector result (one value per threshold or class) that formats each value
    with the format spec, as the progress bar formats scalar logs (``f"{v:.4f}"``)."""

    def __format__(self, spec: str) -> str:
        if not spec:
            return str(np.asarray(self))
        return "[" + " ".join(format(float(v), spec) for v in np.ravel(self)) + "]"

    def __repr__(self) -> str:
        return repr(np.asarray(self))


def _host_result(fn: Any) -> Any:
    """Wrap a subclass's ``result``: tensors and variables come back as floats
    (or NumPy arrays when not scalar), the form logs and the progress bar take."""

    @functools.wraps(fn)
    def result(self: Metric) -> Any:
        out = fn(self)
        if isinstance(out, float):
            return out
        if isinstance(out, (Tensor, Variable)):
            out = out.numpy()
        out = np.asarray(out, dtype=np.float64)
        return float(out) if out.ndim == 0 else out.view(ResultArray)

    result._host = True  # type: ignore[attr-defined]
    return result


def _tensor_update(fn: Any) -> Any:
    """Wrap a user subclass's ``update_state``: its arguments arrive as tensors on
    the predictions' device, and nothing it does is recorded for backprop."""

    @functools.wraps(fn)
    def update_state(self: Metric, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        from gpunet import kops

        like = y_pred if isinstance(y_pred, Tensor) else kops.convert_to_tensor(y_pred)

        def place(x: Any) -> Any:
            if x is None or isinstance(x, Tensor):
                return x if x is None else kops.convert_to_tensor(x.detach())
            if like.ops.device == "cpu" or not hasattr(x, "__array_interface__"):
                return kops.convert_to_tensor(Tensor(like.ops.asarray(x), like.ops))
            return kops.convert_to_tensor(x)

        with no_grad():
            return fn(self, place(y_true), place(like), place(sample_weight))

    update_state._tensors = True  # type: ignore[attr-defined]
    return update_state


class Metric:
    """Base: ``update_state(y_true, y_pred, sample_weight=None)``, ``result()``,
    ``reset_state()``.

    Subclass it as in Keras: make state in ``__init__`` with
    ``self.add_variable(shape=(), initializer="zeros", name="tp")`` (or
    ``add_weight``), update it in ``update_state`` with ``gn.ops`` and
    ``var.assign_add(...)``, and compute the value in ``result()``. The default
    ``reset_state()`` returns every variable to its initial value.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> class Positives(gn.metrics.Metric):
        ...     def __init__(self, name="positives", **kwargs):
        ...         super().__init__(name=name, **kwargs)
        ...         self.n = self.add_variable(shape=(), initializer="zeros", name="n")
        ...     def update_state(self, y_true, y_pred, sample_weight=None):
        ...         self.n.assign_add(gn.ops.sum(gn.ops.cast(y_pred > 0.5, "float32")))
        ...     def result(self):
        ...         return self.n
        >>> m = Positives()
        >>> m.update_state(np.zeros(3), np.array([0.2, 0.7, 0.9]))
        >>> m.result()
        2.0
        >>> m.reset_state(); m.result()
        0.0
    """

    name = "metric"
    state_names: tuple[str, ...] = ("total", "count")

    def __init__(self, name: str | None = None, dtype: Any = None) -> None:
        self.name = name or self.name
        self.dtype = dtype or "float32"
        self.state: dict[str, Any] = {}
        self._ops: Any = None
        self._variables: dict[str, Variable] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        if "result" in own and not getattr(own["result"], "_host", False):
            cls.result = _host_result(own["result"])  # type: ignore[method-assign]
        if (
            "update_state" in own
            and cls.__module__ not in _OWN
            and not getattr(own["update_state"], "_tensors", False)
        ):
            cls.update_state = _tensor_update(own["update_state"])  # type: ignore[method-assign]

    # -- Keras-style state ---------------------------------------------------------------
    def add_variable(
        self,
        shape: Any = (),
        initializer: Any = "zeros",
        dtype: Any = None,
        aggregation: str = "sum",
        name: str | None = None,
    ) -> Variable:
        """A new state variable (summed over processes in data-parallel training)."""
        if aggregation != "sum":
            raise InvalidParameterError(
                f"metric variables are summed over processes; aggregation={aggregation!r} "
                "is not supported (expected 'sum')"
            )
        if "_variables" not in self.__dict__:
            raise InvalidParameterError(
                "call super().__init__(name=name, **kwargs) before add_variable"
            )
        name = name or f"variable_{len(self._variables)}"
        if name in self._variables:
            raise InvalidParameterError(f"metric {self.name!r} has a variable {name!r} already")
        shape = (int(shape),) if isinstance(shape, int) else tuple(int(n) for n in shape)
        var = Variable(self, name, shape, _initial(initializer, shape))
        self._variables[name] = var
        if self.state:
            self.state[name] = self._ops.asarray(var._init, self._ops.accum_dtype)
        if type(self).state_names is self.state_names:
            self.state_names = ()
        self.state_names = (*self.state_names, name)
        return var

    def add_weight(
        self, name: str | None = None, shape: Any = (), initializer: Any = "zeros",
        dtype: Any = None, **kwargs: Any,
    ) -> Variable:  # fmt: skip
        """``add_variable`` under its Keras 2 name (``add_weight(name=, initializer=)``)."""
        return self.add_variable(shape, initializer, dtype, kwargs.get("aggregation", "sum"), name)

    @property
    def variables(self) -> list[Variable]:
        return list(self._variables.values())

    def _ensure(self, ops: Any) -> None:
        """State exists (initial values) on ``ops``'s device."""
        if not self.state:
            self._ops = ops
            self.state = {k: self._start(k, ops) for k in self.state_names}
        elif self._ops is not ops:  # a metric reused on another device moves with it
            old = self._ops
            self.state = {k: ops.asarray(old.to_numpy(v)) for k, v in self.state.items()}
            self._ops = ops

    def _start(self, key: str, ops: Any) -> Any:
        var = self._variables.get(key)
        if var is not None:
            return ops.asarray(var._init, ops.accum_dtype)
        return ops.zeros(self.shape(key), ops.accum_dtype)

    # -- the built-in metrics' machinery ----------------------------------------------
    def reset_state(self) -> None:
        self.state = {}

    def reset_states(self) -> None:
        """Keras 2's name for ``reset_state``."""
        self.reset_state()

    def _add(self, ops: Any, **values: Any) -> None:
        self._ensure(ops)
        for k, v in values.items():
            self.state[k] = self.state[k] + v

    def shape(self, key: str) -> tuple[int, ...]:
        var = self._variables.get(key)
        return var.shape if var is not None else ()

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        ops, T, P = _arrays(y_true, y_pred)
        self._add_mean(ops, self.values(ops, T, P), sample_weight)  # values: (B,)

    def _add_mean(self, ops: Any, V: Any, sample_weight: Any) -> None:
        """Add values to a running mean as Keras' ``Mean`` does: rows are reduced to
        one value each (weighted), and the count is the rows' total weight."""
        xp = ops.xp
        w = _weights(ops, sample_weight, V.dtype)
        if w is None:
            count: Any = float(V.shape[0]) if V.ndim else 1.0
        else:
            if w.ndim == V.ndim + 1 and w.shape[-1] == 1:
                w = xp.reshape(w, w.shape[:-1])
            elif V.ndim == w.ndim + 1 and V.shape[-1] == 1:
                if w.ndim == 1:
                    w = xp.reshape(w, (-1, 1))
                else:
                    V = xp.reshape(V, V.shape[:-1])
            if V.ndim > w.ndim:
                V = xp.mean(V, axis=tuple(range(w.ndim, V.ndim)))
            w = xp.broadcast_to(w, V.shape)
            V = V * w
            if w.ndim > 1:
                w = xp.mean(w, axis=tuple(range(1, w.ndim)))
            count = xp.sum(w)
        if V.ndim > 1:
            V = xp.mean(V, axis=tuple(range(1, V.ndim)))
        self._add(ops, total=xp.sum(V), count=count)

    def values(self, ops: Any, T: Any, P: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define update_state")

    def result(self) -> Any:
        if not self.state:
            return 0.0
        total, count = self._read("total"), self._read("count")
        return float(total / count) if count else 0.0

    def _read(self, key: str) -> Any:
        value = self._ops.to_numpy(self.state[key])
        return float(value) if value.ndim == 0 else value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``update_state`` then ``result`` (state accumulates, as in Keras 3)."""
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name}


class Mean(Metric):
    """Running (weighted) mean of the values given (``fit`` tracks the loss with it).

    Example:
        >>> import gpunet as gn
        >>> m = gn.metrics.Mean()
        >>> m.update_state([1.0, 3.0]); m.update_state(8.0)
        >>> m.result()
        4.0
    """

    name = "mean"

    def update_state(  # type: ignore[override]
        self, values: Any, sample_weight: Any = None, weight: Any = None
    ) -> None:
        """``weight``: one (scalar) value standing for that many samples (the loss)."""
        ops = values.ops if isinstance(values, Tensor) else get_ops("cpu")
        v = (
            values.data
            if isinstance(values, Tensor)
            else ops.asarray(np.asarray(values, np.float64))
        )
        if weight is not None:
            self._add(ops, total=v * weight, count=weight)
        else:
            self._add_mean(ops, v, sample_weight)


class Sum(Metric):
    """Running (weighted) sum of the values given.

    Example:
        >>> import gpunet as gn
        >>> m = gn.metrics.Sum()
        >>> m.update_state([1.0, 3.0], sample_weight=[1.0, 0.5])
        >>> m.result()
        2.5
    """

    name = "sum"
    state_names = ("total",)

    def update_state(self, values: Any, sample_weight: Any = None) -> None:  # type: ignore[override]
        ops = values.ops if isinstance(values, Tensor) else get_ops("cpu")
        v = (
            values.data
            if isinstance(values, Tensor)
            else ops.asarray(np.asarray(values, np.float64))
        )
        w = _weights(ops, sample_weight, v.dtype)
        if w is not None and w.ndim < v.ndim:  # per-sample weights over rows
            w = ops.xp.reshape(w, (*w.shape, *(1,) * (v.ndim - w.ndim)))
        self._add(ops, total=ops.xp.sum(v if w is None else v * w))

    def result(self) -> float:
        return self._read("total") if self.state else 0.0  # type: ignore[no-any-return]


class MeanMetricWrapper(Metric):
    """The running mean of ``fn(y_true, y_pred)``, a function giving one value per
    sample (how a plain function passed in ``metrics=[...]`` is tracked)."""

    def __init__(self, fn: Any, name: str | None = None, dtype: Any = None, **kwargs: Any) -> None:
        super().__init__(name or getattr(fn, "__name__", "metric"), dtype)
        self.fn, self.kwargs = fn, kwargs

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        from gpunet import kops

        ops, T, P = _arrays(y_true, y_pred)
        args = (Tensor(ops.xp.astype(T, P.dtype), ops), Tensor(P, ops))
        with no_grad():
            out = self.fn(*(kops.convert_to_tensor(a) for a in args), **self.kwargs)
        V = kops.convert_to_tensor(out).data
        self._add_mean(ops, ops.xp.astype(V, ops.dtype(ops.accum_dtype)), sample_weight)
