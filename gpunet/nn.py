"""PyTorch spellings over gpunet layers and losses, for code written as in a
PyTorch tutorial: ``nn.Module`` with ``forward``, ``nn.Sequential(nn.Linear(10, 64),
nn.ReLU(), ...)``, ``nn.CrossEntropyLoss()``. Losses take ``(input, target)``.

Example:
    >>> import numpy as np
    >>> from gpunet import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> net(np.zeros((2, 4))).shape
    (2, 3)
"""

from __future__ import annotations

from typing import Any

from gpunet import losses
from gpunet.autograd import Tensor
from gpunet.layers import Activation, BatchNormalization, Dense, Flatten
from gpunet.layers import Dropout as _Dropout
from gpunet.layers import LayerNormalization as _LayerNorm
from gpunet.models import Model
from gpunet.models import Sequential as _Sequential

Module = Model


class Sequential(_Sequential):
    """``nn.Sequential(layer, layer, ...)``: layers as positional arguments."""

    def __init__(self, *layers: Any) -> None:
        super().__init__(list(layers))

    def forward(self, x: Any) -> Any:
        return self.call(x)


def Linear(in_features: int, out_features: int, bias: bool = True) -> Dense:
    """``nn.Linear(in, out)``: a Dense layer of ``out`` units on ``in`` inputs.

    Note: the weight is stored as Keras does, ``kernel`` of shape ``(in, out)``.
    """
    return Dense(out_features, use_bias=bias, input_dim=in_features)


def _act(name: str) -> Any:
    def make(*args: Any, **kwargs: Any) -> Activation:
        return Activation(name)

    make.__name__ = name
    return make


ReLU = _act("relu")
Sigmoid = _act("sigmoid")
Tanh = _act("tanh")
GELU = _act("gelu")
SiLU = _act("swish")
ELU = _act("elu")
SELU = _act("selu")
Softplus = _act("softplus")


def LeakyReLU(negative_slope: float = 0.01) -> Activation:
    return Activation({"name": "leaky_relu", "alpha": float(negative_slope)})


def Softmax(dim: int = -1) -> Activation:
    return Activation({"name": "softmax", "axis": int(dim)})


def LogSoftmax(dim: int = -1) -> Activation:
    return Activation({"name": "log_softmax", "axis": int(dim)})


def Dropout(p: float = 0.5) -> _Dropout:
    return _Dropout(p)


def BatchNorm1d(num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> BatchNormalization:
    """PyTorch's momentum is the weight of the *new* value: 0.1 here is Keras' 0.9."""
    return BatchNormalization(momentum=1.0 - momentum, epsilon=eps, input_dim=num_features)


def LayerNorm(normalized_shape: int, eps: float = 1e-5) -> _LayerNorm:
    return _LayerNorm(epsilon=eps, input_dim=int(normalized_shape))


class _TorchLoss:
    """A loss called as ``loss(input, target)``, PyTorch's argument order."""

    def __init__(self, loss: losses.Loss) -> None:
        self.loss = loss

    def __call__(self, input: Tensor, target: Any) -> Tensor:
        return self.loss(target, input)


class _CrossEntropy(_TorchLoss):
    """Integer class labels ``(B,)``, or class probabilities ``(B, C)``, as PyTorch takes."""

    def __init__(self, label_smoothing: float) -> None:
        sparse = losses.SparseCategoricalCrossentropy
        super().__init__(sparse(from_logits=True, label_smoothing=label_smoothing))
        self.dense = losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=label_smoothing
        )

    def __call__(self, input: Tensor, target: Any) -> Tensor:
        shape = tuple(getattr(target, "shape", ()))
        if len(shape) == 2 and shape[1] == input.shape[-1] and shape[1] > 1:
            return self.dense(target, input)
        return self.loss(target, input)


def CrossEntropyLoss(label_smoothing: float = 0.0) -> _TorchLoss:
    """Softmax cross-entropy of logits against class labels or class probabilities.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> logits = gn.tensor(np.array([[2.0, 0.0], [0.0, 2.0]]))
        >>> loss = gn.nn.CrossEntropyLoss()
        >>> bool(np.isclose(loss(logits, np.array([0, 1])).item(),
        ...                 loss(logits, np.eye(2)).item()))
        True
    """
    return _CrossEntropy(label_smoothing)


def MSELoss() -> _TorchLoss:
    return _TorchLoss(losses.MeanSquaredError())


def L1Loss() -> _TorchLoss:
    return _TorchLoss(losses.MeanAbsoluteError())


def HuberLoss(delta: float = 1.0) -> _TorchLoss:
    return _TorchLoss(losses.Huber(delta=delta))


def BCELoss() -> _TorchLoss:
    return _TorchLoss(losses.BinaryCrossentropy())


def BCEWithLogitsLoss() -> _TorchLoss:
    return _TorchLoss(losses.BinaryCrossentropy(from_logits=True))


__all__ = [
    "ELU",
    "GELU",
    "SELU",
    "BCELoss",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "HuberLoss",
    "L1Loss",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MSELoss",
    "Module",
    "ReLU",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
]
