"""The layer protocol: a new layer in one file (tests/toy_layer.py) trains on the
graph-free step, saves and loads, shows in summary() and runs on the simulated
device, with no other file of gpunet changed."""

from __future__ import annotations

import numpy as np
import pytest
from toy_layer import Scale

import gpunet as gn
from gpunet.engine import step

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 5)).astype("float32")
Y = (X @ RNG.normal(size=(5, 2))).astype("float32")


def _model(device: str = "cpu") -> gn.Sequential:
    gn.utils.set_random_seed(0)
    model = gn.Sequential([Scale(slope=0.5, input_shape=(5,)), gn.layers.Dense(2)], device=device)
    model.compile(optimizer="adam", loss="mse")
    return model


def _fitted(fast: bool, device: str = "cpu", epochs: int = 3) -> gn.Sequential:
    model = _model(device)
    model.use_fastpath = fast
    model.fit(X, Y, epochs=epochs, batch_size=16, verbose=0)
    return model


def test_a_new_layer_trains_on_the_graph_free_step_bit_identically():
    fast, graph = _fitted(True), _fitted(False)
    assert fast._step_plan is not None and graph._step_plan is None
    assert not np.array_equal(fast.layers[0].w.numpy(), np.ones(5))  # it learned
    for a, b in zip(fast.get_weights(), graph.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def _numeric(f, A: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    grad, flat = np.zeros_like(A), A.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        hi = f()
        flat[i] = old - eps
        lo = f()
        flat[i] = old
        grad.reshape(-1)[i] = (hi - lo) / (2 * eps)
    return grad


def test_a_new_layer_gradient_matches_finite_differences():
    layer = Scale(slope=-1.5, dtype="float64")
    x = gn.tensor(RNG.normal(size=(4, 3)), requires_grad=True, dtype="float64")
    out = layer(x)
    layer.w.assign(RNG.normal(size=3))
    out = layer(x)
    dY = RNG.normal(size=out.shape)
    (out * gn.tensor(dY, dtype="float64")).sum().backward()

    def f() -> float:
        with gn.no_grad():
            return float(np.sum(layer(gn.tensor(x.data)).numpy() * dY))

    for tensor in (x, layer.w):
        np.testing.assert_allclose(tensor.grad, _numeric(f, tensor.data), rtol=1e-6, atol=1e-9)


def test_a_new_layer_saves_loads_and_shows_in_summary(tmp_path):
    model = _model()
    model.fit(X, Y, epochs=1, verbose=0)
    path = tmp_path / "scale.gpunet"
    model.save(path)
    back = gn.models.load_model(path)
    assert isinstance(back.layers[0], Scale) and back.layers[0].slope == 0.5
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    lines: list[str] = []
    back.summary(print_fn=lines.append)
    assert any("(Scale)" in line and "5" in line for line in lines)


def test_a_new_layer_runs_on_the_simulated_device():
    pytest.importorskip("array_api_strict")
    cpu, sim = _fitted(True), _fitted(True, "sim")
    assert sim._step_plan is not None
    for a, b in zip(cpu.get_weights(), sim.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_nothing_outside_the_dense_layer_tests_for_dense():
    import re
    from pathlib import Path

    pkg = Path(gn.__file__).parent
    pattern = re.compile(
        r"\bis Dense\b|isinstance\([^)]*\bDense\b|getattr\([^)]*[\"'](kernel|gamma)[\"']"
    )
    found = {
        str(p.relative_to(pkg)): m.group(0)
        for p in pkg.rglob("*.py")
        if p.name != "dense.py"
        for m in [pattern.search(p.read_text())]
        if m is not None
    }
    assert not found, f"Dense guesses outside layers/dense.py: {found}"


def test_the_step_runs_every_built_in_layer():
    model = gn.Sequential(
        [gn.layers.Dense(4, input_shape=(5,)), gn.layers.BatchNormalization(),
         gn.layers.Dropout(0.1), gn.layers.Activation("relu"), gn.layers.Flatten(),
         gn.layers.LayerNormalization(), gn.layers.Dense(2)]
    )  # fmt: skip
    model.compile(optimizer="sgd", loss="mse")
    assert step.plan(model) is not None
