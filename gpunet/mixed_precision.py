"""Mixed precision, Keras 3 spelling: dtype policies and where low precision runs.

A policy has a ``variable_dtype`` (the weights: float32 master weights under a mixed
policy) and a ``compute_dtype`` (the activations: float16 or bfloat16). A layer under a
mixed policy takes its inputs in the compute dtype and gives its outputs in it; its
gradients flow back in it too (which is why float16 needs loss scaling: see
``gn.optimizers.LossScaleOptimizer``); weight gradients land in the float32 flat buffer
of the optimizer, whose state is float32.

What runs where. The compute dtype is where values are *stored* between layers,
forward and backward. The GEMMs of a layer (dense, the convolutions' im2col and 1x1
products, the recurrent input and per-step products, attention's scores and weighted
values, and all their backward products) run in the compute dtype on a device: on
CuPy as float16 matmuls, which CuPy hands to ``cublasGemmEx`` with half inputs and
output and ``CUBLAS_COMPUTE_32F`` (tensor cores, float32 accumulation, one rounding at
the output); bfloat16 the same through ``ml_dtypes`` where the installed CuPy's matmul
takes it (CuPy 14 does), else in float32 with the same roundings. The simulated device
computes that model exactly (operands and output rounded, products summed in float32).
The rest of a layer's arithmetic is float32 (``float32`` weights, inputs widened). On
the CPU all of it is float32: NumPy has no half-precision BLAS (a float16 512-cubed
matmul is ~200x slower than float32), so there low precision is storage only.
Softmax, log-softmax, normalization statistics, losses, reductions and the optimizer
update are float32 in every case, as Keras and PyTorch's autocast keep them. NumPy has
no bfloat16 dtype (``ml_dtypes`` adds one): bfloat16 is stored as float32 arrays
holding values rounded to bfloat16 (round to nearest even, bit for bit what a cast to
bfloat16 gives), on every device, and so is float16 on the simulated device, which has
no float16; ``CupyOps`` refuses bfloat16 arrays with an error that says so.

Threads: ``set_global_policy`` sets the process-wide default, as Keras does (a lock
makes it atomic); ``policy_scope`` overrides it for the calling thread only. A layer
takes the policy in force when it is created.

Example:
    >>> import gpunet as gn
    >>> gn.mixed_precision.set_global_policy("mixed_float16")
    >>> layer = gn.layers.Dense(4)
    >>> layer.compute_dtype, layer.variable_dtype
    ('float16', 'float32')
    >>> gn.mixed_precision.set_global_policy("float32")
    >>> gn.mixed_precision.global_policy()
    <DTypePolicy "float32">
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from gpunet import config
from gpunet.errors import InvalidParameterError

# name -> (compute dtype, variable dtype)
POLICIES = {
    "float32": ("float32", "float32"),
    "float64": ("float64", "float64"),
    "float16": ("float16", "float16"),
    "mixed_float16": ("float16", "float32"),
    "mixed_bfloat16": ("bfloat16", "float32"),
}
LOW = ("float16", "bfloat16")


class DTypePolicy:
    """A dtype policy (Keras 3's ``keras.DTypePolicy``): ``"float32"``,
    ``"mixed_float16"``, ``"mixed_bfloat16"``, ``"float16"`` or ``"float64"``.

    Example:
        >>> p = DTypePolicy("mixed_bfloat16")
        >>> p.name, p.compute_dtype, p.variable_dtype
        ('mixed_bfloat16', 'bfloat16', 'float32')
    """

    def __init__(self, name: Any = None) -> None:
        name = config.floatx() if name is None else name
        if not isinstance(name, str):
            name = np.dtype(name).name
        if name not in POLICIES:
            raise InvalidParameterError(
                f"unknown dtype policy {name!r}; expected one of {', '.join(POLICIES)} "
                "(a pure bfloat16 policy is not supported: use 'mixed_bfloat16')"
            )
        self._name = name
        self._compute, self._variable = POLICIES[name]

    name = property(lambda self: self._name)
    compute_dtype = property(lambda self: self._compute)
    variable_dtype = property(lambda self: self._variable)

    @property
    def is_mixed(self) -> bool:
        return self._compute != self._variable

    def get_config(self) -> dict[str, Any]:
        return {"name": self._name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DTypePolicy:
        return cls(config["name"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DTypePolicy) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self._name)

    def __repr__(self) -> str:
        return f'<DTypePolicy "{self._name}">'


Policy = DTypePolicy  # the Keras 2 name


class _Thread(threading.local):
    def __init__(self) -> None:
        self.scoped: list[DTypePolicy] = []
        self.autocast: list[Any] = []  # gn.autocast's (dtype, device type) or None


_thread = _Thread()
_lock = threading.Lock()
_default: list[DTypePolicy | None] = [None]  # None: follow gn.config.floatx()


def set_global_policy(policy: Any) -> None:
    """Set the policy of layers created from now on, in every thread (Keras: global).

    ``None`` goes back to ``gn.config.floatx()``.
    """
    value = None if policy is None else _as_policy(policy)
    with _lock:
        _default[0] = value


def global_policy() -> DTypePolicy:
    """The policy new layers of this thread get."""
    if _thread.scoped:
        return _thread.scoped[-1]
    with _lock:
        value = _default[0]
    return value if value is not None else DTypePolicy(config.floatx())


class policy_scope:
    """Context manager: ``global_policy()`` is ``policy`` in this thread inside it."""

    def __init__(self, policy: Any) -> None:
        self.policy = _as_policy(policy)

    def __enter__(self) -> DTypePolicy:
        _thread.scoped.append(self.policy)
        return self.policy

    def __exit__(self, *exc: object) -> None:
        _thread.scoped.pop()


def _as_policy(value: Any) -> DTypePolicy:
    if isinstance(value, DTypePolicy):
        return value
    if isinstance(value, dict) and "config" in value:  # Keras' serialized form
        value = value["config"].get("name")
    return DTypePolicy(value)


def dtype_arg(dtype: Any) -> Any:
    """A PyTorch-style ``dtype=`` (``gn.float16``, ``"float32"``) or a saved policy name,
    as ``Layer`` takes it."""
    if dtype is None or (isinstance(dtype, str) and dtype in POLICIES):
        return dtype
    return np.dtype(dtype).name


def resolve(dtype: Any) -> DTypePolicy:
    """A layer's policy from its ``dtype=`` argument (None: the global policy)."""
    return global_policy() if dtype is None else _as_policy(dtype)


# -- storage of low-precision values -------------------------------------------------
def storage_dtype(ops: Any, compute: str) -> str:
    """The dtype of this device's arrays that hold values of dtype ``compute``."""
    if compute == "float16" and ops.name != "array_api_strict":
        return "float16"
    return "float32" if compute in LOW else compute


def round_to(ops: Any, X: Any, compute: str) -> Any:
    """``X`` (a float array) stored as ``compute`` values on this device."""
    xp = ops.xp
    store = storage_dtype(ops, compute)
    if store != "float32" or compute not in LOW:
        dt = ops.dtype(store)
        if X.dtype == dt:
            return X
        with np.errstate(over="ignore"):  # overflow to inf is what loss scaling detects
            return xp.astype(X, dt)
    X = X if X.dtype == ops.dtype("float32") else xp.astype(X, ops.dtype("float32"))
    if xp is np:
        if compute == "bfloat16":
            return bfloat16_round(X)
        with np.errstate(over="ignore"):
            return X.astype(np.float16).astype(X.dtype)
    return _round_arith(xp, X, compute)  # the simulated device: no bit casts there


def rounded(ops: Any, X: Any, compute: str) -> Any:
    """``X`` rounded to ``compute`` values, as a float32 array (what a low-precision
    GEMM takes and gives, widened)."""
    with np.errstate(over="ignore", invalid="ignore"):  # inf is what loss scaling detects
        Y = round_to(ops, X, compute)
    f32 = ops.dtype("float32")
    return Y if Y.dtype == f32 else ops.xp.astype(Y, f32)


def bfloat16_round(X: np.ndarray) -> np.ndarray:
    """float32 ``X`` rounded to bfloat16 (nearest, ties to even; NaN stays NaN), as float32.

    Example:
        >>> bfloat16_round(np.array([1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8], "float32")).tolist()
        [1.0, 1.015625]
    """
    U = np.ascontiguousarray(X, dtype=np.float32).view(np.uint32)
    R = (U + (np.uint32(0x7FFF) + ((U >> np.uint32(16)) & np.uint32(1)))) & np.uint32(0xFFFF0000)
    R = np.where(np.isnan(X), U | np.uint32(0x00400000), R)  # quiet NaN, never rounded to inf
    return R.astype(np.uint32).view(np.float32).reshape(np.shape(X))


def _round_arith(xp: Any, X: Any, compute: str) -> Any:
    """Rounding to ``compute`` in float32 arithmetic (Veltkamp's split keeps the top
    ``p`` bits, to nearest), for namespaces with no bit casts."""
    bits = 11 if compute == "float16" else 8
    c = X * float(2 ** (24 - bits) + 1)
    hi = c - (c - X)
    hi = xp.where(xp.isfinite(c), hi, X)  # |X| near float32's max: c overflowed
    if compute == "float16":
        tiny = float(2.0**-24)  # float16's subnormal step
        sub = xp.round(X / tiny) * tiny
        hi = xp.where(xp.abs(X) < float(2.0**-14), sub, hi)
        inf = xp.full_like(X, float("inf"))
        hi = xp.where(xp.abs(X) >= 65520.0, xp.where(X > 0, inf, -inf), hi)
    return hi


def widen(ops: Any, X: Any) -> Any:
    """``X`` as a float32 array for the arithmetic inside a layer (float16 widened;
    bfloat16 is stored in float32 arrays already)."""
    if isinstance(X, list):
        return [widen(ops, x) for x in X]
    if not is_half(X):  # float32 and float64 stay as they are
        return X
    return ops.xp.astype(X, ops.dtype("float32"))


def is_half(X: Any) -> bool:
    """Whether ``X`` holds float16 (a dtype the simulated device does not even name)."""
    return str(X.dtype).rsplit(".", 1)[-1] == "float16"


def _is_float(ops: Any, X: Any) -> bool:
    return bool(ops.xp.isdtype(X.dtype, "real floating"))


def _store(ops: Any, X: Any, compute: str) -> Any:
    if X is None:
        return None
    if isinstance(X, list):
        return [_store(ops, x, compute) for x in X]
    return round_to(ops, X, compute) if _is_float(ops, X) else X


# -- the layer pass under a policy or autocast ---------------------------------------
def autocasting() -> bool:
    """Whether this thread is inside an enabled ``gn.autocast``."""
    stack = _thread.autocast
    return bool(stack) and stack[-1] is not None


def compute_of(layer: Any) -> str | None:
    """The low-precision dtype ``layer``'s outputs are stored in (None: as it is)."""
    stack = _thread.autocast
    if stack and stack[-1] is not None:
        from gpunet import amp

        return amp.autocast_rule(layer, *stack[-1])
    policy = layer.__dict__.get("_dtype_policy")
    return policy.compute_dtype if policy is not None and policy.is_mixed else None


def layer_pass(layer: Any, ops: Any, X: Any, training: bool, **kw: Any) -> tuple[Any, Any]:
    """``layer.forward_pass`` under the layer's policy (or the thread's autocast):
    inputs widened to float32, outputs and input gradients stored in the compute dtype,
    output gradients taken in it."""
    compute = compute_of(layer)
    if compute is None and autocasting():  # a layer on neither list: its inputs' dtype
        from gpunet import amp

        if isinstance(X, list) or not is_half(X) or not amp.follows_input(layer):
            return layer.forward_pass(ops, X, training, **kw)
        compute = "float16"  # a norm layer answers in its input's dtype (stats float32)
    if compute is None:  # a float32 layer after low-precision ones takes float32 inputs
        keep = getattr(layer, "keeps_input_dtype", False)  # gn.nn's weightless modules
        if not keep and not isinstance(X, list) and X.dtype != (dt := ops.dtype(layer.dtype)):
            X = ops.xp.astype(X, dt) if _is_float(ops, X) else X
        return layer.forward_pass(ops, X, training, **kw)
    if compute == "float32":  # autocast's float32 list (softmax, layer norm...)
        return layer.forward_pass(ops, widen(ops, X), training, **kw)
    from gpunet.backend._amp_ops import gemm_dtype

    gemm = compute if ops.lowp_gemm else None  # the layer's GEMMs, on a device
    with gemm_dtype(gemm):
        Y, backprop = layer.forward_pass(ops, widen(ops, _store(ops, X, compute)), training, **kw)

    def backprop_low(dY: Any, need_dX: bool) -> Any:
        with gemm_dtype(gemm):
            dX = backprop(widen(ops, _store(ops, dY, compute)), need_dX)
        return _store(ops, dX, compute)

    return _store(ops, Y, compute), backprop_low


def loss_input(y_pred: Any) -> Any:
    """Model outputs (tensors) for the loss and metrics, which run in float32: Keras
    casts ``y_pred`` to the loss dtype; autocast has losses on its float32 list."""
    if isinstance(y_pred, (list, tuple)):
        return type(y_pred)(loss_input(y) for y in y_pred)
    if isinstance(y_pred, dict):
        return {k: loss_input(v) for k, v in y_pred.items()}
    if getattr(y_pred, "ops", None) is None or not is_half(y_pred):
        return y_pred
    from gpunet.functional import cast

    return cast(y_pred, "float32")


__all__ = [
    "DTypePolicy",
    "Policy",
    "global_policy",
    "policy_scope",
    "set_global_policy",
]


def __getattr__(name: str) -> Any:
    if name == "LossScaleOptimizer":  # Keras exports it here too
        from gpunet.optimizers.loss_scale import LossScaleOptimizer

        return LossScaleOptimizer
    raise AttributeError(f"module 'gpunet.mixed_precision' has no attribute {name!r}")
