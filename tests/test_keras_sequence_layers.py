"""Embedding, Masking, TimeDistributed, masked GlobalAveragePooling1D, the mask flow
and masked losses against Keras 3 (torch backend) and PyTorch, on the same weights
and inputs."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import gpunet as gn

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")
torch.set_num_threads(1)

L = gn.layers
R = np.random.default_rng(0)
IDS = np.array([[3, 1, 4, 0, 0], [5, 9, 2, 6, 0], [0, 0, 0, 0, 0], [7, 7, 7, 1, 8]])


def _weights(model):
    """Keras' weights as arrays (its ``get_weights`` trips NumPy 2's copy warning)."""
    return [v.value.detach().cpu().numpy() for v in model.weights]


def _kmask(t):
    m = getattr(t, "_keras_mask", None)
    return None if m is None else m.detach().cpu().numpy()


def test_embedding_matches_keras_output_mask_and_weight_gradient():
    ours = L.Embedding(10, 4, mask_zero=True, dtype="float64")
    theirs = keras.layers.Embedding(10, 4, mask_zero=True, dtype="float64")
    y = ours(IDS)
    theirs.build((None, 5))
    theirs.set_weights(ours.get_weights())
    ty = theirs(torch.tensor(IDS))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=0, atol=0)
    np.testing.assert_array_equal(y._keras_mask, _kmask(ty))
    assert theirs.compute_mask(torch.tensor(IDS)) is not None
    # the weight gradient of a weighted sum, against torch autograd on Keras' variable
    w = R.normal(size=y.shape)
    (y * gn.tensor(w, dtype="float64")).sum().backward()
    (ty * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(
        ours.embeddings.grad.numpy(), theirs.embeddings.value.grad.numpy(), rtol=1e-12
    )
    assert [w.shape for w in ours.get_weights()] == [tuple(v.shape) for v in theirs.weights]
    assert ours.count_params() == theirs.count_params()


def test_embedding_default_initializer_is_keras_uniform():
    W = L.Embedding(200, 50)
    W(np.zeros((1, 1), int))
    values = W.embeddings.numpy()
    assert values.dtype == np.float32 and values.min() >= -0.05 and values.max() <= 0.05
    assert abs(values.std() - 0.1 / np.sqrt(12)) < 2e-3  # U(-0.05, 0.05)


def test_embedding_float_ids_are_cast_as_keras_does():
    layer = L.Embedding(10, 2)
    np.testing.assert_array_equal(layer(IDS.astype("float32")).numpy(), layer(IDS).numpy())


def test_masking_matches_keras():
    X = R.normal(size=(3, 4, 2))
    X[0, 1] = 0.0
    X[2, 3] = 0.0
    X[1, 2, 0] = 0.0  # one feature only: the step stays
    y = L.Masking(dtype="float64")(X)
    ty = keras.layers.Masking(dtype="float64")(torch.tensor(X))
    np.testing.assert_array_equal(y.numpy(), ty.detach().numpy())
    np.testing.assert_array_equal(y._keras_mask, _kmask(ty))
    y2 = L.Masking(mask_value=X[0, 0, 0], dtype="float64")(X)
    ty2 = keras.layers.Masking(mask_value=X[0, 0, 0], dtype="float64")(torch.tensor(X))
    np.testing.assert_array_equal(y2._keras_mask, _kmask(ty2))


def test_masks_pass_through_the_layers_keras_lets_them_through():
    ours_e = L.Embedding(10, 4, mask_zero=True)
    x = ours_e(IDS)
    want = IDS != 0
    for layer in (L.Dense(3), L.Dropout(0.5), L.Activation("relu"), L.LayerNormalization(),
                  L.BatchNormalization(), L.Softmax(), L.TimeDistributed(L.Dense(2))):  # fmt: skip
        np.testing.assert_array_equal(layer(x, training=True)._keras_mask, want)
        kl = getattr(keras.layers, type(layer).__name__)
        assert issubclass(kl, keras.layers.Layer)
    assert L.GlobalAveragePooling1D()(x)._keras_mask is None
    with pytest.warns(UserWarning, match="does not support masking"):
        assert L.Flatten()(x)._keras_mask is None
    with pytest.warns(UserWarning, match="does not support masking"):
        keras.layers.Flatten()(keras.layers.Embedding(10, 4, mask_zero=True)(torch.tensor(IDS)))


def test_merge_masks_match_keras():
    a, b = IDS, np.roll(IDS, 1, axis=1)
    e = L.Embedding(10, 3, mask_zero=True)
    ke = keras.layers.Embedding(10, 3, mask_zero=True)
    ke.build((None, 5))
    xa, xb = e(a), e(b)
    ke.set_weights(e.get_weights())
    ta, tb = ke(torch.tensor(a)), ke(torch.tensor(b))
    plain = L.Dense(3)(xa.detach())  # no mask
    for name, kw in (("Add", {}), ("Multiply", {}), ("Concatenate", {}),
                     ("Concatenate", {"axis": 1})):  # fmt: skip
        ours = getattr(L, name)(**kw)([xa, xb])
        theirs = getattr(keras.layers, name)(**kw)([ta, tb])
        np.testing.assert_array_equal(ours._keras_mask, _kmask(theirs), err_msg=name)
    # an input without a mask: the elementwise merges drop it, Concatenate keeps one
    assert L.Add()([xa, plain])._keras_mask is None
    kplain = torch.tensor(plain.numpy())
    np.testing.assert_array_equal(
        L.Concatenate()([xa, plain])._keras_mask,
        _kmask(keras.layers.Concatenate()([ta, kplain])),
    )


@pytest.mark.parametrize("keepdims", [False, True])
def test_masked_global_average_pooling_1d_matches_keras_and_torch(keepdims):
    X = R.normal(size=(4, 5, 3))
    mask = IDS != 0
    mask[2, 0] = True  # keep one step of the all-padding row (Keras' 0/0 is NaN)
    x = gn.tensor(X, dtype="float64", requires_grad=True)
    y = L.GlobalAveragePooling1D(keepdims=keepdims, dtype="float64")(x, mask=mask)
    tx = torch.tensor(X, requires_grad=True)
    ty = keras.layers.GlobalAveragePooling1D(keepdims=keepdims, dtype="float64")(
        tx, mask=torch.tensor(mask)
    )
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12)
    w = R.normal(size=y.shape)
    (y * gn.tensor(w, dtype="float64")).sum().backward()
    (ty * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12)
    # torch: the masked mean written out
    m = torch.tensor(mask, dtype=torch.float64)[..., None]
    ref = (torch.tensor(X) * m).sum(1) / m.sum(1)
    np.testing.assert_allclose(y.numpy().reshape(ref.shape), ref.numpy(), rtol=1e-12)


def test_masked_global_average_pooling_1d_of_no_real_step_is_nan_as_keras():
    y = L.GlobalAveragePooling1D()(np.ones((1, 3, 2)), mask=np.zeros((1, 3), bool))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras' 0/0
        ty = keras.layers.GlobalAveragePooling1D()(
            torch.ones(1, 3, 2), mask=torch.zeros(1, 3, dtype=torch.bool)
        )
    assert np.isnan(y.numpy()).all() and np.isnan(ty.detach().numpy()).all()


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "mse"])
@pytest.mark.parametrize("weighted", [False, True])
def test_masked_loss_matches_keras(loss, weighted):
    """A sequence output's mask weighs the loss: the mean over the real steps."""
    P = R.uniform(0.05, 1.0, size=(4, 5, 6))
    P /= P.sum(-1, keepdims=True)
    mask = IDS != 0
    mask[2, 1] = True
    T = R.integers(0, 6, size=(4, 5)) if loss.startswith("sparse") else R.normal(size=P.shape)
    sw = R.uniform(0, 2, size=(4, 5)) if weighted else None  # per step, as Keras takes
    y = gn.tensor(P, dtype="float64", requires_grad=True)
    y._keras_mask = mask
    got = gn.losses.get(loss)(T, y, sample_weight=sw)
    ty = torch.tensor(P, requires_grad=True)
    ty._keras_mask = torch.tensor(mask)
    kw = {} if sw is None else {"sample_weight": torch.tensor(sw)}
    cls = {"mse": "MeanSquaredError"}.get(loss, "SparseCategoricalCrossentropy")
    theirs = getattr(keras.losses, cls)(dtype="float64")(torch.tensor(T), ty, **kw)
    # Keras' masked mean rounds through float32 somewhere even for float64 losses
    np.testing.assert_allclose(got.item(), theirs.detach().item(), rtol=1e-6)
    got.backward()
    theirs.backward()
    np.testing.assert_allclose(y.grad.numpy(), ty.grad.numpy(), rtol=1e-6, atol=1e-9)
    # ... and exactly the mean over the real steps
    if loss == "mse":
        v = ((P - T) ** 2).mean(-1)
    else:
        v = -np.log(np.take_along_axis(P, T[..., None], -1)[..., 0])
    v = v if sw is None else v * sw
    np.testing.assert_allclose(got.item(), (v * mask).sum() / mask.sum(), rtol=1e-12)


def test_masked_loss_weights_whole_sequences_by_a_per_sample_weight():
    """One weight per sequence (Keras raises for it): each step takes its sequence's."""
    P, T = R.normal(size=(4, 5, 3)), R.normal(size=(4, 5, 3))
    mask, sw = IDS != 0, np.array([1.0, 0.5, 2.0, 3.0])
    y = gn.tensor(P, dtype="float64")
    y._keras_mask = mask
    got = gn.losses.MeanSquaredError()(T, y, sample_weight=sw).item()
    v = ((P - T) ** 2).mean(-1) * sw[:, None]
    np.testing.assert_allclose(got, (v * mask).sum() / mask.sum(), rtol=1e-12)


def test_masked_cross_entropy_matches_torch_ignore_index():
    Z = R.normal(size=(4, 5, 6))
    T = R.integers(0, 6, size=(4, 5))
    mask = IDS != 0
    y = L.Activation("softmax", dtype="float64")(gn.tensor(Z, dtype="float64"))
    y._keras_mask = mask
    got = gn.losses.SparseCategoricalCrossentropy()(T, y).item()
    want = torch.nn.functional.cross_entropy(
        torch.tensor(Z).reshape(-1, 6), torch.tensor(np.where(mask, T, -100)).reshape(-1)
    )
    np.testing.assert_allclose(got, float(want), rtol=1e-10)


def test_time_distributed_dense_matches_keras():
    X = R.normal(size=(3, 4, 5))
    ours = L.TimeDistributed(L.Dense(2, activation="tanh", dtype="float64"), dtype="float64")
    y = ours(X)
    theirs = keras.layers.TimeDistributed(
        keras.layers.Dense(2, activation="tanh", dtype="float64"), dtype="float64"
    )
    theirs.build((None, 4, 5))
    theirs.set_weights(ours.get_weights())
    W, b = ours.get_weights()
    np.testing.assert_allclose(y.numpy(), np.tanh(X @ W + b), rtol=1e-14)
    # Keras' step loop rounds through float32 even with float64 layers
    np.testing.assert_allclose(y.numpy(), theirs(torch.tensor(X)).detach().numpy(), atol=1e-6)
    assert ours.compute_output_shape((None, 4, 5)) == theirs.compute_output_shape((None, 4, 5))
    assert ours.count_params() == theirs.count_params()


def test_time_distributed_conv2d_matches_keras():
    X = R.normal(size=(2, 3, 6, 6, 1))
    ours = L.TimeDistributed(L.Conv2D(2, 3, dtype="float64"), dtype="float64")
    y = ours(X)
    theirs = keras.layers.TimeDistributed(
        keras.layers.Conv2D(2, 3, dtype="float64"), dtype="float64"
    )
    theirs.build((None, 3, 6, 6, 1))
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(y.numpy(), theirs(torch.tensor(X)).detach().numpy(), rtol=1e-10)
    assert y.shape == (2, 3, 4, 4, 2)


@pytest.mark.slow  # the first Keras fit of a session warms Keras up (~1 s)
def test_a_masked_text_classifier_matches_keras_after_one_step():
    """Embedding(mask_zero) -> masked mean -> Dense, one SGD step: the same weights."""
    gn.utils.set_random_seed(0)
    y = np.array([0, 1, 1, 0])
    ours = gn.Sequential([gn.Input(shape=(5,), dtype="int32"),
                          L.Embedding(10, 4, mask_zero=True, dtype="float64"),
                          L.GlobalAveragePooling1D(dtype="float64"),
                          L.Dense(2, activation="softmax", dtype="float64")])  # fmt: skip
    K = keras.layers
    theirs = keras.Sequential([keras.Input(shape=(5,), dtype="int32"),
                               K.Embedding(10, 4, mask_zero=True, dtype="float64"),
                               K.GlobalAveragePooling1D(dtype="float64"),
                               K.Dense(2, activation="softmax", dtype="float64")])  # fmt: skip
    ids = IDS.copy()
    ids[2, 0] = 3  # no all-padding row (its 0/0 mean is NaN in both)
    theirs.set_weights(ours.get_weights())
    for m, opt in ((ours, gn.optimizers.SGD(0.5)), (theirs, keras.optimizers.SGD(0.5))):
        m.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
        m.fit(ids, y, epochs=1, batch_size=4, verbose=0, shuffle=False)
    # (Keras keeps the learning rate, and so the update, in float32)
    for a, b in zip(ours.get_weights(), _weights(theirs), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        ours.predict(ids), theirs(torch.tensor(ids)).detach().numpy(), atol=1e-6
    )


@pytest.mark.parametrize("head", ["dense", "time_distributed", "step_weights"])
def test_a_masked_sequence_tagger_fits_and_evaluates_as_keras(head):
    """Per-step labels, padded steps masked: the compiled loss and accuracy weigh
    only the real steps, in fit and evaluate, on the graph-free step too."""
    gn.utils.set_random_seed(1)
    K = keras.layers
    tags = np.where(IDS != 0, IDS % 3, 0)

    def build(lib, Lx):
        out = Lx.Dense(3, activation="softmax", dtype="float64")
        if head == "time_distributed":
            out = Lx.TimeDistributed(out, dtype="float64")
        emb = Lx.Embedding(10, 4, mask_zero=True, dtype="float64")
        return lib.Sequential([lib.Input(shape=(5,), dtype="int32"), emb, out])

    ours, theirs = build(gn, L), build(keras, K)
    theirs.set_weights(ours.get_weights())
    logs = {}
    sw = R.uniform(0.5, 2.0, size=IDS.shape) if head == "step_weights" else None  # per step
    for name, m, opt in (("ours", ours, gn.optimizers.SGD(0.5)),
                         ("theirs", theirs, keras.optimizers.SGD(0.5))):  # fmt: skip
        m.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        m.fit(IDS, tags, sample_weight=sw, epochs=2, batch_size=2, verbose=0, shuffle=False)
        logs[name] = m.evaluate(IDS, tags, sample_weight=sw, verbose=0, return_dict=True)
    assert ours._step_plan is not None or head == "time_distributed"
    for a, b in zip(ours.get_weights(), _weights(theirs), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for k in ("loss", "accuracy"):
        np.testing.assert_allclose(logs["ours"][k], logs["theirs"][k], rtol=1e-5, err_msg=k)


def test_batch_normalization_with_a_mask_matches_keras():
    """Training statistics over the real steps only; every step normalized by them."""
    X = R.normal(size=(4, 5, 3)) * 2 + 1
    mask = IDS != 0
    ours = L.BatchNormalization(momentum=0.9, dtype="float64")
    theirs = keras.layers.BatchNormalization(momentum=0.9, dtype="float64")
    x = gn.tensor(X, dtype="float64", requires_grad=True)
    y = ours(x, training=True, mask=mask)
    tx = torch.tensor(X, requires_grad=True)
    theirs.build((None, 5, 3))
    ty = theirs(tx, training=True, mask=torch.tensor(mask))
    M = mask[..., None]
    n = M.sum((0, 1)) + 1e-7
    mean = (M * X).sum((0, 1)) / n
    var = (M * (X - mean) ** 2).sum((0, 1)) / n
    np.testing.assert_allclose(y.numpy(), (X - mean) / np.sqrt(var + 1e-3), rtol=1e-12)
    # Keras' masked moments round through float32 even for float64 layers
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    w = R.normal(size=X.shape)
    (y * gn.tensor(w, dtype="float64")).sum().backward()
    (ty * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-6)
    for ours_w, theirs_w in zip(ours.weights, theirs.weights, strict=True):
        v = theirs_w.value
        if ours_w.trainable:
            np.testing.assert_allclose(ours_w.grad.numpy(), v.grad.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ours_w.numpy(), v.detach().numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours.moving_mean.numpy(), 0.1 * mean, rtol=1e-12)
    assert np.array_equal(y._keras_mask, mask)


PAD_CASES = [
    ([[1], [2, 3], [4, 5, 6]], {}),
    ([[1], [2, 3], [4, 5, 6]], {"maxlen": 2}),
    ([[1], [2, 3], [4, 5, 6]], {"maxlen": 2, "truncating": "post"}),
    ([[1], [2, 3], [4, 5, 6]], {"maxlen": 4, "padding": "post", "value": -1}),
    ([[], [2, 3]], {}),
    ([np.ones((2, 3)), 2 * np.ones((1, 3))], {"dtype": "float32", "padding": "post"}),
    ([[1.5, 2.5], [3]], {"dtype": "float32", "maxlen": 3}),
]


@pytest.mark.parametrize(("seqs", "kw"), PAD_CASES)
def test_pad_sequences_matches_keras(seqs, kw):
    ours = gn.utils.pad_sequences(seqs, **kw)
    theirs = keras.utils.pad_sequences(seqs, **kw)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize(
    ("seqs", "kw", "match"),
    [
        ([[1]], {"padding": "middle"}, "padding='middle'"),
        ([[1]], {"maxlen": -1}, "maxlen=-1"),
        ([[1], 5], {}, "entry 1 is int"),
        ([np.ones((2, 3)), np.ones((2, 4))], {}, r"entry 1 has steps of shape \(4,\)"),
    ],
)
def test_pad_sequences_names_the_bad_argument(seqs, kw, match):
    with pytest.raises(ValueError, match=match):
        gn.utils.pad_sequences(seqs, **kw)
