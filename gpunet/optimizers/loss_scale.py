"""``LossScaleOptimizer`` (Keras 3): dynamic loss scaling around another optimizer.

The loss is multiplied by the scale before the backward pass, so float16 gradients do
not underflow; the step divides the gradients by it again. A step whose gradients are
not all finite is skipped and the scale halved; after ``dynamic_growth_steps`` clean
steps in a row the scale doubles. ``compile`` wraps the optimizer in one by itself
under the ``"mixed_float16"`` policy (``auto_scale_loss=True``, as Keras).

The unscale and the finiteness check are one pass over each flat gradient buffer
(``ops.unscale_check``), the scale update a device-side op (``ops.update_scale``): on a
GPU the step reads nothing back and the skip is the optimizer kernels' ``ok`` guard.
A skipped step is not a step, as in Keras (whose inner optimizer never runs then): on a
device the inner optimizer counts the skips there, so neither Adam's bias correction
nor ``iterations`` advances; where reads are free (the CPU) it is skipped on the host.
(A learning-rate schedule is evaluated at the host's count of steps, skips included.)

Example:
    >>> import numpy as np, gpunet as gn
    >>> w = gn.layers.Dense(1, input_dim=2, kernel_initializer="ones", use_bias=False).kernel
    >>> opt = gn.optimizers.LossScaleOptimizer(gn.optimizers.SGD(0.5), initial_scale=4.0)
    >>> opt.build([w])
    >>> w.grad = np.array([[4.0], [np.inf]], dtype="float32")  # an overflowed step
    >>> opt.step()
    >>> w.numpy().ravel().tolist(), opt.dynamic_scale
    ([1.0, 1.0], 2.0)
    >>> w.grad = np.array([[2.0], [2.0]], dtype="float32")  # scaled by 2: gradient 1
    >>> opt.step()
    >>> w.numpy().ravel().tolist(), opt.iterations
    ([0.5, 0.5], 1)
"""

from __future__ import annotations

from typing import Any

from gpunet.errors import InvalidParameterError
from gpunet.optimizers._base import Optimizer


class LossScaleOptimizer(Optimizer):
    """Dynamic loss scaling (Keras 3 arguments and defaults).

    Args:
        inner_optimizer: The optimizer that applies the unscaled gradients.
        initial_scale: The first loss scale (a power of two keeps unscaling exact).
        dynamic_growth_steps: Clean steps after which the scale doubles.
        dynamic: Only True is supported (Keras 3 dropped fixed scaling).
    """

    def __init__(self, inner_optimizer: Any, initial_scale: float = 2.0**15,
                 dynamic_growth_steps: int = 2000, name: str | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        if not kwargs.pop("dynamic", True):
            raise InvalidParameterError(
                "LossScaleOptimizer no longer supports `dynamic=False`. Instead, simply "
                "scale the loss yourself"
            )
        if kwargs:
            raise InvalidParameterError(
                f"LossScaleOptimizer does not support arguments: `{'`, `'.join(kwargs)}`."
            )
        if not isinstance(inner_optimizer, Optimizer) or isinstance(
            inner_optimizer, LossScaleOptimizer
        ):
            raise InvalidParameterError(
                f"inner_optimizer must be a gpunet optimizer, got {inner_optimizer!r}"
            )
        if not (isinstance(initial_scale, (int, float)) and initial_scale > 0):
            raise InvalidParameterError(f"initial_scale must be > 0, got {initial_scale!r}")
        if isinstance(dynamic_growth_steps, bool) or not (
            isinstance(dynamic_growth_steps, int) and dynamic_growth_steps >= 1
        ):
            raise InvalidParameterError(
                f"dynamic_growth_steps must be an int >= 1, got {dynamic_growth_steps!r}"
            )
        self.inner_optimizer = inner_optimizer
        self.initial_scale = float(initial_scale)
        self.dynamic_growth_steps = int(dynamic_growth_steps)
        self.name = name or "loss_scale_optimizer"
        self.slots = {}
        self._state: dict[str, Any] = {}
        self._pending: tuple[float, int] | None = None  # loaded before the state existed

    # -- what the inner optimizer holds --------------------------------------------------
    groups = property(lambda self: self.inner_optimizer.groups)  # type: ignore[assignment]

    @property  # type: ignore[override]
    def iterations(self) -> int:
        return int(self.inner_optimizer.iterations)

    @iterations.setter
    def iterations(self, value: int) -> None:
        self.inner_optimizer.iterations = value

    @property
    def learning_rate(self) -> float:
        return self.inner_optimizer.learning_rate  # type: ignore[no-any-return]

    @learning_rate.setter
    def learning_rate(self, value: Any) -> None:
        self.inner_optimizer.learning_rate = value

    def build(self, params: Any) -> None:
        self.inner_optimizer.build(params)
        self._make_state(self.groups[0].ops)

    def _make_state(self, ops: Any) -> None:
        scale, counter = self._pending or (self.initial_scale, 0)
        self._pending = None
        self._state = {"ops": ops, "scale": ops.full((), scale, "float32"),
                       "counter": ops.full((), counter, "int32"),
                       "found": ops.zeros((), "int32"),
                       "ok": ops.full((), True, "bool")}  # fmt: skip

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner_optimizer.zero_grad(set_to_none)

    def to(self, device: Any) -> None:
        scale, counter = self.dynamic_scale, self.step_counter
        self.inner_optimizer.to(device)
        self._pending = (scale, counter)
        self._make_state(self.groups[0].ops)

    # -- the scale -------------------------------------------------------------------------
    @property
    def scale(self) -> Any:
        """The scale as a 0-d device array (float on the host: ``dynamic_scale``)."""
        if not self._state:
            raise RuntimeError("the LossScaleOptimizer is not built yet (call build(params))")
        return self._state["scale"]

    @property
    def dynamic_scale(self) -> float:
        """The current loss scale (a host read)."""
        if not self._state:
            return self._pending[0] if self._pending else self.initial_scale
        return float(self._state["ops"].to_host(self._state["scale"]))

    @property
    def step_counter(self) -> int:
        """Clean steps since the scale last changed (a host read)."""
        if not self._state:
            return self._pending[1] if self._pending else 0
        return int(self._state["ops"].to_numpy(self._state["counter"]))

    def set_scale_state(self, scale: float, step_counter: int) -> None:
        """Restore the scale and counter (a checkpoint being loaded)."""
        self._pending = (float(scale), int(step_counter))
        if self._state:
            self._make_state(self._state["ops"])

    def scale_loss(self, loss: Any) -> Any:
        """``loss * scale`` (Keras' name); the backward of it gives scaled gradients."""
        return loss * self.grad_factor()

    def grad_factor(self) -> Any:
        """What the backward pass multiplies the loss gradient by: a float where reads
        are free, else the device value (nothing is read)."""
        st = self._state
        if not st:
            return self.initial_scale
        return self.dynamic_scale if st["ops"].reads_are_free else st["scale"]

    # -- the step ----------------------------------------------------------------------------
    def step(self, closure: Any = None, *, when: Any = None) -> Any:
        """Unscale, check, and step the inner optimizer unless a gradient was not finite;
        then update the scale. ``when`` (a device flag) gates the step further;
        ``closure`` runs first and its loss is returned (PyTorch's)."""
        from gpunet.optimizers._base import _run_closure

        loss = _run_closure(closure)
        if not self._state:
            self.build(self.inner_optimizer.params)
        st = self._state
        ops = st["ops"]
        for g in self.groups:  # one pass per flat buffer when every gradient is in it
            if g.all_grads_in_place():
                g.ops.unscale_check(g.G, st["scale"], st["found"])
            else:
                for p in g.params:
                    if p._grad is not None:
                        g.ops.unscale_check(p._grad, st["scale"], st["found"])
        if ops.reads_are_free:
            finite = int(ops.to_numpy(st["found"])) == 0
            self._update(ops, st)
            if finite:
                self.inner_optimizer.step(when=when)
            return loss
        self._update(ops, st)
        ok = st["ok"] if when is None else ops.xp.logical_and(st["ok"], when)
        self.inner_optimizer.step(when=ok)
        return loss

    def _update(self, ops: Any, st: dict[str, Any]) -> None:
        ops.update_scale(st["scale"], st["counter"], st["found"], st["ok"], growth=2.0,
                         backoff=0.5, interval=self.dynamic_growth_steps)  # fmt: skip

    # -- config and state ------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        inner = self.inner_optimizer
        return {
            "name": self.name,
            "inner_optimizer": {"class_name": type(inner).__name__, "config": inner.get_config()},
            "initial_scale": self.initial_scale,
            "dynamic_growth_steps": self.dynamic_growth_steps,
        }

    def state_arrays(self) -> dict[str, Any]:
        return self.inner_optimizer.state_arrays()  # type: ignore[no-any-return]

    def load_state_arrays(self, arrays: dict[str, Any]) -> None:
        self.inner_optimizer.load_state_arrays(arrays)
