"""Data parallel = one process on the global batch (anchor D1, D2, D4).

The same network trains in one process and on 2 and 4 MPI ranks, with ranks
seeded differently (the strategy must give them rank 0's weights and shuffle),
uneven shards (203 rows, batch 64) and an L2 penalty. The weights after every
step must match: max |Δ| <= 1e-12 in float64 and <= 1e-6 in float32, and all
replicas must be bit-identical.
"""

from __future__ import annotations

import numpy as np
import pytest
from mpi_fixtures import reference_and_ranks

TOL = {"float64": 1e-12, "float32": 1e-6}
RANKS = [2, pytest.param(4, marks=pytest.mark.slow)]


reference, ranks = reference_and_ranks("equivalence.py", RANKS)


def _steps(run: dict, prefix: str) -> list[str]:
    keys = sorted(k for k in run if k.startswith(prefix) and "_step" in k)
    assert keys, f"no steps recorded under {prefix}"
    return keys


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("how", ["fit", "loop"])
def test_weights_after_every_step_match_one_process(reference, ranks, how, dtype):
    n, runs = ranks
    keys = _steps(reference, f"{how}_{dtype}_")
    worst = max(float(np.max(np.abs(runs[0][k] - reference[k]))) for k in keys)
    assert worst <= TOL[dtype], f"{n} ranks, {how}, {dtype}: max |dw| = {worst:.3g}"
    assert runs[0][keys[-1]].dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_epoch_logs_match_one_process(reference, ranks, dtype):
    """Loss, accuracy and validation logs are reduced over the ranks exactly."""
    _, runs = ranks
    keys = [k for k in reference if k.startswith(f"fit_{dtype}_history_")]
    assert {k.rsplit("_", 1)[-1] for k in keys} >= {"loss", "accuracy"}
    for k in keys:
        np.testing.assert_allclose(runs[0][k], reference[k], rtol=TOL[dtype] * 10, atol=0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_predict_and_evaluate_match_one_process(reference, ranks, dtype):
    """predict computes every row on each rank; evaluate reduces over the ranks."""
    _, runs = ranks
    for what in ("predict", "evaluate"):
        key = f"fit_{dtype}_{what}"
        assert runs[0][key].shape == reference[key].shape
        tol = TOL[dtype] * 10  # outputs of order 1, from weights within TOL
        np.testing.assert_allclose(runs[0][key], reference[key], rtol=tol, atol=tol)


def test_replicas_are_identical(ranks):
    _, runs = ranks
    for run in runs[1:]:
        assert run.keys() == runs[0].keys()
        for k in run:
            np.testing.assert_array_equal(run[k], runs[0][k], err_msg=k)
