"""Optimizers over one flat buffer per dtype.

``build(params)`` copies the parameters into one contiguous buffer and makes each
parameter's data (and gradient) a view of it, so one update call covers the whole
model: on the CPU that turns ~13 passes per tensor into 13 passes in all, and on
the GPU into one fused kernel launch. State (``m``, ``v``, ...) is flat the same
way. Keras argument names and defaults; ``gn.optim`` has the PyTorch spelling.

Example:
    >>> import numpy as np, gpunet as gn
    >>> w = gn.layers.Dense(1, input_dim=2, kernel_initializer="ones", use_bias=False).kernel
    >>> opt = gn.optimizers.SGD(learning_rate=0.1, params=[w])
    >>> w.grad = np.ones((2, 1), dtype="float32")
    >>> opt.step()
    >>> w.numpy().ravel()
    array([0.9, 0.9], dtype=float32)
"""

from __future__ import annotations

import math
from typing import Any

from gpunet import schedules
from gpunet.errors import InvalidParameterError
from gpunet.schedules import LearningRateSchedule


class _FlatGroup:
    """Parameters of one device and dtype, packed into flat ``P``, ``G`` and slots."""

    def __init__(self, ops: Any, params: list[Any], slots: dict[str, float]) -> None:
        self.ops, self.params = ops, params
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
        if clipnorm is not None and global_clipnorm is not None:
            raise InvalidParameterError("pass at most one of clipnorm and global_clipnorm")
        self.weight_decay = float(weight_decay or 0.0)
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.l2 = 0.0  # coupled L2 (PyTorch's weight_decay), added to the gradient
        if not hasattr(self, "slots"):
            self.slots = {}
        self.name = name or type(self).__name__.lower()
        self.iterations = 0
        self.groups: list[_FlatGroup] = []
        if params is not None:
            self.build(params)

    # -- learning rate ------------------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        """The rate of the next step (a schedule is evaluated at ``iterations``)."""
        lr = self._lr
        return float(lr(self.iterations)) if isinstance(lr, LearningRateSchedule) else lr

    @learning_rate.setter
    def learning_rate(self, value: Any) -> None:
        if isinstance(value, LearningRateSchedule) or callable(value):
            if not isinstance(value, LearningRateSchedule):
                raise InvalidParameterError(
                    "learning_rate must be a float or a gn.optimizers.schedules schedule"
                )
            self._lr: Any = value
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise InvalidParameterError(
                f"The 'learning_rate' parameter must be a float > 0, got {value!r}"
            )
        self._lr = float(value)

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
        by_key: dict[tuple[int, str], list[Any]] = {}
        for p in unique.values():
            by_key.setdefault((id(p.ops), str(p.dtype)), []).append(p)
        self.groups = [_FlatGroup(ps[0].ops, ps, self.slots) for ps in by_key.values()]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget every parameter's gradient before the next backward."""
        for p in self.params:
            p.zero_grad()

    def to(self, device: Any) -> None:
        """Move the state to ``device`` and repack the (already moved) parameters."""
        from gpunet.backend import get_ops

        ops = get_ops(device)
        old = self.groups
        saved = [{k: g.ops.to_numpy(v) for k, v in g.slots.items()} for g in old]
        self.groups = [_FlatGroup(ops, g.params, self.slots) for g in old]
        for g, state in zip(self.groups, saved, strict=True):
            for k, v in state.items():
                ops.assign(g.slots[k], ops.asarray(v))

    # -- the step ---------------------------------------------------------------------
    def step(self, when: Any = None) -> None:
        """Apply one update from the current gradients (parameters without a
        gradient are skipped, as in PyTorch).

        ``when``: a 0-d boolean on the device; where it is false the step changes
        nothing. ``fit`` passes "every loss so far was finite", so on a GPU a
        non-finite loss never reaches the weights although nobody read it yet.
        """
        if not self.groups:
            raise RuntimeError("the optimizer has no parameters: pass params= or compile a model")
        self._when = when
        try:
            self._step()
        finally:
            self._when = None

    _when: Any = None

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
        self.iterations += 1

    def _update_group(
        self, g: _FlatGroup, lr: float, P: Any, G: Any, slots: dict[str, Any]
    ) -> None:
        ops, xp = g.ops, g.ops.xp
        if self.clipvalue is not None:
            ops.assign(G, xp.clip(G, -self.clipvalue, self.clipvalue))
        if self.clipnorm is not None:
            for i in range(len(g.params)) if G is g.G else [None]:
                view = G if i is None else g.views(G, i)
                norm = xp.sqrt(xp.sum(view * view))
                ops.assign(view, view * (self.clipnorm / xp.maximum(norm, self.clipnorm)))
        if self.l2:
            ops.assign(G, G + self.l2 * P)
        self.update(ops, P, G, slots, lr)

    def _clip_global(self) -> None:
        c = float(self.global_clipnorm)  # type: ignore[arg-type]
        for g in self.groups:  # one norm over every group's gradient
            xp = g.ops.xp
            sq = [xp.sum(p._grad * p._grad) for p in g.params if p._grad is not None]
            total = xp.sqrt(sum(sq[1:], sq[0])) if sq else None
            if total is not None:
                factor = c / xp.maximum(total, c)
                for p in g.params:
                    if p._grad is not None:
                        p.grad = p._grad * factor

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


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    ``v <- momentum * v - lr * g``; ``w <- w + v`` (Nesterov: ``w + momentum*v - lr*g``).
    """

    def __init__(
        self,
        learning_rate: Any = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        **kwargs: Any,
    ) -> None:
        self.momentum = _prob("momentum", momentum, closed=True)
        self.nesterov = bool(nesterov)
        self.slots = {"velocity": 0.0} if self.momentum else {}
        super().__init__(learning_rate, **kwargs)

    def update(self, ops: Any, P: Any, G: Any, slots: dict[str, Any], lr: float) -> None:
        vel = slots.get("velocity")
        newP, newV = ops.sgd(
            P,
            G,
            vel,
            lr=lr,
            momentum=self.momentum,
            nesterov=self.nesterov,
            decay=lr * self.weight_decay,
            **self._guard(),
        )
        self._write(ops, (P, vel), (newP, newV))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (https://arxiv.org/abs/1412.6980) with Keras' epsilon placement.

    Args:
        beta_1, beta_2: Decay rates of the first and second moment estimates.
        epsilon: Added to ``sqrt(v)`` (Keras default 1e-7).
    """

    torch_eps = False  # PyTorch adds eps to sqrt(v_hat), not to sqrt(v)

    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        **kwargs: Any,
    ) -> None:
        self.beta_1, self.beta_2 = _prob("beta_1", beta_1), _prob("beta_2", beta_2)
        if not epsilon >= 0:
            raise InvalidParameterError(f"epsilon must be >= 0, got {epsilon!r}")
        self.epsilon = float(epsilon)
        self.slots = {"m": 0.0, "v": 0.0}
        super().__init__(learning_rate, **kwargs)

    def update(self, ops: Any, P: Any, G: Any, slots: dict[str, Any], lr: float) -> None:
        t = self.iterations + 1
        c2 = math.sqrt(1.0 - self.beta_2**t)
        lr_t = lr * c2 / (1.0 - self.beta_1**t)
        eps = self.epsilon * c2 if self.torch_eps else self.epsilon
        M, V = slots["m"], slots["v"]
        res = ops.adam(
            P,
            G,
            M,
            V,
            lr_t=lr_t,
            beta1=self.beta_1,
            beta2=self.beta_2,
            eps=eps,
            decay=lr * self.weight_decay,
            **self._guard(),
        )
        self._write(ops, (P, M, V), res)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
        }


class AdamW(Adam):
    """Adam with decoupled weight decay (https://arxiv.org/abs/1711.05101); Keras
    default ``weight_decay=0.004``."""

    def __init__(
        self, learning_rate: Any = 0.001, weight_decay: float = 0.004, **kwargs: Any
    ) -> None:
        super().__init__(learning_rate, weight_decay=weight_decay, **kwargs)


class RMSprop(Optimizer):
    """RMSprop (Keras 3 form): ``a <- rho a + (1-rho) g^2``; ``w -= lr g / sqrt(a + eps)``."""

    def __init__(
        self,
        learning_rate: Any = 0.001,
        rho: float = 0.9,
        momentum: float = 0.0,
        epsilon: float = 1e-7,
        centered: bool = False,
        **kwargs: Any,
    ) -> None:
        self.rho, self.momentum = _prob("rho", rho), _prob("momentum", momentum)
        self.epsilon, self.centered = float(epsilon), bool(centered)
        self.slots = {"velocity": 0.0}
        if self.momentum:
            self.slots["momentum"] = 0.0
        if self.centered:
            self.slots["average_gradient"] = 0.0
        super().__init__(learning_rate, **kwargs)

    def update(self, ops: Any, P: Any, G: Any, slots: dict[str, Any], lr: float) -> None:
        A, Mom, Mg = slots["velocity"], slots.get("momentum"), slots.get("average_gradient")
        res = ops.rmsprop(
            P,
            G,
            A,
            Mom,
            Mg,
            lr=lr,
            rho=self.rho,
            eps=self.epsilon,
            momentum=self.momentum,
            decay=lr * self.weight_decay,
        )
        self._write(ops, (P, A, Mom, Mg), res)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "rho": self.rho,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "centered": self.centered,
        }


class Adagrad(Optimizer):
    """Adagrad: ``a <- a + g^2``; ``w -= lr g / sqrt(a + eps)`` (Keras defaults)."""

    def __init__(
        self,
        learning_rate: Any = 0.001,
        initial_accumulator_value: float = 0.1,
        epsilon: float = 1e-7,
        **kwargs: Any,
    ) -> None:
        if initial_accumulator_value < 0:
            raise InvalidParameterError("initial_accumulator_value must be >= 0")
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.epsilon = float(epsilon)
        self.slots = {"accumulator": self.initial_accumulator_value}
        super().__init__(learning_rate, **kwargs)

    def update(self, ops: Any, P: Any, G: Any, slots: dict[str, Any], lr: float) -> None:
        A = slots["accumulator"]
        res = ops.adagrad(P, G, A, lr=lr, eps=self.epsilon, decay=lr * self.weight_decay)
        self._write(ops, (P, A), res)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "epsilon": self.epsilon,
            "initial_accumulator_value": self.initial_accumulator_value,
        }


_REGISTRY: dict[str, Any] = {
    "sgd": SGD,
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSprop,
    "adagrad": Adagrad,
}
CLASSES = {cls.__name__: cls for cls in _REGISTRY.values()}


def get(spec: Any) -> Optimizer:
    """An optimizer from a name (``"adam"``, ``"sgd"``, ...) or an instance."""
    if isinstance(spec, Optimizer):
        return spec
    if isinstance(spec, str) and spec.lower() in _REGISTRY:
        return _REGISTRY[spec.lower()]()  # type: ignore[no-any-return]
    raise InvalidParameterError(
        f"unknown optimizer {spec!r}; expected one of {', '.join(sorted(_REGISTRY))}"
    )


def from_config(class_name: str, config: dict[str, Any]) -> Optimizer:
    """Rebuild a saved optimizer (names come from a closed registry)."""
    cfg = dict(config)
    lr = cfg.get("learning_rate")
    if isinstance(lr, dict):
        cfg["learning_rate"] = schedules.CLASSES[lr["class_name"]](**lr["config"])
    return CLASSES[class_name](**cfg)  # type: ignore[no-any-return]
