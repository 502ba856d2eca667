"""Conv2DTranspose and the backend's conv2d_transpose, held to torch's
``F.conv_transpose2d`` (forward and backward, float64) and to Keras 3's layer."""

from __future__ import annotations

import os

import numpy as np
import pytest

import gpunet as gn
from gpunet.backend import get_ops
from gpunet.errors import InputValidationError, InvalidParameterError

OPS = get_ops("cpu")
RNG = np.random.default_rng(3)


@pytest.mark.parametrize(
    "k,s,p,op,g,d",
    [(3, 1, 0, 0, 1, 1), (3, 2, 1, 1, 1, 1), (4, 2, 1, 0, 1, 1), (3, 2, 0, 1, 2, 1),
     (2, 3, 2, 2, 1, 1), (3, 1, 2, 0, 1, 2), ((2, 3), (2, 1), (0, 1), (1, 0), 1, 1)],
)  # fmt: skip
def test_op_matches_torch_forward_and_backward(k, s, p, op, g, d):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    F = torch.nn.functional
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    k, s, p, op, d = pair(k), pair(s), pair(p), pair(op), pair(d)
    X = RNG.normal(size=(2, 4, 5, 4))
    Wt = RNG.normal(size=(4, 6 // g, *k))
    b = RNG.normal(size=(6,))
    Xt = torch.tensor(X.transpose(0, 3, 1, 2), requires_grad=True)
    Wtt, bt = torch.tensor(Wt, requires_grad=True), torch.tensor(b, requires_grad=True)
    Yt = F.conv_transpose2d(Xt, Wtt, bt, s, p, op, g, d)
    Y, saved = OPS.conv2d_transpose(
        X, Wt.transpose(2, 3, 1, 0), b, tuple(Yt.shape[2:]), p, strides=s, dilation=d, groups=g
    )
    np.testing.assert_allclose(Y.transpose(0, 3, 1, 2), Yt.detach().numpy(), atol=1e-12)
    dY = RNG.normal(size=Y.shape)
    Yt.backward(torch.tensor(dY.transpose(0, 3, 1, 2)))
    dX, dW, db = OPS.backprop_conv2d_transpose(dY, saved)
    np.testing.assert_allclose(dX.transpose(0, 3, 1, 2), Xt.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(dW.transpose(3, 2, 0, 1), Wtt.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(db, bt.grad.numpy(), atol=1e-12)


@pytest.mark.parametrize(
    "kw",
    [{"kernel_size": 3}, {"kernel_size": 3, "strides": 2, "padding": "same"},
     {"kernel_size": 4, "strides": 2, "padding": "same"},
     {"kernel_size": 3, "strides": 2, "output_padding": 1},
     {"kernel_size": 3, "strides": 2, "padding": "same", "output_padding": 1},
     {"kernel_size": 4, "strides": 2, "padding": "same", "output_padding": 1},
     {"kernel_size": (4, 5), "strides": (3, 2), "padding": "same", "output_padding": (2, 0)},
     {"kernel_size": 2, "strides": 2, "data_format": "channels_first"},
     {"kernel_size": 3, "dilation_rate": 2, "activation": "relu"}],
)  # fmt: skip
def test_layer_forward_matches_keras(kw):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    first = kw.get("data_format") == "channels_first"
    X = RNG.normal(size=(2, 3, 5, 4) if first else (2, 5, 4, 3)).astype("float32")
    ours = gn.layers.Conv2DTranspose(2, bias_initializer="random_normal", **kw)
    Y = ours(X).numpy()
    assert ours.kernel.shape[2:] == (2, 3)  # (kh, kw, out, in), Keras' layout
    theirs = keras.layers.Conv2DTranspose(2, **kw)
    theirs.build(X.shape)
    theirs.set_weights(ours.get_weights())
    expected = theirs(torch.tensor(X)).detach().numpy()
    assert Y.shape == expected.shape == ours.compute_output_shape(X.shape)
    np.testing.assert_allclose(Y, expected, rtol=1e-5, atol=1e-5)


def test_layer_backward_matches_torch_float64():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    X = RNG.normal(size=(2, 5, 4, 3))
    layer = gn.layers.Conv2DTranspose(
        2, 4, strides=2, padding="same", dtype="float64",
        bias_initializer="random_normal",
    )  # fmt: skip
    x = gn.tensor(X, dtype="float64", requires_grad=True)
    y = layer(x)
    dY = RNG.normal(size=y.shape)
    (y * gn.tensor(dY, dtype="float64")).sum().backward()
    Xt = torch.tensor(X.transpose(0, 3, 1, 2), requires_grad=True)
    Wt = torch.tensor(layer.kernel.numpy().transpose(3, 2, 0, 1), requires_grad=True)
    bt = torch.tensor(layer.bias.numpy(), requires_grad=True)
    # Keras' "same" with k=4, s=2 is torch's padding=1 (one row/column off each side)
    Yt = torch.nn.functional.conv_transpose2d(Xt, Wt, bt, 2, 1)
    np.testing.assert_allclose(y.numpy(), Yt.detach().numpy().transpose(0, 2, 3, 1), atol=1e-12)
    Yt.backward(torch.tensor(dY.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(x.grad.numpy(), Xt.grad.numpy().transpose(0, 2, 3, 1), atol=1e-12)
    np.testing.assert_allclose(
        layer.kernel.grad.numpy(), Wt.grad.numpy().transpose(2, 3, 1, 0), atol=1e-12
    )
    np.testing.assert_allclose(layer.bias.grad.numpy(), bt.grad.numpy(), atol=1e-12)


def test_save_and_load_round_trip(tmp_path):
    model = gn.Sequential([
        gn.layers.Conv2DTranspose(3, 3, strides=2, padding="same", output_padding=1,
                                  activation="tanh", input_shape=(4, 5, 2)),
        gn.layers.Conv2DTranspose(2, 2, data_format="channels_last", use_bias=False),
        gn.layers.Flatten(), gn.layers.Dense(2),
    ])  # fmt: skip
    layer = model.layers[0]
    cfg = layer.get_config()
    assert set(cfg) == set(type(layer).CONFIG) | {"name", "dtype", "trainable", "input_shape"}
    assert cfg["output_padding"] == [1, 1] and layer.name.startswith("conv2d_transpose")
    X = RNG.normal(size=(3, 4, 5, 2)).astype("float32")
    model.save(tmp_path / "m.gpunet")
    again = gn.models.load_model(tmp_path / "m.gpunet")
    np.testing.assert_array_equal(again.predict(X, verbose=0), model.predict(X, verbose=0))
    assert again.layers[0].output_padding == (1, 1)
    assert model.layers[0].compute_output_shape((None, 4, 5, 2)) == (None, 8, 10, 3)


@pytest.mark.parametrize(
    "kw,match",
    [({"output_padding": 2, "strides": 2}, "smaller than strides"),
     ({"output_padding": -1}, "output_padding"), ({"output_padding": (1, 2, 3)}, "output_padding"),
     ({"groups": 2}, "groups"), ({"padding": "full"}, "padding"), ({"strides": 0}, "strides")],
)  # fmt: skip
def test_bad_arguments_name_the_value(kw, match):
    with pytest.raises(InvalidParameterError, match=match):
        gn.layers.Conv2DTranspose(2, 3, **kw)


def test_wrong_input_channels_and_rank():
    layer = gn.layers.Conv2DTranspose(2, 3)
    layer(np.ones((1, 4, 4, 3), "float32"))
    with pytest.raises(InputValidationError, match="3 input channels, got 5"):
        layer(np.ones((1, 4, 4, 5), "float32"))
    with pytest.raises(InputValidationError, match="rank 4"):
        layer(np.ones((1, 4, 3), "float32"))
