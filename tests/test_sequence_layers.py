"""Embedding, Masking, TimeDistributed and the mask flow: gn.nn.Embedding and
pad_sequence against PyTorch, integer ids through every way in (eager, fit, predict,
Sequential, Functional, the graph-free step), the embedding gradient op, save/load,
summary(), the simulated device and threads."""

from __future__ import annotations

import os
import tempfile
import threading

import numpy as np
import pytest

import gpunet as gn
from gpunet.backend.numpy_ops import NumpyOps
from gpunet.backend.ops import Ops
from gpunet.engine import step
from gpunet.nn.utils.rnn import pad_sequence

L = gn.layers
R = np.random.default_rng(0)
IDS = np.array([[3, 1, 4, 0, 0], [5, 9, 2, 6, 0], [2, 0, 0, 0, 0], [7, 7, 7, 1, 8]])
Y = np.array([0, 1, 1, 0])


def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


# -- gn.nn against torch ------------------------------------------------------------------
@pytest.mark.parametrize("padding_idx", [None, 0, -2])
def test_nn_embedding_matches_torch(padding_idx):
    torch = _torch()
    ours = gn.nn.Embedding(10, 3, padding_idx=padding_idx, dtype="float64")
    theirs = torch.nn.Embedding(10, 3, padding_idx=padding_idx, dtype=torch.float64)
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(ours.weight.numpy()))
    assert ours.padding_idx == theirs.padding_idx
    ids = np.array([[0, 4, 4, 8], [1, 0, 9, 8]])
    y, ty = ours(ids), theirs(torch.tensor(ids))
    np.testing.assert_array_equal(y.numpy(), ty.detach().numpy())
    w = R.normal(size=y.shape)
    (y * gn.tensor(w, dtype="float64")).sum().backward()
    (ty * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-13)
    if padding_idx is not None:
        assert not ours.weight.grad.numpy()[ours.padding_idx].any()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert repr(ours) == repr(theirs)


def test_nn_embedding_initialization_is_torchs():
    torch = _torch()
    W = gn.nn.Embedding(400, 50, padding_idx=3).weight.numpy()
    T = torch.nn.Embedding(400, 50, padding_idx=3).weight.detach().numpy()
    assert W.dtype == T.dtype == np.float32
    assert not W[3].any() and not T[3].any()
    rest = np.delete(W, 3, axis=0)
    assert abs(rest.mean()) < 0.02 and abs(rest.std() - 1.0) < 0.02  # N(0, 1)


def test_nn_embedding_from_pretrained_is_frozen_unless_asked():
    torch = _torch()
    W = R.normal(size=(5, 2))
    ours, theirs = (
        gn.nn.Embedding.from_pretrained(W),
        torch.nn.Embedding.from_pretrained(torch.tensor(W)),
    )
    assert ours.weight.requires_grad is theirs.weight.requires_grad is False
    assert gn.nn.Embedding.from_pretrained(W, freeze=False).weight.requires_grad
    np.testing.assert_allclose(ours(np.array([4, 0])).numpy(), W[[4, 0]], rtol=1e-6)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_sequence_matches_torch(batch_first, side):
    torch = _torch()
    seqs = [R.normal(size=(n, 2)) for n in (3, 1, 4)]
    xs = [gn.tensor(s, dtype="float64", requires_grad=True) for s in seqs]
    ts = [torch.tensor(s, requires_grad=True) for s in seqs]
    y = pad_sequence(xs, batch_first=batch_first, padding_value=-1.5, padding_side=side)
    ty = torch.nn.utils.rnn.pad_sequence(
        ts, batch_first=batch_first, padding_value=-1.5, padding_side=side
    )
    np.testing.assert_array_equal(y.numpy(), ty.detach().numpy())
    w = R.normal(size=y.shape)
    (y * gn.tensor(w, dtype="float64")).sum().backward()
    (ty * torch.tensor(w)).sum().backward()
    for x, t in zip(xs, ts, strict=True):
        np.testing.assert_array_equal(x.grad.numpy(), t.grad.numpy())


def test_pad_sequence_of_integer_ids_feeds_an_embedding():
    ids = pad_sequence([np.array([4, 2]), np.array([1]), np.array([3, 3, 3])], batch_first=True)
    assert ids.numpy().tolist() == [[4, 2, 0], [1, 0, 0], [3, 3, 3]]
    y = L.Embedding(5, 2, mask_zero=True)(ids)
    assert y._keras_mask.tolist() == [[True, True, False], [True, False, False], [True] * 3]


# -- the embedding gradient op --------------------------------------------------------------
@pytest.mark.parametrize("ops", [Ops(), NumpyOps()], ids=["reference", "numpy"])
def test_embedding_backward_is_the_add_at_sum_and_deterministic(ops):
    ids = R.integers(0, 37, size=(64, 9))
    ids[0, :5] = 36  # the last row
    dY = R.normal(size=(64, 9, 6))
    want = np.zeros((40, 6))
    np.add.at(want, ids.reshape(-1), dY.reshape(-1, 6))
    got = ops.embedding_backward(ids, dY, 40)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert not got[37:].any()
    again = ops.embedding_backward(ids, dY, 40)
    assert np.array_equal(got, again)
    out = np.full((40, 6), 7.0)
    assert ops.embedding_backward(ids, dY, 40, out=out) is out
    np.testing.assert_array_equal(out, got)


# -- integer ids through every way in -----------------------------------------------------
def _classifier(device="cpu", functional=False, lazy=False):
    gn.utils.set_random_seed(0)
    first = [] if lazy else [gn.Input(shape=(5,), dtype="int32")]
    if functional:
        i = gn.Input(shape=(5,), dtype="int32")
        h = L.GlobalAveragePooling1D()(L.Embedding(10, 4, mask_zero=True)(i))
        model = gn.Model(i, L.Dense(2, activation="softmax")(h), device=device)
    else:
        model = gn.Sequential([*first, L.Embedding(10, 4, mask_zero=True),
                               L.GlobalAveragePooling1D(), L.Dense(2, activation="softmax")],
                              device=device)  # fmt: skip
    model.compile(optimizer=gn.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize(("functional", "lazy"), [(False, True), (False, False), (True, False)])
def test_integer_ids_train_and_predict(functional, lazy):
    model = _classifier(functional=functional, lazy=lazy)
    model.fit(IDS, Y, epochs=30, batch_size=4, verbose=0)
    assert model.predict(IDS).argmax(1).tolist() == Y.tolist()
    assert model.evaluate(IDS, Y, verbose=0) < 0.1
    # the padding never matters: more zeros, same predictions
    wide = np.concatenate([IDS, np.zeros((4, 3), int)], axis=1)
    if not functional:
        np.testing.assert_allclose(model.predict(wide), model.predict(IDS), rtol=1e-6)


def test_the_graph_free_step_reads_the_mask_and_matches_the_graph():
    fast, slow = _classifier(), _classifier()
    slow.use_fastpath = False
    for m in (fast, slow):
        m.fit(IDS, Y, epochs=3, batch_size=2, verbose=0, shuffle=False)
    assert step.plan(fast) is not None and fast._step_plan is not None
    assert slow._step_plan is None
    for a, b in zip(fast.get_weights(), slow.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    Yh, _, mask = fast.forward_masked(fast.ops, IDS, False)
    assert mask is None and Yh.shape == (4, 2)


def test_sequential_passes_masks_on_arrays():
    model = gn.Sequential([L.Embedding(10, 3, mask_zero=True), L.Dense(2)])
    model(IDS)
    _, _, mask = model.forward_masked(model.ops, IDS, False)
    np.testing.assert_array_equal(mask, IDS != 0)
    np.testing.assert_array_equal(model(IDS)._keras_mask, IDS != 0)


def test_a_symbolic_tensor_carries_its_mask():
    i = gn.Input(shape=(5,), dtype="int32")
    h = L.Embedding(10, 3, mask_zero=True)(i)
    assert h._keras_mask.shape == (None, 5) and h._keras_mask.dtype == "bool"
    assert L.Dense(2)(h)._keras_mask is not None
    assert L.GlobalAveragePooling1D()(h)._keras_mask is None
    assert L.Embedding(10, 3)(i)._keras_mask is None


def test_a_layer_taking_a_mask_is_given_it():
    seen = []

    class Reader(L.Layer):
        supports_masking = True

        def call(self, x, mask=None):
            seen.append(mask)
            return x

    e = L.Embedding(10, 3, mask_zero=True)
    Reader()(e(IDS))
    np.testing.assert_array_equal(seen[-1], IDS != 0)
    Reader()(e(IDS), mask=np.ones((4, 5), bool))  # given explicitly: that one
    assert seen[-1].all()
    Reader()(np.ones((4, 5, 3)))
    assert seen[-1] is None


# -- save/load, summary, the simulated device, threads ---------------------------------------
@pytest.mark.parametrize("functional", [False, True])
def test_save_and_load_round_trip(functional):
    model = _classifier(functional=functional)
    model.fit(IDS, Y, epochs=2, verbose=0)
    path = os.path.join(tempfile.mkdtemp(), "m.gpunet")
    model.save(path)
    back = gn.models.load_model(path)
    np.testing.assert_array_equal(back.predict(IDS), model.predict(IDS))
    emb = next(x for x in back.layers if isinstance(x, L.Embedding))
    assert emb.mask_zero and emb.input_dim == 10
    back.fit(IDS, Y, epochs=1, verbose=0)  # the optimizer state came back too


def test_masking_model_round_trip():
    X = R.normal(size=(4, 5, 3)).astype("float32")
    X[:, 3:] = 0.0
    model = gn.Sequential([L.Masking(mask_value=0.0, input_shape=(5, 3)),
                           L.GlobalAveragePooling1D(), L.Dense(1)])  # fmt: skip
    model.compile("sgd", "mse")
    path = os.path.join(tempfile.mkdtemp(), "m.gpunet")
    model.save(path)
    back = gn.models.load_model(path)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    np.testing.assert_allclose(model.predict(X), model.predict(X[:, :3]), rtol=1e-6)


def test_summary_lists_the_embedding():
    lines = []
    model = gn.Sequential([gn.Input(shape=(5,), dtype="int32"), L.Embedding(10, 4),
                           L.TimeDistributed(L.Dense(3)), L.GlobalAveragePooling1D()])  # fmt: skip
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "(Embedding)" in text and "(None, 5, 4)" in text
    assert "(None, 5, 3)" in text and "Total params: 55" in text


def test_the_simulated_device_trains_the_same():
    pytest.importorskip("array_api_strict")
    cpu, sim = _classifier(), _classifier("sim")
    for m in (cpu, sim):
        m.fit(IDS, Y, epochs=3, batch_size=2, verbose=0, shuffle=False)
    for a, b in zip(cpu.get_weights(), sim.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    y = sim.layers[0](gn.tensor(IDS, device="sim"))
    assert y.device == "sim" and y._keras_mask.shape == (4, 5)


def test_masked_calls_in_threads_match_serial_ones():
    model = gn.Sequential([L.Embedding(10, 4, mask_zero=True), L.GlobalAveragePooling1D(),
                           L.Dense(2)])  # fmt: skip
    want = model(IDS).numpy()
    got: list[np.ndarray] = []

    def work():
        for _ in range(20):
            got.append(model(IDS).numpy())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 80 and all(np.array_equal(g, want) for g in got)


@pytest.mark.parametrize("inner", ["dense", "conv"])
def test_time_distributed_round_trip(inner):
    if inner == "dense":
        X = R.normal(size=(4, 5, 3)).astype("float32")
        layers = [L.TimeDistributed(L.Dense(2, kernel_regularizer="l2"), input_shape=(5, 3)),
                  L.GlobalAveragePooling1D()]  # fmt: skip
    else:
        X = R.normal(size=(3, 2, 6, 6, 1)).astype("float32")
        layers = [L.TimeDistributed(L.Conv2D(2, 3), input_shape=(2, 6, 6, 1)), L.Flatten()]
    model = gn.Sequential(layers)
    model.compile("adam", "mse")
    model.fit(X, np.ones((len(X), model.predict(X).shape[1])), verbose=0)
    path = os.path.join(tempfile.mkdtemp(), "m.gpunet")
    model.save(path)
    back = gn.models.load_model(path)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    assert type(back.layers[0].layer) is type(model.layers[0].layer)
    assert back.layers[0].layer.get_config() == model.layers[0].layer.get_config()


def test_a_wrapped_layer_entry_is_checked_like_any_layer():
    from gpunet.errors import GpunetError
    from gpunet.saving import _schema

    entry = {"class_name": "TimeDistributed",
             "config": {"layer": {"class_name": "Evil", "config": {}}}}  # fmt: skip
    with pytest.raises(GpunetError, match=r"\$\.config\.layer\.class_name"):
        _schema.check_layer(entry, "$")
    entry["config"]["layer"] = {"class_name": "Dense", "config": {"units": -1}}
    with pytest.raises(GpunetError, match=r"\$\.config\.layer\.config\.units"):
        _schema.check_layer(entry, "$")


# -- sequence outputs in fit ---------------------------------------------------------------
def _tagger(fast=True, mask_zero=True, loss="sparse_categorical_crossentropy"):
    gn.utils.set_random_seed(0)
    model = gn.Sequential([gn.Input(shape=(5,), dtype="int32"),
                           L.Embedding(10, 4, mask_zero=mask_zero),
                           L.Dense(3, activation="softmax")])  # fmt: skip
    model.use_fastpath = fast
    model.compile(optimizer="sgd", loss=loss, metrics=["accuracy"])
    return model


TAGS = np.where(IDS != 0, IDS % 3, 0)


@pytest.mark.parametrize("mask_zero", [True, False])
def test_sequence_targets_weigh_the_real_steps_by_sequence_weights(mask_zero):
    sw = np.array([1.0, 2.0, 0.5, 3.0])
    model = _tagger(mask_zero=mask_zero)
    P = model.predict(IDS)
    ce = -np.log(np.take_along_axis(P, TAGS[..., None], -1)[..., 0]) * sw[:, None]
    M = (IDS != 0) if mask_zero else np.ones(IDS.shape, bool)
    hit = P.argmax(-1) == TAGS
    logs = model.evaluate(IDS, TAGS, sample_weight=sw, verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["loss"], (ce * M).sum() / M.sum(), rtol=1e-5)
    # Keras 3's compiled metrics take the mask, not the sample weights
    np.testing.assert_allclose(logs["accuracy"], (hit * M).sum() / M.sum(), rtol=1e-6)


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "mse"])
def test_a_sequence_fit_is_the_same_with_and_without_the_graph(loss):
    T = TAGS if loss.startswith("sparse") else np.eye(3)[TAGS]
    fast, slow = _tagger(True, loss=loss), _tagger(False, loss=loss)
    for m in (fast, slow):
        m.fit(IDS, T, sample_weight=np.array([1.0, 2.0, 0.5, 3.0]), epochs=2, batch_size=2,
              verbose=0, shuffle=False)  # fmt: skip
    assert fast._step_plan is not None and slow._step_plan is None
    for a, b in zip(fast.get_weights(), slow.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_sequence_targets_of_the_wrong_shape_are_named():
    model = _tagger()
    with pytest.raises(gn.errors.InputValidationError, match=r"\(n, time\), got shape \(4,\)"):
        model.fit(IDS, TAGS[:, 0], verbose=0)
    with pytest.raises(gn.errors.InputValidationError, match="label 7 outside"):
        model.fit(IDS, np.where(IDS == 7, 7, TAGS), verbose=0)


def test_time_distributed_gives_each_step_its_mask():
    """(batch, time, steps, features) with a (batch, time, steps) mask: the inner
    masked mean sees each step's mask, as Keras' TimeDistributed gives mask[:, t]."""
    X = R.normal(size=(2, 3, 4, 2))
    mask = R.random((2, 3, 4)) > 0.3
    mask[..., 0] = True
    td = L.TimeDistributed(L.GlobalAveragePooling1D(dtype="float64"), dtype="float64")
    y = td(gn.tensor(X, dtype="float64"), mask=mask)
    M = mask[..., None]
    np.testing.assert_allclose(y.numpy(), (X * M).sum(2) / M.sum(2), rtol=1e-12)
    np.testing.assert_array_equal(y._keras_mask, mask)  # passed on, as Keras does
    Y, _ = td.forward_pass(td.ops, X, False, mask=mask)
    np.testing.assert_allclose(Y, y.numpy(), rtol=1e-12)


def test_each_tensor_argument_gives_its_mask_to_its_mask_parameter():
    """Keras: a call with query and value (and query_mask, value_mask parameters) is
    given each argument's mask; the first argument's mask survives a cast."""
    seen = {}

    class Attend(L.Layer):
        supports_masking = True

        def call(self, query, value, key=None, query_mask=None, value_mask=None, key_mask=None):
            seen.update(query_mask=query_mask, value_mask=value_mask, key_mask=key_mask)
            return query

    e = L.Embedding(10, 3, mask_zero=True)
    q, v = e(IDS), e(IDS[:, ::-1].copy())
    out = Attend()(q, v, key=v)
    np.testing.assert_array_equal(seen["query_mask"], IDS != 0)
    np.testing.assert_array_equal(seen["value_mask"], IDS[:, ::-1] != 0)
    np.testing.assert_array_equal(seen["key_mask"], IDS[:, ::-1] != 0)
    np.testing.assert_array_equal(out._keras_mask, IDS != 0)
    Attend()(q, v, value_mask=np.ones((4, 5), bool))  # given: kept
    assert seen["value_mask"].all()
    wide = L.Dense(3, dtype="float64")(q)  # a float64 layer: its input is cast, mask kept
    np.testing.assert_array_equal(wide._keras_mask, IDS != 0)


def test_per_step_binary_targets_fit_a_one_unit_sequence_output():
    gn.utils.set_random_seed(0)
    model = gn.Sequential([gn.Input(shape=(5,), dtype="int32"), L.Embedding(10, 4, mask_zero=True),
                           L.Dense(1, activation="sigmoid")])  # fmt: skip
    model.compile(optimizer=gn.optimizers.Adam(0.05), loss="binary_crossentropy")
    target = (IDS % 2).astype("float32")
    model.fit(IDS, target, epochs=40, verbose=0)
    P = model.predict(IDS)[..., 0]
    real = IDS != 0
    assert ((P > 0.5) == (target > 0.5))[real].all()


def test_per_step_sample_weights_of_the_wrong_shape_are_named():
    model = _tagger()
    with pytest.raises(gn.errors.InputValidationError, match=r"shape \(4, 3\).*\(4, 5\)"):
        model.fit(IDS, TAGS, sample_weight=np.ones((4, 3)), verbose=0)
    with pytest.raises(gn.errors.InputValidationError, match="negative"):
        model.fit(IDS, TAGS, sample_weight=-np.ones((4, 5)), verbose=0)
