"""Pooling and reshaping layers against PyTorch (forward and input gradients, float64)
and Keras 3 (forward, KERAS_BACKEND=torch); ties; the simulated device; saving and
the graph-free step; bad input. Batch norm over the channels of images vs Keras."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

import gpunet as gn
from gpunet.errors import InputValidationError, InvalidParameterError

L = gn.layers
R = np.random.default_rng(0)
IMG = R.normal(size=(2, 7, 6, 3))
SEQ = R.normal(size=(2, 9, 4))
ODD = R.normal(size=(2, 7, 9, 3))


def _torch() -> Any:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


def _keras() -> Any:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    _torch()
    return keras


def _ours(layer: Any, X: np.ndarray, dY: np.ndarray | None = None) -> tuple[Any, Any]:
    """Output and the input gradient of ``sum(Y * dY)``."""
    x = gn.tensor(X, dtype="float64", requires_grad=True)
    y = layer(x)
    dY = np.linspace(-1, 1, y.numel()).reshape(y.shape) if dY is None else dY
    (y * gn.tensor(dY, dtype="float64")).sum().backward()
    return y.numpy(), np.asarray(x.grad)


def _np(t: Any) -> np.ndarray:
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)


def _nchw(X: np.ndarray) -> np.ndarray:
    return X.transpose(0, 3, 1, 2)


def _nhwc(X: Any) -> np.ndarray:
    return X.detach().numpy().transpose(0, 2, 3, 1)


def _torch_image(fn: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``fn`` on NCHW torch tensors, as NHWC output and input gradient."""
    torch = _torch()
    t = torch.tensor(_nchw(X), requires_grad=True)
    y = fn(t)
    w = np.linspace(-1, 1, y.numel()).reshape(_nhwc(y).shape)
    (y * torch.tensor(_nchw(w))).sum().backward()
    return _nhwc(y), t.grad.numpy().transpose(0, 2, 3, 1)


def _same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    total = max((-(-n // s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


POOLS = [((2, 2), None, "valid"), ((3, 2), (2, 1), "valid"), ((2, 3), (1, 2), "valid"),
         ((3, 3), (2, 2), "same"), ((2, 2), (2, 2), "same"), ((3, 1), (1, 3), "same")]  # fmt: skip


@pytest.mark.parametrize("pool,strides,padding", POOLS)
def test_max_pooling2d_matches_torch_forward_and_backward(pool, strides, padding):
    F = _torch().nn.functional
    st = strides or pool
    t, b = _same_pads(7, pool[0], st[0]) if padding == "same" else (0, 0)
    left, r = _same_pads(6, pool[1], st[1]) if padding == "same" else (0, 0)

    def fn(x: Any) -> Any:  # "same" max pooling: -inf padding never wins a window
        return F.max_pool2d(F.pad(x, (left, r, t, b), value=-np.inf), pool, st)

    Y, dX = _ours(L.MaxPooling2D(pool, strides, padding, dtype="float64"), IMG)
    tY, tdX = _torch_image(fn, IMG)
    np.testing.assert_allclose(Y, tY, atol=1e-12)
    np.testing.assert_allclose(dX, tdX, atol=1e-12)


@pytest.mark.parametrize("pool,strides", [((2, 2), None), ((3, 2), (2, 1)), ((2, 3), (1, 2))])
def test_average_pooling2d_valid_matches_torch(pool, strides):
    F = _torch().nn.functional
    Y, dX = _ours(L.AveragePooling2D(pool, strides, dtype="float64"), IMG)
    tY, tdX = _torch_image(lambda x: F.avg_pool2d(x, pool, strides or pool), IMG)
    np.testing.assert_allclose(Y, tY, atol=1e-12)
    np.testing.assert_allclose(dX, tdX, atol=1e-12)


def test_average_pooling2d_same_matches_torch_count_exclude_pad():
    # Keras' "same" average is PyTorch's with count_include_pad=False (pad 1, kernel 3)
    F = _torch().nn.functional
    layer = L.AveragePooling2D(3, 1, "same", dtype="float64")
    Y, dX = _ours(layer, IMG)
    tY, tdX = _torch_image(lambda x: F.avg_pool2d(x, 3, 1, 1, count_include_pad=False), IMG)
    np.testing.assert_allclose(Y, tY, atol=1e-12)
    np.testing.assert_allclose(dX, tdX, atol=1e-12)


def test_average_pooling2d_same_asymmetric_averages_over_the_input_only():
    # PyTorch pads evenly only: the reference is the zero-padded sum over the pooled count
    F = _torch().nn.functional
    Y, dX = _ours(L.AveragePooling2D(3, 2, "same", dtype="float64"), IMG)  # pads (1, 1), (0, 1)

    def fn(x: Any) -> Any:
        ones = F.pad(x.new_ones((1, 1, 7, 6)), (0, 1, 1, 1))
        return F.avg_pool2d(F.pad(x, (0, 1, 1, 1)), 3, 2) / F.avg_pool2d(ones, 3, 2)

    tY, tdX = _torch_image(fn, IMG)
    assert Y.shape == (2, 4, 3, 3)
    np.testing.assert_allclose(Y, tY, atol=1e-12)
    np.testing.assert_allclose(dX, tdX, atol=1e-12)


def test_global_pools_upsampling_and_padding_match_torch():
    torch = _torch()
    F = torch.nn.functional
    Y, dX = _ours(L.GlobalAveragePooling2D(keepdims=True, dtype="float64"), IMG)
    tY, tdX = _torch_image(lambda x: F.adaptive_avg_pool2d(x, 1), IMG)
    np.testing.assert_allclose(Y, tY, atol=1e-12)
    np.testing.assert_allclose(dX, tdX, atol=1e-12)
    Y, dX = _ours(L.GlobalMaxPooling2D(keepdims=True, dtype="float64"), IMG)
    tY, tdX = _torch_image(lambda x: F.adaptive_max_pool2d(x, 1), IMG)
    np.testing.assert_allclose(Y, tY, atol=1e-12)
    np.testing.assert_allclose(dX, tdX, atol=1e-12)
    Y, dX = _ours(L.UpSampling2D((2, 3), dtype="float64"), IMG)
    tY, tdX = _torch_image(lambda x: F.interpolate(x, scale_factor=(2, 3), mode="nearest"), IMG)
    np.testing.assert_allclose(Y, tY, atol=1e-12)
    np.testing.assert_allclose(dX, tdX, atol=1e-12)
    Y, dX = _ours(L.ZeroPadding2D(((1, 2), (3, 0)), dtype="float64"), IMG)
    tY, tdX = _torch_image(lambda x: F.pad(x, (3, 0, 1, 2)), IMG)
    np.testing.assert_allclose(Y, tY, atol=0)
    np.testing.assert_allclose(dX, tdX, atol=0)
    Y, dX = _ours(L.Cropping2D(((1, 2), (3, 0)), dtype="float64"), IMG)
    tY, tdX = _torch_image(lambda x: x[:, :, 1:-2, 3:], IMG)
    np.testing.assert_allclose(Y, tY, atol=0)
    np.testing.assert_allclose(dX, tdX, atol=0)


def test_1d_pools_match_torch():
    torch = _torch()
    F = torch.nn.functional
    for layer, fn in [
        (L.MaxPooling1D(3, 2, dtype="float64"), lambda x: F.max_pool1d(x, 3, 2)),
        (L.AveragePooling1D(2, dtype="float64"), lambda x: F.avg_pool1d(x, 2)),
        (L.GlobalMaxPooling1D(dtype="float64"), lambda x: x.amax(dim=2)),
        (L.GlobalAveragePooling1D(dtype="float64"), lambda x: x.mean(dim=2)),
    ]:
        Y, dX = _ours(layer, SEQ)
        t = torch.tensor(SEQ.transpose(0, 2, 1), requires_grad=True)
        y = fn(t)
        w = np.linspace(-1, 1, y.numel()).reshape(Y.shape)
        (y * torch.tensor(w.transpose(0, 2, 1) if w.ndim == 3 else w)).sum().backward()
        tY = y.detach().numpy()
        np.testing.assert_allclose(Y, tY.transpose(0, 2, 1) if tY.ndim == 3 else tY, atol=1e-12)
        np.testing.assert_allclose(dX, t.grad.numpy().transpose(0, 2, 1), atol=1e-12)


def test_channels_first_is_channels_last_transposed():
    for cls, kw in [(L.MaxPooling2D, {"pool_size": 3, "strides": 2, "padding": "same"}),
                    (L.AveragePooling2D, {"pool_size": 2}), (L.UpSampling2D, {"size": 2}),
                    (L.ZeroPadding2D, {"padding": (1, 2)}), (L.Cropping2D, {"cropping": 1}),
                    (L.GlobalMaxPooling2D, {}), (L.GlobalAveragePooling2D, {})]:  # fmt: skip
        layer = cls(dtype="float64", **kw)
        dY = R.normal(size=layer.compute_output_shape(IMG.shape))
        last, dlast = _ours(layer, IMG, dY)
        dY_first = _nchw(dY) if dY.ndim == 4 else dY
        first, dfirst = _ours(cls(data_format="channels_first", dtype="float64", **kw),
                              _nchw(IMG), dY_first)  # fmt: skip
        if last.ndim == 4:
            last = _nchw(last)
        np.testing.assert_allclose(first, last, atol=1e-12, err_msg=cls.__name__)
        np.testing.assert_allclose(dfirst, _nchw(dlast), atol=1e-12, err_msg=cls.__name__)


@pytest.mark.slow  # the first Keras import
def test_forward_matches_keras():
    keras = _keras()
    KL = keras.layers
    pairs = [
        # Keras' torch backend pads asymmetric "same" windows by replicating the edge
        # (which TensorFlow and JAX do not): where the padding is even on both sides it
        # averages over the elements inside the input, as here
        (L.AveragePooling2D(3, 2, "same"), KL.AveragePooling2D(3, 2, "same"), ODD),
        (L.AveragePooling2D((3, 5), 1, "same"), KL.AveragePooling2D((3, 5), 1, "same"), ODD),
        (L.MaxPooling2D(3, 2, "same"), KL.MaxPooling2D(3, 2, "same"), IMG),
        (L.AveragePooling1D(3, 2, "same"), KL.AveragePooling1D(3, 2, "same"), SEQ),
        (L.MaxPooling1D(2, 1, "same"), KL.MaxPooling1D(2, 1, "same"), SEQ),
        (L.Reshape((3, -1)), KL.Reshape((3, -1)), IMG),
        (L.Cropping2D(((1, 2), (0, 3))), KL.Cropping2D(((1, 2), (0, 3))), IMG),
        (L.ZeroPadding2D((1, 2)), KL.ZeroPadding2D((1, 2)), IMG),
        (L.UpSampling2D((3, 2)), KL.UpSampling2D((3, 2)), IMG),
        (L.GlobalAveragePooling2D(), KL.GlobalAveragePooling2D(), IMG),
        (L.GlobalMaxPooling2D(keepdims=True), KL.GlobalMaxPooling2D(keepdims=True), IMG),
        (L.GlobalAveragePooling1D(), KL.GlobalAveragePooling1D(), SEQ),
        (L.GlobalMaxPooling1D(), KL.GlobalMaxPooling1D(), SEQ),
    ]
    for ours, theirs, X in pairs:
        X32 = X.astype("float32")
        want = _np(theirs(X32))
        got = ours(X32).numpy()
        assert got.shape == want.shape, type(ours).__name__
        assert ours.compute_output_shape((None, *X.shape[1:]))[1:] == want.shape[1:]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=type(ours).__name__)


def test_max_pool_ties_route_the_gradient_to_one_element_per_window():
    X = np.ones((1, 4, 6, 2))  # every window a tie
    for layer, windows in [
        (L.MaxPooling2D(2, dtype="float64"), 2 * 3),
        (L.MaxPooling2D(3, 1, dtype="float64"), 2 * 4),
        (L.GlobalMaxPooling2D(dtype="float64"), 1),
    ]:
        _, dX = _ours(layer, X, dY=np.ones(layer.compute_output_shape(X.shape)))
        # each window's unit gradient, once (an equality mask would give it to all 4 or 9)
        assert dX.sum() == windows * 2 and np.count_nonzero(dX) == windows * 2
    _, dX = _ours(L.MaxPooling2D(2, dtype="float64"), X, dY=np.ones((1, 2, 3, 2)))
    np.testing.assert_array_equal(dX[0, :, :, 0], np.tile([[1, 0], [0, 0]], (2, 3)))  # the first
    _, dX = _ours(L.GlobalMaxPooling2D(dtype="float64"), X, dY=np.ones((1, 2)))
    assert dX[0, 0, 0].tolist() == [1.0, 1.0] and dX.sum() == 2


def test_spatial_dropout_drops_whole_channels_and_is_identity_in_inference():
    gn.utils.set_random_seed(1)
    layer = L.SpatialDropout2D(0.5, dtype="float64")
    X = np.ones((8, 3, 4, 16))
    Y = layer(X, training=True).numpy()
    per_channel = Y.reshape(8, 12, 16)
    assert np.all(per_channel == per_channel[:, :1, :])  # one value per (sample, channel)
    assert set(np.unique(Y)) == {0.0, 2.0}  # dropped, or kept and scaled by 1 / (1 - rate)
    np.testing.assert_array_equal(layer(X, training=False).numpy(), X)
    first = L.SpatialDropout2D(0.5, data_format="channels_first")(_nchw(X), training=True)
    per_channel = first.numpy().reshape(8, 16, 12)
    assert np.all(per_channel == per_channel[:, :, :1])


def _cnn(device: str = "cpu") -> Any:
    gn.utils.set_random_seed(0)
    model = gn.Sequential(
        [
            L.Reshape((8, 8, 1), input_shape=(64,)),
            L.MaxPooling2D(3, 2, "same"),
            L.ZeroPadding2D(1),
            L.UpSampling2D(2),
            L.Cropping2D(((1, 0), (0, 1))),
            L.AveragePooling2D(2, padding="same"),
            L.SpatialDropout2D(0.2),
            L.GlobalAveragePooling2D(),
            L.Dense(3),
        ],
        device=device,
    )
    model.compile(optimizer="adam", loss="mse")
    return model


XS = R.normal(size=(32, 64)).astype("float32")
YS = R.normal(size=(32, 3)).astype("float32")


def _fit(model: Any, fast: bool) -> Any:
    model.use_fastpath = fast
    model.fit(XS, YS, epochs=2, batch_size=8, verbose=0)
    return model


def test_model_round_trip_and_graph_free_step_is_bit_identical(tmp_path):
    fast, graph = _fit(_cnn(), True), _fit(_cnn(), False)
    assert fast._step_plan is not None and graph._step_plan is None
    for a, b in zip(fast.get_weights(), graph.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    fast.save(tmp_path / "cnn.gpunet")
    again = gn.models.load_model(tmp_path / "cnn.gpunet")
    assert [type(x).__name__ for x in again.layers] == [type(x).__name__ for x in fast.layers]
    assert again.layers[4].cropping == (1, 0, 0, 1) and again.layers[1].padding == "same"
    np.testing.assert_array_equal(again.predict(XS, verbose=0), fast.predict(XS, verbose=0))


def test_simulated_device_matches_the_cpu():
    out = {d: _fit(_cnn(d), True) for d in ("cpu", "sim")}
    p = {d: m.predict(XS[:5], verbose=0) for d, m in out.items()}
    np.testing.assert_allclose(p["sim"], p["cpu"], rtol=1e-6, atol=1e-6)
    for a, b in zip(out["sim"].get_weights(), out["cpu"].get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    from gpunet.backend import get_ops

    sim, X = get_ops("sim"), IMG.astype("float32")
    for pool, strides, padding in POOLS:
        for fwd, back in (("max_pool2d", "backprop_max_pool2d"),
                          ("avg_pool2d", "backprop_avg_pool2d")):  # fmt: skip
            Y, saved = getattr(sim, fwd)(sim.asarray(X), pool=pool, strides=strides or pool,
                                         padding=padding)  # fmt: skip
            Yc, savedc = getattr(gn.backend.get_ops("cpu"), fwd)(
                X, pool=pool, strides=strides or pool, padding=padding
            )
            np.testing.assert_allclose(sim.to_numpy(Y), Yc, atol=1e-6)
            dY = np.linspace(-1, 1, Yc.size, dtype="float32").reshape(Yc.shape)
            dX = sim.to_numpy(getattr(sim, back)(sim.asarray(dY), saved))
            np.testing.assert_allclose(dX, getattr(gn.backend.get_ops("cpu"), back)(dY, savedc),
                                       atol=1e-6)  # fmt: skip


def test_bad_input_and_arguments_raise_clear_errors():
    with pytest.raises(InputValidationError, match=r"max_pooling2d.*4 dimensions.*\(2, 5, 3\)"):
        L.MaxPooling2D(name="max_pooling2d")(np.ones((2, 5, 3)))
    with pytest.raises(InputValidationError, match=r"pool_size \(3, 3\).*\(2, 5\)"):
        L.AveragePooling2D(3)(np.ones((1, 2, 5, 1)))
    with pytest.raises(InputValidationError, match="3 dimensions"):
        L.GlobalMaxPooling1D()(np.ones((2, 3)))
    with pytest.raises(InputValidationError, match=r"cannot reshape.*\(6,\).*\(4, -1\)"):
        L.Reshape((4, -1))(np.ones((2, 6)))
    with pytest.raises(InputValidationError, match="cropping"):
        L.Cropping2D(2)(np.ones((1, 4, 4, 1)))
    bad = [
        (L.MaxPooling2D, {"pool_size": 0}, "pool_size must be >= 1"),
        (L.MaxPooling2D, {"pool_size": (2, 2, 2)}, "an int or 2 ints"),
        (L.AveragePooling1D, {"padding": "full"}, "'valid' or 'same'"),
        (L.MaxPooling2D, {"data_format": "NHWC"}, "data_format"),
        (L.Reshape, {"target_shape": (-1, -1)}, "at most one -1"),
        (L.UpSampling2D, {"interpolation": "bilinear"}, "nearest"),
        (L.ZeroPadding2D, {"padding": (1, 2, 3)}, "top, bottom"),
        (L.SpatialDropout2D, {"rate": 1.0}, r"\[0, 1\)"),
        (L.GlobalAveragePooling2D, {"keepdims": 1}, "bool"),
    ]
    for cls, kw, msg in bad:
        with pytest.raises(InvalidParameterError, match=msg):
            cls(**kw)


def _batchnorm_pair(steps: int = 3) -> tuple[Any, Any, np.ndarray]:
    """Ours and Keras' BatchNormalization after ``steps`` training calls on images,
    both outputs compared on the way."""
    keras = _keras()
    X = R.normal(size=(4, 3, 3, 2)) * 2 + 1
    ours = L.BatchNormalization(momentum=0.9, dtype="float64")
    theirs = keras.layers.BatchNormalization(momentum=0.9, dtype="float64")
    for i in range(steps):
        want = _np(theirs(X + i, training=True))
        np.testing.assert_allclose(ours(X + i, training=True).numpy(), want, rtol=1e-5, atol=1e-6)
    return ours, theirs, X


def test_batch_normalization_of_images_matches_keras_in_training():
    # normalised over batch, height and width per channel: outputs and moving means
    ours, theirs, _ = _batchnorm_pair()
    np.testing.assert_allclose(ours.moving_mean.numpy(), _np(theirs.moving_mean.value), rtol=1e-6)


def test_batch_normalization_moving_variance_and_inference_match_keras():
    ours, theirs, X = _batchnorm_pair()
    var = _np(theirs.moving_variance.value)
    np.testing.assert_allclose(ours.moving_variance.numpy(), var, rtol=1e-6)
    want = _np(theirs(X, training=False))
    np.testing.assert_allclose(ours(X, training=False).numpy(), want, rtol=1e-5, atol=1e-6)


def test_symbolic_shapes_are_the_computed_ones():
    x = gn.Input((9, 8, 3))
    layers = [L.MaxPooling2D(3, 2, "same"), L.Cropping2D(1), L.UpSampling2D((2, 1)),
              L.ZeroPadding2D((0, 2)), L.AveragePooling2D(2, 1), L.SpatialDropout2D(0.1),
              L.Reshape((-1, 3)), L.MaxPooling1D(2, padding="same"),
              L.GlobalAveragePooling1D(keepdims=True)]  # fmt: skip
    y, shapes = x, []
    for layer in layers:
        y = layer(y)
        shapes.append(tuple(y.shape))
    assert shapes == [(None, 5, 4, 3), (None, 3, 2, 3), (None, 6, 2, 3), (None, 6, 6, 3),
                      (None, 5, 5, 3), (None, 5, 5, 3), (None, 25, 3), (None, 13, 3),
                      (None, 1, 3)]  # fmt: skip
    out = gn.Model(x, y).predict(R.normal(size=(2, 9, 8, 3)).astype("float32"), verbose=0)
    assert out.shape == (2, 1, 3)
