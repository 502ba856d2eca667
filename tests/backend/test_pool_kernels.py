"""The pooling kernels: ``kernels/pool.cu`` built for the host by g++ and driven by
gpunet's launchers (``_pool_kernels.cuda_*``), and the host build's loops in
``kernels/host.cpp`` (``_pool_kernels.host_*``), against the float64 reference and
PyTorch. float16 too (half storage, float math); ties, windows of -inf only, NaN,
inf gradients; sizes past the lowered grid; PyTorch's explicit padding with and
without ``count_include_pad``. The parity suite (``parity_cases.py``) runs the ops
through every backend; this file holds what it does not: float16, the launchers'
own arguments, and the padding forms only the kernels take.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpunet.backend import _host, _kernels
from gpunet.backend import _pool_kernels as pk
from gpunet.backend.ops import Ops

REF = Ops()
DTYPES = ["float16", "float32", "float64"]
TOL = {"float16": 2e-3, "float32": 2e-6, "float64": 1e-13}
GEOMS = [((2, 2), (2, 2), "valid"), ((3, 3), (2, 2), "same"), ((3, 2), (1, 2), "valid"),
         ((2, 3), (3, 1), "same"), ((1, 3), (1, 2), "same")]  # fmt: skip
SHAPES = [(0, 4, 4, 2), (1, 3, 3, 1), (3, 7, 5, 3), (4, 17, 15, 6)]  # the last: > 3 * 256


def image(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    """Small integers (ties everywhere), a window of -inf only, NaN and +-inf."""
    rng = np.random.default_rng(seed)
    X = np.round(rng.standard_normal(shape) * 2)
    if X.size > 20:
        X[0, :2, :2, 0] = -np.inf
        X[-1, -1, -1, :] = np.nan
        X[-1, 0, -1, 0], X[0, -1, 0, -1] = np.inf, -np.inf
        X[1, 1, :3, 0] = np.nan  # several NaN in a window: the first is its argmax
    return X.astype(dtype)


def close(what: str, got: np.ndarray, want: np.ndarray, dtype: str) -> None:
    assert got.dtype == np.dtype(dtype) and got.shape == want.shape, what
    np.testing.assert_allclose(got.astype("float64"), want, rtol=TOL[dtype], atol=TOL[dtype],
                               err_msg=what)  # fmt: skip


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("geom", GEOMS, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_max_pool_kernels_match_the_reference(host, dtype, geom, shape):
    pool, strides, padding = geom
    X = image(shape, dtype)
    with np.errstate(all="ignore"):
        Y0, s0 = REF.max_pool2d(X.astype("float64"), pool=pool, strides=strides, padding=padding)
        Y, s = pk.cuda_max_pool2d(X, pool, strides, padding)
        # max is exact in every dtype, NaN and -inf included; the argmax is the same cell
        np.testing.assert_array_equal(Y.astype("float64"), Y0)
        assert s[0].dtype == np.int32
        np.testing.assert_array_equal(s[0], s0[0])
        dY = np.random.default_rng(1).standard_normal(Y.shape).astype(dtype)
        if dY.size > 3:
            dY.reshape(-1)[2] = np.inf  # an inf gradient reaches its argmax only
        dY0 = REF.backprop_max_pool2d(dY.astype("float64"), s0)
        close("max pool dX", pk.cuda_backprop_max_pool2d(dY, s), dY0, dtype)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("geom", GEOMS, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_avg_pool_kernels_match_the_reference(host, dtype, geom, shape):
    pool, strides, padding = geom
    X = image(shape, dtype)
    with np.errstate(all="ignore"):
        Y0, s0 = REF.avg_pool2d(X.astype("float64"), pool=pool, strides=strides, padding=padding)
        Y, s = pk.cuda_avg_pool2d(X, pool, strides, padding)
        close("avg pool Y", Y, Y0, dtype)
        dY = np.random.default_rng(2).standard_normal(Y.shape).astype(dtype)
        dX0 = REF.backprop_avg_pool2d(dY.astype("float64"), s0)
        close("avg pool dX", pk.cuda_backprop_avg_pool2d(dY, s), dX0, dtype)


def test_large_pools_take_several_turns_of_the_capped_grid(host):
    X = image((4, 17, 15, 6), "float32")
    Y, s = pk.cuda_max_pool2d(X, (2, 2), (2, 2), "valid")
    pk.cuda_backprop_max_pool2d(np.ones_like(Y), s)
    (_, g1, b1), (_, g2, b2) = host.launches[-2:]
    assert (g1, b1) == (g2, b2) == (3, _kernels.BLOCK) and 3 * b1 < Y.size < X.size


def _host_kernels():
    k = _host.load()
    if k is None:
        pytest.skip(f"no host build of kernels/: {_host.status()[1]}")
    return k


def _impls(request):
    """The CUDA launchers over the host build, and the host build of host.cpp."""
    k = _host_kernels()
    request.getfixturevalue("host")
    return {
        "cuda": (pk.cuda_max_pool2d, pk.cuda_backprop_max_pool2d, pk.cuda_avg_pool2d,
                 pk.cuda_backprop_avg_pool2d),
        "host": (lambda X, *a: pk.host_max_pool2d(k, "f64", X, *a),
                 lambda dY, s: pk.host_backprop_max_pool2d(k, "f64", dY, s),
                 lambda X, *a: pk.host_avg_pool2d(k, "f64", X, *a),
                 lambda dY, s, incl: pk.host_backprop_avg_pool2d(k, "f64", dY, s, incl)),
    }  # fmt: skip


@pytest.mark.parametrize("k,s,p", [(3, 2, 1), (2, 1, 1), (3, 3, 1), (4, 2, 2)])
def test_explicit_padding_matches_torch_with_and_without_count_include_pad(request, k, s, p):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    F = torch.nn.functional
    X = image((2, 9, 8, 3), "float64")
    X[~np.isfinite(X)] = 0.5  # torch's CPU kernel takes the last of several NaN
    X += np.random.default_rng(3).standard_normal(X.shape) * 1e-3  # and ties as we do
    pads = (p, p, p, p)
    for name, (mx, bmx, av, bav) in _impls(request).items():
        cases = [("max", None), ("avg", True), ("avg", False)]
        for kind, incl in cases:
            t = torch.tensor(X.transpose(0, 3, 1, 2), requires_grad=True)
            if kind == "max":
                yt = F.max_pool2d(t, k, s, padding=p)
                Y, saved = mx(X, (k, k), (s, s), pads)
            else:
                yt = F.avg_pool2d(t, k, s, padding=p, count_include_pad=incl)
                Y, saved = av(X, (k, k), (s, s), pads, incl)
            dY = np.random.default_rng(4).standard_normal(Y.shape)
            yt.backward(torch.tensor(dY.transpose(0, 3, 1, 2)))
            dX = bmx(dY, saved) if kind == "max" else bav(dY, saved, incl)
            what = f"{name} {kind} include_pad={incl}"
            np.testing.assert_allclose(Y, yt.detach().numpy().transpose(0, 2, 3, 1),
                                       rtol=1e-12, atol=1e-12, err_msg=what)  # fmt: skip
            np.testing.assert_allclose(dX, t.grad.numpy().transpose(0, 2, 3, 1),
                                       rtol=1e-12, atol=1e-12, err_msg=what)  # fmt: skip


def test_a_gradient_of_the_wrong_batch_or_channels_is_refused(host):
    _, s = pk.cuda_max_pool2d(image((2, 4, 4, 3), "float32"), (2, 2), (2, 2), "valid")
    with pytest.raises(ValueError, match=r"expected \(batch 2, \.\.\., channels 3\)"):
        pk.cuda_backprop_max_pool2d(np.ones((3, 2, 2, 3), "float32"), s)
    k = _host_kernels()
    with pytest.raises(ValueError, match="channels 3"):
        pk.host_backprop_max_pool2d(k, "f32", np.ones((2, 2, 2, 4), "float32"), s)


def test_host_pool_threads_give_the_same_bits(request):
    # the host pool splits rows across threads: every split writes the same values
    k = _host_kernels()
    X = image((64, 32, 32, 17), "float32")  # > kParallelMin inputs
    old = k.threads
    out = []
    try:
        for n in (1, 2):
            k.set_threads(n)
            Y, s = pk.host_max_pool2d(k, "f32", X, (3, 3), (2, 2), "same")
            dX = pk.host_backprop_max_pool2d(k, "f32", np.ones_like(Y), s)
            A, sa = pk.host_avg_pool2d(k, "f32", X, (3, 3), (2, 2), "same")
            dA = pk.host_backprop_avg_pool2d(k, "f32", np.ones_like(A), sa)
            out.append((Y, s[0], dX, A, dA))
    finally:
        k.set_threads(old)
    for a, b in zip(*out, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("geom", [((3, 3), (2, 2), "same"), ((3, 2), (1, 2), "valid")], ids=str)
def test_cuda_kernel_gradients_match_float64_finite_differences(host, kind, geom):
    pool, strides, padding = geom
    rng = np.random.default_rng(5)
    X = rng.permutation(2 * 5 * 6 * 2).reshape(2, 5, 6, 2) * 0.1  # distinct: no ties
    fwd = pk.cuda_max_pool2d if kind == "max" else pk.cuda_avg_pool2d
    back = pk.cuda_backprop_max_pool2d if kind == "max" else pk.cuda_backprop_avg_pool2d
    Y, saved = fwd(X, pool, strides, padding)
    P = rng.standard_normal(Y.shape)  # the gradient of sum(Y * P)
    dX = back(P, saved)
    numeric = np.zeros_like(X)
    eps = 1e-6
    for i in range(X.size):
        Xp, Xm = X.copy(), X.copy()
        Xp.flat[i] += eps
        Xm.flat[i] -= eps
        up, down = fwd(Xp, pool, strides, padding)[0], fwd(Xm, pool, strides, padding)[0]
        numeric.flat[i] = np.sum((up - down) * P) / (2 * eps)
    np.testing.assert_allclose(dX, numeric, rtol=1e-7, atol=1e-8)
