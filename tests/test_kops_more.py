"""The keras.ops names of ``gpunet/_kops_more.py`` against Keras 3's own (torch
backend) on the same inputs, and a float64 central-difference check of every one
that carries a gradient."""

from __future__ import annotations

import os

import numpy as np
import pytest

import gpunet as gn

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")
torch.set_num_threads(1)

X = np.random.default_rng(7).normal(size=(3, 4))
K = keras.ops

VALUES = {  # name: (ours, theirs), each a function of (ops namespace, input)
    "arange": lambda o, x: o.arange(2, 9, 3),
    "arange_float": lambda o, x: o.arange(0.5, 2.0, 0.5),
    "arange_stop": lambda o, x: o.arange(5),
    "full": lambda o, x: o.full((2, 3), 1.5),
    "full_like": lambda o, x: o.full_like(x, 2.0),
    "eye": lambda o, x: o.eye(3, 4, k=1),
    "linspace": lambda o, x: o.linspace(0.0, 1.0, 5),
    "sin": lambda o, x: o.sin(x),
    "cos": lambda o, x: o.cos(x),
    "log1p": lambda o, x: o.log1p(o.abs(x)),
    "erf": lambda o, x: o.erf(x),
    "tril": lambda o, x: o.tril(x),
    "triu_k": lambda o, x: o.triu(x, 1),
    "tril_neg": lambda o, x: o.tril(x, -1),
    "sign": lambda o, x: o.sign(x),
    "floor": lambda o, x: o.floor(x),
    "ceil": lambda o, x: o.ceil(x),
    "round": lambda o, x: o.round(x * 2),
    "isnan": lambda o, x: o.isnan(o.divide(x * (x > 0), x * (x > 0))),
    "isfinite": lambda o, x: o.isfinite(o.divide(x, x * (x > 0))),
    "any": lambda o, x: o.any(o.greater(x, 1.0), axis=1),
    "all": lambda o, x: o.all(o.greater(x, -3.0), axis=0, keepdims=True),
    "gelu": lambda o, x: o.gelu(x),
    "gelu_exact": lambda o, x: o.gelu(x, approximate=False),
    "silu": lambda o, x: o.silu(x),
    "elu": lambda o, x: o.elu(x, 0.5),
    "selu": lambda o, x: o.selu(x),
    "leaky_relu": lambda o, x: o.leaky_relu(x, 0.1),
    "log_softmax": lambda o, x: o.log_softmax(x, axis=0),
    "stack": lambda o, x: o.stack([x, x * 2], axis=1),
    "split": lambda o, x: o.split(x, 2, axis=1)[1],
    "split_at": lambda o, x: o.split(x, [1], axis=0)[1],
    "tile": lambda o, x: o.tile(x, (2, 1, 3)),
    "repeat": lambda o, x: o.repeat(x, 2, axis=1),
    "repeat_flat": lambda o, x: o.repeat(x, 3),
    "flip": lambda o, x: o.flip(x, axis=0),
    "cumsum": lambda o, x: o.cumsum(x, axis=1),
    "cumsum_flat": lambda o, x: o.cumsum(x),
    "pad": lambda o, x: o.pad(x, ((1, 0), (2, 1)), constant_values=0.5),
    "slice": lambda o, x: o.slice(x, (1, 1), (2, 2)),
    "var": lambda o, x: o.var(x, axis=1),
    "std": lambda o, x: o.std(x, axis=0, keepdims=True),
    "dot": lambda o, x: o.dot(x, o.transpose(x)),
}


def _np(t):
    return t.numpy() if isinstance(t, gn.Tensor) else t.detach().cpu().numpy()


@pytest.mark.parametrize("name", list(VALUES))
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_matches_keras_ops(name):
    fn = VALUES[name]
    ours = _np(fn(gn.ops, gn.tensor(X)))
    theirs = _np(fn(K, torch.tensor(X)))
    assert ours.shape == theirs.shape, name
    if name.startswith(("arange", "full", "eye", "linspace")):
        assert ours.dtype == theirs.dtype, (name, ours.dtype, theirs.dtype)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-12)


GRADS = [n for n in VALUES if not n.startswith(("arange", "full", "eye", "linspace"))]
NO_GRAD = {"sign", "floor", "ceil", "round", "isnan", "isfinite", "any", "all"}


@pytest.mark.parametrize("name", [n for n in GRADS if n not in NO_GRAD])
def test_finite_difference(name):
    fn, eps = VALUES[name], 1e-6
    W = np.random.default_rng(1).normal(size=np.shape(_np(fn(gn.ops, gn.tensor(X)))))
    A = gn.tensor(X, requires_grad=True)
    (fn(gn.ops, A) * W).sum().backward()
    num = np.zeros_like(X)
    for i in np.ndindex(X.shape):
        hi, lo = X.copy(), X.copy()
        hi[i] += eps
        lo[i] -= eps
        f = lambda u: float((_np(fn(gn.ops, gn.tensor(u))) * W).sum())  # noqa: E731
        num[i] = (f(hi) - f(lo)) / (2 * eps)
    np.testing.assert_allclose(A.grad, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", sorted(NO_GRAD))
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_rounding_and_tests_carry_no_gradient(name):
    A = gn.tensor(X, requires_grad=True)
    assert not VALUES[name](gn.ops, A).requires_grad


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="size 4 does not split into 3"):
        gn.ops.split(gn.tensor(X), 3, axis=1)
    with pytest.raises(ValueError, match="mode='reflect'"):
        gn.ops.pad(gn.tensor(X), 1, mode="reflect")
    with pytest.raises(TypeError, match="int number of repeats"):
        gn.ops.repeat(gn.tensor(X), 1.5)


def test_custom_layer_with_position_ids_trains_in_a_functional_model():
    class TokenAndPosition(gn.layers.Layer):
        def __init__(self, n, vocab, d):
            super().__init__()
            self.tok = gn.layers.Embedding(vocab, d)
            self.pos = gn.layers.Embedding(n, d)

        def call(self, x):
            return self.tok(x) + self.pos(gn.ops.arange(0, gn.ops.shape(x)[-1], 1))

    gn.utils.set_random_seed(0)
    ids = np.random.default_rng(0).integers(0, 9, (64, 6))
    y = (ids[:, 0] > 4).astype("int64")  # only the first position decides: needs positions
    inputs = gn.layers.Input(shape=(6,), dtype="int32")
    h = gn.layers.Flatten()(TokenAndPosition(6, 9, 4)(inputs))
    model = gn.Model(inputs, gn.layers.Dense(2, activation="softmax")(h))
    model.compile(optimizer=gn.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    losses = model.fit(ids, y, epochs=15, batch_size=16, verbose=0).history["loss"]
    assert losses[-1] < 0.2 * losses[0]


def test_keras_io_transformer_text_classifier_blocks_train():
    # the custom layers of keras-io's "Text classification with Transformer", as written
    L, ops = gn.layers, gn.ops

    class TransformerBlock(L.Layer):
        def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1):
            super().__init__()
            self.att = L.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
            self.ffn = gn.Sequential([L.Dense(ff_dim, activation="relu"), L.Dense(embed_dim)])
            self.layernorm1 = L.LayerNormalization(epsilon=1e-6)
            self.layernorm2 = L.LayerNormalization(epsilon=1e-6)
            self.dropout1 = L.Dropout(rate)
            self.dropout2 = L.Dropout(rate)

        def call(self, inputs):
            attn_output = self.dropout1(self.att(inputs, inputs))
            out1 = self.layernorm1(inputs + attn_output)
            return self.layernorm2(out1 + self.dropout2(self.ffn(out1)))

    class TokenAndPositionEmbedding(L.Layer):
        def __init__(self, maxlen, vocab_size, embed_dim):
            super().__init__()
            self.token_emb = L.Embedding(input_dim=vocab_size, output_dim=embed_dim)
            self.pos_emb = L.Embedding(input_dim=maxlen, output_dim=embed_dim)

        def call(self, x):
            positions = self.pos_emb(ops.arange(start=0, stop=ops.shape(x)[-1], step=1))
            return self.token_emb(x) + positions

    gn.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 20, rng.integers(3, 11)) for _ in range(256)]
    x = gn.utils.pad_sequences(seqs, maxlen=10)
    y = ((x == 1).sum(axis=1) >= 1).astype("int64")  # does token 1 occur?
    inputs = L.Input(shape=(10,))
    h = TransformerBlock(16, 2, 16)(TokenAndPositionEmbedding(10, 20, 16)(inputs))
    h = L.Dropout(0.1)(L.GlobalAveragePooling1D()(h))
    outputs = L.Dense(2, activation="softmax")(L.Dense(20, activation="relu")(h))
    model = gn.Model(inputs=inputs, outputs=outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=12, verbose=0).history
    assert history["loss"][-1] < 0.6 * history["loss"][0]
    assert history["accuracy"][-1] > 0.85
