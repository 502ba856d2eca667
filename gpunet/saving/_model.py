"""``save_model`` / ``load_model`` and ``save_weights`` / ``load_weights``."""

from __future__ import annotations

import os
from typing import Any

from gpunet import losses, optimizers
from gpunet import random as grandom
from gpunet.backend import get_ops
from gpunet.errors import GpunetError, InvalidParameterError, ModelFileError
from gpunet.layers import base, spec
from gpunet.models.multi_io import MultiLoss
from gpunet.saving import _container, _schema
from gpunet.saving import _tensors as T
from gpunet.saving.atomic import write_atomic

# the closed registry: a file's layer type selects one of these, nothing else
LAYER_CLASSES = spec.LAYERS


def document(kind: str, **fields: Any) -> dict[str, Any]:
    from gpunet import __version__

    return {"format": "gpunet", "format_version": 1, "gpunet_version": __version__,
            "kind": kind, **fields}  # fmt: skip


def read(source: Any, kinds: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Verify a file (a path, or the bytes of one) and check its document."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        where = "model data"
        doc, tensors = _container.unpack(bytes(source), where)
    else:
        where = repr(os.fspath(source))
        doc, tensors = _container.read(source)
    with T.in_file(where):
        doc = _schema.check_document(doc, kinds)
    return doc, tensors, where


def write(path: Any, doc: dict[str, Any], tensors: dict[str, Any]) -> None:
    folder = os.path.dirname(os.fspath(path))
    if folder:  # save_weights("./checkpoints/x") makes ./checkpoints, as TF Keras did
        os.makedirs(folder, exist_ok=True)
    write_atomic(path, _container.pack(doc, tensors))


# -- saving -------------------------------------------------------------------------------
def _input_shape(model: Any) -> list[int] | None:
    layers = model._layers
    if not layers:
        return None
    hint = layers[0].input_shape_hint
    if hint is not None and None not in hint:
        return list(hint)
    seen = getattr(model, "_build_input_shape", None)  # recorded by Sequential.build
    if seen is not None and None not in seen[1:] and len(seen) > 1:
        return list(seen[1:])
    if not model.weights:
        return None
    built = layers[0].built_input_shape  # the first layer was built by a call
    if isinstance(built, tuple) and len(built) > 1 and None not in built[1:]:
        return list(built[1:])
    raise InvalidParameterError(
        f"cannot tell the input shape of model {model.name!r}: pass input_shape=(...) to "
        "its first layer, or call the model on a batch before saving"
    )


def _metric_doc(m: Any) -> Any:
    """A compiled metric as the file stores it: its name, or a built-in class and config."""
    if isinstance(m, str):
        return m
    cls = type(m).__name__
    known: Any = _schema.METRIC_CLASSES.get(cls)
    if known is not type(m):
        raise _Unsavable(
            f"the metric {cls!r} is not one of gpunet's built-in metric classes",
            "compile with metric names or gpunet.metrics classes",
        )
    cfg: dict[str, Any] = {"name": m.name}
    if cls == "BinaryAccuracy":
        cfg["threshold"] = float(m.threshold)
    elif cls in ("Precision", "Recall"):
        cfg.update(thresholds=[float(t) for t in m.thresholds], from_logits=m.from_logits)
    elif cls == "AUC":
        cfg.update(num_thresholds=len(m.thresholds), from_logits=m.from_logits)
    return {"class_name": cls, "config": cfg}


def _metric_of(doc: Any) -> Any:
    if isinstance(doc, str):
        return doc
    return _schema.METRIC_CLASSES[doc["class_name"]](**doc["config"])


class _Unsavable(Exception):
    """Why a model cannot be saved, and what the user can do instead."""

    def __init__(self, reason: str, advice: str) -> None:
        super().__init__(reason)
        self.reason, self.advice = reason, advice


def _compile_doc(model: Any) -> dict[str, Any] | None:
    loss, opt = model.compiled_loss, model.optimizer
    if loss is None or opt is None:
        return None
    scaled = isinstance(opt, optimizers.LossScaleOptimizer)
    if scaled:  # saved as its inner optimizer plus the scale's state
        lso, opt = opt, opt.inner_optimizer
    multi = isinstance(loss, MultiLoss)  # a loss, a weight and metrics per output
    fns = loss.losses if multi else [loss]
    pairs = [*((fn, losses.CLASSES, "loss") for fn in fns), (opt, optimizers.CLASSES, "optimizer")]
    for obj, table, what in pairs:
        if table.get(type(obj).__name__) is not type(obj):
            raise _Unsavable(
                f"the {what} {type(obj).__name__!r} is not one of gpunet's own {what}es",
                f"compile with a gpunet {what}",
            )
    specs = getattr(model, "_metric_specs", [])
    metrics = [[_metric_doc(m) for m in ms] for ms in specs] if multi else list(
        map(_metric_doc, specs))  # fmt: skip
    opt_doc = {"class_name": type(opt).__name__, "config": opt.get_config()}
    if opt.built:
        opt_doc["iterations"] = int(opt.iterations)
    docs = [{"class_name": type(fn).__name__, "config": fn.get_config()} for fn in fns]
    doc = {"loss": docs if multi else docs[0], "optimizer": opt_doc, "metrics": metrics}
    if multi:
        doc["loss_weights"] = list(loss.loss_weights)
    if scaled:
        doc["loss_scale"] = loss_scale_doc(lso) or {}
    return doc


def loss_scale_doc(opt: Any) -> dict[str, Any] | None:
    """A ``LossScaleOptimizer``'s settings and state (None for another optimizer)."""
    if not isinstance(opt, optimizers.LossScaleOptimizer):
        return None
    return {"initial_scale": opt.initial_scale, "dynamic_growth_steps": opt.dynamic_growth_steps,
            "scale": opt.dynamic_scale, "step_counter": opt.step_counter}  # fmt: skip


def _architecture_check(model: Any) -> None:
    from gpunet.models import Functional, Sequential

    if type(model) is not Sequential and type(model) is not Functional:
        raise _Unsavable(
            f"{type(model).__name__!r} is defined by Python code, which a model file "
            "never holds (model.save stores Sequential and functional models only)",
            "use model.save_weights(path) and load_weights into a new instance",
        )
    for layer in model._layers:
        if LAYER_CLASSES.get(type(layer).__name__) is not type(layer):
            raise _Unsavable(
                f"unknown layer type {type(layer).__name__!r}; a model file holds only "
                f"{', '.join(sorted(LAYER_CLASSES))}",
                "use model.save_weights(path) for other models",
            )


def unsavable(model: Any) -> str | None:
    """Why ``model.save(path)`` would fail for this model, or None: checked by
    ``ModelCheckpoint`` when training starts, not at its first save."""
    try:
        _architecture_check(model)
        _compile_doc(model)
    except _Unsavable as exc:
        return exc.reason
    return None


def save_model(model: Any, path: Any, include_optimizer: bool = True) -> None:
    """Save a ``Sequential`` model (architecture, weights and, by default, the
    compile settings and optimizer state) to one ``.gpunet`` file, atomically.
    Metrics compiled as names or as built-in metric objects are stored.

    Raises:
        InvalidParameterError: for a subclassed model (its code cannot be stored:
            use ``save_weights``) or parts that are not gpunet's own.
    """
    from gpunet.models import Functional

    if type(model) is Functional:
        return _save_functional(model, path, include_optimizer)
    try:
        _architecture_check(model)
        compiled = _compile_doc(model) if include_optimizer else None
    except _Unsavable as exc:
        extra = "; or pass include_optimizer=False to save the architecture and weights only"
        if exc.advice.startswith("use model.save_weights"):
            extra = ""
        raise InvalidParameterError(
            f"cannot save model {model.name!r}: {exc.reason}; {exc.advice}{extra}"
        ) from None
    arch = {"class_name": "Sequential", "config": model.get_config(),
            "input_shape": _input_shape(model)}  # fmt: skip
    params = T.named_weights(model)
    tensors = {k: p.numpy() for k, p in params.items()}
    if compiled is not None and "iterations" in compiled["optimizer"]:
        tensors.update(T.optimizer_arrays(model.optimizer))
    doc = document("model", model=arch, compile=compiled)
    try:  # every file we write must load: check it with the reader's own rules
        checked = _schema.check_document(_roundtrip(doc), ("model",))
        _, _, expected = _schema.plan_sequential(checked["model"])
        T.check(T.split(tensors)[0], expected, allow_nonfinite=True)
    except ModelFileError as exc:
        raise InvalidParameterError(f"cannot save model {model.name!r}: {exc}") from None
    write(path, doc, tensors)


def _save_functional(model: Any, path: Any, include_optimizer: bool) -> None:
    for layer in model._layers:
        if LAYER_CLASSES.get(type(layer).__name__) is not type(layer):
            raise InvalidParameterError(
                f"cannot save model {model.name!r}: layer {layer.name!r} is a "
                f"{type(layer).__name__!r}, not a registered layer type (models nested as "
                "layers are saved with save_weights)"
            )
    arch = {"class_name": "Functional", "config": model.get_config(), "input_shape": None}
    try:
        compiled = _compile_doc(model) if include_optimizer else None
    except _Unsavable as exc:
        raise InvalidParameterError(
            f"cannot save model {model.name!r}: {exc.reason}; {exc.advice}"
        ) from None
    tensors = {k: p.numpy() for k, p in T.named_weights(model).items()}
    if compiled is not None and "iterations" in compiled["optimizer"]:
        tensors.update(T.optimizer_arrays(model.optimizer))
    doc = document("model", model=arch, compile=compiled)
    try:  # every file we write must load: check it with the reader's own rules
        checked = _schema.check_document(_roundtrip(doc), ("model",))
        _, expected = _schema.plan_functional(checked["model"])
        T.check(T.split(tensors)[0], expected, allow_nonfinite=True)
    except ModelFileError as exc:
        raise InvalidParameterError(f"cannot save model {model.name!r}: {exc}") from None
    write(path, doc, tensors)


def _build_functional(model_doc: dict[str, Any], layers: list[Any], ops: Any) -> Any:
    from gpunet.engine.functional import Input
    from gpunet.models import Functional

    cfg = model_doc["config"]
    state = grandom.get_state()
    try:
        made = []
        for cls, lcfg in layers:
            lcfg = {k: v for k, v in lcfg.items() if k != "input_shape"}
            made.append(LAYER_CLASSES[cls](**lcfg))
        inputs = [Input(shape=tuple(t["shape"]), dtype=t["dtype"], name=t["name"])
                  for t in cfg["inputs"]]  # fmt: skip
        outs: list[Any] = []
        with base.zero_init():
            for node in cfg["nodes"]:
                args = [inputs[-r - 1] if r < 0 else outs[r] for r in node["args"]]
                kw = dict(node.get("kwargs", {}))
                if "initial_state" in node:
                    kw["initial_state"] = [inputs[-r - 1] if r < 0 else outs[r]
                                           for r in node["initial_state"]]  # fmt: skip
                out = made[node["layer"]](args if node["list"] else args[0], **kw)
                outs.extend(out if "n_outputs" in node else [out])
        result = [inputs[-r - 1] if r < 0 else outs[r] for r in cfg["outputs"]]
        model = Functional(
            inputs if cfg["inputs_list"] else inputs[0],
            result if cfg["outputs_list"] else result[0],
            name=cfg["name"],
            device=ops,
        )
    except (GpunetError, TypeError, ValueError) as exc:
        raise ModelFileError(f"the architecture cannot be built: {exc}") from None
    finally:
        grandom.set_state(state)
    return model


def _roundtrip(doc: dict[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(doc, allow_nan=False))  # type: ignore[no-any-return]


# -- loading ------------------------------------------------------------------------------
def _build(model_doc: dict[str, Any], layers: list[Any], in_shapes: list[Any], ops: Any) -> Any:
    from gpunet.models import Sequential

    state = grandom.get_state()  # leave the random streams exactly as they were
    try:
        model = Sequential(name=model_doc["config"]["name"], device=ops)
        for (cls, cfg), shape in zip(layers, in_shapes, strict=True):
            cfg = dict(cfg)
            hint = cfg.pop("input_shape", None)  # built below, not by the constructor
            layer = LAYER_CLASSES[cls](**cfg)
            layer.input_shape_hint = None if hint is None else tuple(hint)
            model.add(layer)
            if shape is not None:
                _build_with_zeros(layer, shape)
    except (GpunetError, TypeError, ValueError) as exc:
        raise ModelFileError(f"the architecture cannot be built: {exc}") from None
    finally:
        grandom.set_state(state)
    return model


def _build_with_zeros(layer: Any, shape: tuple[int, ...]) -> None:
    # the file's values overwrite the weights at once: drawing initial values
    # would be wasted work (and could overflow for a hostile initializer config)
    with base.zero_init():
        layer.build((None, *shape))
    layer.built = True
    layer.built_input_shape = (None, *shape)


def _compile(model: Any, cfg: dict[str, Any], tensors: dict[str, Any], allow: bool) -> None:
    def loss_of(doc: Any) -> Any:
        return losses.CLASSES[doc["class_name"]](**doc["config"])

    def metrics_of(doc: Any) -> Any:
        return [metrics_of(m) for m in doc] if isinstance(doc, list) else _metric_of(doc)

    try:
        loss, metrics = cfg["loss"], cfg["metrics"]
        if isinstance(loss, list):
            loss = [loss_of(v) for v in loss]
        else:  # one loss, or one per output name
            loss = (
                loss_of(loss) if "class_name" in loss else {k: loss_of(v) for k, v in loss.items()}
            )
        if isinstance(metrics, dict):
            metrics = {k: metrics_of(v) for k, v in metrics.items()}
        else:
            metrics = metrics_of(metrics)
        opt_doc = cfg["optimizer"]
        opt = optimizers.from_config(opt_doc["class_name"], opt_doc["config"])
        ls = cfg.get("loss_scale")
        if ls is not None:
            opt = optimizers.LossScaleOptimizer(
                opt, ls["initial_scale"], ls["dynamic_growth_steps"]
            )
            opt.set_scale_state(ls["scale"], ls["step_counter"])
        model.compile(optimizer=opt, loss=loss, metrics=metrics,
                      loss_weights=cfg.get("loss_weights"))  # fmt: skip
        if "iterations" in opt_doc and model.trainable_weights:
            model._build_optimizer()
    except (GpunetError, TypeError, ValueError) as exc:
        raise ModelFileError(f"the compile settings are invalid: {exc}") from None
    T.check(tensors, T.optimizer_expected(model.optimizer), allow)
    T.assign_optimizer(model.optimizer, tensors)
    model.optimizer.iterations = int(opt_doc.get("iterations", 0))


def load_model(source: Any, device: Any = None, allow_nonfinite: bool = False) -> Any:
    """Load a model saved by ``model.save`` onto ``device`` (default ``"cpu"``).

    ``source`` is a path or the bytes of a file. Nothing in the file is run,
    imported or allocated before it is checked; global settings and the random
    streams are left as they were.

    Raises:
        ModelFileError: for a damaged, malformed or hostile file, naming the problem.
    """
    ops = get_ops(device)
    doc, tensors, where = read(source, ("model",))
    with T.in_file(where):
        functional = doc["model"]["class_name"] == "Functional"
        if functional:
            layers, expected = _schema.plan_functional(doc["model"])
        else:
            layers, in_shapes, expected = _schema.plan_sequential(doc["model"])
        weights, slots = T.split(tensors)
        T.check(weights, expected, allow_nonfinite)  # before anything is allocated
        if functional:
            model = _build_functional(doc["model"], layers, ops)
        else:
            model = _build(doc["model"], layers, in_shapes, ops)
        params = T.named_weights(model)
        T.check(weights, T.expected_of(params), allow_nonfinite=True)
        if doc["compile"] is not None:
            _compile(model, doc["compile"], slots, allow_nonfinite)
        elif slots:
            raise ModelFileError(f"unexpected tensor {next(iter(slots))!r}: nothing is compiled")
        T.assign(params, weights)
    return model


def save_weights(model: Any, path: Any) -> None:
    """Save every weight of ``model`` (any model, subclassed ones too) atomically."""
    tensors = {k: p.numpy() for k, p in T.named_weights(model).items()}
    write(path, document("weights"), tensors)


def load_weights(model: Any, source: Any, allow_nonfinite: bool = False) -> None:
    """Load weights saved by ``save_weights`` (or ``save``) into a built ``model``.

    Raises:
        ModelFileError: when the file is damaged or its tensors do not match the
            model's weights exactly (names, shapes, dtypes); the model is unchanged.
    """
    _, tensors, where = read(source, ("weights", "model"))
    with T.in_file(where):
        weights = T.split(tensors)[0]
        params = T.named_weights(model)
        if weights and not params:
            raise ModelFileError(
                f"model {model.name!r} has no weights yet: build it first (call it on a "
                "batch, or give its first layer input_shape=...)"
            )
        T.check(weights, T.expected_of(params), allow_nonfinite)
        T.assign(params, weights)
