"""How layers describe themselves: their weights, the types of their config, and the
one registry of layer types that saving, ``summary()`` and input checks read.

A layer class lists its config fields as ``CONFIG = {"units": Int(1), ...}`` and its
weights through ``weight_specs(input_shape)``; ``@register`` puts it in ``LAYERS``.
Saving turns ``CONFIG`` into the allow-list a file is checked against, so a new layer
is one file: nothing else names its type.

Example:
    >>> from gpunet.layers import spec
    >>> spec.LAYERS["Dense"].CONFIG["units"]
    Int(lo=1, hi=2147483648)
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any

from gpunet.errors import InvalidParameterError

BIG = 2**31


# -- config field types: plain data, turned into checkers by gpunet.saving ----------------
@dataclasses.dataclass(frozen=True)
class Int:
    lo: int = 0
    hi: int = BIG


@dataclasses.dataclass(frozen=True)
class Float:
    lo: float = float("-inf")
    hi: float = float("inf")
    above: bool = False  # the low end excluded


@dataclasses.dataclass(frozen=True)
class Bool:
    pass


@dataclasses.dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class IntTuple:
    """A list of ``n`` ints in ``[lo, hi]`` (any length up to 8 when ``n`` is 0)."""

    n: int = 0
    lo: int = 0
    hi: int = BIG


@dataclasses.dataclass(frozen=True)
class Optional:
    inner: Any


@dataclasses.dataclass(frozen=True)
class Activation:
    pass


@dataclasses.dataclass(frozen=True)
class Initializer:
    pass


@dataclasses.dataclass(frozen=True)
class Regularizer:
    pass


@dataclasses.dataclass(frozen=True)
class Nested:
    """A wrapped layer (``TimeDistributed(layer)``, ``Bidirectional(layer)``): saved as its own
    ``{"class_name", "config"}`` entry and checked as one; the wrapper's constructor
    gets ``(class_name, config)`` back and makes the layer (:func:`layer_of`)."""


def layer_of(value: Any) -> Any:
    """A layer, from itself or from the ``(class_name, config)`` a loaded file gives."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return LAYERS[value[0]](**value[1])
    if isinstance(value, dict) and set(value) == {"class_name", "config"}:  # a get_config()
        return LAYERS[value["class_name"]](**value["config"])
    return value


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    """One weight a layer creates: its attribute name, shape, initializer, whether the
    optimizer updates it, and its penalty."""

    name: str
    shape: tuple[int, ...]
    initializer: Any = "zeros"
    trainable: bool = True
    regularizer: Any = None


@functools.lru_cache(maxsize=1024)  # every graph node of a layer names itself with it
def snake_case(name: str) -> str:
    """A class name as Keras names its instances: ``MaxPooling2D`` -> ``max_pooling2d``."""
    return re.sub("([a-z])([A-Z])", r"\1_\2", re.sub("(.)([A-Z][a-z0-9]+)", r"\1_\2", name)).lower()


# -- the registry -------------------------------------------------------------------------
LAYERS: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: make a layer type known to saving and loading by its class name.

    Raises:
        InvalidParameterError: when another class already has that name.
    """
    name = cls.__name__
    known = LAYERS.get(name)
    if known is not None and known is not cls and _same_source(known, cls):
        known = None  # the same file imported again (a reload, or under 2 names)
    if known is not None and known is not cls:
        raise InvalidParameterError(
            f"a layer type named {name!r} is registered already ({known.__module__}); "
            "rename the class"
        )
    if not isinstance(getattr(cls, "CONFIG", None), dict):
        raise InvalidParameterError(f"layer {name!r} needs a CONFIG dict of its config fields")
    LAYERS[name] = cls
    return cls


def _same_source(a: type, b: type) -> bool:
    import sys

    files = [getattr(sys.modules.get(c.__module__), "__file__", None) for c in (a, b)]
    return files[0] is not None and files[0] == files[1] and a.__qualname__ == b.__qualname__
