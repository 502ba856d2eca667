"""The whole training path on the simulated device "sim" (``StrictOps``): a device
that is not the host, where mixing host and device arrays, float64 and hidden
device->host reads all raise, and every explicit read is counted.

It stands in for a GPU on machines without one: fit, evaluate, predict, a manual
loop and saving weights must work there, give the CPU's numbers, and read from
the device a number of times per epoch that does not grow with the batches.
"""

from __future__ import annotations

import weakref

import numpy as np
import pytest

import gpunet as gn
from gpunet import nn, optim
from gpunet.backend.strict_ops import StrictOps
from gpunet.errors import DeviceError, OutOfMemoryError

pytest.importorskip("array_api_strict")


def data(n=96, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype("float32")
    y = (X[:, 0] > 0).astype("int64") + (X[:, 1] > 0.5)
    return X, y


def make_model(device, d=6, batchnorm=True):
    """A stack with batch norm and dropout (``fit`` runs it on the graph-free step;
    ``use_fastpath = False`` forces the autograd graph): both must hold on the device."""
    gn.utils.set_random_seed(3)
    layers = [
        gn.layers.Dense(16, activation="relu", input_shape=(d,)),
        gn.layers.BatchNormalization(),
        gn.layers.Dropout(0.25),
        gn.layers.Dense(8, activation="gelu"),
        gn.layers.Dense(3, activation="softmax"),
    ]
    model = gn.Sequential(layers if batchnorm else layers[:1] + layers[2:], device=device)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.parametrize("graph", [True, False], ids=["graph-step", "graph-free-step"])
def test_fit_evaluate_predict_on_sim_match_the_cpu(graph):
    X, y = data()
    w = np.linspace(0.5, 1.5, len(X))
    out = {}
    for device in ("cpu", "sim"):
        model = make_model(device, batchnorm=graph)
        hist = model.fit(X, y, epochs=3, batch_size=16, validation_split=0.25, sample_weight=w,
                         verbose=0)  # fmt: skip
        out[device] = (hist.history, model.evaluate(X, y, verbose=0), model.predict(X[:7]),
                       model.get_weights())  # fmt: skip
    (h0, e0, p0, w0), (h1, e1, p1, w1) = out["cpu"], out["sim"]
    assert h1.keys() == h0.keys()
    for key in h0:
        np.testing.assert_allclose(h1[key], h0[key], rtol=1e-5, err_msg=key)
    np.testing.assert_allclose(e1, e0, rtol=1e-5)
    assert isinstance(p1, np.ndarray) and p1.dtype == np.float32  # predict returns NumPy
    np.testing.assert_allclose(p1, p0, rtol=1e-5, atol=1e-6)
    for a, b in zip(w1, w0, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_initial_weights_are_identical_on_every_device():
    weights = [make_model(device).get_weights() for device in ("cpu", "sim")]
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)


def _syncs_per_epoch(ops, batch_size, graph, epochs=3):
    X, y = data(n=128)
    model = make_model(ops, batchnorm=True)  # batch norm runs on the graph-free step too
    model.use_fastpath = not graph
    model.fit(X, y, epochs=1, batch_size=batch_size, verbose=0)  # build, warm up
    assert (model._step_plan is None) == graph
    before = ops.host_syncs
    model.fit(X, y, epochs=epochs, batch_size=batch_size, verbose=0)
    return (ops.host_syncs - before) / epochs


@pytest.mark.parametrize("graph", [True, False], ids=["graph-step", "graph-free-step"])
@pytest.mark.parametrize("stream", [False, True], ids=["resident", "streamed"])
def test_host_reads_per_epoch_do_not_grow_with_the_number_of_batches(stream, graph):
    limit = 1000 if stream else None  # 128 x 6 float32 does not fit in 1000 bytes
    few = _syncs_per_epoch(StrictOps(memory_limit=limit), 64, graph)  # 2 batches
    many = _syncs_per_epoch(StrictOps(memory_limit=limit), 4, graph)  # 32 batches
    assert many == few
    # per epoch: total and count of the loss and of the accuracy, and the
    # device-side "every loss was finite" flag of on_nan
    assert few == 5


def test_streaming_from_the_host_gives_the_resident_result():
    X, y = data()
    runs = {}
    for limit in (None, 1000):
        ops = StrictOps(memory_limit=limit)
        model = make_model(ops)
        start = ops.uploads
        hist = model.fit(X, y, epochs=2, batch_size=16, verbose=0)
        runs[limit] = (hist.history, model.get_weights(), ops.uploads - start)
    (h0, w0, up0), (h1, w1, up1) = runs[None], runs[1000]
    assert h1 == h0
    for a, b in zip(w1, w0, strict=True):
        np.testing.assert_array_equal(a, b)
    epochs, batches = 2, 2 * 6
    # streamed: x and y once per batch, instead of once per fit plus the shuffled
    # order once per epoch (the dropout masks are uploads in both runs)
    assert up1 - up0 == 2 * batches - (2 + epochs)


def test_manual_training_loop_on_sim():
    X, y = data()
    losses = {}
    for device in ("cpu", "sim"):
        gn.utils.set_random_seed(5)
        net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3)).to(device)
        opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()
        xt, yt = gn.tensor(X, device=device), gn.tensor(y, device=device)
        trace = []
        for _ in range(5):
            loss = loss_fn(net(xt), yt)
            opt.zero_grad()
            loss.backward()
            opt.step()
            trace.append(loss.item())  # an explicit read, once per step by choice
        losses[device] = trace
    np.testing.assert_allclose(losses["sim"], losses["cpu"], rtol=1e-5)


def test_saved_weights_from_sim_load_on_the_cpu(tmp_path):
    X, y = data()
    sim = make_model("sim")
    sim.fit(X, y, epochs=1, batch_size=32, verbose=0)
    sim.save_weights(tmp_path / "w.weights.safetensors")
    cpu = make_model("cpu")
    cpu.load_weights(tmp_path / "w.weights.safetensors")
    for a, b in zip(cpu.get_weights(), sim.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(cpu.predict(X[:4]), sim.predict(X[:4]), rtol=1e-6)


def test_model_to_moves_weights_and_optimizer_state_between_devices():
    X, y = data()
    model = make_model("cpu")
    model.fit(X, y, epochs=1, batch_size=32, verbose=0)
    before = model.get_weights()
    model.to("sim")
    assert {p.device for p in model.weights} == {"sim"}
    assert all(g.ops.device == "sim" for g in model.optimizer.groups)
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)
    model.fit(X, y, epochs=1, batch_size=32, verbose=0)  # trains on the new device


def test_float64_leaks_raise_on_sim():
    ops = StrictOps()
    with pytest.raises(ValueError, match="float64"):
        ops.asarray(np.ones(3))  # a NumPy float64 array, uploaded as is
    gn.config.set_floatx("float64")
    with pytest.raises(ValueError, match="float64"):
        gn.Sequential([gn.layers.Dense(2, input_shape=(3,))], device="sim")


def test_mixing_host_and_device_arrays_raises_on_sim():
    x = gn.tensor(np.ones((2, 3), "float32"), device="sim", requires_grad=True)
    with pytest.raises(DeviceError, match="host"):
        x + np.ones((2, 3), "float32")
    with pytest.raises(TypeError):
        x.data + np.ones((2, 3), "float32")  # the raw arrays refuse too
    with pytest.raises(DeviceError, match="different devices"):
        x + gn.tensor(np.ones((2, 3), "float32"))


def test_hidden_reads_raise_and_explicit_reads_are_counted():
    ops = StrictOps()
    x = ops.asarray(np.array([1.5, -2.0], "float32"))
    for read in (float, bool, int):
        with pytest.raises(DeviceError, match="implicit device->host read"):
            read(ops.xp.sum(x))
    with pytest.raises(RuntimeError):
        np.asarray(x)
    assert ops.to_host(ops.xp.sum(x)) == -0.5 and ops.host_syncs == 1


class _Exploding(gn.layers.Layer):
    """Runs out of memory on its third call, keeping a weak reference to its input."""

    def __init__(self):
        super().__init__()
        self.calls = 0
        self.seen: list[weakref.ref] = []

    def call(self, x):
        self.calls += 1
        self.seen.append(weakref.ref(x.data))
        if self.calls == 3:
            raise MemoryError("simulated: out of device memory")
        return x


@pytest.mark.parametrize("device", ["cpu", "sim"])
def test_out_of_memory_becomes_a_clear_error_and_frees_the_step(device):
    X, y = data()
    boom = _Exploding()
    gn.utils.set_random_seed(0)
    model = gn.Sequential([gn.layers.Dense(8, input_shape=(6,)), boom, gn.layers.Dense(3)],
                          device=device)  # fmt: skip
    model.compile(optimizer="sgd", loss=gn.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(OutOfMemoryError, match="smaller batch_size") as info:
        model.fit(X, y, epochs=1, batch_size=16, verbose=0)
    assert "batch_size (now 16)" in str(info.value)
    assert isinstance(info.value, MemoryError)
    del info
    assert boom.calls == 3 and boom.seen[-1]() is None  # the failed step's arrays are gone


@pytest.mark.parametrize("on_nan", ["raise", "stop"])
def test_a_nonfinite_loss_on_a_device_is_caught_at_the_epoch_end(on_nan):
    from gpunet.errors import NonFiniteError

    X, _ = data()
    model = gn.Sequential([gn.layers.Dense(1, input_shape=(6,))], device="sim")
    model.compile(optimizer="sgd", loss="mse")
    weights = model.get_weights()
    weights[0][:] = np.inf
    model.set_weights(weights)
    y = X[:, :1].copy()
    if on_nan == "raise":
        with pytest.raises(NonFiniteError, match="epoch 1, batch 1 on sim"):
            model.fit(X, y, epochs=3, batch_size=8, verbose=0)
    else:
        hist = model.fit(X, y, epochs=3, batch_size=8, verbose=0, on_nan="stop")
        assert len(hist.history["loss"]) == 1 and not np.isfinite(hist.history["loss"][0])


@pytest.mark.parametrize("device", ["cpu", "sim"])
def test_a_nonfinite_loss_keeps_the_last_finite_weights_on_every_device(device):
    """A bad batch in mid-epoch: cpu stops at it; the device skips it and every later
    update on the device itself, and names it at the epoch end. Both keep the
    weights of the steps before it."""
    from gpunet.errors import NonFiniteError

    X, _ = data()
    X = X[:40].copy()
    X[16:24] *= 1e25  # batch 3 (of 8 rows): its squared error overflows float32
    y = X[:, :1] * 0.5

    def model():
        gn.utils.set_random_seed(5)
        m = gn.Sequential([gn.layers.Dense(1, input_shape=(6,))], device=device)
        m.compile(optimizer="adam", loss="mse")
        return m

    bad = model()
    with pytest.raises(NonFiniteError, match=r"epoch 1, batch 3\b.*loss itself overflowed"):
        bad.fit(X, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    good = model()
    good.fit(X[:16], y[:16], epochs=1, batch_size=8, shuffle=False, verbose=0)
    for a, b in zip(bad.get_weights(), good.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_two_simulated_devices_in_one_process_never_mix():
    """Devices come from a registry of name patterns; "sim" and "sim:1" are two
    devices (as cuda:0 and cuda:1 would be), each model's work stays on its own."""
    first, second = gn.get_ops("sim"), gn.get_ops("sim:1")
    assert first is not second and first.sim_device != second.sim_device
    assert (first.device, second.device) == ("sim", "sim:1")
    X, y = data()
    models = [make_model(d) for d in ("cpu", "sim", "sim:1")]
    for m in models:
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    for _ in range(2):  # interleaved: neither model's state leaks into the other's
        for m in models:
            gn.utils.set_random_seed(5)
            m.fit(X, y, epochs=1, batch_size=16, verbose=0)
    cpu, a, b = (m.get_weights() for m in models)
    for wa, wb, wc in zip(a, b, cpu, strict=True):
        np.testing.assert_array_equal(wa, wb)
        np.testing.assert_allclose(wa, wc, rtol=1e-5, atol=1e-6)
    with pytest.raises(DeviceError, match="different devices"):
        gn.tensor(X, device="sim") + gn.tensor(X, device="sim:1")
    with pytest.raises(DeviceError, match="unknown device"):
        gn.get_ops("sim:2")
