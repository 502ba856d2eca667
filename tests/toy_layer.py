"""A whole new layer in one file: the worked example of CONTRIBUTING.md.

``Scale`` multiplies each feature by a learned weight and by a fixed ``slope``:
``Y = slope * X * w``. Nothing else in gpunet names it: registering it makes it
saveable, ``forward_pass`` gives it the graph, the graph-free step, ``predict``
and every device.
"""

from __future__ import annotations

from typing import Any

import gpunet as gn
from gpunet.layers import spec


@spec.register
class Scale(gn.layers.Layer):
    CONFIG = {"slope": spec.Float(-1e6, 1e6)}  # config field -> type, for saved files

    def __init__(self, slope: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.slope = float(slope)

    def weight_specs(self, input_shape: Any) -> list[spec.WeightSpec]:
        return [spec.WeightSpec("w", (input_shape[-1],), "ones")]

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Any]:
        w, slope = self.w, self.slope
        Y = X * (slope * w.data)

        def backprop(dY: Any, need_dX: bool) -> Any:
            gn.layers.base.add_grad(w, ops.sum_to_shape(dY * X * slope, w.shape))
            return dY * (slope * w.data) if need_dX else None

        return Y, backprop
