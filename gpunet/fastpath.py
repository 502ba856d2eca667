"""A training step without a graph for the common case: a ``Sequential`` stack of
Dense, Dropout and Activation layers with a built-in loss.

It makes exactly the backend calls the autograd path makes (``ops.dense``, the
fused loss, ``ops.backprop_dense`` writing into the flat gradient buffer, ...), in
the same order, so its results are bit-identical to it; what it saves is the graph
itself: no Tensor or Node objects, no topological sort, no per-layer call
bookkeeping. At tutorial sizes (10-64-32-1, batch 32) that bookkeeping costs more
than the arithmetic. ``fit`` uses it when :func:`plan` accepts the model and
falls back to the graph otherwise (regularizers, batch norm, custom layers,
subclassed models).
"""

from __future__ import annotations

from numbers import Number
from typing import Any

from gpunet import losses as L
from gpunet.functional import PROB_ACTIVATIONS
from gpunet.layers import Activation, Dense, Dropout

# built-in losses: (backend op on probabilities/values, op on logits, fused activation)
_CROSS_ENTROPY = {
    L.BinaryCrossentropy: "sigmoid",
    L.CategoricalCrossentropy: "softmax",
    L.SparseCategoricalCrossentropy: "softmax",
}
_PLAIN = (L.MeanSquaredError, L.MeanAbsoluteError, L.Huber, L.Poisson)


class DenseStackStep:
    """Forward, loss and backward of a Dense/Dropout/Activation stack on arrays."""

    def __init__(
        self,
        model: Any,
        stages: list[tuple[Any, ...]],
        loss_op: str,
        loss_kw: dict[str, Any],
        out_act: tuple[str, dict[str, Any]] | None,
    ) -> None:
        self.model, self.ops = model, model.ops
        self.stages = stages
        self.loss_op, self.loss_kw = loss_op, loss_kw
        self.out_act = out_act  # the output activation folded into the loss

    def _forward(self, x: Any, training: bool, saved: list[Any]) -> Any:
        ops = self.ops
        h = x
        for st in self.stages:
            kind = st[0]
            if kind == "dense":
                b = st[2]
                Y, Z = ops.dense(h, st[1].data, None if b is None else b.data, st[3], **st[4])
                saved.append((h, Z, Y))
                h = Y
            elif kind == "dropout":
                if training and st[1]:
                    mask = ops.dropout_mask(h.shape, st[1], h.dtype)
                    h = h * mask
                    saved.append(mask)
                else:
                    saved.append(None)
            else:
                Y = ops.activation(st[1], h, **st[2])
                saved.append((h, Y))
                h = Y
        return h

    def predict(self, x: Any) -> Any:
        """The inference-mode output for a batch ``x`` (what ``model(x)`` returns)."""
        h = self._forward(x, False, [])
        if self.out_act is not None:
            h = self.ops.activation(self.out_act[0], h, **self.out_act[1])
        return h

    def __call__(self, x: Any, T: Any, scale: Any, training: bool) -> tuple[Any, Any]:
        """One step's forward and backward; returns ``(loss, y_pred)`` as arrays.

        Gradients land in each parameter's ``.grad`` (the optimizer's flat buffer).
        """
        ops, xp = self.ops, self.ops.xp
        saved: list[Any] = []
        h = self._forward(x, training, saved)
        loss_vec, g = getattr(ops, self.loss_op)(h, T, scale=scale, **self.loss_kw)
        total = xp.sum(loss_vec) * scale if isinstance(scale, Number) else xp.sum(loss_vec * scale)
        y_pred = h if self.out_act is None else None
        if self.out_act is not None and self.model.compiled_metrics:
            y_pred = ops.activation(self.out_act[0], h, **self.out_act[1])
        stages = self.stages
        for i in range(len(stages) - 1, -1, -1):
            st = stages[i]
            kind = st[0]
            if kind == "dense":
                W, b = st[1], st[2]
                X, Z, Y = saved[i]
                dX, dW, db = ops.backprop_dense(
                    g,
                    X,
                    W.data,
                    Z,
                    Y,
                    st[3],
                    need_dX=i > 0,
                    need_db=b is not None,
                    dW_out=_sink(W),
                    db_out=_sink(b),
                    **st[4],
                )
                _accumulate(W, dW)
                if b is not None:
                    _accumulate(b, db)
                g = dX
            elif kind == "dropout":
                if saved[i] is not None:
                    g = g * saved[i]
            else:
                g = ops.backprop_activation(st[1], g, saved[i][0], saved[i][1], **st[2])
        return total, y_pred


def _sink(p: Any) -> Any:
    if p is None or not p.requires_grad or p._grad is not None:
        return None
    return p._gbuf


def _accumulate(p: Any, g: Any) -> None:
    if not p.requires_grad:
        return
    if g is p._gbuf and p._grad is None:  # written in place by the op (the usual case)
        p._grad = g
    else:
        p.accumulate_grad(g)


def plan(model: Any, training: bool = True) -> DenseStackStep | None:
    """The graph-free step for ``model`` (inference only when ``training`` is
    False: no loss needed), or None when it needs the graph."""
    from gpunet.layers.base import call_hooks
    from gpunet.models import Sequential

    loss = model.compiled_loss
    if not isinstance(model, Sequential) or call_hooks or not model._layers:
        return None
    if type(model).call is not Sequential.call:
        return None
    if training and (
        (type(loss) not in _CROSS_ENTROPY and type(loss) not in _PLAIN)
        or loss.reduction != "sum_over_batch_size"
    ):
        return None
    if len({layer.dtype for layer in model._layers}) > 1:
        return None  # the graph path casts between layer dtypes; this one does not
    stages: list[tuple[Any, ...]] = []
    for layer in model._layers:
        if type(layer) is Dense and layer.activation_fn is None and layer.built:
            if any(p is not None and p.regularizer is not None for p in (layer.kernel, layer.bias)):
                return None
            act, kw = layer.activation_name or "linear", dict(layer.activation_kw)
            if act in PROB_ACTIVATIONS:  # as functional.dense: the logits stay visible
                stages.append(("dense", layer.kernel, layer.bias, "linear", {}))
                stages.append(("act", act, kw))
            else:
                stages.append(("dense", layer.kernel, layer.bias, act, kw))
        elif type(layer) is Dropout:
            stages.append(("dropout", layer.rate))
        elif type(layer) is Activation and layer.activation_fn is None:
            stages.append(("act", layer.activation_name or "linear", dict(layer.activation_kw)))
        else:
            return None
    if not training:
        return DenseStackStep(model, stages, "", {}, None)
    return _with_loss(model, stages, loss)


def _with_loss(model: Any, stages: list[tuple[Any, ...]], loss: Any) -> DenseStackStep | None:
    fused = _CROSS_ENTROPY.get(type(loss))
    if fused is None:  # regression losses take the output as it is
        return DenseStackStep(model, stages, loss.kind, loss.kwargs(), None)
    sparse = isinstance(loss, L.SparseCategoricalCrossentropy)
    kw = {"label_smoothing": loss.label_smoothing}
    logits_op = "sparse_softmax_cross_entropy" if sparse else loss.logits_kind
    if loss.from_logits:
        return DenseStackStep(model, stages, logits_op, kw, None)
    last = stages[-1]
    if last[0] == "act" and last[1] == fused and not last[2]:
        # the output activation folds into the loss: logits in, p - y out
        return DenseStackStep(model, stages[:-1], logits_op, kw, (fused, {}))
    return None  # probabilities from elsewhere: the graph path validates and clips them
