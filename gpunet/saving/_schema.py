"""The allow-list a model file's JSON document is checked against.

Every key of every object is listed here with the type of its value: ints and
floats in ranges, booleans, and strings from closed sets (layer types,
activations, initializers, losses, optimizers, metrics). Layers are not listed
by hand: each registered layer type (``gpunet.layers.spec.LAYERS``) describes its
config fields, and the checkers here are made from those descriptions. An unknown key, a
value of the wrong type, or any string that looks like a path or URL is a
``ModelFileError`` naming the key and its JSON path. Nothing is imported or
called by a name taken from a file: names only select from the tables below.

Example:
    >>> from gpunet.saving import _schema
    >>> _schema.check_layer({"class_name": "Dropout", "config": {"rate": 0.5}}, "$.l")
    ('Dropout', {'rate': 0.5})
    >>> _schema.check_layer({"class_name": "os.system", "config": {}}, "$.l")
    Traceback (most recent call last):
    ...
    gpunet.errors.ModelFileError: unknown layer type 'os.system' at $.l.class_name; \
allowed: Activation, Add, ...
"""

from __future__ import annotations

import re
from typing import Any

from gpunet import initializers, losses, metrics, mixed_precision, optimizers, schedules
from gpunet.backend._activation_ops import ACTIVATIONS
from gpunet.errors import GpunetError, ModelFileError
from gpunet.layers import spec
from gpunet.saving._checks import (
    Check,
    _show,
    array,
    boolean,
    fail,
    integer,
    name,
    number,
    obj,
    one_of,
    optional,
)  # fmt: skip

_VERSION = re.compile(r"[0-9A-Za-z.+\-]{1,40}\Z")


DATA_PATHS: set[str] = set()  # user data (class labels), checked by their own kind


def no_paths(doc: Any, path: str = "$") -> None:
    """Reject any string that looks like a file path or URL, wherever it is."""
    stack = [(doc, path)]
    while stack:
        v, p = stack.pop()
        if p in DATA_PATHS:
            continue
        if isinstance(v, dict):
            stack.extend((x, f"{p}.{k}") for k, x in v.items())
            stack.extend((k, f"{p} (key)") for k in v)
        elif isinstance(v, list):
            stack.extend((x, f"{p}[{i}]") for i, x in enumerate(v))
        elif isinstance(v, str) and (any(c in v for c in "/\\:") or v.startswith("~")):
            raise fail(p, f"the string {_show(v)} looks like a path or URL, which a model file "
                       "never holds")  # fmt: skip


# -- tables ----------------------------------------------------------------------------
DTYPES = ("float16", "float32", "float64")
_ACT_KW: dict[str, dict[str, Check]] = {
    "leaky_relu": {"alpha": number(0.0, 1e6)},
    "elu": {"alpha": number(0.0, 1e6)},
    "gelu": {"approximate": boolean},
    "softmax": {"axis": integer(-8, 7)},
    "log_softmax": {"axis": integer(-8, 7)},
}


def activation(v: Any, path: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise fail(path, f"expected an activation object, got {_show(v)}")
    act = one_of(*ACTIVATIONS, what="activation")(v.get("name"), f"{path}.name")
    return obj({"name": name, **_ACT_KW.get(act, {})}, ("name",))(v, path)


_SEED = {"seed": optional(integer(0, 2**63))}
_INIT_CFG: dict[str, dict[str, Check]] = {
    "constant": {"value": number()},
    "random_normal": {"mean": number(), "stddev": number(0.0), **_SEED},
    "random_uniform": {"minval": number(), "maxval": number(), **_SEED},
    "variance_scaling": {
        "scale": number(0.0, above=True), "mode": one_of("fan_in", "fan_out", "fan_avg"),
        "distribution": one_of("truncated_normal", "untruncated_normal", "uniform"), **_SEED,
    },
    "orthogonal": {"gain": number(0.0, above=True), **_SEED},
}  # fmt: skip


def initializer(v: Any, path: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise fail(path, f"expected an initializer object, got {_show(v)}")
    kind = one_of(*initializers._REGISTRY, what="initializer")(v.get("name"), f"{path}.name")
    return obj({"name": name, "config": obj(_INIT_CFG.get(kind, _SEED))}, ("name",))(v, path)


_REG = optional(obj({"l1": number(0.0), "l2": number(0.0)}))


def _SHAPE(v: Any, path: str) -> list[int]:
    if not isinstance(v, list) or not v:
        raise fail(path, f"expected a non-empty list of positive ints, got {_show(v)}")
    return array(integer(1), 8)(v, path)


_COMMON: dict[str, Check] = {"name": name, "trainable": boolean, "input_shape": _SHAPE,
                             "dtype": one_of(*mixed_precision.POLICIES, what="dtype")}  # fmt: skip


def int_list(n: int, lo: int, hi: int) -> Check:
    inner = array(integer(lo, hi), n or 8)

    def check(v: Any, path: str) -> list[int]:
        out = inner(v, path)
        if n and len(out) != n:
            raise fail(path, f"expected a list of {n} ints, got {_show(v)}")
        return out

    return check


def field(t: Any) -> Check:
    """The checker of one config field type of ``gpunet.layers.spec``."""
    # (spec.Nested, a wrapped layer: an entry of its own, checked as every layer entry is)
    simple: dict[type, Check] = {spec.Bool: boolean, spec.Activation: activation,
                                 spec.Initializer: initializer, spec.Regularizer: _REG,
                                 spec.Nested: check_layer}  # fmt: skip
    if type(t) in simple:
        return simple[type(t)]
    if isinstance(t, spec.Int):
        return integer(t.lo, t.hi)
    if isinstance(t, spec.Float):
        return number(t.lo, t.hi, above=t.above)
    if isinstance(t, spec.Choice):
        return one_of(*t.values)
    if isinstance(t, spec.IntTuple):
        return int_list(t.n, t.lo, t.hi)
    if isinstance(t, spec.Optional):
        return optional(field(t.inner))
    raise TypeError(f"unknown config field type {t!r}")  # a bug in a layer class


def layer_fields(cls: type) -> tuple[dict[str, Check], tuple[str, ...]]:
    """The checkers of a registered layer type's config, and its required keys (the
    constructor's parameters without defaults)."""
    fields = {**_COMMON, **{k: field(t) for k, t in cls.CONFIG.items()}}  # type: ignore[attr-defined]
    code = cls.__init__.__code__  # type: ignore[misc]
    n_pos = code.co_argcount
    defaults = cls.__init__.__defaults__ or ()  # type: ignore[misc]
    required = code.co_varnames[1 : n_pos - len(defaults)]
    return fields, tuple(k for k in required if k in fields)


def check_layer(v: Any, path: str) -> tuple[str, dict[str, Any]]:
    """``(class_name, config)`` of one layer entry of a Sequential config."""
    entry = obj({"class_name": lambda x, p: x, "config": lambda x, p: x},
                ("class_name", "config"))(v, path)  # fmt: skip
    cls = one_of(*spec.LAYERS, what="layer type")(entry["class_name"], f"{path}.class_name")
    fields, required = layer_fields(spec.LAYERS[cls])
    return cls, obj(fields, required)(entry["config"], f"{path}.config")


_LOSS_COMMON = {"reduction": one_of("sum_over_batch_size", "sum", "none", "mean",
                                    "mean_with_sample_weight", None), "name": name}  # fmt: skip
_XENT = {"from_logits": boolean, "label_smoothing": number(0.0, 1.0)}
LOSSES: dict[str, dict[str, Check]] = {
    "MeanSquaredError": {}, "MeanAbsoluteError": {}, "Poisson": {},
    "Huber": {"delta": number(0.0, above=True)},
    "BinaryCrossentropy": _XENT, "CategoricalCrossentropy": _XENT,
    "SparseCategoricalCrossentropy": _XENT,
}  # fmt: skip
assert set(LOSSES) == set(losses.CLASSES)
_STEPS = integer(1)
_LR0 = number(0.0)
SCHEDULES: dict[str, dict[str, Check]] = {
    "ExponentialDecay": {"initial_learning_rate": _LR0, "decay_steps": _STEPS,
                         "decay_rate": number(0.0, above=True), "staircase": boolean},
    "InverseTimeDecay": {"initial_learning_rate": _LR0, "decay_steps": _STEPS,
                         "decay_rate": number(0.0), "staircase": boolean},
    "CosineDecay": {"initial_learning_rate": _LR0, "decay_steps": _STEPS,
                    "alpha": number(0.0, 1.0), "warmup_target": optional(_LR0),
                    "warmup_steps": integer(0)},
    "PiecewiseConstantDecay": {"boundaries": array(integer(0, 2**62), 1000),
                               "values": array(number(), 1001)},
}  # fmt: skip
assert set(SCHEDULES) == set(schedules.CLASSES)


def learning_rate(v: Any, path: str) -> Any:
    if not isinstance(v, dict):
        return number(0.0, above=True)(v, path)
    cls = one_of(*SCHEDULES, what="schedule")(v.get("class_name"), f"{path}.class_name")
    return obj({"class_name": name, "config": obj(SCHEDULES[cls])}, ("class_name", "config"))(
        v, path
    )


_CLIP = optional(number(0.0))
_OPT_COMMON = {"learning_rate": learning_rate, "weight_decay": number(0.0), "clipnorm": _CLIP,
               "clipvalue": _CLIP, "global_clipnorm": _CLIP}  # fmt: skip
_PROB = number(0.0, 0.999999999)
_ADAM = {"beta_1": _PROB, "beta_2": _PROB, "epsilon": number(0.0), "amsgrad": boolean}
OPTIMIZERS: dict[str, dict[str, Check]] = {
    "SGD": {"momentum": number(0.0, 1.0), "nesterov": boolean},
    "Adam": _ADAM, "AdamW": _ADAM,
    "RMSprop": {"rho": _PROB, "momentum": _PROB, "epsilon": number(0.0), "centered": boolean},
    "Adagrad": {"epsilon": number(0.0), "initial_accumulator_value": number(0.0)},
}  # fmt: skip
assert set(OPTIMIZERS) == set(optimizers.CLASSES)
METRICS = (*metrics._REGISTRY, "accuracy", "acc")


def _config_of(table: dict[str, dict[str, Check]], common: dict[str, Check], what: str) -> Check:
    def check(v: Any, path: str) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise fail(path, f"expected a {what} object, got {_show(v)}")
        cls = one_of(*table, what=what)(v.get("class_name"), f"{path}.class_name")
        extra = {"iterations": integer(0, 2**62)} if what == "optimizer" else {}
        fields = {"class_name": name, "config": obj({**common, **table[cls]}), **extra}
        return obj(fields, ("class_name", "config"))(v, path)

    return check


# built-in metric classes a file may name, and their config keys beyond "name"
METRIC_CLASSES: dict[str, type] = {
    c.__name__: c for c in (*metrics._REGISTRY.values(), metrics.Accuracy)
}
_THRESHOLDS = {"thresholds": array(number(0.0, 1.0), 200), "from_logits": boolean}
METRIC_CONFIG: dict[str, dict[str, Check]] = {
    "BinaryAccuracy": {"threshold": number(0.0, 1.0)},
    "Precision": _THRESHOLDS, "Recall": _THRESHOLDS,
    "AUC": {"num_thresholds": integer(2, 10_000), "from_logits": boolean},
}  # fmt: skip


def metric(v: Any, path: str) -> Any:
    """A metric name, or ``{"class_name": a built-in class, "config": {...}}``."""
    if isinstance(v, str):
        return one_of(*METRICS, what="metric")(v, path)
    if not isinstance(v, dict):
        raise fail(path, f"expected a metric name or object, got {_show(v)}")
    cls = one_of(*METRIC_CLASSES, what="metric class")(v.get("class_name"), f"{path}.class_name")
    config = obj({"name": name, **METRIC_CONFIG.get(cls, {})}, ("name",))
    return obj({"class_name": name, "config": config}, ("class_name", "config"))(v, path)


def per_output(inner: Check, one: Check | None = None) -> Check:
    """``one`` value (when given), a list of ``inner`` (one per output, in order) or
    an object of them keyed by output name; the model's compile checks the count."""

    def check(v: Any, path: str) -> Any:
        if isinstance(v, list):
            return array(inner)(v, path)
        if one is not None and not (isinstance(v, dict) and "class_name" not in v):
            return one(v, path)
        if not isinstance(v, dict) or len(v) > 64:
            raise fail(path, f"expected a list or an object of at most 64 outputs, got {_show(v)}")
        return {name(k, f"{path} key"): inner(x, f"{path}.{k}") for k, x in v.items()}

    return check


def _metrics(v: Any, path: str) -> Any:  # a metric or a list of them, for one output
    return array(metric)(v, path) if isinstance(v, list) else metric(v, path)


_LOSS = _config_of(LOSSES, _LOSS_COMMON, "loss")
_LOSS_SCALE = obj({"initial_scale": number(0.0, above=True), "dynamic_growth_steps": integer(1),
                   "scale": number(0.0, above=True), "step_counter": integer(0)},
                  ("initial_scale", "dynamic_growth_steps", "scale", "step_counter"))  # fmt: skip
COMPILE = obj(
    {"loss": per_output(_LOSS, _LOSS), "loss_weights": per_output(number()),
     "optimizer": _config_of(OPTIMIZERS, _OPT_COMMON, "optimizer"),
     "metrics": per_output(_metrics), "loss_scale": _LOSS_SCALE},
    ("loss", "optimizer", "metrics"),
)  # fmt: skip
_REF = integer(-10_000, 10_000)
_CALL_FLAGS = obj(
    {
        "use_causal_mask": boolean,
        "training": boolean,  # a layer call's keywords
        "return_attention_scores": boolean,
    }
)

_GRAPH = obj(
    {"name": name,
     "inputs": array(obj({"name": name, "shape": array(optional(integer(1)), 8),
                          "dtype": one_of(*DTYPES, "int32", "int64", what="dtype")},
                         ("name", "shape", "dtype")), 64),
     "inputs_list": boolean, "layers": lambda v, p: v,
     "nodes": array(obj({"layer": integer(0, 10_000), "args": array(_REF, 64), "list": boolean,
                         "kwargs": _CALL_FLAGS, "initial_state": array(_REF, 64),
                         "n_outputs": integer(2, 64)},
                        ("layer", "args", "list")), 10_000),
     "outputs": array(_REF, 64), "outputs_list": boolean},
    ("name", "inputs", "inputs_list", "layers", "nodes", "outputs", "outputs_list"),
)  # fmt: skip


def _model_config(v: Any, path: str) -> Any:
    if isinstance(v, dict) and "nodes" in v:
        return _GRAPH(v, path)
    return obj({"name": name, "layers": lambda v, p: v}, ("name", "layers"))(v, path)


MODEL = obj(
    {"class_name": one_of("Sequential", "Functional", what="model type"),
     "config": _model_config, "input_shape": optional(_SHAPE)},
    ("class_name", "config", "input_shape"),
)  # fmt: skip
_U128 = integer(0, 2**128 - 1)
_PCG64 = obj(
    {"bit_generator": one_of("PCG64", what="bit generator"),
     "state": obj({"state": _U128, "inc": _U128}, ("state", "inc")),
     "has_uint32": integer(0, 1), "uinteger": integer(0, 2**32 - 1)},
    ("bit_generator", "state", "has_uint32", "uinteger"),
)  # fmt: skip
RNG = obj({"init": _PCG64, "shuffle": _PCG64, "dropout": _PCG64}, ("init", "shuffle", "dropout"))
BACKUP = {
    "optimizer": obj({"iterations": integer(0, 2**62), "learning_rate": optional(number(0.0)),
                      "loss_scale": _LOSS_SCALE}, ("iterations", "learning_rate")),
    "rng": RNG,
    "training": obj({"epoch": integer(0, 2**62)}, ("epoch",)),
}  # fmt: skip
KINDS: dict[str, tuple[dict[str, Check], tuple[str, ...]]] = {
    "model": ({"model": MODEL, "compile": optional(COMPILE)}, ("model", "compile")),
    "weights": ({}, ()),
    "backup": (BACKUP, tuple(BACKUP)),
}
_TOP = {"format": one_of("gpunet", what="format"), "format_version": integer(1, 1),
        "gpunet_version": lambda v, p: _version(v, p), "kind": lambda v, p: v}  # fmt: skip


def _version(v: Any, path: str) -> str:
    if not isinstance(v, str) or not _VERSION.match(v):
        raise fail(path, f"expected a version string, got {_show(v)}")
    return v


def register_kind(kind: str, fields: dict[str, Check], required: tuple[str, ...],
                  data_paths: tuple[str, ...] = ()) -> None:  # fmt: skip
    """Add a document kind (the estimators register theirs); ``data_paths`` hold
    user data such as class labels, exempt from the path-or-URL rule."""
    KINDS[kind] = (fields, required)
    DATA_PATHS.update(data_paths)


def check_document(doc: dict[str, Any], kinds: tuple[str, ...]) -> dict[str, Any]:
    """Check the whole document; ``kinds`` are those the caller accepts."""
    no_paths(doc)
    _TOP["format"](doc.get("format"), "$.format")
    kind = one_of(*KINDS, what="file kind")(doc.get("kind"), "$.kind")
    if kind not in kinds:
        raise ModelFileError(
            f"this is a {kind!r} file; expected {' or '.join(repr(k) for k in kinds)}"
        )
    fields, required = KINDS[kind]
    return obj({**_TOP, **fields}, ("format", "format_version", "gpunet_version", "kind",
                                     *required))(doc, "$")  # fmt: skip


def plan_functional(model: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Check a functional model's graph and infer the weights it implies.

    Returns ``(layers, expected)``: the ``(class_name, config)`` pairs and
    ``{tensor name: (shape, dtype)}``. Every call may read only the inputs and
    earlier calls, so the graph is acyclic by construction.
    """
    cfg, base = model["config"], "$.model.config"
    if model["class_name"] != "Functional" or "nodes" not in cfg:
        raise fail(f"{base}", "expected a Functional model's graph")
    entries = cfg["layers"]
    if not isinstance(entries, list) or len(entries) > 10_000:
        raise fail(f"{base}.layers", "expected a list of at most 10000 layers")
    layers = [check_layer(v, f"{base}.layers[{i}]") for i, v in enumerate(entries)]
    shapes: list[Any] = [(None, *t["shape"]) for t in cfg["inputs"]]
    if not shapes:
        raise fail(f"{base}.inputs", "a functional model needs at least one input")
    expected: dict[str, Any] = {}
    built: set[int] = set()
    outs: list[Any] = []

    def shape_of(ref: int, path: str, n_done: int) -> Any:
        if ref < 0 and -ref - 1 < len(shapes):
            return shapes[-ref - 1]
        if 0 <= ref < n_done:
            return outs[ref]
        raise fail(path, f"reference {ref} is neither an input nor an earlier call")

    for j, node in enumerate(cfg["nodes"]):
        path = f"{base}.nodes[{j}]"
        if node["layer"] >= len(layers):
            raise fail(f"{path}.layer", f"no layer {node['layer']}")
        args = [shape_of(r, f"{path}.args", len(outs)) for r in node["args"]]
        if not args or (not node["list"] and len(args) != 1) or None in args:
            raise fail(f"{path}.args", "expected one input, or a list of them")
        for r in node.get("initial_state", []):
            shape_of(r, f"{path}.initial_state", len(outs))
        arg = args if node["list"] else args[0]
        cls, lcfg = layers[node["layer"]]
        layer = described(cls, lcfg, path)
        try:
            if node["layer"] not in built:
                dtype = mixed_precision.POLICIES[lcfg.get("dtype", "float32")][1]
                for w in layer.weight_specs(arg):
                    expected[f"layers.{node['layer']}.{w.name}"] = (tuple(w.shape), dtype)
                built.add(node["layer"])
            out = _output_shape(layer, arg, node.get("kwargs", {}))
        except (GpunetError, TypeError, ValueError, IndexError) as exc:
            raise fail(path, f"the layer does not fit its input: {exc}") from None
        n = node.get("n_outputs", 1)
        several = out if n > 1 and isinstance(out, list) else [out]
        if len(several) != n or not all(isinstance(o, tuple) for o in several):
            raise fail(path, f"output shape {out!r} is not valid for {n} output(s)")
        outs.extend(several)
    for k, r in enumerate(cfg["outputs"]):
        shape_of(r, f"{base}.outputs[{k}]", len(outs))
    if not cfg["outputs"] or (not cfg["outputs_list"] and len(cfg["outputs"]) != 1):
        raise fail(f"{base}.outputs", "expected one output, or a list of them")
    return layers, expected


def _output_shape(layer: Any, arg: Any, kwargs: dict[str, Any]) -> Any:
    """``compute_output_shape``, given the call flags it takes (return_attention_scores)."""
    code = type(layer).compute_output_shape.__code__
    names = code.co_varnames[2 : code.co_argcount + code.co_kwonlyargcount]
    return layer.compute_output_shape(arg, **{k: v for k, v in kwargs.items() if k in names})


def plan_sequential(model: dict[str, Any]) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """Check each layer and infer the weights the architecture implies.

    Returns ``(layers, in_shapes, expected)``: the ``(class_name, config)``
    pairs, the sample shape reaching each layer (None while unknown), and
    ``{tensor name: (shape, dtype)}`` worked out from the input shape and the
    configs alone, so tensor sizes are compared before any layer allocates.
    """
    entries = model["config"]["layers"]
    if not isinstance(entries, list) or len(entries) > 10_000:
        raise fail("$.model.config.layers", "expected a list of at most 10000 layers")
    layers = [check_layer(v, f"$.model.config.layers[{i}]") for i, v in enumerate(entries)]
    shape = model["input_shape"]
    expected: dict[str, Any] = {}
    in_shapes: list[Any] = []
    for i, (cls, cfg) in enumerate(layers):
        hint = cfg.get("input_shape")
        if hint is not None and shape is not None and list(hint) != list(shape):
            raise fail(f"$.model.config.layers[{i}].config.input_shape",
                       f"input_shape {hint} does not match the shape {list(shape)} "
                       "that reaches this layer")  # fmt: skip
        shape = hint if shape is None else shape
        in_shapes.append(None if shape is None else tuple(shape))
        if shape is None:
            continue  # an unbuilt model: no weights yet
        dtype = mixed_precision.POLICIES[cfg.get("dtype", "float32")][1]  # weights: variable dtype
        layer = described(cls, cfg, f"$.model.config.layers[{i}]")
        try:  # what the layer would create: described, nothing allocated
            specs = layer.weight_specs((None, *shape))
            out = layer.compute_output_shape((None, *shape))
        except (GpunetError, TypeError, ValueError, IndexError) as exc:
            raise fail(
                f"$.model.config.layers[{i}]", f"the layer does not fit its input: {exc}"
            ) from None
        expected.update({f"layers.{i}.{w.name}": (tuple(w.shape), dtype) for w in specs})
        if not isinstance(out, tuple) or any(type(d) is not int or d < 1 for d in out[1:]):
            raise fail(f"$.model.config.layers[{i}]", f"output shape {out!r} is not valid")
        shape = list(out[1:])
    return layers, in_shapes, expected


def described(cls: str, cfg: dict[str, Any], path: str) -> Any:
    """A layer made from a checked config (its constructor only checks and stores)."""
    from gpunet import random as grandom

    args = {k: v for k, v in cfg.items() if k != "input_shape"}
    state = grandom.get_state()
    try:
        return spec.LAYERS[cls](**args)
    except (GpunetError, TypeError, ValueError) as exc:
        raise fail(path, f"the layer config is invalid: {exc}") from None
    finally:
        grandom.set_state(state)
