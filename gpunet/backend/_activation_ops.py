"""Activations and their backprops, written once against ``self.xp``.

Every ``backprop_<name>(dY, X, Y)`` takes the forward input ``X`` and output ``Y``;
each reads only what makes it cheapest, and ``NEEDS_X`` lists those that read
``X`` (the others may be given ``X=None``, so a fused layer can drop ``X``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy

from gpunet.backend._special import erf

Array = Any

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_TANH_C = math.sqrt(2.0 / math.pi)

# activations whose backward needs the forward input X (the rest use Y only)
NEEDS_X = frozenset({"gelu", "swish", "silu", "softplus"})
ACTIVATIONS = (
    "linear",
    "relu",
    "leaky_relu",
    "elu",
    "selu",
    "gelu",
    "swish",
    "silu",
    "sigmoid",
    "tanh",
    "softplus",
    "softmax",
    "log_softmax",
    "exponential",
)


class ActivationOps:
    xp: Any

    def activation(self, name: str, X: Array, **kw: Any) -> Array:
        """Apply activation ``name`` (one of ``ACTIVATIONS``) to ``X``."""
        return getattr(self, _METHOD[name])(X, **kw)

    def backprop_activation(
        self, name: str, dY: Array, X: Array | None, Y: Array, **kw: Any
    ) -> Array:
        """Gradient of activation ``name`` given ``dY``, input ``X`` and output ``Y``."""
        return getattr(self, "backprop_" + _METHOD[name])(dY, X, Y, **kw)

    def bias_activation(
        self, Z: Array, b: Array | None, activation: str = "linear", **kw: Any
    ) -> tuple[Array, Array | None]:
        """``(Y, Zb)``: ``activation(Z + b)`` over a GEMM output ``Z (M, F)`` that the
        caller owns (the bias goes in place), and ``Zb = Z + b`` when the activation's
        backward reads it (``NEEDS_X``), else None. Backends with kernels make it one
        pass (a dense layer, a convolution, ``nn.Linear``). ``Z`` is consumed: what it
        holds afterwards differs between backends (``Z + b`` here, ``Y`` in a kernel)."""
        if b is not None and Z.dtype == b.dtype:
            Z += b
        elif b is not None:  # a float32 bias on a half GEMM output: the promoted sum
            Z = Z + b
        if activation == "linear":
            return Z, None
        return self.activation(activation, Z, **kw), (Z if activation in NEEDS_X else None)

    def backprop_bias_activation(
        self, dY: Array, Zb: Array | None, Y: Array, activation: str = "linear", *,
        need_db: bool = True, **kw: Any,
    ) -> tuple[Array, Array | None]:  # fmt: skip
        """``(dZ, db)`` of :meth:`bias_activation`: the gradient before the activation
        and the bias's (its sum over the rows; None unless ``need_db``)."""
        dZ = dY if activation == "linear" else self.backprop_activation(activation, dY, Zb, Y, **kw)
        return dZ, (self.xp.sum(dZ, axis=0) if need_db else None)

    def linear(self, X: Array) -> Array:
        return X

    def backprop_linear(self, dY: Array, X: Array | None, Y: Array) -> Array:
        return dY

    def relu(self, X: Array) -> Array:
        # NOTE: maximum propagates NaN, as the kernels do.
        return self.xp.maximum(X, 0.0)

    def backprop_relu(self, dY: Array, X: Array | None, Y: Array) -> Array:
        # The gradient at exactly 0 is 0, matching max(X, 0) (Keras, PyTorch).
        return dY * self.xp.astype(Y > 0, dY.dtype)

    def leaky_relu(self, X: Array, *, alpha: float = 0.2) -> Array:
        return self.xp.where(X > 0, X, X * alpha)

    def backprop_leaky_relu(
        self, dY: Array, X: Array | None, Y: Array, *, alpha: float = 0.2
    ) -> Array:
        # sign(Y) == sign(X) for alpha > 0, so Y is enough
        return self.xp.where(Y > 0, dY, dY * alpha)

    def elu(self, X: Array, *, alpha: float = 1.0) -> Array:
        xp = self.xp
        return xp.where(X > 0, X, alpha * xp.expm1(xp.minimum(X, 0.0)))

    def backprop_elu(self, dY: Array, X: Array | None, Y: Array, *, alpha: float = 1.0) -> Array:
        # for X <= 0: d/dX alpha*(exp(X)-1) = alpha*exp(X) = Y + alpha
        return self.xp.where(Y > 0, dY, dY * (Y + alpha))

    def selu(self, X: Array) -> Array:
        return SELU_SCALE * self.elu(X, alpha=SELU_ALPHA)

    def backprop_selu(self, dY: Array, X: Array | None, Y: Array) -> Array:
        return self.xp.where(Y > 0, dY * SELU_SCALE, dY * (Y + SELU_SCALE * SELU_ALPHA))

    # x * cdf(x) at x = -inf is -inf * 0 = NaN, but its limit and gradient are 0:
    # the x*cdf activations compute at x = 0 there instead (f(0) = 0), and their
    # backward zeroes the result, so no invalid operation ever happens.
    def _no_neg_inf(self, X: Array) -> Array:
        return self.xp.where(X == -math.inf, 0.0, X)

    def _zero_at_neg_inf(self, X: Array, dX: Array) -> Array:
        return self.xp.where(X == -math.inf, 0.0, dX)

    def gelu(self, X: Array, *, approximate: bool = False) -> Array:
        xp = self.xp
        X = self._no_neg_inf(X)
        if approximate:  # Hendrycks & Gimpel tanh form: https://arxiv.org/abs/1606.08415
            return 0.5 * X * (1.0 + xp.tanh(_TANH_C * (X + 0.044715 * X * X * X)))
        return 0.5 * X * (1.0 + erf(xp, X * _INV_SQRT2))

    def backprop_gelu(
        self, dY: Array, X: Array | None, Y: Array, *, approximate: bool = False
    ) -> Array:
        xp = self.xp
        assert X is not None
        X0 = self._no_neg_inf(X)
        if approximate:
            inner = _TANH_C * (X0 + 0.044715 * X0 * X0 * X0)
            t = xp.tanh(inner)
            dinner = _TANH_C * (1.0 + 3 * 0.044715 * X0 * X0)
            d = 0.5 * (1.0 + t) + 0.5 * X0 * (1.0 - t * t) * dinner
        else:
            cdf = 0.5 * (1.0 + erf(xp, X0 * _INV_SQRT2))
            d = cdf + X0 * (_INV_SQRT_2PI * xp.exp(-0.5 * X0 * X0))
        return dY * self._zero_at_neg_inf(X, d)

    def swish(self, X: Array) -> Array:
        X = self._no_neg_inf(X)
        return X * self.sigmoid(X)

    def backprop_swish(self, dY: Array, X: Array | None, Y: Array) -> Array:
        assert X is not None
        X0 = self._no_neg_inf(X)
        s = self.sigmoid(X0)
        return dY * self._zero_at_neg_inf(X, s * (1.0 + X0 * (1.0 - s)))

    def sigmoid(self, X: Array) -> Array:
        # exp(-|X|) never overflows: 1/(1+e) for X >= 0 and e/(1+e) below, so
        # sigmoid(-1e4) is 0 without a warning and tiny values keep full precision.
        xp = self.xp
        e = xp.exp(-xp.abs(X))
        return xp.where(X >= 0, 1.0, e) / (1.0 + e)

    def backprop_sigmoid(self, dY: Array, X: Array | None, Y: Array) -> Array:
        return dY * (Y * (1.0 - Y))

    def exponential(self, X: Array) -> Array:
        with numpy.errstate(over="ignore"):  # exp overflows to inf, its limit
            return self.xp.exp(X)

    def backprop_exponential(self, dY: Array, X: Array | None, Y: Array) -> Array:
        return dY * Y

    def tanh(self, X: Array) -> Array:
        return self.xp.tanh(X)

    def backprop_tanh(self, dY: Array, X: Array | None, Y: Array) -> Array:
        return dY * (1.0 - Y * Y)

    def softplus(self, X: Array) -> Array:
        # log(1 + e^X) = max(X, 0) + log1p(e^-|X|): exact for |X| >= 1e4 too
        xp = self.xp
        return xp.maximum(X, 0.0) + xp.log1p(xp.exp(-xp.abs(X)))

    def backprop_softplus(self, dY: Array, X: Array | None, Y: Array) -> Array:
        assert X is not None
        return dY * self.sigmoid(X)

    def softmax(self, X: Array, *, axis: int = -1) -> Array:
        xp = self.xp
        Z = X - self._finite_max(X, axis)
        E = xp.exp(Z)
        return E / xp.sum(E, axis=axis, keepdims=True)

    def backprop_softmax(self, dY: Array, X: Array | None, Y: Array, *, axis: int = -1) -> Array:
        return Y * (dY - self.xp.sum(dY * Y, axis=axis, keepdims=True))

    def log_softmax(self, X: Array, *, axis: int = -1) -> Array:
        xp = self.xp
        Z = X - self._finite_max(X, axis)
        return Z - xp.log(xp.sum(xp.exp(Z), axis=axis, keepdims=True))

    def backprop_log_softmax(
        self, dY: Array, X: Array | None, Y: Array, *, axis: int = -1
    ) -> Array:
        xp = self.xp
        return dY - xp.exp(Y) * xp.sum(dY, axis=axis, keepdims=True)

    def logsumexp(self, X: Array, *, axis: int = -1) -> Array:
        """log(sum(exp(X))) along ``axis``, kept as a size-1 axis."""
        xp = self.xp
        M = self._finite_max(X, axis)
        return M + xp.log(xp.sum(xp.exp(X - M), axis=axis, keepdims=True))

    def _finite_max(self, X: Array, axis: int) -> Array:
        # Shift by the row max only where it is finite (as scipy.special.logsumexp),
        # so a row of -inf gives -inf/NaN by the usual rules, never inf - inf.
        xp = self.xp
        if X.shape[axis] == 0:
            return xp.zeros_like(xp.sum(X, axis=axis, keepdims=True))
        M = xp.max(X, axis=axis, keepdims=True)
        return xp.where(xp.isfinite(M), M, 0.0)


_METHOD = {name: name for name in ACTIVATIONS} | {"silu": "swish"}
