"""The torch.nn.Module methods public example programs call: dtype and device
conversions (``to``, ``double``, ``float``, ``half``, ``cpu``), ``requires_grad_``,
buffers (``register_buffer``, persistent or not), ``register_parameter``,
``add_module``, ``get_submodule``; and an optimizer that follows a model moved or
cast after it was made. Against torch where it defines the result."""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn
from gpunet.errors import InvalidParameterError

torch = pytest.importorskip("torch")
nn = gn.nn


def _pair() -> tuple[nn.Sequential, torch.nn.Sequential]:
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4),
                                 torch.nn.Tanh(), torch.nn.Linear(4, 2))  # fmt: skip
    ours = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2))
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


@pytest.mark.parametrize(
    "convert,dtype",
    [(lambda m: m.double(), "float64"), (lambda m: m.to(gn.float64), "float64"),
     (lambda m: m.to("cpu", "float64"), "float64"), (lambda m: m.to(dtype="float64"), "float64"),
     (lambda m: m.to(gn.tensor(np.zeros(1))), "float64"),
     (lambda m: m.double().float(), "float32"), (lambda m: m.cpu().half(), "float16")],
)  # fmt: skip
def test_conversions_cast_every_floating_weight_and_buffer(convert, dtype):
    ours, _ = _pair()
    assert convert(ours) is ours
    for name, t in ours.state_dict().items():
        want = "int64" if name.endswith("num_batches_tracked") else dtype
        assert t.dtype == np.dtype(want), name
    x = np.random.default_rng(0).normal(size=(6, 3))
    assert ours(x).dtype == np.dtype(dtype)


def test_a_double_model_computes_as_torch_in_float64():
    ours, theirs = _pair()
    ours.double(), theirs.double()
    x = np.random.default_rng(1).normal(size=(8, 3))
    xt = torch.from_numpy(x).requires_grad_(True)
    theirs(xt).square().sum().backward()
    xg = gn.tensor(x, requires_grad=True)
    ours(xg).square().sum().backward()
    np.testing.assert_allclose(xg.grad, xt.grad.numpy(), rtol=1e-12, atol=1e-13)
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        assert p.grad.dtype == np.float64, name
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-12, atol=1e-13)


def test_bad_conversions_raise():
    ours, _ = _pair()
    with pytest.raises(TypeError, match="floating"):
        ours.to(gn.int64)
    with pytest.raises(TypeError, match="unexpected keyword"):
        ours.to(memory_format="channels_last")


def test_requires_grad_freezes_and_unfreezes_as_torch():
    ours, _ = _pair()
    x = np.random.default_rng(2).normal(size=(8, 3)).astype("float32")
    ours[0].requires_grad_(False)
    assert len(ours.parameters()) == 6  # frozen ones are still parameters, as in PyTorch
    ours(x).sum().backward()
    assert ours[0].weight.grad is None and ours[3].weight.grad is not None
    opt = gn.optim.SGD(ours.parameters(), lr=0.1)  # gets the ones that need a gradient
    before = ours[0].weight.numpy().copy()
    opt.step()
    np.testing.assert_array_equal(ours[0].weight.numpy(), before)
    ours.requires_grad_(True)
    assert all(p.requires_grad for p in ours.parameters())


class _Positional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 3)
        self.register_buffer("pe", gn.tensor(np.arange(15.0).reshape(5, 3), dtype="float32"))
        self.register_buffer("scratch", gn.ones(2), persistent=False)
        self.register_parameter("gain", nn.Parameter(gn.ones(3)))
        self.register_parameter("absent", None)
        self.add_module("extra", nn.Linear(3, 1))

    def forward(self, x):
        return self.extra(self.proj(x) * self.gain + self.pe)


class _TorchPositional(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3, 3)
        self.register_buffer("pe", torch.arange(15.0).reshape(5, 3))
        self.register_buffer("scratch", torch.ones(2), persistent=False)
        self.register_parameter("gain", torch.nn.Parameter(torch.ones(3)))
        self.register_parameter("absent", None)
        self.add_module("extra", torch.nn.Linear(3, 1))

    def forward(self, x):
        return self.extra(self.proj(x) * self.gain + self.pe)


def test_buffers_parameters_and_modules_registered_by_name_as_torch():
    ours, theirs = _Positional(), _TorchPositional()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert len(list(ours.buffers())) == 2 and ours.absent is None
    ours.load_state_dict(theirs.state_dict())
    x = np.random.default_rng(3).normal(size=(5, 3)).astype("float32")
    np.testing.assert_allclose(
        ours(x).numpy(), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6
    )
    assert ours.get_submodule("extra") is ours.extra
    with pytest.raises(AttributeError, match="nope"):
        ours.get_submodule("proj.nope")
    ours.double()
    assert ours.pe.dtype == np.float64 and ours.scratch.dtype == np.float64
    assert not ours.pe.requires_grad


def test_a_buffer_assigned_a_new_tensor_stays_the_buffer():
    m = _Positional()
    m.pe = gn.zeros(5, 3)
    assert list(m.state_dict()).count("pe") == 1
    np.testing.assert_array_equal(m.state_dict()["pe"].numpy(), np.zeros((5, 3)))
    assert len(m.parameters()) == 5


@pytest.mark.parametrize("optimizer", [gn.optim.Adam, gn.optim.SGD])
def test_the_optimizer_follows_a_model_cast_after_it_was_made(optimizer):
    """The cast replaces every weight's data; the optimizer packs them again, its
    state cast with them, instead of updating arrays nobody reads any more."""
    gn.manual_seed(4)  # the weights too: no run depends on an unseeded draw
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(32, 3)), rng.normal(size=(32, 2))
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    kw = {"momentum": 0.9} if optimizer is gn.optim.SGD else {}
    opt = optimizer(model.parameters(), lr=0.05, **kw)

    def step(dtype):
        loss = nn.functional.mse_loss(model(x.astype(dtype)), y.astype(dtype))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.item())

    step("float32")
    state = {k: np.array(v) for k, v in opt.groups[0].slots.items()}
    assert all(np.any(v != 0) for v in state.values())
    model.double()
    first = step("float64")  # the optimizer packs the float64 weights, then updates them
    g = opt.groups[0]
    assert g.P.dtype == np.float64 and all(v.dtype == np.float64 for v in g.slots.values())
    assert g.steps == [2] * len(g.params)  # the state went on, not back to step 1
    w = model[0].weight.numpy().copy()
    losses = [step("float64") for _ in range(20)]
    assert losses[-1] < first
    assert not np.array_equal(model[0].weight.numpy(), w)


def test_a_group_split_over_dtypes_is_refused_clearly():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    opt = gn.optim.SGD(model.parameters(), lr=0.1)
    model[0].double()
    model(np.ones((2, 3))).sum().backward()
    with pytest.raises(InvalidParameterError, match="several dtypes"):
        opt.step()


def test_the_optimizer_follows_a_model_moved_after_it_was_made():
    """``model.to(device)`` after the optimizer (on the simulated device)."""
    gn.manual_seed(5)
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(16, 3)).astype("float32"), rng.normal(size=(16, 1)).astype("float32")
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = gn.optim.Adam(model.parameters(), lr=0.02)
    model.to("sim")
    xs, ys = gn.tensor(x, device="sim"), gn.tensor(y, device="sim")
    losses = []
    for _ in range(15):
        loss = nn.functional.mse_loss(model(xs), ys)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    assert opt.groups[0].ops is model[0].weight.ops and model[0].weight.device == "sim"
    assert losses[-1] < 0.8 * losses[0]


def test_get_parameter_and_type_as_torch():
    ours, theirs = _pair()
    for path in ("0.weight", "1.bias", "3.weight"):
        got, want = ours.get_parameter(path), theirs.get_parameter(path)
        np.testing.assert_array_equal(got.numpy(), want.detach().numpy())
        assert got is dict(ours.named_parameters())[path]
    for bad in ("0.nothing", "7.weight", "1.running_mean"):  # a buffer is not a parameter
        with pytest.raises(AttributeError):
            ours.get_parameter(bad)
        with pytest.raises(AttributeError):
            theirs.get_parameter(bad)
    assert ours.type(gn.float64) is ours
    assert {p.dtype for p in ours.parameters()} == {np.dtype("float64")}
