"""float64 central finite differences against backward() for every op, activation,
loss and layer (with and without bias, train and eval mode)."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck_cases import CHECKED, Case, all_cases

import gpunet as gn

CASES = all_cases()
EPS = 1e-6


def _forward(case: Case, tensors: list[gn.Tensor], projection: np.ndarray | None) -> gn.Tensor:
    if case.reseed:
        gn.utils.set_random_seed(7)
    out = case.fn(*tensors)
    if projection is None:
        return out
    # a fixed random direction turns any output into a scalar with a full gradient
    return (out * gn.tensor(projection, dtype="float64")).sum()


def _numeric(
    case: Case, values: list[np.ndarray], target: np.ndarray, projection: np.ndarray
) -> np.ndarray:
    """Central differences of the projected output w.r.t. ``target``, an input or a
    parameter array perturbed in place."""
    grad = np.zeros_like(target)
    flat = target.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        vals = []
        for sign in (1.0, -1.0):
            flat[i] = old + sign * EPS
            with gn.no_grad():
                out = _forward(case, [gn.tensor(v, dtype="float64") for v in values], projection)
            vals.append(out.item())
        flat[i] = old
        grad.reshape(-1)[i] = (vals[0] - vals[1]) / (2 * EPS)
    return grad


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_gradient_matches_finite_differences(case: Case) -> None:
    values = [np.array(v, dtype=np.float64) for v in case.inputs]
    tensors = [gn.tensor(v, dtype="float64", requires_grad=True) for v in values]
    with gn.no_grad():
        probe = _forward(case, [gn.tensor(v, dtype="float64") for v in values], None)
    projection = np.random.default_rng(11).normal(size=probe.shape)
    out = _forward(case, tensors, projection)
    if case.layer is not None:
        for p in case.layer.weights:
            p.zero_grad()
    out.backward()
    checked = 0
    for t, v in zip(tensors, values, strict=True):
        numeric = _numeric(case, values, v, projection)
        assert t.grad is not None, f"{case.name}: no gradient for an input"
        assert t.grad.dtype == np.float64
        np.testing.assert_allclose(t.grad, numeric, rtol=1e-5, atol=1e-7, err_msg=case.name)
        checked += 1
    if case.layer is not None:
        for p in case.layer.trainable_weights:
            analytic = np.array(p.grad, copy=True)
            data = p.data
            numeric = _numeric(case, values, data, projection)
            np.testing.assert_allclose(
                analytic, numeric, rtol=1e-5, atol=1e-7, err_msg=f"{case.name}: {p.name}"
            )
            checked += 1
    assert checked > 0
    CHECKED.add(case.name)


def test_every_activation_op_and_layer_is_covered() -> None:
    from gpunet.backend._activation_ops import ACTIVATIONS

    names = {c.name for c in CASES}
    assert {f"activation:{a}" for a in ACTIVATIONS} <= names
    layer_types = {n.split(":")[1].split("(")[0] for n in names if n.startswith("layer:")}
    assert set(gn.layers.__all__) - {"Layer", "Parameter"} <= layer_types
    assert len(CASES) >= 80
