"""The text table of ``model.summary()``."""

from __future__ import annotations

from typing import Any

import numpy as np


def _shape(s: Any) -> str:
    if s is None:
        return "?"
    if isinstance(s, list):
        return ", ".join(_shape(v) for v in s)
    return str((None, *s[1:]))


def summary_lines(model: Any) -> list[str]:
    rows = [("Layer (type)", "Output Shape", "Param #")]
    for layer in model.layers:
        n = sum(int(np.prod(p.shape)) for p in layer.weights)
        rows.append(
            (f"{layer.name} ({type(layer).__name__})", _shape(layer.output_shape), f"{n:,}")
        )
    widths = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
    widths = [max(w, m) for w, m in zip(widths, (30, 22, 10), strict=True)]
    line = "─" * sum(widths)

    def fmt(r: tuple[str, str, str]) -> str:
        return "".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()

    total = model.count_params()
    trainable = int(sum(int(np.prod(p.shape)) for p in model.trainable_weights))
    out = [f'Model: "{model.name}" (device: {model.device})', line, fmt(rows[0]), line]
    out += [fmt(r) for r in rows[1:]]
    out += [
        line,
        f"Total params: {total:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {total - trainable:,}",
        line,
    ]
    if not model.built:
        out.insert(1, "(not built yet: call fit, predict or the model once to see shapes)")
    return out
