"""Losses (Keras names and classes). Each is one fused graph op that returns the
loss and, in the same call, its gradient.

A sigmoid or softmax output followed by its cross-entropy is computed from the
logits (gradient ``p - y``), never as exp-then-log: the output tensor remembers
its logits, and the loss uses them when ``from_logits=False``.

Example:
    >>> import numpy as np, gpunet as gn
    >>> loss = gn.losses.get("mse")
    >>> float(loss(np.array([[1.0]]), np.array([[3.0]])))
    4.0
"""

from __future__ import annotations

from numbers import Number
from typing import Any

import numpy as np

from gpunet import config
from gpunet import functional as F
from gpunet.autograd import Tensor, as_tensor, record
from gpunet.errors import InputValidationError, InvalidParameterError

REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


class Loss:
    """Base: ``loss(y_true, y_pred, sample_weight=None) -> Tensor``.

    Subclass it as in Keras: define ``call(y_true, y_pred)`` returning one value per
    sample (with ``gn.ops``, so gradients flow); the base class applies the sample
    weights and the reduction.

    Args:
        reduction: ``"sum_over_batch_size"`` (the default) or ``"mean"``: the weighted
            sum over the number of values; ``"sum"``; ``"mean_with_sample_weight"``:
            the weighted sum over the sum of the weights; ``"none"`` or None: the
            weighted values themselves.
        name: the loss's name.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> class MyMSE(gn.losses.Loss):
        ...     def call(self, y_true, y_pred):
        ...         return gn.ops.mean(gn.ops.square(y_true - y_pred), axis=-1)
        >>> float(MyMSE()(np.array([[0.0], [1.0]]), np.array([[1.0], [3.0]]), [1.0, 0.5]))
        1.5
    """

    name = "loss"
    kind = ""  # the backend op of the probability / regression path

    def __init__(
        self, reduction: str | None = "sum_over_batch_size", name: str | None = None,
        dtype: Any = None,
    ) -> None:  # fmt: skip
        if reduction not in REDUCTIONS:
            raise InvalidParameterError(
                f"unknown reduction {reduction!r}; expected one of "
                f"{', '.join(map(repr, REDUCTIONS))}"
            )
        self.reduction = reduction
        self.name = name or self.name
        self.dtype = dtype

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Tensor:
        if not isinstance(y_pred, Tensor):
            y_pred = as_tensor(np.asarray(y_pred, dtype=self.dtype or config.floatx()), _cpu())
        mask = y_pred._keras_mask  # a sequence output's (batch, time) mask (Keras)
        if mask is not None and y_pred.ndim == mask.ndim + 1:
            from gpunet.layers import _masks

            return _masks.masked_loss(self, y_true, y_pred, sample_weight, mask)  # type: ignore[no-any-return]
        if self._custom:
            return self._reduce(
                self._values(y_true, y_pred), self._sample_weight(sample_weight, y_pred)
            )
        if y_pred.ndim == 1:
            y_pred = F.reshape(y_pred, (-1, 1))
        T = self.target(y_true, y_pred)
        w = self._sample_weight(sample_weight, y_pred)
        if self.reduction in ("none", None):
            out = self._per_sample(y_pred, T)
            return out if w is None else F.mul(out, w)
        B = y_pred.shape[0]
        if self.reduction == "sum":
            scale: Any = 1.0 if w is None else w
        elif self.reduction == "mean_with_sample_weight" and w is not None:
            xp = y_pred.ops.xp
            total = xp.sum(w)
            scale = xp.where(total != 0, w / xp.where(total != 0, total, 1.0), 0.0 * w)
        else:
            scale = 1.0 / max(B, 1) if w is None else w * (1.0 / max(B, 1))
        return self.compute(y_pred, T, scale)

    @property
    def _custom(self) -> bool:
        return type(self).call is not Loss.call or not self.kind

    def call(self, y_true: Any, y_pred: Any) -> Tensor:
        """One loss value per sample (Keras' ``Loss.call``); subclasses override it."""
        if not self.kind:
            raise NotImplementedError(
                f"{type(self).__name__} must define call(self, y_true, y_pred) returning "
                "one loss value per sample"
            )
        y_pred = y_pred if isinstance(y_pred, Tensor) else as_tensor(np.asarray(y_pred), _cpu())
        if y_pred.ndim == 1:
            y_pred = F.reshape(y_pred, (-1, 1))
        return self._per_sample(y_pred, self.target(y_true, y_pred))

    def _sample_weight(self, sample_weight: Any, y_pred: Tensor) -> Any:
        """Sample weights as a device array of ``y_pred``'s dtype, one per row."""
        if sample_weight is None:
            return None
        w = sample_weight.data if isinstance(sample_weight, Tensor) else sample_weight
        B = y_pred.shape[0] if y_pred.ndim else 1
        if hasattr(w, "__array_interface__") or isinstance(w, (list, tuple, int, float)):
            w = np.asarray(w, dtype=y_pred.dtype)
            if w.ndim == 0:
                w = np.full(B, float(w), dtype=y_pred.dtype)
            w = y_pred.ops.asarray(w)
        w = y_pred.ops.xp.astype(w, y_pred.dtype)
        if w.ndim > 1 and w.size == B:
            w = y_pred.ops.xp.reshape(w, (B,))
        if w.shape[0] != B:
            raise InputValidationError(f"sample_weight has {w.shape[0]} entries for a batch of {B}")
        return w

    # -- subclasses' call(): values, then Keras' weighting and reduction --------------
    def _values(self, y_true: Any, y_pred: Tensor) -> Tensor:
        from gpunet import kops

        yt = (
            y_true
            if isinstance(y_true, Tensor)
            else Tensor(_device_array(y_true, y_pred), y_pred.ops)
        )
        out = self.call(kops.cast(yt, y_pred.dtype), kops.convert_to_tensor(y_pred))
        if not isinstance(out, Tensor):
            raise InvalidParameterError(
                f"loss {self.name!r} must return a tensor (build it with gn.ops so gradients "
                f"flow), got {type(out).__name__}"
            )
        return out

    def _reduce(self, V: Tensor, w: Any) -> Tensor:
        """Keras' ``reduce_weighted_values`` on the values of ``call``."""
        if w is not None:
            W = Tensor(w, V.ops)
            if V.ndim > 1:  # (B, ...) values, (B,) weights: one weight per row
                W = F.reshape(W, (w.shape[0], *(1,) * (V.ndim - 1)))
            V = F.mul(V, W)
        if self.reduction in ("none", None) or V.ndim == 0:
            return V
        total = F.sum(V)
        if self.reduction == "sum":
            return total
        if self.reduction == "mean_with_sample_weight" and w is not None:
            divisor = V.ops.xp.sum(w)
            return F.mul(total, V.ops.xp.where(divisor != 0, 1.0 / divisor, 0.0))
        return F.mul(total, 1.0 / max(int(np.prod(V.shape)), 1))

    # -- the parts subclasses choose ----------------------------------------------------
    def target(self, y_true: Any, y_pred: Tensor) -> Any:
        """``y_true`` as a device array shaped like ``y_pred``."""
        T = _device_array(y_true, y_pred)
        if T.ndim == 1 and y_pred.shape[-1] == 1:
            T = y_pred.ops.xp.reshape(T, (-1, 1))
        if tuple(T.shape) != y_pred.shape:
            raise InputValidationError(
                f"{self.name}: y_true has shape {tuple(T.shape)} but the model output has "
                f"shape {y_pred.shape}"
            )
        return T

    def compute(self, y_pred: Tensor, T: Any, scale: Any) -> Tensor:
        """``sum_i scale_i * L_i``: ``fit``'s step, with ``scale`` the per-sample
        weights over the (global) batch size."""
        if self._custom:
            return self._compute_call(y_pred, T, scale)
        return F.fused_loss(self.kind, y_pred, T, scale, **self.kwargs())

    def _compute_call(self, y_pred: Tensor, T: Any, scale: Any) -> Tensor:
        V = self._values(T, y_pred)
        xp, B = y_pred.ops.xp, y_pred.shape[0]
        if V.ndim == 0:  # one value for the whole batch stands for every sample
            return F.mul(V, float(scale) * B if isinstance(scale, (int, float)) else xp.sum(scale))
        if V.shape[0] != B:
            raise InputValidationError(
                f"loss {self.name!r} returned shape {V.shape} for a batch of {B}: expected "
                "one value per sample (or a scalar)"
            )
        per = V if V.ndim == 1 else F.mean(V, axis=tuple(range(1, V.ndim)))
        if isinstance(scale, Number):
            return F.mul(F.sum(per), scale)
        return F.sum(F.mul(per, xp.reshape(scale, (-1,))))

    def kwargs(self) -> dict[str, Any]:
        return {}

    def _per_sample(self, y_pred: Tensor, T: Any) -> Tensor:
        ops = y_pred.ops
        L, dP = getattr(ops, self.kind)(y_pred.data, T, scale=1.0, **self.kwargs())
        xp = ops.xp
        return record(L, ops, (y_pred,), lambda g: (dP * xp.reshape(g, (-1, 1)),), self.kind)

    def get_config(self) -> dict[str, Any]:
        return {"reduction": self.reduction, "name": self.name}


class MeanSquaredError(Loss):
    name, kind = "mean_squared_error", "mean_squared_error"


class MeanAbsoluteError(Loss):
    name, kind = "mean_absolute_error", "mean_absolute_error"


class Huber(Loss):
    name, kind = "huber_loss", "huber"

    def __init__(self, delta: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if delta <= 0:
            raise InvalidParameterError(f"Huber delta must be > 0, got {delta!r}")
        self.delta = float(delta)

    def kwargs(self) -> dict[str, Any]:
        return {"delta": self.delta}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "delta": self.delta}


class Poisson(Loss):
    name, kind = "poisson", "poisson"

    def kwargs(self) -> dict[str, Any]:
        return {"epsilon": config.epsilon()}


class _CrossEntropy(Loss):
    fused = ""  # the activation whose logits this loss fuses with
    logits_kind = ""

    def __init__(
        self, from_logits: bool = False, label_smoothing: float = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= label_smoothing <= 1.0:
            raise InvalidParameterError(
                f"label_smoothing must be in [0, 1], got {label_smoothing!r}"
            )
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(label_smoothing)

    def compute(self, y_pred: Tensor, T: Any, scale: Any) -> Tensor:
        logits = self._logits(y_pred)
        if logits is not None:
            return F.fused_loss(
                self.logits_kind, logits, T, scale, label_smoothing=self.label_smoothing
            )
        _check_probabilities(self.name, y_pred)
        return F.fused_loss(
            self.kind,
            y_pred,
            T,
            scale,
            epsilon=config.epsilon(),
            label_smoothing=self.label_smoothing,
        )

    def _per_sample(self, y_pred: Tensor, T: Any) -> Tensor:
        ops = y_pred.ops
        logits = self._logits(y_pred)
        src, kind = (logits, self.logits_kind) if logits is not None else (y_pred, self.kind)
        kw: dict[str, Any] = {"label_smoothing": self.label_smoothing}
        if logits is None:
            _check_probabilities(self.name, y_pred)
            kw["epsilon"] = config.epsilon()
        L, dP = getattr(ops, kind)(src.data, T, scale=1.0, **kw)
        xp = ops.xp
        return record(L, ops, (src,), lambda g: (dP * xp.reshape(g, (-1, 1)),), kind)

    def _logits(self, y_pred: Tensor) -> Tensor | None:
        if self.from_logits:
            return y_pred
        link = y_pred._logits
        return link[0] if link is not None and link[1] == self.fused else None

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
        }


class BinaryCrossentropy(_CrossEntropy):
    name, kind, fused, logits_kind = (
        "binary_crossentropy",
        "binary_cross_entropy",
        "sigmoid",
        "sigmoid_cross_entropy",
    )

    def target(self, y_true: Any, y_pred: Tensor) -> Any:
        if _is_host(y_true):
            y = np.asarray(y_true)
            if y.size and (np.nanmin(y) < 0 or np.nanmax(y) > 1):
                raise InputValidationError(
                    f"{self.name}: y_true must be in [0, 1], got values in "
                    f"[{np.nanmin(y):g}, {np.nanmax(y):g}]"
                )
        return super().target(y_true, y_pred)


class CategoricalCrossentropy(_CrossEntropy):
    name, kind, fused, logits_kind = (
        "categorical_crossentropy",
        "categorical_cross_entropy",
        "softmax",
        "softmax_cross_entropy",
    )

    def target(self, y_true: Any, y_pred: Tensor) -> Any:
        T = _device_array(y_true, y_pred)
        if T.ndim != 2 or T.shape[1] != y_pred.shape[-1]:
            raise InputValidationError(
                f"{self.name}: y has {T.shape[-1] if T.ndim else 1} columns but the output "
                f"layer has {y_pred.shape[-1]} units; one-hot encode y, or use "
                "sparse_categorical_crossentropy for integer labels"
            )
        return T


class SparseCategoricalCrossentropy(_CrossEntropy):
    """Cross-entropy with integer class labels of shape ``(batch,)``."""

    name, fused = "sparse_categorical_crossentropy", "softmax"
    kind, logits_kind = "categorical_cross_entropy", "softmax_cross_entropy"

    def target(self, y_true: Any, y_pred: Tensor) -> Any:
        C = y_pred.shape[-1]
        ops = y_pred.ops
        if _is_host(y_true):
            y = check_labels(np.asarray(y_true), C, name=self.name)
            labels = ops.asarray(y.reshape(-1), dtype="int64")
        else:
            labels = y_true.data if isinstance(y_true, Tensor) else y_true
            labels = ops.xp.reshape(ops.xp.astype(labels, ops.dtype("int64")), (-1,))
        if labels.shape[0] != y_pred.shape[0]:
            raise InputValidationError(
                f"{self.name}: {labels.shape[0]} labels for {y_pred.shape[0]} predictions"
            )
        return labels

    def compute(self, y_pred: Tensor, T: Any, scale: Any) -> Tensor:
        logits = self._logits(y_pred)
        if logits is not None:  # integer labels straight into the fused kernel
            return F.fused_loss(
                "sparse_softmax_cross_entropy",
                logits,
                T,
                scale,
                label_smoothing=self.label_smoothing,
            )
        return super().compute(y_pred, self._onehot(T, y_pred), scale)

    def _per_sample(self, y_pred: Tensor, T: Any) -> Tensor:
        return super()._per_sample(y_pred, self._onehot(T, y_pred))

    def _onehot(self, labels: Any, y_pred: Tensor) -> Any:
        return y_pred.ops.onehot(labels, y_pred.shape[-1], y_pred.dtype)


def check_labels(y: np.ndarray, n_classes: int, *, name: str, sequence: bool = False
                 ) -> np.ndarray:  # fmt: skip
    """Integer class labels in ``[0, n_classes)``, checked on the host (one per step,
    ``(n, time)``, for a ``sequence`` output)."""
    if y.ndim == 1 + sequence + 1 and y.shape[-1] == 1:
        y = y[..., 0]
    if y.ndim != 1 + sequence:
        raise InputValidationError(
            f"{name}: expected integer labels of shape {('(n, time)' if sequence else '(n,)')}, "
            f"got shape {y.shape}; "
            "for one-hot targets use categorical_crossentropy"
        )
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)):
            raise InputValidationError(f"{name}: y contains NaN or infinity")
        if np.any(y != np.round(y)):
            bad = y[y != np.round(y)][0]
            raise InputValidationError(f"{name}: labels must be integers, got {bad!r}")
    elif y.dtype.kind not in "iub":
        raise InputValidationError(f"{name}: labels must be integers, got dtype {y.dtype}")
    if y.size:
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= n_classes:
            bad = lo if lo < 0 else hi
            raise InputValidationError(
                f"y contains label {bad} outside [0, {n_classes}) "
                f"(the output layer has {n_classes} units)"
            )
    return y.astype(np.int64)


def _check_probabilities(name: str, y_pred: Tensor) -> None:
    ops = y_pred.ops
    xp = ops.xp
    bad = xp.any((y_pred.data < 0) | (y_pred.data > 1))
    if ops.to_host(bad):
        lo, hi = ops.to_host(xp.min(y_pred.data)), ops.to_host(xp.max(y_pred.data))
        raise InputValidationError(
            f"{name}: y_pred must be probabilities in [0, 1] when from_logits=False, "
            f"got values in [{lo:g}, {hi:g}]; pass from_logits=True if the model "
            "outputs logits"
        )


def _is_host(y: Any) -> bool:
    return isinstance(y, (np.ndarray, list, tuple, int, float, np.generic))


def _device_array(y: Any, like: Tensor) -> Any:
    if isinstance(y, Tensor):
        return as_tensor(y, like.ops).data
    if _is_host(y):
        return like.ops.asarray(np.asarray(y, dtype=like.dtype))
    return like.ops.xp.astype(y, like.dtype)


def _cpu() -> Any:
    from gpunet.backend import get_ops

    return get_ops("cpu")


_REGISTRY: dict[str, Any] = {
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError,
    "mae": MeanAbsoluteError,
    "huber": Huber,
    "huber_loss": Huber,
    "poisson": Poisson,
    "binary_crossentropy": BinaryCrossentropy,
    "bce": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}
CLASSES = {cls.__name__: cls for cls in set(_REGISTRY.values())}


def get(spec: Any) -> Loss:
    """A loss from a name, an instance, or a callable ``f(y_true, y_pred) -> Tensor``."""
    if isinstance(spec, Loss):
        return spec
    if isinstance(spec, str) and spec in _REGISTRY:
        return _REGISTRY[spec]()  # type: ignore[no-any-return]
    if isinstance(spec, str):
        raise InvalidParameterError(
            f"unknown loss {spec!r}; expected one of {', '.join(sorted(_REGISTRY))}"
        )
    if callable(spec):
        return _FunctionLoss(spec)
    raise InvalidParameterError(f"loss must be a name, a Loss or a callable, got {spec!r}")


class _FunctionLoss(Loss):
    """A function ``f(y_true, y_pred)`` used as a loss (Keras' ``LossFunctionWrapper``):
    targets and predictions of ranks one apart are matched first, as Keras does."""

    def __init__(self, fn: Any, reduction: str | None = "sum_over_batch_size") -> None:
        super().__init__(reduction=reduction, name=getattr(fn, "__name__", "loss"))
        self.fn = fn

    def call(self, y_true: Any, y_pred: Any) -> Tensor:
        y_true, y_pred = _same_rank(y_true, y_pred)
        return self.fn(y_true, y_pred)  # type: ignore[no-any-return]


def _same_rank(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Keras' ``squeeze_or_expand_to_same_rank``."""
    from gpunet import kops

    if a.ndim == b.ndim + 1 and a.shape[-1] == 1:
        return (a, kops.expand_dims(b, -1)) if b.ndim == 1 else (kops.squeeze(a, -1), b)
    if b.ndim == a.ndim + 1 and b.shape[-1] == 1:
        return (kops.expand_dims(a, -1), b) if a.ndim == 1 else (a, kops.squeeze(b, -1))
    return a, b
