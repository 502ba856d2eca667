"""BatchNormalization and LayerNormalization (Keras arguments and defaults)."""

from __future__ import annotations

from typing import Any

from gpunet.autograd import Tensor
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers import spec
from gpunet.layers.base import Backprop, Layer, add_grad

_EPS = spec.Float(0.0, 1.0, above=True)


def _check_features(layer: Layer, x: Tensor, n: int) -> None:
    if x.ndim < 2 or x.shape[-1] != n:
        raise InputValidationError(
            f"layer {layer.name!r} expects inputs with {n} features on the last axis, "
            f"got shape {x.shape}"
        )


@spec.register
class BatchNormalization(Layer):
    """Normalise each feature with batch statistics while training, and with
    moving averages (``momentum``) in inference; then scale and shift.

    Args:
        momentum: Weight of the old value in the moving averages (Keras: 0.99).
        epsilon: Added to the variance (Keras: 1e-3).
        center: Learn the shift ``beta``.
        scale: Learn the scale ``gamma``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> y = gn.layers.BatchNormalization()(np.arange(6.0).reshape(3, 2), training=True)
        >>> np.round(y.numpy()[:, 0], 3)
        array([-1.225,  0.   ,  1.225], dtype=float32)
    """

    gamma: Any
    beta: Any
    moving_mean: Any
    moving_variance: Any
    CONFIG = {"momentum": spec.Float(0.0, 1.0), "epsilon": _EPS, "center": spec.Bool(),
              "scale": spec.Bool()}  # fmt: skip
    supports_masking = True  # Keras: passes the input mask on

    def __init__(
        self,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= momentum <= 1.0 or epsilon <= 0:
            raise InvalidParameterError(
                f"BatchNormalization needs 0 <= momentum <= 1 and epsilon > 0, "
                f"got momentum={momentum!r}, epsilon={epsilon!r}"
            )
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.unbiased_moving_variance = False
        self.center, self.scale = bool(center), bool(scale)
        if self.input_shape_hint is not None:
            self.build((None, *self.input_shape_hint))
            self.built = True

    def weight_specs(self, input_shape: Any) -> list[spec.WeightSpec]:
        n = (int(input_shape[-1]),)
        return [
            spec.WeightSpec("gamma", n, "ones", trainable=self.scale),
            spec.WeightSpec("beta", n, "zeros", trainable=self.center),
            spec.WeightSpec("moving_mean", n, "zeros", trainable=False),
            spec.WeightSpec("moving_variance", n, "ones", trainable=False),
        ]

    def check_input(self, x: Any) -> None:
        _check_features(self, x, self.gamma.shape[0])

    def forward_pass(
        self, ops: Any, X: Any, training: bool, mask: Any = None
    ) -> tuple[Any, Backprop]:
        g, b = self.gamma, self.beta
        # Keras 3: a frozen (trainable=False) layer normalises with its moving
        # statistics even while training, and leaves them unchanged
        training = training and self._trainable
        if training and mask is not None:
            return self._masked(ops, X, mask)
        if training:
            Y, Xhat, inv, mean, var = ops.batchnorm(X, g.data, b.data, epsilon=self.epsilon)
            n = 1
            for d in X.shape[:-1]:
                n *= d
            m = self.momentum
            # Keras 3 averages the batch (biased) variance; PyTorch's running_var is the
            # unbiased one, and gn.nn.BatchNorm1d asks for that
            if self.unbiased_moving_variance:
                var = var * (n / max(n - 1, 1))
            ops.assign(self.moving_mean.data, self.moving_mean.data * m + mean * (1.0 - m))
            ops.assign(self.moving_variance.data, self.moving_variance.data * m + var * (1.0 - m))
            backprop = ops.backprop_batchnorm
        else:
            Y, Xhat, inv = ops.batchnorm_inference(
                X,
                g.data,
                b.data,
                self.moving_mean.data,
                self.moving_variance.data,
                epsilon=self.epsilon,
            )
            backprop = ops.backprop_batchnorm_inference
        return Y, _affine_backprop(backprop, Xhat, inv, g, b)

    def _masked(self, ops: Any, X: Any, mask: Any) -> tuple[Any, Backprop]:
        """Training with a mask (Keras): the statistics over the real steps only, each
        sum over ``count + 1e-7`` as Keras'; every step is normalized with them."""
        xp, axes, m = ops.xp, tuple(range(X.ndim - 1)), self.momentum
        if mask.ndim != X.ndim - 1:
            raise InputValidationError(
                f"layer {self.name!r} takes a mask of one axis less than its input, got "
                f"a mask of shape {tuple(mask.shape)} for an input of shape {tuple(X.shape)}"
            )
        W = xp.astype(xp.reshape(mask, (*mask.shape, 1)), X.dtype)
        n = xp.sum(xp.broadcast_to(W, X.shape), axis=axes) + 1e-7
        mean = xp.sum(W * X, axis=axes) / n
        D = W * (X - mean)
        var = xp.sum(D * D, axis=axes) / n
        inv = 1.0 / xp.sqrt(var + self.epsilon)
        Xhat = (X - mean) * inv
        g, b = self.gamma, self.beta
        ops.assign(self.moving_mean.data, self.moving_mean.data * m + mean * (1.0 - m))
        ops.assign(self.moving_variance.data, self.moving_variance.data * m + var * (1.0 - m))

        def backprop(dY: Any, need_dX: bool) -> Any:
            add_grad(g, xp.sum(dY * Xhat, axis=axes))
            add_grad(b, xp.sum(dY, axis=axes))
            if not need_dX:
                return None
            G = dY * g.data
            d_var = -0.5 * inv**3 * xp.sum(G * (X - mean), axis=axes)
            d_mean = -inv * xp.sum(G, axis=axes) - 2.0 * d_var * xp.sum(D, axis=axes) / n
            return G * inv + W * (2.0 * d_var * (X - mean) + d_mean) / n

        return Xhat * g.data + b.data, backprop

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
        }


@spec.register
class LayerNormalization(Layer):
    """Normalise each sample over its last axis, then scale and shift.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> y = gn.layers.LayerNormalization(epsilon=1e-6)(np.array([[1.0, 3.0]]))
        >>> np.round(y.numpy(), 3)
        array([[-1.,  1.]], dtype=float32)
    """

    gamma: Any
    beta: Any
    CONFIG = {"epsilon": _EPS, "center": spec.Bool(), "scale": spec.Bool()}
    supports_masking = True  # Keras: passes the input mask on

    def __init__(
        self, epsilon: float = 1e-3, center: bool = True, scale: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if epsilon <= 0:
            raise InvalidParameterError(f"LayerNormalization epsilon must be > 0, got {epsilon!r}")
        self.epsilon, self.center, self.scale = float(epsilon), bool(center), bool(scale)
        if self.input_shape_hint is not None:
            self.build((None, *self.input_shape_hint))
            self.built = True

    def weight_specs(self, input_shape: Any) -> list[spec.WeightSpec]:
        n = (int(input_shape[-1]),)
        return [
            spec.WeightSpec("gamma", n, "ones", trainable=self.scale),
            spec.WeightSpec("beta", n, "zeros", trainable=self.center),
        ]

    def check_input(self, x: Any) -> None:
        _check_features(self, x, self.gamma.shape[0])

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        g, b = self.gamma, self.beta
        Y, Xhat, inv = ops.layernorm(X, g.data, b.data, epsilon=self.epsilon)
        return Y, _affine_backprop(ops.backprop_layernorm, Xhat, inv, g, b)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
        }


def _affine_backprop(backprop: Any, Xhat: Any, inv: Any, g: Any, b: Any) -> Backprop:
    gd = g.data

    def run(dY: Any, need_dX: bool) -> Any:
        dX, dg, db = backprop(dY, Xhat, inv, gd)
        add_grad(g, dg)
        add_grad(b, db)
        return dX

    return run
