"""One training step on arrays, for any model whose layers follow the protocol.

``Layer.forward_pass(ops, X, training)`` gives each layer's output and its backprop;
a step is the model's pass, the loss on arrays, and the backprop called once, with no
Tensor or Node objects, no topological sort and no per-layer call bookkeeping. It makes
the same backend calls as the autograd graph (which records the same pairs), so both
give bit-identical results; at tutorial sizes (10-64-32-1, batch 32) the graph's
bookkeeping costs more than the arithmetic. ``fit``, ``train_on_batch``, the
scikit-learn estimators and the distributed strategies all train through it; a model
it cannot run (a layer written with tensor ops in ``call``, a loss defined on tensors,
NaN probing) trains on the graph instead.

Example:
    >>> import numpy as np, gpunet as gn
    >>> from gpunet.engine import step
    >>> model = gn.Sequential([gn.layers.Dense(3, activation="softmax", input_shape=(2,))])
    >>> model.compile(optimizer="sgd", loss="categorical_crossentropy")
    >>> step.plan(model).head
    ('softmax_cross_entropy', {'label_smoothing': 0.0}, 'softmax')
"""

from __future__ import annotations

from numbers import Number
from typing import Any

from gpunet import losses as L
from gpunet.engine import sequence
from gpunet.layers.base import call_hooks
from gpunet.mixed_precision import widen

Head = tuple[str, dict[str, Any], str | None]  # (backend loss op, its kwargs, folded act)


class Step:
    """The forward, loss and backward of ``model`` on arrays."""

    def __init__(self, model: Any, head: Head | None) -> None:
        self.model, self.ops = model, model.ops
        self.head = head
        self.penalized = [p for p in model.weights if p.regularizer is not None]
        self.mask: Any = None  # the output's mask in the last step (None when none)

    def predict(self, X: Any) -> Any:
        """The inference-mode output for a batch ``X`` (what ``model(x)`` returns)."""
        return self.model.forward_pass(self.ops, X, False)[0]

    def __call__(
        self, X: Any, T: Any, scale: Any, training: bool, grad_scale: Any = None
    ) -> tuple[Any, Any]:
        """One step's forward and backward; returns ``(loss, y_pred)`` as arrays
        (``y_pred`` is None when a folded activation is not needed by any metric).

        Gradients land in each weight's ``.grad`` (the optimizer's flat buffer);
        ``grad_scale`` (a loss scale: float or 0-d device array) multiplies them.
        """
        assert self.head is not None, "an inference-only plan has no loss"
        ops, xp = self.ops, self.ops.xp
        op, kw, folded = self.head
        model = self.model
        masked = getattr(model, "forward_masked", None)  # a Sequential: its output's mask
        logits = {} if folded is None else {"logits": True}  # logits in, p - y out
        if masked is not None:
            Y, backprop, self.mask = masked(ops, X, training, **logits)
        else:
            Y, backprop = model.forward_pass(ops, X, training, **logits)
        y_pred = Y
        if folded is not None:
            y_pred = ops.activation(folded, Y) if model.compiled_metrics else None
        Y = widen(ops, Y)  # losses run in float32 under a mixed policy
        if sequence.is_sequence(Y, T):  # (batch, time, units): a row per step
            shape = tuple(Y.shape)
            scale = sequence.scale_rows(ops, shape, scale, self.mask)
            loss_vec, dY = getattr(ops, op)(xp.reshape(Y, (-1, shape[-1])), sequence.rows(ops, T),
                                            scale=scale, **kw)  # fmt: skip
            dY = xp.reshape(dY, shape)
        else:
            loss_vec, dY = getattr(ops, op)(Y, T, scale=scale, **kw)
        if grad_scale is not None:
            dY = dY * grad_scale
        total = xp.sum(loss_vec) * scale if isinstance(scale, Number) else xp.sum(loss_vec * scale)
        backprop(dY, False)
        if self.penalized:
            total = self._penalties(total)
        return total, y_pred

    def _penalties(self, total: Any) -> Any:
        """Add the weights' penalties to the loss and their gradients to the weights'
        (each process adds its share under a strategy; the allreduce sums them)."""
        xp = self.ops.xp
        share = 1.0 / self.model.strategy.size
        for p in self.penalized:
            value = p.regularizer.value(xp, p.data)
            total = total + (value if share == 1.0 else value * share)
            if p.requires_grad:
                g = p.regularizer.grad(xp, p.data)
                p.accumulate_grad(g if share == 1.0 else g * share)
        return total


def loss_head(loss: Any, prob_activation: str | None) -> Head | None:
    """How ``loss`` runs on arrays after an output whose activation is
    ``prob_activation``, or None when it is defined on tensors only."""
    if loss.reduction != "sum_over_batch_size":
        return None
    if isinstance(loss, L._CrossEntropy):
        if type(loss).compute not in (L._CrossEntropy.compute, _SPARSE_COMPUTE):
            return None
        kw = {"label_smoothing": loss.label_smoothing}
        logits_op = (
            "sparse_softmax_cross_entropy"
            if isinstance(loss, L.SparseCategoricalCrossentropy)
            else loss.logits_kind
        )
        if loss.from_logits:
            return logits_op, kw, None
        if prob_activation == loss.fused:
            return logits_op, kw, loss.fused
        return None  # probabilities from elsewhere: the graph validates and clips them
    if (
        type(loss).compute is L.Loss.compute
        and type(loss).__call__ is L.Loss.__call__
        and loss.kind
    ):
        return loss.kind, loss.kwargs(), None
    return None


_SPARSE_COMPUTE = L.SparseCategoricalCrossentropy.compute


def plan(model: Any, training: bool = True) -> Step | None:
    """The graph-free step for ``model`` (inference only when ``training`` is False:
    no loss needed), or None when the model needs the graph."""
    if call_hooks or not getattr(model, "runs_on_arrays", False):
        return None
    if not training:
        return Step(model, None)
    loss = model.compiled_loss
    if loss is None:
        return None
    prob = model.prob_activation
    if prob is not None and getattr(model, "activation_kw", {}):
        prob = None  # e.g. softmax over another axis: no fused loss for it
    head = loss_head(loss, prob)
    return None if head is None else Step(model, head)
