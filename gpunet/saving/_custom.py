"""``register_serializable``: custom layers that ``model.save`` stores and
``load_model`` rebuilds, with no code ever read from a file.

A file names a layer type; only classes registered in the loading process can be
built, and each config field a file gives is type-checked first (the class's
``CONFIG``). Registering a Keras-style layer (``build`` with ``add_weight``, ``call``
on tensors) also derives what a file is checked against before anything is
allocated: the weights ``build`` would create, recorded without allocating, and
the output shape, from a run of ``call`` on one zero sample against zero-size
stand-ins for the weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpunet.autograd import no_grad
from gpunet.errors import InvalidParameterError
from gpunet.layers import base, spec
from gpunet.layers.base import Layer

# the most weight elements the output-shape probe runs against: a file's config is
# range-checked, but a hostile one may still name a huge layer
PROBE_LIMIT = 2**26


def register_serializable(package: str = "Custom", name: str | None = None) -> Any:
    """Class decorator: make a custom layer saveable (Keras'
    ``keras.saving.register_keras_serializable``).

    The class must be registered (decorated) in the process that loads the file:
    files hold names, never code. Its config fields are typed by a ``CONFIG`` dict
    (see ``gpunet.layers.spec``); without one they are inferred from the
    constructor's defaults: an ``int`` default makes an ``Int``, a ``float`` a
    ``Float``, a ``bool`` a ``Bool`` (fields of a registered parent class keep their
    types). Other parameters (strings, no default) need ``CONFIG``. Each field is
    saved from the attribute of its name.

    Args:
        package: Kept for Keras compatibility (the registry is keyed by class name).
        name: The registered name; only the class's own name is supported.

    Raises:
        InvalidParameterError: for a non-layer class, or a field type it cannot infer.

    Example:
        >>> import os, tempfile, numpy as np, gpunet as gn
        >>> from gpunet import saving
        >>> @saving.register_serializable(package="MyLayers")
        ... class Scaled(gn.layers.Layer):
        ...     def __init__(self, units=4, factor=2.0, **kwargs):
        ...         super().__init__(**kwargs)
        ...         self.units, self.factor = units, factor
        ...     def build(self, input_shape):
        ...         self.w = self.add_weight(shape=(input_shape[-1], self.units))
        ...     def call(self, inputs):
        ...         return (inputs @ self.w) * self.factor
        >>> Scaled.CONFIG
        {'units': Int(lo=-2147483648, hi=2147483648), 'factor': Float(lo=-inf, hi=inf, above=False)}
        >>> model = gn.Sequential([Scaled(3, input_shape=(2,))])
        >>> path = os.path.join(tempfile.mkdtemp(), "m.gpunet")
        >>> model.save(path)
        >>> x = np.ones((1, 2))
        >>> bool(np.all(gn.models.load_model(path).predict(x) == model.predict(x)))
        True
    """

    def decorate(cls: Any) -> Any:
        if not (isinstance(cls, type) and issubclass(cls, Layer)):
            raise InvalidParameterError(
                f"register_serializable takes gpunet layer classes, got {cls!r}"
            )
        if name is not None and name != cls.__name__:
            raise InvalidParameterError(
                f"register_serializable(name={name!r}): layers are registered by their class "
                f"name ({cls.__name__!r}); rename the class instead"
            )
        if "CONFIG" not in cls.__dict__:
            cls.CONFIG = infer_config(cls)
        if cls.weight_specs is Layer.weight_specs and cls.build is not Layer.build:
            setattr(cls, "weight_specs", _described_weights)  # noqa: B010
        if cls.compute_output_shape is Layer.compute_output_shape:
            setattr(cls, "compute_output_shape", _probed_output_shape)  # noqa: B010
        setattr(cls, "registered_package", package)  # noqa: B010
        return spec.register(cls)

    return decorate


register_keras_serializable = register_serializable  # the Keras spelling


def infer_config(cls: type) -> dict[str, Any]:
    """``CONFIG`` from the constructor's defaults (see :func:`register_serializable`)."""
    import inspect  # here, not at import time: it is slow to import

    config: dict[str, Any] = dict(getattr(cls, "CONFIG", {}))  # a parent's fields stay typed
    for p in inspect.signature(cls.__init__).parameters.values():  # type: ignore[misc]
        if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in config:
            continue
        d = p.default
        if isinstance(d, bool):
            config[p.name] = spec.Bool()
        elif isinstance(d, int):
            config[p.name] = spec.Int(-spec.BIG, spec.BIG)
        elif isinstance(d, float):
            config[p.name] = spec.Float()
        else:
            what = "has no default" if d is p.empty else f"defaults to {d!r}"
            raise InvalidParameterError(
                f"cannot infer the config type of {cls.__name__}'s parameter {p.name!r} (it "
                f"{what}): declare CONFIG = {{{p.name!r}: spec.Int(...) / spec.Float(...) / "
                "spec.Choice((...)) ...}} on the class (gpunet.layers.spec)"
            )
    return config


def _copy(layer: Layer) -> Layer:
    """An unbuilt twin of ``layer`` from its config (the random streams untouched)."""
    from gpunet import random as grandom

    state = grandom.get_state()
    try:
        return type(layer).from_config(layer.get_config())
    finally:
        grandom.set_state(state)


class _Describing:
    """Inside: ``add_weight`` records a ``WeightSpec`` and returns a zero-size stand-in."""

    def __enter__(self) -> list[spec.WeightSpec]:
        self._prev = base._local.describing
        base._local.describing = []
        return base._local.describing

    def __exit__(self, *exc: object) -> None:
        base._local.describing = self._prev


def _described_weights(self: Layer, input_shape: Any) -> list[spec.WeightSpec]:
    """The weights ``build(input_shape)`` creates, recorded on a twin, none allocated."""
    twin = _copy(self)
    with _Describing() as specs:
        twin.build(input_shape)
    return specs


def _probed_output_shape(self: Layer, input_shape: Any) -> Any:
    """The output shape: ``call`` run on one zero sample (against stand-ins for the
    weights, on an unbuilt twin, so the layer itself is left as it was)."""
    if not isinstance(input_shape, tuple):
        raise InvalidParameterError(
            f"layer {self.name!r}: define compute_output_shape for inputs {input_shape!r}"
        )
    sample = tuple(1 if d is None else int(d) for d in input_shape)
    sizes = [int(np.prod(w.shape)) for w in self.weight_specs(input_shape)] + [np.prod(sample)]
    if sum(sizes) > PROBE_LIMIT:
        raise InvalidParameterError(
            f"layer {self.name!r} is too large to find its output shape by a trial run "
            f"({sum(sizes)} elements); define compute_output_shape(self, input_shape)"
        )
    twin = _copy(self)
    with _Describing(), no_grad():
        out = twin(np.zeros(sample, dtype=self.dtype), training=False)
    return (input_shape[0], *tuple(out.shape)[1:])
