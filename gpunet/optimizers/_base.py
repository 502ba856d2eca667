"""The optimizer machinery both spellings share: flat buffers, clipping, the step.

``build(params)`` copies the parameters into one contiguous buffer and makes each
parameter's data (and gradient) a view of it, so one update call covers the whole
model: on the CPU that turns ~13 passes per tensor into 13 passes in all, and on
the GPU into one fused kernel launch. State (``m``, ``v``, ...) is flat the same
way.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np

from gpunet.errors import InvalidParameterError
from gpunet.schedules import LearningRateSchedule


class _FlatGroup:
    """Parameters of one device and dtype, packed into flat ``P``, ``G`` and slots."""

    def __init__(self, ops: Any, params: list[Any], slots: dict[str, float]) -> None:
        self.ops, self.params = ops, params
        self.hp: dict[str, Any] = {}  # gn.optim: the parameter group's hyperparameters
        self.steps = [0] * len(params)  # gn.optim: steps taken by each parameter
        self.skipped: Any = None  # 0-d int32 on the device: steps a device flag skipped
        # gn.optim.SGD: per parameter, the step whose g its momentum buffer copies; and
        # the parameter being stepped alone (None: the whole group at once)
        self.buffer_from = [1] * len(params)
        self.current: int | None = None
        dtype = params[0].dtype
        sizes = [int(math.prod(p.shape)) for p in params]
        n = sum(sizes)
        self.P, self.G = ops.empty((n,), dtype), ops.zeros((n,), dtype)
        self.slots = {k: ops.full((n,), v, dtype) for k, v in slots.items()}
        self.spans: list[tuple[int, int]] = []
        xp, off = ops.xp, 0
        for p, size in zip(params, sizes, strict=True):
            a, b = off, off + size
            ops.assign(self.P[a:b], xp.reshape(p.data, (-1,)))
            grad = p._grad
            p.data = xp.reshape(self.P[a:b], p.shape)
            p._gbuf = xp.reshape(self.G[a:b], p.shape)
            p._grad = None
            if grad is not None:
                p.grad = grad
            self.spans.append((a, b))
            off = b
        self._views = [p.data for p in params]

    def moved(self) -> bool:
        """Whether a parameter's data is no longer its view of ``P``: the model was
        moved or cast (``model.to(...)``, ``.double()``) after the packing."""
        return any(p.data is not v for p, v in zip(self.params, self._views, strict=True))

    def all_grads_in_place(self) -> bool:
        return all(p._grad is p._gbuf for p in self.params)

    def views(self, arr: Any, i: int) -> Any:
        a, b = self.spans[i]
        return arr[a:b]


class Optimizer:
    """Base optimizer.

    Args:
        learning_rate: A float or a schedule (``gn.optimizers.schedules``).
        weight_decay: Decoupled weight decay: ``w -= lr * weight_decay * w`` each step.
        clipnorm: Clip each gradient to this L2 norm.
        clipvalue: Clip each gradient element to ``[-clipvalue, clipvalue]``.
        global_clipnorm: Clip all gradients together to this global L2 norm.
        params: Parameters to optimize now (PyTorch style); ``compile`` passes the
            model's otherwise.
    """

    slots: dict[str, float]  # state arrays and their initial values, set per instance

    def __init__(
        self,
        learning_rate: Any = 0.001,
        *,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        params: Any = None,
        name: str | None = None,
    ) -> None:
        self.learning_rate = learning_rate
        for key, v in (
            ("weight_decay", weight_decay),
            ("clipnorm", clipnorm),
            ("clipvalue", clipvalue),
            ("global_clipnorm", global_clipnorm),
        ):
            if v is not None and not (isinstance(v, (int, float)) and v >= 0):
                raise InvalidParameterError(f"{key} must be a number >= 0, got {v!r}")
        clips = {"clipnorm": clipnorm, "clipvalue": clipvalue, "global_clipnorm": global_clipnorm}
        if sum(v is not None for v in clips.values()) > 1:  # as Keras 3 refuses it
            raise InvalidParameterError(
                "Only one of clipnorm, clipvalue and global_clipnorm can be set; got "
                + ", ".join(f"{k}={v}" for k, v in clips.items())
            )
        self.weight_decay = float(weight_decay or 0.0)
        # Keras reads 0 as "no clipping"
        self.clipnorm, self.clipvalue, self.global_clipnorm = (v or None for v in clips.values())
        if not hasattr(self, "slots"):
            self.slots = {}
        self.name = name or type(self).__name__.lower()
        self._iterations = 0  # steps called; those a device flag skipped are in skipped
        self.groups: list[_FlatGroup] = []
        if params is not None:
            self.build(params)

    # -- learning rate ------------------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        """The rate of the next step (a schedule is evaluated at ``iterations``)."""
        lr = self._lr
        # the host's count: on a device a schedule counts the steps it skipped too
        return float(lr(self._iterations)) if isinstance(lr, LearningRateSchedule) else lr

    @learning_rate.setter
    def learning_rate(self, value: Any) -> None:
        if isinstance(value, LearningRateSchedule) or callable(value):
            if not isinstance(value, LearningRateSchedule):
                raise InvalidParameterError(
                    "learning_rate must be a float or a gn.optimizers.schedules schedule"
                )
            self._lr: Any = value
            return
        if isinstance(getattr(self, "_lr", None), LearningRateSchedule):
            raise TypeError(  # as Keras: a schedule owns the rate; fit's callbacks see it
                "This optimizer was created with a LearningRateSchedule as its learning_rate, "
                f"hence its learning rate is not settable (got {value!r}); pass a float "
                "learning_rate to the constructor to set it later"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise InvalidParameterError(
                f"The 'learning_rate' parameter must be a float > 0, got {value!r}"
            )
        self._lr = float(value)

    @property
    def iterations(self) -> int:
        """Steps taken (Keras' ``optimizer.iterations``): a step a device flag skipped
        (a non-finite gradient under loss scaling) does not count, as in Keras. The
        device counts those, so reading this after one is a host read."""
        for g in self.groups:
            if g.skipped is not None:
                return self._iterations - int(g.ops.to_numpy(g.skipped))
        return self._iterations

    @iterations.setter
    def iterations(self, value: int) -> None:
        self._iterations = int(value)
        for g in self.groups:  # the count given is of steps taken
            g.skipped = None

    # -- parameters -------------------------------------------------------------------
    @property
    def built(self) -> bool:
        return bool(self.groups)

    @property
    def params(self) -> list[Any]:
        return [p for g in self.groups for p in g.params]

    def build(self, params: Any) -> None:
        """Pack ``params`` (trainable tensors) into flat buffers, one per device/dtype."""
        unique: dict[int, Any] = {}
        for p in params:
            if getattr(p, "requires_grad", False):
                unique.setdefault(id(p), p)
        if not unique:
            raise InvalidParameterError("the optimizer got no trainable parameters")
        self.groups = _pack(list(unique.values()), self.slots)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget every parameter's gradient before the next backward.

        ``set_to_none=False`` keeps the gradients that exist, filled with zeros
        (PyTorch's semantics); parameters without one keep ``None``.
        """
        for p in self.params:
            if set_to_none or p._grad is None:
                p.zero_grad()
            elif p._grad is p._gbuf:
                p.ops.assign(p._gbuf, p.ops.xp.zeros_like(p._gbuf))
            else:
                p.grad = p.ops.xp.zeros_like(p._grad)

    def to(self, device: Any) -> None:
        """Move the state to ``device`` and repack the (already moved) parameters."""
        from gpunet.backend import get_ops

        self._repack(lambda g: get_ops(device))

    def _repack(self, ops_of: Any, which: Any = None) -> None:
        """Pack the groups (``which``, else all) again on ``ops_of(group)``, each
        parameter from its current data, the state moved and cast with them."""
        for i, was in enumerate(self.groups):
            if which is not None and was is not which:
                continue
            ops = ops_of(was)
            dtype = was.params[0].dtype
            if any(p.ops is not ops or p.dtype != dtype for p in was.params):
                raise InvalidParameterError(
                    f"the parameters of an optimizer group are now on several devices or in "
                    f"several dtypes ({sorted({str(p.dtype) for p in was.params})}): move or "
                    "cast the whole model, or make the optimizer after it"
                )
            g = _FlatGroup(ops, was.params, dict.fromkeys(was.slots, 0.0))
            g.hp, g.steps = was.hp, was.steps
            if was.skipped is not None:
                g.skipped = ops.asarray(was.ops.to_numpy(was.skipped))
            for k, v in was.slots.items():
                ops.assign(g.slots[k], ops.asarray(was.ops.to_numpy(v), dtype=dtype))
            self.groups[i] = g

    # -- the step ---------------------------------------------------------------------
    def step(self, closure: Any = None, *, when: Any = None) -> Any:
        """Apply one update from the current gradients (parameters without a
        gradient are skipped, as in PyTorch).

        ``closure`` (PyTorch's): a function that clears the gradients, computes the
        loss and its backward, and returns the loss; it runs first, with gradients
        recorded, and its loss is returned.

        ``when``: a 0-d boolean on the device; where it is false the step changes
        nothing. ``fit`` passes "every loss so far was finite", so on a GPU a
        non-finite loss never reaches the weights although nobody read it yet.
        """
        loss = _run_closure(closure)
        if not self.groups:
            raise RuntimeError("the optimizer has no parameters: pass params= or compile a model")
        for g in self.groups:
            if g.moved():  # the model was moved or cast after the optimizer took it
                self._repack(lambda g: g.params[0].ops, which=g)
        self._when = when
        # a guarded step may be one to skip: its non-finite arithmetic is thrown away
        quiet = np.errstate(all="ignore") if when is not None else contextlib.nullcontext()
        try:
            with quiet:
                self._step()
        finally:
            self._when = None
        if when is not None:  # counted on the device: the host never learns of a skip
            for g in self.groups:
                xp = g.ops.xp
                missed = xp.astype(xp.logical_not(when), g.ops.dtype("int32"))
                g.skipped = xp.asarray(missed if g.skipped is None else g.skipped + missed)
        return loss

    _when: Any = None
    _skipped: Any = None  # the updating group's device count of skipped steps

    def _guard(self) -> dict[str, Any]:
        """``ok=`` for ops that update in place (empty when there is no guard)."""
        return {} if self._when is None else {"ok": self._when}

    def _step(self) -> None:
        lr = self.learning_rate
        if self.global_clipnorm is not None:
            self._clip_global()
        for g in self.groups:
            if g.all_grads_in_place():
                self._update_group(g, lr, g.P, g.G, g.slots)
                continue
            for i, p in enumerate(g.params):
                if p._grad is not None:
                    slots = {k: g.views(v, i) for k, v in g.slots.items()}
                    grad = g.ops.xp.reshape(p._grad, (-1,))
                    self._update_group(g, lr, g.views(g.P, i), grad, slots)
        self._iterations += 1

    def _update_group(
        self, g: _FlatGroup, lr: float, P: Any, G: Any, slots: dict[str, Any]
    ) -> None:
        ops, xp = g.ops, g.ops.xp
        self._skipped = g.skipped
        if self.clipvalue is not None:
            ops.assign(G, xp.clip(G, -self.clipvalue, self.clipvalue))
        if self.clipnorm is not None:
            for i in range(len(g.params)) if G is g.G else [None]:
                view = G if i is None else g.views(G, i)
                norm = xp.sqrt(xp.sum(view * view))
                ops.assign(view, view * (self.clipnorm / xp.maximum(norm, self.clipnorm)))
        self.update(ops, P, G, slots, lr)

    def _clip_global(self) -> None:
        """Keras' ``clip_by_global_norm``: one norm over every gradient, whatever its
        dtype or buffer, and one factor ``c / max(norm, c)`` for them all."""
        c = float(self.global_clipnorm)  # type: ignore[arg-type]
        grads = [(g.ops, p) for g in self.groups for p in g.params if p._grad is not None]
        if not grads:
            return
        ops0 = grads[0][0]
        wide = max((p._grad.dtype for _, p in grads), key=lambda d: ops0.xp.finfo(d).bits)
        total: Any = 0.0
        for ops, p in grads:  # summed in the widest dtype, on the device: no host read
            G = ops.xp.astype(p._grad, wide)
            total = total + _moved(ops, ops0, ops.xp.sum(G * G))
        factor = c / ops0.xp.maximum(ops0.xp.sqrt(total), c)
        for ops, p in grads:
            p.grad = p._grad * ops.xp.astype(_moved(ops0, ops, factor), p._grad.dtype)

    def update(self, ops: Any, P: Any, G: Any, slots: dict[str, Any], lr: float) -> None:
        raise NotImplementedError  # pragma: no cover - each optimizer defines it

    def _write(self, ops: Any, dst: tuple[Any, ...], src: tuple[Any, ...]) -> None:
        # an op that returned new arrays did not apply the guard: keep old values
        for d, s in zip(dst, src, strict=True):
            if s is not d and d is not None:
                ops.assign(d, s if self._when is None else ops.xp.where(self._when, s, d))

    def apply_gradients(self, grads_and_vars: Any) -> None:
        """Keras: set each variable's gradient and take one step."""
        pairs = list(grads_and_vars)
        if not self.groups:
            self.build([v for _, v in pairs])
        self.zero_grad()
        for grad, var in pairs:
            var.grad = grad.data if hasattr(grad, "ops") else grad
        self.step()

    # -- config and state -------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        lr = self._lr
        lr_cfg: Any = (
            lr
            if not isinstance(lr, LearningRateSchedule)
            else {"class_name": type(lr).__name__, "config": lr.get_config()}
        )
        return {
            "learning_rate": lr_cfg,
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "clipvalue": self.clipvalue,
            "global_clipnorm": self.global_clipnorm,
        }

    def state_arrays(self) -> dict[str, Any]:
        """Slots as NumPy arrays, named ``<slot>.<group index>``."""
        return {
            f"{k}.{i}": g.ops.to_numpy(v)
            for i, g in enumerate(self.groups)
            for k, v in g.slots.items()
        }

    def load_state_arrays(self, arrays: dict[str, Any]) -> None:
        for i, g in enumerate(self.groups):
            for k, v in g.slots.items():
                g.ops.assign(v, g.ops.asarray(arrays[f"{k}.{i}"], dtype=v.dtype))


def _prob(key: str, v: float, *, closed: bool = False) -> float:
    ok = 0.0 <= v <= 1.0 if closed else 0.0 <= v < 1.0
    if not ok:
        raise InvalidParameterError(f"{key} must be in [0, 1), got {v!r}")
    return float(v)


def _run_closure(closure: Any) -> Any:
    """``closure()`` with gradients recorded (PyTorch's ``optimizer.step(closure)``)."""
    if closure is None:
        return None
    if not callable(closure):
        raise TypeError(
            f"optimizer.step takes a closure (a function returning the loss), got "
            f"{type(closure).__name__}; a device flag goes by keyword: step(when=flag)"
        )
    from gpunet.autograd import enable_grad

    with enable_grad():
        return closure()


def _pack(params: list[Any], slots: dict[str, float]) -> list[_FlatGroup]:
    """One flat group per device and dtype, in the parameters' order."""
    by_key: dict[tuple[int, str], list[Any]] = {}
    for p in params:
        by_key.setdefault((id(p.ops), str(p.dtype)), []).append(p)
    return [_FlatGroup(ps[0].ops, ps, slots) for ps in by_key.values()]


def _moved(src: Any, dst: Any, X: Any) -> Any:
    """``X`` on ``dst``'s device (a no-op on the same one)."""
    return X if src is dst else dst.asarray(src.to_numpy(X))
