"""The Keras functional API: Input, layers called on symbolic tensors, Model(inputs,
outputs) with two inputs, a shared layer, a residual add and two outputs; checked
against the same network written in PyTorch, saved and loaded bit-exactly, and
hostile graph documents rejected."""

from __future__ import annotations

import json

import numpy as np
import pytest

import gpunet as gn
from gpunet.errors import InputValidationError, InvalidParameterError, ModelFileError

RNG = np.random.default_rng(0)
A = RNG.normal(size=(6, 3))
B = RNG.normal(size=(6, 3))


def _two_in_two_out() -> gn.Model:
    a, b = (
        gn.Input(shape=(3,), name="a", dtype="float64"),
        gn.Input(shape=(3,), name="b", dtype="float64"),
    )
    shared = gn.layers.Dense(4, activation="tanh", dtype="float64", name="shared")
    ha, hb = shared(a), shared(b)  # one layer, two calls
    res = gn.layers.Add(dtype="float64")([ha, gn.layers.Dense(4, dtype="float64", name="skip")(a)])
    cat = gn.layers.Concatenate(dtype="float64")([res, hb])
    out1 = gn.layers.Dense(1, dtype="float64", name="reg")(cat)
    out2 = gn.layers.Dense(2, activation="softmax", dtype="float64", name="cls")(hb)
    return gn.Model(inputs=[a, b], outputs=[out1, out2], name="two")


def test_graph_with_shared_layer_residual_and_two_outputs_matches_pytorch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    model = _two_in_two_out()
    assert len(model.layers) == 6 and len(model.inputs) == 2 and len(model.outputs) == 2
    W = {layer.name: [torch.tensor(w) for w in layer.get_weights()] for layer in model.layers}

    def lin(x, name):
        k, b = W[name]
        return x @ k + b

    ta, tb = torch.tensor(A, requires_grad=True), torch.tensor(B, requires_grad=True)
    for ws in W.values():
        for w in ws:
            w.requires_grad_(True)
    ha, hb = torch.tanh(lin(ta, "shared")), torch.tanh(lin(tb, "shared"))
    cat = torch.cat([ha + lin(ta, "skip"), hb], dim=1)
    o1, o2 = lin(cat, "reg"), torch.softmax(lin(hb, "cls"), dim=1)
    target = torch.tensor(RNG.normal(size=(6, 1)))
    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    loss_t = ((o1 - target) ** 2).mean() + torch.nn.functional.nll_loss(torch.log(o2), labels)
    loss_t.backward()

    ga, gb = gn.tensor(A, requires_grad=True), gn.tensor(B, requires_grad=True)
    y1, y2 = model([ga, gb])
    loss = gn.losses.MeanSquaredError()(
        target.numpy(), y1
    ) + gn.losses.SparseCategoricalCrossentropy()(labels.numpy(), y2)
    loss.backward()
    np.testing.assert_allclose(float(loss), loss_t.item(), rtol=1e-12)
    np.testing.assert_allclose(ga.grad, ta.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gb.grad, tb.grad.numpy(), rtol=1e-10, atol=1e-12)
    for layer in model.layers:
        for p, w in zip(layer.trainable_weights, W.get(layer.name, []), strict=False):
            np.testing.assert_allclose(p.grad, w.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_functional_model_saves_and_loads_bit_exactly(tmp_path):
    model = _two_in_two_out()
    path = tmp_path / "two.gpunet"
    model.save(path)
    back = gn.models.load_model(path)
    assert [type(layer).__name__ for layer in back.layers] == [
        type(layer).__name__ for layer in model.layers
    ]
    for x, y in zip(model([A, B]), back([A, B]), strict=True):
        np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_single_output_functional_model_fits_like_a_sequential():
    def build(functional: bool):
        gn.utils.set_random_seed(3)
        layers = [gn.layers.Dense(8, activation="relu"), gn.layers.Dense(1)]
        if functional:
            x = gn.Input(shape=(3,))
            return gn.Model(x, layers[1](layers[0](x)))
        layers[0] = gn.layers.Dense(8, activation="relu", input_shape=(3,))
        return gn.Sequential(layers)

    y = A[:, :1] * 2.0
    runs = []
    for functional in (True, False):
        model = build(functional)
        model.compile(optimizer="adam", loss="mse")
        runs.append(model.fit(A, y, epochs=5, batch_size=2, verbose=0, shuffle=False).history)
    np.testing.assert_allclose(runs[0]["loss"], runs[1]["loss"], rtol=1e-6)


def test_gan_composition_with_a_frozen_discriminator():
    gn.utils.set_random_seed(0)
    gen = gn.Sequential([gn.layers.Dense(8, activation="relu", input_shape=(2,)),
                         gn.layers.Dense(3)])  # fmt: skip
    disc = gn.Sequential([gn.layers.Dense(8, activation="relu", input_shape=(3,)),
                          gn.layers.Dense(1, activation="sigmoid")])  # fmt: skip
    disc.trainable = False
    z = gn.Input(shape=(2,))
    gan = gn.Model(z, disc(gen(z)))
    gan.compile(optimizer="adam", loss="binary_crossentropy")
    before = [w.copy() for w in disc.get_weights()]
    g_before = [w.copy() for w in gen.get_weights()]
    gan.train_on_batch(RNG.normal(size=(8, 2)), np.ones(8))
    for a, b in zip(before, disc.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # frozen
    assert any(not np.array_equal(a, b) for a, b in zip(g_before, gen.get_weights(), strict=True))
    lines: list[str] = []
    gan.summary(print_fn=lines.append)
    assert any("sequential" in line for line in lines)


def test_bad_graphs_and_inputs_raise_clear_errors():
    a = gn.Input(shape=(3,), name="a")
    b = gn.Input(shape=(3,), name="b")
    y = gn.layers.Add()([a, b])
    with pytest.raises(InvalidParameterError, match=r"graph disconnected.*'b'"):
        gn.Model(a, y)
    model = gn.Model([a, b], y)
    with pytest.raises(InputValidationError, match="expects 2 input"):
        model(np.ones((2, 3)))
    with pytest.raises(InputValidationError, match=r"input 'b'.*expects shape \(None, 3\)"):
        model([np.ones((2, 3)), np.ones((2, 4))])
    with pytest.raises(InvalidParameterError, match="positive ints"):
        gn.Input(shape=(0,))


def _doc_of(model, tmp_path):
    from gpunet.saving import _container

    path = tmp_path / "m.gpunet"
    model.save(path)
    return _container.read(path)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c["nodes"][0].update(args=[5]), "neither an input nor an earlier call"),
        (lambda c: c["nodes"][0].update(args=[0]), "neither an input nor an earlier call"),
        (lambda c: c["nodes"][0].update(layer=99), "no layer 99"),
        (lambda c: c["nodes"][0].update(args=[]), "expected one input"),
        (lambda c: c.update(outputs=[7]), "neither an input nor an earlier call"),
        (lambda c: c.update(outputs=[]), "expected one output"),
        (lambda c: c.update(inputs=[]), "at least one input"),
        (lambda c: c["layers"][0].update(class_name="Evil"), "unknown layer type 'Evil'"),
        (lambda c: c["nodes"][0].update(run="os.system"), "unknown key 'run'"),
        (lambda c: c["inputs"][0].update(shape=[10**9]), "does not match|expected"),
    ],
)
def test_hostile_graph_documents_are_rejected(tmp_path, edit, match):
    from gpunet.saving import _container

    x = gn.Input(shape=(3,))
    model = gn.Model(x, gn.layers.Dense(2)(gn.layers.Dense(4)(x)))
    doc, tensors = _doc_of(model, tmp_path)
    edit(doc["model"]["config"])
    bad = _container.pack(json.loads(json.dumps(doc)), tensors)
    with pytest.raises(ModelFileError, match=match):
        gn.models.load_model(bad)


def test_summary_shows_inputs_calls_and_what_each_reads():
    a, b = gn.Input(shape=(3,), name="a"), gn.Input(shape=(2,), name="b")
    shared = gn.layers.Dense(4, name="shared")
    out = gn.layers.Concatenate(name="cat")([shared(a), gn.layers.Dense(4, name="d")(b)])
    model = gn.Model([a, b], [out, shared(a)])
    lines: list[str] = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Connected to" in text and "a (InputLayer)" in text
    row = next(line for line in lines if line.startswith("cat (Concatenate)"))
    assert row.split()[-2:] == ["shared,", "d"] and "(None, 8)" in row
    assert "Total params: 28" in text  # the shared layer's weights counted once
