"""Mixed precision, PyTorch spelling: ``gn.autocast`` and ``gn.amp.GradScaler``.

Inside ``with gn.autocast("cuda"):`` (float16; ``"cpu"``: bfloat16, as PyTorch) the
layers of PyTorch's lower-precision op list (linear, convolutions, recurrent cells,
attention) give their outputs in the autocast dtype; under CUDA autocast those of its
float32 list (softmax, log-softmax, layer and group norm) compute and answer in
float32 (CPU autocast lets them follow their inputs, as PyTorch's does); the rest run
in the dtype their inputs have (normalization layers too: a float16 input gives a
float16 output, with float32 statistics, as PyTorch's kernels do); the losses of
``fit`` run in float32. Weights stay float32: the gradients that reach them are
float32. A layer's GEMMs run in the autocast dtype on a device, its other arithmetic
in float32, as under a Keras policy (see ``gn.mixed_precision``). bfloat16 values are
held in float32 arrays, so a layer that follows its input cannot tell them from float32
ones: it answers in float32 there. Autocast is per thread, as PyTorch's.

``GradScaler`` follows ``torch.amp.GradScaler``: ``scale(loss)``, ``step(opt)``
(unscaling first unless ``unscale_(opt)`` already did), ``update()``, with the same
scale, growth tracker and skipped steps; the unscale and the check are one fused pass
over each flat gradient buffer and the update is device-side. (PyTorch reads the
"found inf" flag back on every ``step``; here the skip is the optimizer's device guard.)

Example:
    >>> import numpy as np, gpunet as gn
    >>> model = gn.nn.Linear(3, 2)
    >>> opt = gn.optim.SGD(model.parameters(), lr=0.1)
    >>> scaler = gn.amp.GradScaler(init_scale=2.0**16)
    >>> with gn.autocast("cpu", dtype=gn.float16):
    ...     out = model(gn.tensor(np.ones((4, 3), "float32")))
    >>> out.dtype
    dtype('float16')
    >>> loss = (out.float() ** 2).mean()
    >>> scaler.scale(loss).backward()
    >>> scaler.step(opt)
    >>> scaler.update()
    >>> scaler.get_scale()
    65536.0
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpunet import mixed_precision as _mp
from gpunet.errors import InvalidParameterError

# PyTorch's autocast lists, by the gpunet layer or module class that does the op (CUDA's;
# CPU autocast has the same lower-precision list and no layer here on its float32 list)
LOWER = frozenset({
    "Dense", "Linear", "Bilinear", "EinsumDense",
    "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
    "DepthwiseConv2D", "SeparableConv2D", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d",
    "ConvTranspose2d", "ConvTranspose3d", "SimpleRNN", "LSTM", "GRU", "RNN", "LSTMCell",
    "GRUCell", "RNNCell", "SimpleRNNCell", "MultiHeadAttention", "MultiheadAttention",
})  # fmt: skip
FLOAT32 = frozenset({
    "Softmax", "LogSoftmax", "LayerNormalization", "LayerNorm", "GroupNormalization",
    "GroupNorm", "UnitNormalization",
})  # fmt: skip
# on neither list where autocast leaves them (batch norm always, layer and group norm on
# the CPU), normalization layers answer in their input's dtype with float32 parameters
# and statistics, as PyTorch's native kernels do for a half input (torch 2.13, checked)
FOLLOW = frozenset({
    "BatchNormalization", "LayerNormalization", "GroupNormalization",
})  # fmt: skip
_DEFAULT = {"cuda": "float16", "cpu": "bfloat16"}


def active_dtype() -> str | None:
    """The autocast dtype of this thread (None outside autocast)."""
    stack = _mp._thread.autocast
    return stack[-1][0] if stack and stack[-1] is not None else None


def autocast_rule(layer: Any, dtype: str, device_type: str = "cuda") -> str | None:
    """What autocast makes of ``layer``: ``dtype``, ``"float32"`` or None (as it comes).
    CPU autocast has none of these layers on its float32 list (only losses)."""
    for cls in type(layer).__mro__:
        if cls.__name__ in LOWER:
            return dtype
        if cls.__name__ in FLOAT32:
            return "float32" if device_type == "cuda" else None
    return None


def follows_input(layer: Any) -> bool:
    """Whether ``layer`` (on neither list) answers in a float16 input's dtype although its
    parameters are float32 (``FOLLOW``); other layers promote as their arithmetic does."""
    return any(cls.__name__ in FOLLOW for cls in type(layer).__mro__)


class autocast:
    """``torch.autocast(device_type, dtype=None, enabled=True, cache_enabled=None)``."""

    def __init__(self, device_type: str = "cuda", dtype: Any = None, enabled: bool = True,
                 cache_enabled: Any = None) -> None:  # fmt: skip
        kind = str(device_type).split(":")[0]
        if kind not in _DEFAULT:
            raise InvalidParameterError(
                f"autocast device_type must be 'cuda' or 'cpu', got {device_type!r}"
            )
        name = _DEFAULT[kind] if dtype is None else _dtype_name(dtype)
        if name not in ("float16", "bfloat16"):
            raise InvalidParameterError(f"autocast dtype must be float16 or bfloat16, got {name!r}")
        self.device_type, self.fast_dtype, self.enabled = kind, name, bool(enabled)

    def __enter__(self) -> autocast:
        _mp._thread.autocast.append((self.fast_dtype, self.device_type) if self.enabled else None)
        return self

    def __exit__(self, *exc: object) -> None:
        _mp._thread.autocast.pop()

    def __call__(self, fn: Any) -> Any:  # as a decorator
        def run(*args: Any, **kwargs: Any) -> Any:
            with autocast(self.device_type, self.fast_dtype, self.enabled):
                return fn(*args, **kwargs)

        return run


def _dtype_name(dtype: Any) -> str:
    if isinstance(dtype, str):
        return dtype
    name = getattr(dtype, "name", None) or str(dtype)
    return "bfloat16" if "bfloat16" in name else np.dtype(dtype).name


_READY, _UNSCALED, _STEPPED = 0, 1, 2


class GradScaler:
    """``torch.amp.GradScaler`` (arguments, defaults, errors and state dict)."""

    def __init__(self, device: str = "cuda", init_scale: float = 2.0**16,
                 growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, enabled: bool = True) -> None:  # fmt: skip
        if growth_factor <= 1.0:
            raise InvalidParameterError("The growth factor must be > 1.0.")
        if backoff_factor >= 1.0:
            raise InvalidParameterError("The backoff factor must be < 1.0.")
        self._device, self._enabled = device, bool(enabled)
        self._init_scale, self._growth_factor = float(init_scale), float(growth_factor)
        self._backoff_factor, self._growth_interval = float(backoff_factor), int(growth_interval)
        self._init_growth_tracker = 0
        self._ops: Any = None
        self._scale: Any = None
        self._tracker: Any = None
        self._found: Any = None
        self._ok: Any = None
        self._stage: dict[int, int] = {}

    def is_enabled(self) -> bool:
        return self._enabled

    def _lazy_init(self, ops: Any) -> None:
        self._ops = ops
        self._scale = ops.full((), self._init_scale, "float32")
        self._tracker = ops.full((), self._init_growth_tracker, "int32")
        self._found, self._ok = ops.zeros((), "int32"), ops.full((), True, "bool")

    def _need(self, what: str) -> None:
        if self._scale is None:
            raise AssertionError(
                f"Attempted {what} but _scale is None.  This may indicate your script did "
                "not use scaler.scale(loss or outputs) earlier in the iteration."
            )

    def scale(self, outputs: Any) -> Any:
        """``outputs * scale`` (a tensor, or a list/tuple of them)."""
        if not self._enabled:
            return outputs
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        if self._scale is None:
            self._lazy_init(outputs.ops)
        from gpunet.autograd import Tensor

        factor = self._scale
        return outputs * Tensor(self._ops.xp.astype(factor, outputs.data.dtype), self._ops)

    def unscale_(self, optimizer: Any) -> None:
        """Divide ``optimizer``'s gradients by the scale in place, noting non-finite ones."""
        if not self._enabled:
            return
        self._need("unscale_")
        stage = self._stage.get(id(optimizer), _READY)
        if stage == _UNSCALED:
            raise RuntimeError(
                "unscale_() has already been called on this optimizer since the last update()."
            )
        if stage == _STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        for g in optimizer.groups:
            grads = [p._grad for p in g.params if p._grad is not None]
            if any(_mp.is_half(G) for G in grads):
                raise ValueError("Attempting to unscale FP16 gradients.")
            if g.all_grads_in_place():
                g.ops.unscale_check(g.G, self._scale, self._found)
            else:
                for G in grads:
                    g.ops.unscale_check(G, self._scale, self._found)
        self._stage[id(optimizer)] = _UNSCALED

    def step(self, optimizer: Any, *args: Any, **kwargs: Any) -> Any:
        """Unscale (if not yet) and step, unless a gradient was not finite."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("Closure use is not currently supported if GradScaler is enabled.")
        self._need("step")
        if self._stage.get(id(optimizer), _READY) == _STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if self._stage.get(id(optimizer), _READY) == _READY:
            self.unscale_(optimizer)
        ops = self._ops
        if ops.reads_are_free:
            if int(ops.to_numpy(self._found)) == 0:
                optimizer.step(*args, **kwargs)
        else:  # the optimizer kernels skip it on the device: no read
            optimizer.step(when=ops.xp.equal(self._found, ops.zeros((), "int32")))
        self._stage[id(optimizer)] = _STEPPED
        return None

    def update(self, new_scale: Any = None) -> None:
        """Grow or back off the scale from this iteration's checks (or set ``new_scale``)."""
        if not self._enabled:
            return
        self._need("update")
        ops = self._ops
        if new_scale is not None:
            value = new_scale.item() if hasattr(new_scale, "item") else float(new_scale)
            ops.assign(self._scale, ops.full((), value, "float32"))
            ops.assign(self._found, ops.zeros((), "int32"))
        else:
            if not self._stage:
                raise AssertionError("No inf checks were recorded prior to update.")
            ops.update_scale(self._scale, self._tracker, self._found, self._ok,
                             growth=self._growth_factor, backoff=self._backoff_factor,
                             interval=self._growth_interval)  # fmt: skip
        self._stage = {}

    def get_scale(self) -> float:
        if not self._enabled:
            return 1.0
        return self._init_scale if self._scale is None else float(self._ops.to_host(self._scale))

    def _get_growth_tracker(self) -> int:
        if self._tracker is None:
            return self._init_growth_tracker
        return int(self._ops.to_numpy(self._tracker))

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def set_growth_factor(self, new_factor: float) -> None:
        self._growth_factor = float(new_factor)

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def set_backoff_factor(self, new_factor: float) -> None:
        self._backoff_factor = float(new_factor)

    def get_growth_interval(self) -> int:
        return self._growth_interval

    def set_growth_interval(self, new_interval: int) -> None:
        self._growth_interval = int(new_interval)

    def state_dict(self) -> dict[str, Any]:
        if not self._enabled:
            return {}
        return {"scale": self.get_scale(), "growth_factor": self._growth_factor,
                "backoff_factor": self._backoff_factor,
                "growth_interval": self._growth_interval,
                "_growth_tracker": self._get_growth_tracker()}  # fmt: skip

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not self._enabled:
            return
        if len(state_dict) == 0:
            raise RuntimeError(
                "The source state dict is empty, possibly because it was saved from a "
                "disabled instance of GradScaler."
            )
        self._init_scale = float(state_dict["scale"])
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._init_growth_tracker = int(state_dict["_growth_tracker"])
        if self._scale is not None:
            self._lazy_init(self._ops)
