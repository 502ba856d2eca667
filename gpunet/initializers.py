"""Weight initializers (Keras names), drawn on the host from the seeded ``init``
stream so the same seed gives the same starting weights on every device.

Example:
    >>> import gpunet as gn
    >>> gn.initializers.get("glorot_uniform")((3, 2), "float32").shape
    (3, 2)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gpunet import random as grandom
from gpunet.errors import InvalidParameterError

# stddev of a standard normal truncated to [-2, 2] (Keras' VarianceScaling constant)
_TRUNC_STD = 0.87962566103423978


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


class Initializer:
    """Base: ``init(shape, dtype) -> numpy.ndarray``."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def rng(self) -> np.random.Generator:
        if self.seed is not None:
            return np.random.default_rng(self.seed)
        return grandom.generator("init")

    def __call__(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.asarray(self.draw(tuple(shape)), dtype=np.dtype(dtype))

    def draw(self, shape: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover - every subclass defines it

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed} if self.seed is not None else {}


class Zeros(Initializer):
    def draw(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape)


class Ones(Initializer):
    def draw(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.ones(shape)


class Constant(Initializer):
    def __init__(self, value: float = 0.0) -> None:
        super().__init__()
        self.value = float(value)

    def draw(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.full(shape, self.value)

    def get_config(self) -> dict[str, Any]:
        return {"value": self.value}


class RandomNormal(Initializer):
    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None):
        super().__init__(seed)
        self.mean, self.stddev = float(mean), float(stddev)

    def draw(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.rng().normal(self.mean, self.stddev, shape)

    def get_config(self) -> dict[str, Any]:
        return {"mean": self.mean, "stddev": self.stddev, **super().get_config()}


class RandomUniform(Initializer):
    def __init__(
        self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None
    ) -> None:
        super().__init__(seed)
        self.minval, self.maxval = float(minval), float(maxval)

    def draw(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.rng().uniform(self.minval, self.maxval, shape)

    def get_config(self) -> dict[str, Any]:
        return {"minval": self.minval, "maxval": self.maxval, **super().get_config()}


class VarianceScaling(Initializer):
    """``scale / n`` variance with ``n`` the fan in, out or their mean (Keras)."""

    def __init__(
        self,
        scale: float = 1.0,
        mode: str = "fan_in",
        distribution: str = "truncated_normal",
        seed: int | None = None,
    ) -> None:
        super().__init__(seed)
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise InvalidParameterError(f"unknown mode {mode!r}")
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise InvalidParameterError(f"unknown distribution {distribution!r}")
        self.scale, self.mode, self.distribution = float(scale), mode, distribution

    def draw(self, shape: tuple[int, ...]) -> np.ndarray:
        fan_in, fan_out = _fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}
        var = self.scale / max(1.0, n[self.mode])
        rng = self.rng()
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * var)
            return rng.uniform(-limit, limit, shape)
        if self.distribution == "untruncated_normal":
            return rng.normal(0.0, math.sqrt(var), shape)
        std = math.sqrt(var) / _TRUNC_STD
        out = rng.normal(0.0, 1.0, shape)
        bad = np.abs(out) > 2.0
        while bad.any():  # resample outside two standard deviations
            out[bad] = rng.normal(0.0, 1.0, int(bad.sum()))
            bad = np.abs(out) > 2.0
        return out * std

    def get_config(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "mode": self.mode,
            "distribution": self.distribution,
            **super().get_config(),
        }


def _vs(scale: float, mode: str, distribution: str) -> Any:
    def make(seed: int | None = None) -> VarianceScaling:
        return VarianceScaling(scale, mode, distribution, seed)

    return make


GlorotUniform = _vs(1.0, "fan_avg", "uniform")
GlorotNormal = _vs(1.0, "fan_avg", "truncated_normal")
HeNormal = _vs(2.0, "fan_in", "truncated_normal")
HeUniform = _vs(2.0, "fan_in", "uniform")
LecunNormal = _vs(1.0, "fan_in", "truncated_normal")
LecunUniform = _vs(1.0, "fan_in", "uniform")


class Orthogonal(Initializer):
    """A (semi-)orthogonal matrix times ``gain`` (Keras; the recurrent kernels' default)."""

    def __init__(self, gain: float = 1.0, seed: int | None = None) -> None:
        super().__init__(seed)
        self.gain = float(gain)

    def draw(self, shape: tuple[int, ...]) -> np.ndarray:
        rows, cols = math.prod(shape[:-1]) if len(shape) > 1 else 1, shape[-1] if shape else 1
        a = self.rng().normal(size=(max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))
        return np.ascontiguousarray(self.gain * (q.T if rows < cols else q)).reshape(shape)

    def get_config(self) -> dict[str, Any]:
        return {"gain": self.gain, **super().get_config()}


_REGISTRY: dict[str, Any] = {
    "zeros": Zeros,
    "ones": Ones,
    "constant": Constant,
    "random_normal": RandomNormal,
    "random_uniform": RandomUniform,
    "glorot_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal,
    "he_normal": HeNormal,
    "he_uniform": HeUniform,
    "lecun_normal": LecunNormal,
    "lecun_uniform": LecunUniform,
    "variance_scaling": VarianceScaling,
    "uniform": RandomUniform,  # Keras' alias (Embedding's default)
    "orthogonal": Orthogonal,
}


def get(spec: Any) -> Initializer:
    """An initializer from a name, an instance, or ``{"name": ..., "config": ...}``."""
    if isinstance(spec, Initializer):
        return spec
    if isinstance(spec, dict):
        return _REGISTRY[_check(spec.get("name"))](**spec.get("config", {}))
    if isinstance(spec, str):
        return _REGISTRY[_check(spec)]()
    raise InvalidParameterError(f"unknown initializer {spec!r}")


def _check(name: Any) -> str:
    if name not in _REGISTRY:
        raise InvalidParameterError(
            f"unknown initializer {name!r}; expected one of {', '.join(sorted(_REGISTRY))}"
        )
    return str(name)


def name_of(init: Initializer) -> dict[str, Any]:
    """The ``{"name", "config"}`` form of ``init`` for saving."""
    if isinstance(init, VarianceScaling):
        for name, factory in _REGISTRY.items():
            if callable(factory) and not isinstance(factory, type):
                ref = factory()
                if (ref.scale, ref.mode, ref.distribution) == (
                    init.scale,
                    init.mode,
                    init.distribution,
                ):
                    return {"name": name, "config": super(VarianceScaling, init).get_config()}
        return {"name": "variance_scaling", "config": init.get_config()}
    for name, cls in _REGISTRY.items():
        if type(init) is cls:
            return {"name": name, "config": init.get_config()}
    raise InvalidParameterError(f"cannot serialise initializer {init!r}")
