"""The autograd side of the layer protocol: how a ``forward_pass``/``backprop`` pair
becomes one graph node, and how ``backprop`` hands over weight gradients (in place into
the optimizer's flat buffer when it can)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gpunet.autograd import Tensor, needs_grad, record
from gpunet.layers.spec import snake_case as _snake

Backprop = Callable[[Any, bool], Any]  # backprop(dY, need_dX) -> dX (None if not needed)


def add_grad(p: Any, g: Any) -> None:
    """Add the gradient ``g`` of weight ``p`` (written in place into its flat buffer
    slot by the op when ``g`` came from :func:`grad_out`)."""
    if p is None or not p.requires_grad:
        return
    if g is p._gbuf and p._grad is None:  # the op wrote it in place: nothing to add
        p._grad = g
    else:
        p.accumulate_grad(g)


def grad_out(p: Any) -> Any:
    """Where an op may write ``p``'s gradient directly (its empty flat-buffer slot)."""
    if p is None or not p.requires_grad or p._grad is not None:
        return None
    return p._gbuf


def penalties(layer: Any) -> None:
    """Append the regularization losses of ``layer``'s own weights to ``layer.losses``."""
    for p in layer._params:
        if p.regularizer is not None:
            layer.losses.append(p.regularizer(p))


def record_pass(layer: Any, inputs: Any, training: bool, **mask: Any) -> Any:
    """Run ``layer.forward_pass`` on tensors as one graph node (the autograd driver);
    ``mask=`` goes on to a ``forward_pass`` that takes it."""
    ops = layer.ops
    penalties(layer)
    multi = isinstance(inputs, list)
    xs: list[Tensor] = inputs if multi else [inputs]
    X = [x.data for x in xs] if multi else inputs.data
    prob = layer.prob_activation
    from gpunet.mixed_precision import layer_pass  # the dtype policy's casts around it

    if prob is not None:  # keep the logits visible to a following cross-entropy
        Z, backprop = layer_pass(layer, ops, X, training, logits=True, **mask)
        from gpunet import functional as F

        kw = getattr(layer, "activation_kw", {})
        return F.activation(_node(layer, ops, Z, backprop, xs, multi), prob, **kw)
    Y, backprop = layer_pass(layer, ops, X, training, **mask)
    return _node(layer, ops, Y, backprop, xs, multi)


def _node(layer: Any, ops: Any, Y: Any, backprop: Backprop, xs: list[Tensor], multi: bool) -> Any:
    params = [p for p in layer._params if p.requires_grad]
    if not needs_grad(*xs, *params):
        return Tensor(Y, ops)
    need_dX = any(x.requires_grad for x in xs)
    pad = (None,) * len(params)  # the weights' gradients are added by backprop itself

    def backward(dY: Any) -> tuple[Any, ...]:
        dX = backprop(dY, need_dX)
        return (*dX, *pad) if multi else (dX, *pad)

    return record(Y, ops, (*xs, *params), backward, _snake(type(layer).__name__))
