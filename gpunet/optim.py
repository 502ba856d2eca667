"""PyTorch spellings of the optimizers: ``optim.Adam(model.parameters(), lr=1e-3)``
with PyTorch's defaults and conventions (epsilon inside the bias-corrected root,
``weight_decay`` as an L2 term added to the gradient; AdamW decouples it).

Example:
    >>> from gpunet import nn, optim
    >>> net = nn.Linear(3, 1)
    >>> opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    >>> opt.learning_rate
    0.1

Note: SGD keeps its momentum buffer as ``-lr * buf``, which matches PyTorch exactly
while ``lr`` is constant.
"""

from __future__ import annotations

from typing import Any

from gpunet import optimizers


def _params(params: Any) -> list[Any]:
    out = list(params)
    if out and isinstance(out[0], dict):  # parameter groups: one lr for all here
        out = [p for group in out for p in group["params"]]
    return out


class SGD(optimizers.SGD):
    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(lr, momentum=momentum, nesterov=nesterov, params=None)
        self.l2 = float(weight_decay)
        self.build(_params(params))


class Adam(optimizers.Adam):
    torch_eps = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr, beta_1=betas[0], beta_2=betas[1], epsilon=eps)
        self.l2 = float(weight_decay)
        self.build(_params(params))


class AdamW(optimizers.Adam):
    torch_eps = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(
            lr, beta_1=betas[0], beta_2=betas[1], epsilon=eps, weight_decay=weight_decay
        )
        self.build(_params(params))


class RMSprop(optimizers.RMSprop):
    """PyTorch RMSprop adds eps outside the root: close to Keras' inside form."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        super().__init__(lr, rho=alpha, momentum=momentum, epsilon=eps, centered=centered)
        self.build(_params(params))


class Adagrad(optimizers.Adagrad):
    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
    ) -> None:
        super().__init__(lr, initial_accumulator_value=initial_accumulator_value, epsilon=eps)
        self.build(_params(params))


__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "RMSprop"]
