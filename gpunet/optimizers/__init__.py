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

from typing import Any

from gpunet import schedules
from gpunet.backend._optim_ops import AdamStep, adam_constants
from gpunet.errors import InvalidParameterError
from gpunet.optimizers._base import Optimizer, _prob
from gpunet.optimizers._base import _FlatGroup as _FlatGroup  # sklearn binds its own
from gpunet.optimizers.loss_scale import LossScaleOptimizer as LossScaleOptimizer


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
        amsgrad: Divide by the root of the running maximum of ``v`` (AMSGrad).
    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
        **kwargs: Any,
    ) -> None:
        self.beta_1, self.beta_2 = _prob("beta_1", beta_1), _prob("beta_2", beta_2)
        if not epsilon >= 0:
            raise InvalidParameterError(f"epsilon must be >= 0, got {epsilon!r}")
        self.epsilon, self.amsgrad = float(epsilon), bool(amsgrad)
        self.slots = {"m": 0.0, "v": 0.0, **({"v_hat": 0.0} if self.amsgrad else {})}
        super().__init__(learning_rate, **kwargs)

    def update(self, ops: Any, P: Any, G: Any, slots: dict[str, Any], lr: float) -> None:
        t = self._iterations + 1
        lr_t, eps = adam_constants(lr, t, self.beta_1, self.beta_2, self.epsilon, False)
        kw = {"lr_t": lr_t, "beta1": self.beta_1, "beta2": self.beta_2, "eps": eps,
              "decay": lr * self.weight_decay}  # fmt: skip
        M, V = slots["m"], slots["v"]
        if self.amsgrad:  # the reference only: no fused kernel for the rare variant
            if self._skipped is not None:  # arrays of the device's step number
                dev = AdamStep(lr, t, self._skipped, False)
                b1, b2 = self.beta_1, self.beta_2
                kw["lr_t"], kw["eps"] = ops.device_adam_constants(dev, b1, b2, self.epsilon)
            self._write(
                ops, (P, M, V, slots["v_hat"]), ops.amsgrad(P, G, M, V, slots["v_hat"], **kw)
            )
        else:
            # steps the device skipped do not count (Keras never takes them)
            step = None if self._skipped is None else AdamStep(lr, t, self._skipped, False)
            self._write(ops, (P, M, V), ops.adam(P, G, M, V, **kw, **self._guard(), step=step))

    def get_config(self) -> dict[str, Any]:
        extra = {"amsgrad": True} if self.amsgrad else {}  # the file schema knows no key else
        return {
            **super().get_config(),
            **extra,
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
