"""``torch.nn.utils.clip_grad_norm_`` and ``clip_grad_value_``: rescale or clip
the ``.grad`` of parameters in place, before ``optimizer.step()``.

Example:
    >>> import gpunet as gn
    >>> w = gn.tensor([3.0, 4.0], requires_grad=True)
    >>> (w * w).sum().backward()
    >>> float(gn.nn.utils.clip_grad_norm_([w], 1.0))
    10.0
    >>> [round(v, 4) for v in w.grad.tolist()]
    [0.6, 0.8]
"""

from __future__ import annotations

import math
from typing import Any

from gpunet.autograd import Tensor


def _grads(parameters: Any) -> list[Tensor]:
    ps = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return [p for p in ps if p.grad is not None]


def clip_grad_norm_(parameters: Any, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: Any = None) -> Tensor:  # fmt: skip
    """Scale all gradients together so their joint ``norm_type`` norm is at most
    ``max_norm``; returns the norm before clipping (a 0-d tensor)."""
    ps = _grads(parameters)
    if not ps:
        from gpunet.backend import get_ops

        cpu = get_ops("cpu")
        return Tensor(cpu.asarray(0.0, dtype="float32"), cpu)
    ops = ps[0].ops
    xp = ops.xp
    nt = float(norm_type)
    gs = [p.grad.data for p in ps]  # type: ignore[union-attr]
    if math.isinf(nt):
        total = xp.max(xp.stack([xp.max(xp.abs(g)) for g in gs]))
    else:
        parts = xp.stack([xp.sum(xp.abs(g) ** nt) for g in gs])
        total = xp.sum(parts) ** (1.0 / nt)
    if error_if_nonfinite and not bool(ops.to_numpy(xp.isfinite(total))):
        raise RuntimeError(
            f"The total norm of order {nt} for gradients from `parameters` is non-finite, "
            "so it cannot be clipped; pass error_if_nonfinite=False to clip anyway"
        )
    coef = xp.minimum(float(max_norm) / (total + 1e-6), 1.0)
    for p in ps:
        g = p.grad.data  # type: ignore[union-attr]
        ops.assign(g, g * xp.astype(coef, g.dtype))
    return Tensor(total, ops)


def clip_grad_value_(parameters: Any, clip_value: float, foreach: Any = None) -> None:
    """Clip every gradient element to ``[-clip_value, clip_value]`` in place."""
    v = float(clip_value)
    for p in _grads(parameters):
        g = p.grad.data  # type: ignore[union-attr]
        p.ops.assign(g, p.ops.xp.clip(g, -v, v))
