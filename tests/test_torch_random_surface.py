"""torch.normal, torch.bernoulli, torch.dropout, get/set_default_dtype, Tensor.is_cuda
and Tensor.mT: shapes and dtypes as PyTorch gives them, the draws' statistics from the
seeded stream, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn

torch = pytest.importorskip("torch")


def test_normal_shapes_dtypes_and_statistics_follow_torch():
    gn.manual_seed(3)
    mean, std = gn.tensor(np.arange(4.0)), gn.tensor(np.full(4, 0.5))
    tm, ts = torch.arange(4.0, dtype=torch.float64), torch.full((4,), 0.5, dtype=torch.float64)
    for got, want in (
        (gn.normal(mean, std), torch.normal(tm, ts)),
        (gn.normal(mean, 2.0), torch.normal(tm, 2.0)),
        (gn.normal(1.0, std), torch.normal(1.0, ts)),
        (gn.normal(0.0, 1.0, size=(2, 3)), torch.normal(0.0, 1.0, size=(2, 3))),
    ):
        assert tuple(got.shape) == tuple(want.shape)
        assert got.dtype.name == str(want.dtype).removeprefix("torch.")
    big = gn.normal(gn.tensor(np.full(20000, 3.0)), gn.tensor(np.full(20000, 2.0))).numpy()
    assert abs(big.mean() - 3.0) < 0.05 and abs(big.std() - 2.0) < 0.05
    gn.manual_seed(9)
    a = gn.normal(0.0, 1.0, size=(5,)).numpy()
    gn.manual_seed(9)
    np.testing.assert_array_equal(a, gn.normal(0.0, 1.0, size=(5,)).numpy())
    with pytest.raises(TypeError, match="size="):
        gn.normal(0.0, 1.0)
    with pytest.raises(RuntimeError, match="std >= 0"):
        gn.normal(mean, -1.0)
    with pytest.raises(NotImplementedError, match="generator"):
        gn.normal(0.0, 1.0, size=(2,), generator=object())


def test_bernoulli_draws_zero_one_at_the_probabilities():
    gn.manual_seed(4)
    p = gn.tensor(np.array([0.0, 1.0, 0.3] * 10000, dtype="float32"))
    d = gn.bernoulli(p)
    assert d.dtype == np.float32 and set(np.unique(d.numpy())) <= {0.0, 1.0}
    v = d.numpy().reshape(-1, 3)
    assert v[:, 0].sum() == 0 and v[:, 1].all() and abs(v[:, 2].mean() - 0.3) < 0.02
    assert abs(gn.bernoulli(p, 0.8).numpy().mean() - 0.8) < 0.02
    with pytest.raises(RuntimeError, match=r"in \[0, 1\]"):
        gn.bernoulli(gn.tensor([1.5]))


def test_dropout_function_scales_the_kept_values_and_is_identity_off():
    gn.manual_seed(5)
    x = gn.tensor(np.ones(10000))
    y = gn.dropout(x, 0.25, True).numpy()
    assert set(np.unique(y)) == {0.0, 1.0 / 0.75} and abs((y == 0).mean() - 0.25) < 0.02
    assert gn.dropout(x, 0.25, False) is x
    with pytest.raises(ValueError, match="between 0 and 1"):
        gn.dropout(x, 1.5)


def test_default_dtype_round_trip_changes_python_floats():
    assert gn.get_default_dtype() == np.float32 and gn.get_default_dtype() == gn.float32
    try:
        gn.set_default_dtype(gn.float64)
        assert gn.get_default_dtype() == np.float64 and gn.tensor([1.0]).dtype == np.float64
    finally:
        gn.set_default_dtype("float32")
    assert gn.tensor([1.0]).dtype == np.float32
    with pytest.raises(TypeError, match="floating-point"):
        gn.set_default_dtype("int64")


def test_is_cuda_and_mT_as_torch():
    a = np.random.default_rng(0).standard_normal((2, 3, 4))
    x = gn.tensor(a, requires_grad=True)
    assert x.is_cuda is False and torch.tensor(a).is_cuda is False
    np.testing.assert_array_equal(x.mT.numpy(), torch.tensor(a).mT.numpy())
    x.mT.sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones_like(a))


def test_normal_keeps_the_tensor_dtype_on_a_named_device_and_bernoulli_names_the_bad_p():
    m = gn.tensor(np.zeros(3))  # float64
    assert gn.normal(m, 1.0, device="cpu").dtype == np.float64
    assert torch.normal(torch.zeros(3, dtype=torch.float64), 1.0).dtype == torch.float64
    with pytest.raises(RuntimeError, match=r"in \[0, 1\], got 1.5"):
        gn.bernoulli(gn.tensor([0.5, 1.5]))
