"""More of the PyTorch surface public example programs reach for, against torch with
the same weights and inputs: the recurrent cells (the time-sequence example's
LSTMCell loop), smooth L1 and KL losses, normalize / cosine similarity,
elementwise maximum / minimum, ``randn_like`` / ``as_tensor`` and ``gn.cuda``."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import gpunet as gn
from gpunet.backend import available_devices
from gpunet.errors import InputValidationError, InvalidParameterError

torch = pytest.importorskip("torch")
nn, NF = gn.nn, gn.nn.functional
TF = torch.nn.functional
TOL = {"rtol": 1e-10, "atol": 1e-12}


def _grads_equal(ours: list[Any], theirs: list[Any]) -> None:
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a.grad, b.grad.numpy(), **TOL)


@pytest.mark.parametrize("kind", ["RNNCell", "RNNCell_relu", "LSTMCell", "GRUCell"])
@pytest.mark.parametrize("batched", [True, False])
def test_cells_in_a_loop_match_torch(kind, batched):
    name, kw = (kind[:-5], {"nonlinearity": "relu"}) if kind.endswith("_relu") else (kind, {})
    theirs = getattr(torch.nn, name)(3, 5, **kw, dtype=torch.float64)
    ours = getattr(nn, name)(3, 5, **kw, dtype="float64")
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(4, 2, 3) if batched else (4, 3))
    h0 = rng.normal(size=(2, 5) if batched else (5,))
    lstm = name == "LSTMCell"
    xt = torch.from_numpy(xs).requires_grad_(True)
    ht = torch.from_numpy(h0).requires_grad_(True)
    xg, hg = gn.tensor(xs, requires_grad=True), gn.tensor(h0, requires_grad=True)

    def run(cell: Any, x: Any, h: Any) -> Any:
        state = (h, h * 0.5) if lstm else h
        outs = []
        for t in range(4):
            state = cell(x[t], state)
            outs.append(state[0] if lstm else state)
        return outs

    out_t, out_g = run(theirs, xt, ht), run(ours, xg, hg)
    w = rng.normal(size=tuple(out_t[0].shape))
    sum((o * torch.from_numpy(w)).sum() for o in out_t).backward()
    sum((o * gn.tensor(w)).sum() for o in out_g).backward()
    for a, b in zip(out_g, out_t, strict=True):
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), **TOL)
    _grads_equal([xg, hg, *ours.parameters()], [xt, ht, *theirs.parameters()])


def test_cells_start_from_zeros_and_name_bad_inputs():
    ours = nn.GRUCell(3, 4)
    theirs = torch.nn.GRUCell(3, 4)
    ours.load_state_dict(theirs.state_dict())
    x = np.ones((2, 3), "float32")
    np.testing.assert_allclose(
        ours(x).numpy(), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6
    )
    assert nn.LSTMCell(3, 4, bias=False).bias_ih is None
    with pytest.raises(InputValidationError, match=r"GRUCell\(3, 4\) expects input \(N, 3\)"):
        ours(np.ones((2, 5), "float32"))
    with pytest.raises(InputValidationError, match=r"hx must have shape \(2, 4\)"):
        ours(x, np.zeros((3, 4), "float32"))
    with pytest.raises(InputValidationError, match=r"c_0 must have shape"):
        nn.LSTMCell(3, 4)(x, (np.zeros((2, 4), "float32"), np.zeros((2, 5), "float32")))
    with pytest.raises(InvalidParameterError, match="nonlinearity"):
        nn.RNNCell(3, 4, nonlinearity="sigmoid")
    with pytest.raises(InvalidParameterError, match="hidden_size"):
        nn.LSTMCell(3, 0)


def _pair_of(values: np.ndarray) -> tuple[Any, Any]:
    return gn.tensor(values, requires_grad=True), torch.from_numpy(values).requires_grad_(True)


def _same(fn_ours: Any, fn_theirs: Any, *arrays: np.ndarray, const: tuple[int, ...] = ()) -> None:
    """Values and input gradients equal (the inputs at ``const`` need none)."""
    pairs = [_pair_of(a) for a in arrays]
    for i in const:
        pairs[i] = (gn.tensor(arrays[i]), torch.from_numpy(arrays[i]))
    y = fn_ours(*(p[0] for p in pairs))
    yt = fn_theirs(*(p[1] for p in pairs))
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), **TOL)
    w = np.random.default_rng(1).normal(size=tuple(yt.shape))
    (y * gn.tensor(w)).sum().backward()
    (yt * torch.from_numpy(w)).sum().backward()
    keep = [i for i in range(len(pairs)) if i not in const]
    _grads_equal([pairs[i][0] for i in keep], [pairs[i][1] for i in keep])


@pytest.mark.parametrize("beta", [1.0, 0.3, 0.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_smooth_l1_loss_matches_torch(beta, reduction):
    rng = np.random.default_rng(2)
    x, t = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    _same(lambda a, b: NF.smooth_l1_loss(a, b, reduction, beta),
          lambda a, b: TF.smooth_l1_loss(a, b, reduction=reduction, beta=beta), x, t)  # fmt: skip
    module = nn.SmoothL1Loss(reduction=reduction, beta=beta)
    ref = torch.nn.SmoothL1Loss(reduction=reduction, beta=beta)
    want = ref(torch.from_numpy(x), torch.from_numpy(t)).numpy()
    np.testing.assert_allclose(module(gn.tensor(x), gn.tensor(t)).numpy(), want, **TOL)


@pytest.mark.parametrize("reduction", ["batchmean", "sum", "mean", "none"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_torch_with_zero_targets(reduction, log_target):
    rng = np.random.default_rng(3)
    logp = np.log(rng.dirichlet(np.ones(5), 4))
    q = rng.dirichlet(np.ones(5), 4)
    q[1, 2] = 0.0  # contributes 0 (torch's target gradient there is NaN: a constant here)
    target = np.log(q + 1e-3) if log_target else q

    def theirs_fn(a: Any, b: Any, log_target: bool = log_target) -> Any:
        with warnings.catch_warnings():  # torch warns that "mean" is not "batchmean"
            warnings.simplefilter("ignore", UserWarning)
            return TF.kl_div(a, b, reduction=reduction, log_target=log_target)

    _same(lambda a, b: NF.kl_div(a, b, reduction, log_target), theirs_fn, logp, target,
          const=() if log_target else (1,))  # fmt: skip
    pos = rng.dirichlet(np.ones(5), 4)  # the target's gradient where the target is > 0
    _same(lambda a, b: NF.kl_div(a, b, reduction), lambda a, b: theirs_fn(a, b, False), logp, pos)
    ours = nn.KLDivLoss(reduction=reduction, log_target=log_target)
    np.testing.assert_allclose(ours(gn.tensor(logp), gn.tensor(target)).numpy(),
                               theirs_fn(torch.from_numpy(logp), torch.from_numpy(target)).numpy(),
                               **TOL)  # fmt: skip
    with pytest.raises(ValueError, match="valid value"):
        nn.KLDivLoss(reduction="average")


@pytest.mark.parametrize("p,dim", [(2.0, 1), (1.0, 0), (3.0, -1)])
def test_normalize_matches_torch_also_on_a_zero_row(p, dim):
    x = np.random.default_rng(4).normal(size=(3, 4))
    x[1] = 0.0
    x[:, 2] = 1e-14  # below eps: divided by eps, as torch
    _same(lambda a: NF.normalize(a, p=p, dim=dim), lambda a: TF.normalize(a, p=p, dim=dim), x)


@pytest.mark.parametrize("shapes,dim", [(((3, 4), (3, 4)), 1), (((2, 3, 4), (1, 3, 4)), 2)])
def test_cosine_similarity_matches_torch(shapes, dim):
    rng = np.random.default_rng(5)
    a, b = (rng.normal(size=s) for s in shapes)
    a[0] = 0.0  # a zero vector: its norm is taken as eps
    _same(lambda x, y: NF.cosine_similarity(x, y, dim=dim),
          lambda x, y: TF.cosine_similarity(x, y, dim=dim), a, b)  # fmt: skip
    module = nn.CosineSimilarity(dim=dim)
    np.testing.assert_allclose(module(gn.tensor(a), gn.tensor(b)).numpy(),
                               TF.cosine_similarity(torch.from_numpy(a), torch.from_numpy(b),
                                                    dim=dim).numpy(), **TOL)  # fmt: skip


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_maximum_and_minimum_match_torch_at_ties_nan_and_broadcast(name):
    a = np.array([[1.0, 2.0, np.nan, -1.0], [0.5, 3.0, 2.0, 2.0]])
    b = np.array([[1.0, 0.0, 1.0, -2.0]])  # a tie at [0, 0]: the gradient splits in halves
    _same(getattr(gn, name), getattr(torch, name), a, b)
    assert getattr(gn, name)(gn.tensor(a), 1.5).shape == a.shape  # a Python number


def test_like_constructors_and_as_tensor():
    gn.manual_seed(0)
    x = gn.zeros(3, 4, dtype="float64")
    n1 = gn.randn_like(x)
    gn.manual_seed(0)
    assert n1.shape == (3, 4) and n1.dtype == np.float64
    np.testing.assert_array_equal(gn.randn_like(x).numpy(), n1.numpy())
    u = gn.rand_like(x, dtype="float32")
    assert u.dtype == np.float32 and float(u.numpy().min()) >= 0.0 > float(n1.numpy().min())
    arr = np.arange(4.0)
    shared = gn.as_tensor(arr)
    assert shared.dtype == np.float64 and np.shares_memory(shared.numpy(), arr)
    assert gn.as_tensor(shared) is shared
    assert gn.as_tensor(shared, dtype="float32").dtype == np.float32
    assert gn.as_tensor([1.0, 2.0]).dtype == np.float32  # Python floats: the default dtype
    assert gn.as_tensor([1, 2]).dtype == np.int64


def test_gn_cuda_answers_as_torch_cuda():
    n = len(available_devices()) - 1
    assert gn.cuda.device_count() == n
    assert gn.cuda.is_available() == (n > 0)
    gn.cuda.manual_seed(7)
    a = gn.randn(3)
    gn.manual_seed(7)
    np.testing.assert_array_equal(gn.randn(3).numpy(), a.numpy())
    if n == 0:
        with pytest.raises(RuntimeError, match="no usable CUDA device"):
            gn.cuda.synchronize()


def test_the_quickstart_device_line_and_backends_settings():
    """PyTorch's quickstart: ``device = torch.accelerator.current_accelerator().type if
    torch.accelerator.is_available() else "cpu"``."""
    acc = gn.accelerator.current_accelerator()
    device = acc.type if gn.accelerator.is_available() else "cpu"
    assert device == ("cuda" if gn.cuda.is_available() else "cpu")
    assert gn.accelerator.device_count() == gn.cuda.device_count()
    assert (acc is None) == (not gn.accelerator.is_available())
    assert gn.accelerator.AcceleratorDevice("cuda:1").type == "cuda"
    model = nn.Linear(2, 1).to(device)
    assert model.weight.device.startswith(device)
    assert gn.backends.mps.is_available() is False and gn.backends.cudnn.is_available() is False
    saved = gn.backends.cudnn.benchmark
    gn.backends.cudnn.benchmark = True  # a setting scripts make: accepted
    gn.backends.cudnn.benchmark = saved
