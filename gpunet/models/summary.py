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


def _rows(model: Any) -> list[tuple[str, ...]]:
    """One row per layer; for a functional model one per input and per layer call,
    with the tensors each call reads (Keras' "Connected to" column)."""
    nodes = getattr(model, "_nodes", None)
    if nodes is None:
        rows: list[tuple[str, ...]] = [("Layer (type)", "Output Shape", "Param #")]
        for layer in model.layers:
            n = sum(int(np.prod(p.shape)) for p in layer.weights)
            label = f"{layer.name} ({type(layer).__name__})"
            rows.append((label, _shape(layer.output_shape), f"{n:,}"))
        return rows
    from gpunet.engine import functional

    rows = [("Layer (type)", "Output Shape", "Param #", "Connected to")]
    rows += [(f"{t.name} (InputLayer)", _shape(t.shape), "0", "-") for t in model.inputs]
    counted: set[int] = set()
    for node in nodes:
        layer = node.layer
        n = 0 if id(layer) in counted else sum(int(np.prod(p.shape)) for p in layer.weights)
        counted.add(id(layer))  # a shared layer's weights are counted at its first call
        reads = ", ".join(t.name for t in functional.parents(node))  # initial_state too
        shape = [t.shape for t in node.siblings] if node.siblings else node.shape
        rows.append((f"{layer.name} ({type(layer).__name__})", _shape(shape), f"{n:,}", reads))
    return rows


def summary_lines(model: Any) -> list[str]:
    rows = _rows(model)
    cols = len(rows[0])
    widths = [max(len(r[i]) for r in rows) + 2 for i in range(cols)]
    widths = [max(w, m) for w, m in zip(widths, (30, 22, 10, 20)[:cols], strict=True)]
    line = "─" * sum(widths)

    def fmt(r: tuple[str, ...]) -> str:
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
