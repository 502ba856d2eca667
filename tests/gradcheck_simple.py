"""Gradient-check cases of the small Keras layers of ``gpunet/layers/simple.py``
(registered in gradcheck_cases.all_cases). Inputs keep clear of the kinks of
ReLU's pieces so no finite-difference step crosses one; the noise layers re-seed
their stream before every evaluation, so the same noise is drawn each time."""

from __future__ import annotations

from typing import Any

import numpy as np
from gradcheck_cases import _away_from, _layer_case

import gpunet as gn


def simple_layer_cases() -> list[Any]:
    L, f64 = gn.layers, {"dtype": "float64"}
    r = np.random.default_rng(11)
    X, seq = r.normal(size=(3, 4)), r.normal(size=(2, 5, 3))
    relu = L.ReLU(max_value=0.8, negative_slope=0.1, threshold=0.3, **f64)
    return [
        _layer_case("ReLU", L.ReLU(**f64), [_away_from(X, [0.0])]),
        _layer_case("ReLU(max_value, slope, threshold)", relu, [_away_from(X, [0.3, 0.8])]),
        _layer_case("ELU", L.ELU(0.7, **f64), [_away_from(X, [0.0])]),
        _layer_case("Identity", L.Identity(**f64), [X]),
        _layer_case("RepeatVector", L.RepeatVector(3, **f64), [X]),
        _layer_case("Permute", L.Permute((2, 1), **f64), [seq]),
        _layer_case("Rescaling", L.Rescaling(0.5, offset=-1.0, **f64), [X]),
        _layer_case("GaussianNoise(train)", L.GaussianNoise(0.3, **f64), [X], reseed=True),
        _layer_case("GaussianDropout(train)", L.GaussianDropout(0.3, **f64), [X], reseed=True),
        _layer_case("SpatialDropout1D(train)", L.SpatialDropout1D(0.5, **f64), [seq], reseed=True),
        _layer_case("Lambda", L.Lambda(lambda t: t * gn.ops.sin(t), **f64), [X]),
    ]
