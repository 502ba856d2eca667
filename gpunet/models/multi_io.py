"""Functional models with several inputs or outputs in ``fit``/``evaluate``/``predict``,
as Keras does it: ``x`` and ``y`` as lists (in the model's order) or dicts (by input
or output name) of arrays; one loss per output, weighted by ``loss_weights`` and
summed; metrics per output, logged as ``<output>_<metric>`` beside ``<output>_loss``.

Data of several arrays travels as a Python list of arrays (in the model's order)
wherever one array would: ``each`` applies a row operation to every array of one,
``rows`` counts its rows, so batching and shuffling use one permutation for all.

Example:
    >>> import numpy as np, gpunet as gn
    >>> a, b = gn.Input(shape=(3,), name="a"), gn.Input(shape=(2,), name="b")
    >>> h = gn.layers.Concatenate()([a, b])
    >>> model = gn.Model([a, b], [gn.layers.Dense(1, name="price")(h),
    ...                           gn.layers.Dense(3, activation="softmax", name="kind")(h)])
    >>> model.compile("sgd", loss={"price": "mse", "kind": "sparse_categorical_crossentropy"},
    ...               loss_weights=[1.0, 0.5], metrics={"kind": ["accuracy"]})
    >>> x = {"a": np.ones((4, 3)), "b": np.zeros((4, 2))}
    >>> y = [np.ones(4), np.array([0, 1, 2, 1])]
    >>> logs = model.evaluate(x, y, verbose=0, return_dict=True)
    >>> sorted(logs)
    ['kind_accuracy', 'kind_loss', 'loss', 'price_loss']
    >>> [p.shape for p in model.predict(x)]
    [(4, 1), (4, 3)]
"""

from __future__ import annotations

from numbers import Number
from typing import Any

import numpy as np

from gpunet import functional as F
from gpunet import losses as losses_mod
from gpunet import metrics as metrics_mod
from gpunet.autograd import Tensor, no_grad
from gpunet.engine import sequence
from gpunet.engine.functional import SymbolicTensor, flatten
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.models import validation as data


# -- several arrays as one ---------------------------------------------------------------
def each(S: Any, f: Any) -> Any:
    """``f`` applied to the array ``S``, or to every array of the list ``S``."""
    return [f(A) for A in S] if isinstance(S, list) else f(S)


def rows(S: Any) -> int:
    return int((S[0] if isinstance(S, list) else S).shape[0])


def tensors(X: Any, ops: Any) -> Any:
    """The model's call argument for device data ``X`` (one array, or a list)."""
    return [Tensor(A, ops) for A in X] if isinstance(X, list) else Tensor(X, ops)


def forward(model: Any, X: Any, training: bool) -> Any:
    """``model`` on device data ``X``: one output as a tensor (``outputs=[y]`` too, as
    Keras fits it), several as they come (a list, or a dict)."""
    out = model(tensors(X, model.ops), training=training)
    if isinstance(out, list) and len(out) == 1 and not several(model, "outputs"):
        return out[0]
    return out


def structured(model: Any, arrays: list[Any]) -> Any:
    """Per-output ``arrays`` as a dict by output name when the model's outputs are one."""
    if isinstance(getattr(model, "_outputs_struct", None), dict):
        return dict(zip(names(model, "outputs"), arrays, strict=True))
    return arrays


def arrays_of(out: Any) -> Any:
    """The device arrays of a model's output: one, or a list in output order."""
    return out.data if isinstance(out, Tensor) else [t.data for t in flatten(out)]


# -- the model's inputs and outputs --------------------------------------------------------
def symbols(model: Any, which: str) -> list[SymbolicTensor] | None:
    """The model's ``Input`` (``which="inputs"``) or output tensors; None unless functional."""
    struct = getattr(model, f"_{which}_struct", None)
    return None if struct is None else flatten(struct)


def names(model: Any, which: str) -> list[str]:
    struct = getattr(model, f"_{which}_struct")
    if isinstance(struct, dict) and all(isinstance(v, SymbolicTensor) for v in struct.values()):
        return list(struct)  # Keras: a dict of outputs is named by its keys
    return [t.name for t in flatten(struct)]


def several(model: Any, which: str) -> bool:
    syms = symbols(model, which)
    return syms is not None and len(syms) > 1


def by_position(model: Any, value: Any, which: str, what: str) -> list[Any]:
    """``value`` (a list in the model's order, or a dict by name) as a list in order.

    Raises:
        InputValidationError: for the wrong number of arrays, an unknown or a missing name.
    """
    want = names(model, which)
    kind = which[:-1]
    if isinstance(value, dict):
        unknown = [k for k in value if k not in want]
        if unknown:
            raise InputValidationError(
                f"{what}: unknown {kind} name(s) {unknown}; model {model.name!r} has {which} {want}"
            )
        missing = [k for k in want if k not in value]
        if missing:
            raise InputValidationError(
                f"{what}: no array for {kind}(s) {missing} of model {model.name!r} "
                f"(it has {which} {want})"
            )
        return [value[k] for k in want]
    if not isinstance(value, (list, tuple)):
        shape = getattr(value, "shape", None)
        raise InputValidationError(
            f"{what}: model {model.name!r} has {len(want)} {which} {want}: pass a list of "
            f"{len(want)} arrays or a dict by name, got one {type(value).__name__}"
            + (f" of shape {tuple(shape)}" if shape is not None else "")
        )
    if len(value) != len(want):
        raise InputValidationError(
            f"{what}: model {model.name!r} has {len(want)} {which} {want}, got a "
            f"{type(value).__name__} of {len(value)} arrays"
        )
    return list(value)


def single(model: Any, value: Any, which: str) -> Any:
    """For a functional model of one input (output): ``[x]`` or ``{name: x}`` as ``x``."""
    if symbols(model, which) is None:
        return value
    if isinstance(value, dict) or (
        isinstance(value, (list, tuple)) and len(value) == 1 and hasattr(value[0], "shape")
    ):
        return by_position(model, value, which, "x" if which == "inputs" else "y")[0]
    return value


def one_output(model: Any, spec: Any, what: str) -> Any:
    """The loss (``[loss]``, ``{name: loss}``) or metrics (``{name: metrics}``) of a
    functional model of one output."""
    is_list = isinstance(spec, (list, tuple))
    if symbols(model, "outputs") is None or not (isinstance(spec, dict) or is_list):
        return spec
    if what == "metrics" and is_list:  # the metrics of its one output
        return spec
    value = per_output(spec, names(model, "outputs"), what)[0]
    if what == "metrics" and not isinstance(value, (list, tuple)):
        return [] if value is None else [value]
    return value


# -- validating data -------------------------------------------------------------------------
def inputs(model: Any, x: Any) -> list[np.ndarray]:
    """Every input array validated for its ``Input``: dtype, rank and shape."""
    syms = model.inputs
    given = [single(model, x, "inputs")] if len(syms) == 1 else by_position(model, x, "inputs", "x")
    arrays = []
    for sym, v in zip(syms, given, strict=True):
        arr = data.as_float_array(v, name=f"x[{sym.name!r}]", dtype=sym.dtype, ndim=None)
        if arr.ndim == sym.ndim - 1 and sym.shape[-1] == 1:  # Keras adds a trailing 1
            arr = arr.reshape(*arr.shape, 1)
        arrays.append(arr)
    model.check_input([A[:1] for A in arrays])
    return arrays


def _widths(model: Any, X: list[np.ndarray]) -> list[int]:
    """The last axis of every output (run once on a row when the graph does not know)."""
    outs: list[Any] = model.outputs
    if any(t.ndim > 1 and t.shape[-1] is None for t in outs):
        with no_grad():
            outs = flatten(model(tensors([A[:1] for A in X], model.ops), training=False))
    return [int(t.shape[-1]) if len(t.shape) > 1 else 1 for t in outs]


def prepare(model: Any, x: Any, y: Any, sample_weight: Any, class_weight: Any) -> Any:
    """``(X, Y, W)`` for a model of several inputs or outputs, each list in model order.

    Raises:
        InputValidationError: naming the input or output whose array is wrong.
    """
    X = inputs(model, x)
    if y is None:
        raise InputValidationError("y is required (targets for the loss)")
    loss = model.compiled_loss
    seqs = [t.ndim == 3 for t in model.outputs]  # (batch, time, units): targets per step
    model._seq_out = seqs[0]
    if not isinstance(loss, MultiLoss):
        model._n_outputs = _widths(model, X)[0]
        Y: Any = model._targets(single(model, y, "outputs"), model._n_outputs)
        Ys, what = [Y], ["y"]
    else:
        if class_weight is not None:
            raise InvalidParameterError(
                "class_weight is only supported for models with one output; "
                "pass sample_weight instead"
            )
        Y = Ys = [model._targets(v, n, loss=fn, name=f"y[{k!r}]", seq=q) for v, n, fn, k, q in zip(
            by_position(model, y, "outputs", "y"), _widths(model, X), loss.losses,
            loss.names, seqs, strict=True)]  # fmt: skip
        what = [f"output {k!r}" for k in loss.names]
    counts = [(f"input {t.name!r}", len(A)) for t, A in zip(model.inputs, X, strict=True)]
    counts += [(w, len(A)) for w, A in zip(what, Ys, strict=True)]
    if len({n for _, n in counts}) > 1:
        raise InputValidationError(
            "every array must hold the same number of samples (rows), got "
            + ", ".join(f"{w}: {n}" for w, n in counts)
        )
    n = counts[0][1]
    if isinstance(sample_weight, dict) or (  # one array per output (not one number per row)
        isinstance(sample_weight, (list, tuple)) and any(np.ndim(w) for w in sample_weight)
    ):
        per = by_position(model, sample_weight, "outputs", "sample_weight")
        return X, Y, [np.ones(n) if w is None else data.as_sample_weight(w, n) for w in per]
    return X, Y, model._weights(Ys[0], n, sample_weight, class_weight)


# -- compiling several outputs ---------------------------------------------------------------
def per_output(spec: Any, outs: list[str], what: str, broadcast: bool = True) -> list[Any]:
    """A compile argument as one value per output: a list in output order, a dict by
    output name (each present), or one value for every output (when ``broadcast``).

    Raises:
        InvalidParameterError: for a list of the wrong length or a wrong dict key.
    """
    if isinstance(spec, dict):
        bad = [k for k in spec if k not in outs]
        missing = [k for k in outs if k not in spec]
        if bad or (missing and what != "metrics"):
            raise InvalidParameterError(
                f"compile: {what} by output name needs the keys {outs}; "
                + (f"unknown {bad}" if bad else f"missing {missing}")
            )
        return [spec.get(k) for k in outs]
    if isinstance(spec, (list, tuple)):
        if len(spec) != len(outs):
            raise InvalidParameterError(
                f"compile: {what} must hold one entry per output ({len(outs)}: {outs}), "
                f"got {len(spec)}: {list(spec)!r}"
            )
        return list(spec)
    if not broadcast:
        raise InvalidParameterError(
            f"compile: for a model of {len(outs)} outputs {outs}, {what} must be a list or "
            f"a dict by output name, got {spec!r}"
        )
    return [spec] * len(outs)


def _weight(w: Any, name: str) -> float:
    if isinstance(w, bool) or not isinstance(w, Number) or not np.isfinite(float(w)):  # type: ignore[arg-type]
        raise InvalidParameterError(f"compile: loss_weights[{name!r}] must be a number, got {w!r}")
    return float(w)  # type: ignore[arg-type]


class MultiLoss:
    """The compiled loss of a model with several outputs (Keras' ``CompileLoss``):
    ``sum_i loss_weight_i * loss_i``, with a ``Mean`` of each unweighted ``loss_i``."""

    def __init__(self, model: Any, loss: Any, loss_weights: Any, metrics: Any) -> None:
        self.names = names(model, "outputs")
        if len(set(self.names)) != len(self.names):
            raise InvalidParameterError(
                f"model {model.name!r} has outputs of the same name {self.names}: give "
                "the layers that make them distinct names"
            )
        specs = per_output(loss, self.names, "loss")
        if any(s is None for s in specs):
            raise InvalidParameterError(f"compile: every output needs a loss, got loss={loss!r}")
        self.losses = [losses_mod.get(s) for s in specs]
        self.loss_weights = (
            [1.0] * len(self.names) if loss_weights is None else
            [_weight(w, k) for w, k in zip(per_output(loss_weights, self.names, "loss_weights",
                                                      False), self.names, strict=True)]
        )  # fmt: skip
        given = [] if metrics is None else per_output(metrics, self.names, "metrics", False)
        self.metric_specs = [
            [] if s is None else list(s) if isinstance(s, (list, tuple)) else [s]
            for s in (given or [None] * len(self.names))
        ]
        self.metrics = [[metrics_mod.get(m, fn) for m in s]
                        for s, fn in zip(self.metric_specs, self.losses, strict=True)]  # fmt: skip
        self.trackers = [metrics_mod.Mean(name=f"{k}_loss") for k in self.names]
        # Keras 3 lists the per-output losses in output order, then the metrics by name
        pairs = [(f"{k}_{m.name}", m) for k, ms in zip(self.names, self.metrics, strict=True)
                 for m in ms]  # fmt: skip
        pairs.sort(key=lambda pair: pair[0])
        self.all_metrics = [*self.trackers, *(m for _, m in pairs)]
        self.log_names = [f"{k}_loss" for k in self.names] + [n for n, _ in pairs]
        self.values: list[Tensor] = []
        self.name = "+".join(fn.name for fn in self.losses)

    def __call__(self, model: Any, b: Any, y_pred: Any) -> Tensor:
        weights = b.sw if isinstance(b.sw, list) else [b.sw] * len(self.losses)
        self.values = []
        total: Any = None
        for fn, w, T, P, sw in zip(self.losses, self.loss_weights, b.y, flatten(y_pred), weights,
                                   strict=True):  # fmt: skip
            scale = 1.0 / b.denom if sw is None else sw * (1.0 / b.denom)
            value = loss_value(fn, b, T, P, scale, model.ops, sw)
            self.values.append(value.detach())
            value = value if w == 1.0 else F.mul(value, w)
            total = value if total is None else F.add(total, value)
        return total  # type: ignore[no-any-return]

    def track(self, b: Any, y_pred: Any, ops: Any) -> None:
        for tracker, value in zip(self.trackers, self.values, strict=True):
            if b.n != b.denom:  # a shard's loss is its share of the global batch mean
                value = value * (b.denom / max(b.n, 1))
            tracker.update_state(value, weight=float(b.n))
        # unweighted, as Keras 3 updates its ``metrics`` (not its ``weighted_metrics``)
        for ms, T, P in zip(self.metrics, b.y, flatten(y_pred), strict=True):
            for m in ms:
                m.update_state(Tensor(T, ops), P.detach())


def loss_value(loss: Any, b: Any, T: Any, y_pred: Tensor, scale: Any, ops: Any,
               sw: Any) -> Tensor:  # fmt: skip
    """One loss on one batch: ``sum_i scale_i * L_i`` for targets ``T`` (validated and
    shaped for this loss once per fit, by ``DataMixin._targets``), ``sw`` its sample
    weights (``scale`` is ``sw`` over the global batch size)."""
    if sequence.is_sequence(y_pred, T):  # (batch, time, units): a row per step
        mask, shape = y_pred._keras_mask, y_pred.shape
        mean = loss.reduction in ("sum_over_batch_size", "mean")
        sw = sequence.sample_rows(ops, shape, sw, mask, mean, y_pred.dtype)
        scale = sequence.scale_rows(ops, shape, scale, mask)
        y_pred, T = sequence.rows(ops, y_pred), sequence.rows(ops, T)
    if isinstance(loss, losses_mod._FunctionLoss) or loss.reduction != "sum_over_batch_size":
        own = loss(Tensor(T, ops), y_pred, None if sw is None else Tensor(sw, ops))
        if own.ndim:  # reduction "none": the trainer takes the mean over the batch (Keras)
            from gpunet import functional as F

            own = F.mul(F.sum(own), 1.0 / max(b.denom, 1))
        elif b.n != b.denom and loss.reduction in ("sum_over_batch_size", "mean"):
            own = own * (b.n / b.denom)  # a shard's mean, weighed by its share of the batch
        return own  # type: ignore[no-any-return]
    out: Tensor = loss.compute(y_pred, T, scale)
    return out


def first_nonfinite_layer(model: Any, x: Any) -> str:
    """Re-run the batch's forward pass and name the first layer whose output is not
    finite (the dropout draws of the probe do not matter: we stop)."""
    from gpunet.autograd import Tensor, no_grad
    from gpunet.layers import base

    found: list[str] = []

    def probe(layer: Any, out: Any) -> None:
        if not found and isinstance(out, Tensor) and not model._finite(out):
            found.append(f"{type(layer).__name__} {layer.name!r}")

    base.call_hooks.append(probe)
    try:
        with no_grad():
            forward(model, x, training=True)
    finally:
        base.call_hooks.remove(probe)
    if found:
        return f"the first non-finite output came from layer {found[0]}"
    return "every layer output was finite, so the loss itself overflowed"
