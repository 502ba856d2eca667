"""``TimeDistributed``: one layer applied to every step of a sequence (Keras)."""

from __future__ import annotations

import dataclasses
from typing import Any

from gpunet import functional as F
from gpunet.autograd import Tensor
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers import _masks, spec
from gpunet.layers.base import Backprop, Layer


@spec.register
class TimeDistributed(Layer):
    """Apply ``layer`` to each step of ``(batch, time, ...)`` inputs, with the same
    weights at every step: the steps are folded into the batch, so one call of
    ``layer`` (one GEMM for ``Dense``) covers them all. The input's mask passes on.

    Args:
        layer: The layer to apply (its weights are this layer's weights).

    Example:
        >>> import numpy as np, gpunet as gn
        >>> td = gn.layers.TimeDistributed(gn.layers.Dense(4))
        >>> td(np.ones((2, 5, 3))).shape, td.layer.kernel.shape
        ((2, 5, 4), (3, 4))
    """

    CONFIG = {"layer": spec.Nested()}
    supports_masking = True

    def __init__(self, layer: Layer, **kwargs: Any) -> None:
        layer = spec.layer_of(layer)
        if not isinstance(layer, Layer):
            raise InvalidParameterError(
                f"TimeDistributed wraps a gpunet layer, got {type(layer).__name__}"
            )
        super().__init__(**kwargs)
        self.layer = layer

    def _inner(self, input_shape: Any) -> tuple[Any, ...]:
        if not isinstance(input_shape, tuple) or len(input_shape) < 3:
            raise InputValidationError(
                f"layer {self.name!r} expects inputs of shape (batch, time, ...), "
                f"got shape {input_shape!r}"
            )
        B, T = input_shape[0], input_shape[1]
        return (None if B is None or T is None else B * T, *input_shape[2:])

    def build(self, input_shape: Any) -> None:
        inner = self._inner(tuple(input_shape))
        if not self.layer.built:
            self.layer.built_input_shape = inner
            self.layer.build(inner)
            self.layer.built = True

    def weight_specs(self, input_shape: Any) -> list[spec.WeightSpec]:
        specs = self.layer.weight_specs(self._inner(tuple(input_shape)))
        return [dataclasses.replace(w, name=f"layers.0.{w.name}") for w in specs]  # its sublayer

    def compute_output_shape(self, input_shape: Any) -> Any:
        out = self.layer.compute_output_shape(self._inner(tuple(input_shape)))
        return (input_shape[0], input_shape[1], *out[1:])

    def check_input(self, inputs: Any) -> None:
        if isinstance(inputs, Tensor):
            self._inner(tuple(inputs.shape))

    @property
    def runs_on_arrays(self) -> bool:
        return bool(self.layer.built and self.layer.runs_on_arrays)

    def _step_mask(self, xp: Any, mask: Any) -> dict[str, Any]:
        """The mask for the layer inside: each step's (Keras gives ``mask[:, t]`` to a
        layer whose call takes a mask), folded into the batch as the steps are."""
        if mask is None or not _masks.takes_mask(self.layer):
            return {}
        return {"mask": xp.reshape(mask, (-1, *tuple(mask.shape)[2:]))}

    def call(self, inputs: Tensor, training: bool = False, mask: Any = None) -> Tensor:
        B, T = inputs.shape[0], inputs.shape[1]
        x = F.reshape(inputs, (B * T, *inputs.shape[2:]))
        y = self.layer(x, training=training, **self._step_mask(inputs.ops.xp, mask))
        return F.reshape(y, (B, T, *y.shape[1:]))

    def forward_pass(
        self, ops: Any, X: Any, training: bool, mask: Any = None
    ) -> tuple[Any, Backprop]:
        xp = ops.xp
        B, T, rest = X.shape[0], X.shape[1], tuple(X.shape[2:])
        kw = self._step_mask(xp, mask)
        Y, backprop_inner = self.layer.forward_pass(
            ops, xp.reshape(X, (B * T, *rest)), training, **kw
        )
        out = tuple(Y.shape[1:])

        def backprop(dY: Any, need_dX: bool) -> Any:
            dX = backprop_inner(xp.reshape(dY, (B * T, *out)), need_dX)
            return None if dX is None else xp.reshape(dX, (B, T, *rest))

        return xp.reshape(Y, (B, T, *out)), backprop

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg["layer"] = {"class_name": type(self.layer).__name__, "config": self.layer.get_config()}
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        config = dict(config)
        inner = config.pop("layer")
        inner_cls: Any = spec.LAYERS[inner["class_name"]]
        return cls(inner_cls.from_config(inner["config"]), **config)
