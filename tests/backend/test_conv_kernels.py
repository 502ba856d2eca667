"""im2col / col2im of ``kernels/conv.cu*``: the CUDA kernels built for the host by g++
and driven by gpunet's launchers, and the host build's loops (``kernels/host.cpp``),
against the reference ``_im2col`` / ``_col2im`` of ``_conv_ops`` (per-tap slices).

Geometries: valid, same, explicit uneven pads, strides larger than the kernel,
dilation, 1x1, an empty batch; sizes past the lowered grid, so every grid-stride
loop takes several turns. float16 runs too (half storage, float sums).
"""

from __future__ import annotations

import numpy as np
import pytest
from hostbuild import record_error

import gpunet as gn
from gpunet.backend import _host, _kernels
from gpunet.backend._conv_ops import conv_out_size
from gpunet.backend.cupy_ops import FusedOps
from gpunet.backend.numpy_ops import NumpyOps
from gpunet.backend.ops import Ops

REF = Ops()
DTYPES = ["float16", "float32", "float64"]
TOL = {"float16": 2e-3, "float32": 1e-6, "float64": 1e-13}
# (N, H, W, C), kernel, strides, ((top, bottom), (left, right)), dilation
GEOS = [
    ((2, 5, 6, 3), (3, 3), (1, 1), ((0, 0), (0, 0)), (1, 1)),
    ((3, 7, 5, 2), (3, 2), (2, 2), ((1, 1), (0, 1)), (1, 1)),
    ((1, 6, 6, 4), (2, 2), (1, 1), ((1, 1), (1, 1)), (2, 2)),
    ((2, 4, 4, 1), (3, 3), (3, 3), ((2, 1), (0, 2)), (1, 1)),
    ((2, 3, 4, 5), (1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1)),
    ((0, 5, 4, 2), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ((4, 13, 13, 8), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),  # 48672 column entries
]


def _geo(shape, k, s, pads, d):
    Ho = conv_out_size(shape[1], k[0], s[0], d[0], sum(pads[0]))
    Wo = conv_out_size(shape[2], k[1], s[1], d[1], sum(pads[1]))
    return (s, pads, d, 1, Ho, Wo)


def _data(shape, dtype, rng):
    X = rng.standard_normal(shape) * 3
    if X.size >= 4:  # non-finite values are copied, never mixed into a neighbour
        X.reshape(-1)[:4] = [np.inf, -np.inf, np.nan, -0.0]
    return X.astype(dtype)


def _check(what, got, want, dtype):
    assert got.dtype == np.dtype(dtype) and got.shape == want.shape, what
    np.testing.assert_allclose(got.astype("float64"), want, rtol=TOL[dtype], atol=TOL[dtype],
                               err_msg=what)  # fmt: skip
    record_error(what, dtype, got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("g", GEOS, ids=lambda g: f"{g[0]}-k{g[1]}-s{g[2]}-p{g[3]}-d{g[4]}")
def test_cuda_im2col_and_col2im_match_the_reference(host, g, dtype):
    shape, k, geo = g[0], g[1], _geo(*g)
    rng = np.random.default_rng(0)
    X = _data(shape, dtype, rng)
    cols = _kernels.im2col(X, k, geo)
    want = REF._im2col(X.astype("float64"), k, geo)
    np.testing.assert_array_equal(cols.astype("float64"), want)  # a gather copies exactly
    dcols = rng.standard_normal(want.shape).astype(dtype)
    dX = _kernels.col2im(dcols, shape, k, geo)
    _check("col2im", dX, REF._col2im(dcols.astype("float64"), shape, k, geo), dtype)
    ctype = _kernels.CTYPE[dtype]
    expected = [] if X.size == 0 else [f"gpunet_im2col<{ctype}>", f"gpunet_col2im<{ctype}>"]
    assert [name for name, _, _ in host.launches] == expected


def test_col2im_launch_covers_a_grid_many_times_over(host):
    shape, k = GEOS[-1][:2]
    dcols = np.ones((4, 13, 13, 9, 8), "float32")
    dX = _kernels.col2im(dcols, shape, k, _geo(*GEOS[-1]))
    _, grid, block = host.launches[-1]
    assert grid * block < dX.size  # several turns of the grid-stride loop
    # interior pixels are read by all 9 taps, corners by 4, edges by 6
    assert dX[0, 5, 5, 0] == 9 and dX[0, 0, 0, 0] == 4 and dX[0, 0, 5, 0] == 6


def test_launcher_rejects_columns_of_the_wrong_shape(host):
    geo = _geo(*GEOS[0])
    with pytest.raises(ValueError, match="dcols: expected shape"):
        _kernels.col2im(np.zeros((2, 3, 3, 9, 3), "float32"), (2, 5, 6, 3), (3, 3), geo)


@pytest.fixture
def host_ops():
    ops = NumpyOps()
    if ops.host is None:
        pytest.skip(f"no host build of kernels/: {_host.status()[1]}")
    return ops


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("g", GEOS, ids=lambda g: f"{g[0]}-k{g[1]}")
def test_host_im2col_and_col2im_match_the_reference(host_ops, g, threads):
    shape, k, *_ = g
    geo = _geo(*g)
    rng = np.random.default_rng(1)
    before = host_ops.host.threads
    host_ops.host.set_threads(threads)
    try:
        for dtype in ("float32", "float64"):
            X = _data(shape, dtype, rng)
            cols = host_ops._im2col(X, k, geo)
            np.testing.assert_array_equal(cols, REF._im2col(X, k, geo))
            dcols = rng.standard_normal(cols.shape).astype(dtype)
            # the reference adds the taps in the same order, in the same dtype: equal bits
            want = REF._col2im(dcols, shape, k, geo)
            np.testing.assert_array_equal(host_ops._col2im(dcols, shape, k, geo), want)
    finally:
        host_ops.host.set_threads(before)


def test_host_kernels_split_large_convolutions_over_the_pool_with_the_same_bits(host_ops):
    # 8 x 30 x 30 rows of 288 column entries: past kParallelMin, so 2 threads split it
    rng = np.random.default_rng(2)
    X = rng.standard_normal((8, 32, 32, 32)).astype("float32")
    geo = _geo(X.shape, (3, 3), (1, 1), ((0, 0), (0, 0)), (1, 1))
    before = host_ops.host.threads
    out = []
    try:
        for n in (1, 2):
            host_ops.host.set_threads(n)
            cols = host_ops._im2col(X, (3, 3), geo)
            out.append((cols, host_ops._col2im(cols, X.shape, (3, 3), geo)))
    finally:
        host_ops.host.set_threads(before)
    for a, b in zip(*out, strict=True):
        np.testing.assert_array_equal(a, b)


def launched(host, prefix):
    return sum(name.startswith(prefix) for name, _, _ in host.launches)


@pytest.mark.parametrize("act,fused", [("relu", True), ("gelu", True), ("elu", False)])
def test_fused_conv2d_runs_bias_activation_and_gathers_as_kernels(host, act, fused):
    rng = np.random.default_rng(3)
    X, W = rng.standard_normal((2, 6, 5, 4)), rng.standard_normal((3, 3, 4, 6)) / 6
    b, dY = rng.standard_normal(6), rng.standard_normal((2, 6, 5, 6))
    kw = {"padding": "same", "activation": act}
    Y, saved = FusedOps().conv2d(X, W, b, **kw)
    grads = FusedOps().backprop_conv2d(dY, saved)
    Y0, saved0 = REF.conv2d(X, W, b, **kw)
    for got, want in zip((Y, *grads), (Y0, *REF.backprop_conv2d(dY, saved0)), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    assert launched(host, "gpunet_im2col") == 1  # the forward's columns serve the backward
    assert launched(host, "gpunet_col2im") == 1
    assert launched(host, "gpunet_bias_act") == fused
    assert launched(host, "gpunet_backprop_act") == fused


def _fit(device):
    gn.utils.set_random_seed(3)
    L = gn.layers
    model = gn.Sequential(
        [L.Conv2D(4, 3, activation="relu", padding="same", input_shape=(8, 8, 1)),
         L.MaxPooling2D(2), L.Conv2D(6, 3, activation="relu"), L.Flatten(),
         L.Dense(3, activation="softmax")],
        device=device,
    )  # fmt: skip
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(4)
    X = rng.standard_normal((40, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 40)
    history = model.fit(X, y, epochs=2, batch_size=16, verbose=0, shuffle=False)
    return history.history["loss"], model.get_weights()


def test_a_convnet_fits_through_the_cuda_conv_kernels_as_on_the_reference(host):
    loss0, w0 = _fit(Ops())
    loss, w = _fit(FusedOps())
    np.testing.assert_allclose(loss, loss0, rtol=1e-5)
    for a, b in zip(w, w0, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert launched(host, "gpunet_im2col<float>") >= 2 * 3 * 2  # 2 layers, 3 batches, 2 epochs
    assert launched(host, "gpunet_col2im<float>") >= 3 * 2  # conv2's input gradient
