"""Naming a model's weights and optimizer slots, and checking a file's tensors
against them: exact name set, shapes, dtypes and finiteness, all before the
first value is written, so a rejected file leaves the model untouched."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from gpunet.errors import InvalidParameterError, ModelFileError

OPT = "optimizer."
_SHORT = re.compile(r"[A-Za-z0-9_]{1,64}\Z")


def named_weights(model: Any) -> dict[str, Any]:
    """Every weight of ``model`` by a stable name: ``layers.{i}.{name}`` along the
    tree of sublayers (``layers.0.kernel``), the same in every process.

    Example:
        >>> import gpunet as gn
        >>> m = gn.Sequential([gn.layers.Dense(2, input_shape=(3,))])
        >>> list(named_weights(m))
        ['layers.0.kernel', 'layers.0.bias']
    """
    out: dict[str, Any] = {}
    seen: set[int] = set()

    def walk(layer: Any, prefix: str) -> None:
        for k, p in enumerate(layer._params):
            if id(p) in seen:
                continue  # a shared weight is saved once, under its first name
            seen.add(id(p))
            short = str(p.name).rsplit("/", 1)[-1]
            key = prefix + (short if _SHORT.match(short) else f"w{k}")
            if key in out:
                key = f"{prefix}w{k}"
            if key in out:
                raise InvalidParameterError(f"two weights of {layer.name!r} share the name {key!r}")
            out[key] = p
        for i, sub in enumerate(layer._layers):
            walk(sub, f"{prefix}layers.{i}.")

    walk(model, "")
    return out


def dtype_name(dtype: Any) -> str:
    """``"float32"`` for a NumPy, CuPy or array-API dtype (``array_api_strict.float32``)."""
    return str(dtype).rsplit(".", 1)[-1]


def expected_of(params: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], str]]:
    return {k: (tuple(p.shape), dtype_name(p.dtype)) for k, p in params.items()}


def optimizer_expected(opt: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """``optimizer.{slot}.{group}`` names and shapes of a built optimizer's state."""
    if opt is None or not opt.built:
        return {}
    return {
        f"{OPT}{k}.{i}": ((int(v.shape[0]),), dtype_name(g.P.dtype))
        for i, g in enumerate(opt.groups)
        for k, v in g.slots.items()
    }


def optimizer_arrays(opt: Any) -> dict[str, np.ndarray]:
    if opt is None or not opt.built:
        return {}
    return {OPT + k: v for k, v in opt.state_arrays().items()}


def check(tensors: dict[str, np.ndarray], expected: dict[str, Any], allow_nonfinite: bool) -> None:
    """Raise ``ModelFileError`` unless ``tensors`` match ``expected`` exactly."""
    missing = [k for k in expected if k not in tensors]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ModelFileError(f"missing tensor {missing[0]!r}{more}")
    extra = [k for k in tensors if k not in expected]
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise ModelFileError(f"unexpected tensor {extra[0]!r}{more}: the model has no such weight")
    for key, (shape, dtype) in expected.items():
        arr = tensors[key]
        if tuple(arr.shape) != tuple(shape) or arr.dtype.name != np.dtype(dtype).name:
            raise ModelFileError(
                f"tensor {key!r}: expected {np.dtype(dtype).name} {tuple(shape)}, "
                f"got {arr.dtype.name} {tuple(arr.shape)}"
            )
    if allow_nonfinite:
        return
    for key, arr in tensors.items():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise ModelFileError(
                f"tensor {key!r} contains {bad} non-finite value{'s' * (bad > 1)} "
                "(pass allow_nonfinite=True to load anyway)"
            )


def assign(params: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
    """Copy checked tensors into the weights (in place: optimizer views stay valid)."""
    for key, p in params.items():
        p.assign(tensors[key])


def assign_optimizer(opt: Any, tensors: dict[str, np.ndarray]) -> None:
    if opt is not None and opt.built:
        opt.load_state_arrays({k[len(OPT) :]: v for k, v in tensors.items() if k.startswith(OPT)})


def split(tensors: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(weights, optimizer slots)`` of a file's tensors."""
    opt = {k: v for k, v in tensors.items() if k.startswith(OPT)}
    return {k: v for k, v in tensors.items() if not k.startswith(OPT)}, opt


@contextlib.contextmanager
def in_file(where: str) -> Iterator[None]:
    """Prefix file errors raised inside with the file's name."""
    try:
        yield
    except ModelFileError as exc:
        text = str(exc)
        if text.startswith(where):
            raise
        raise ModelFileError(f"{where}: {text}") from None
