"""The PyTorch tensor and module surface, each name checked against torch itself:
same inputs and weights, forward values, input gradients, and for modules ten SGD
steps. In-place updates follow PyTorch (in place, or the same error), never a
silent rebinding."""

from __future__ import annotations

import operator

import numpy as np
import pytest

import gpunet as gn
from gpunet import nn, optim

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

R = np.random.default_rng(0)
X = R.normal(size=(3, 4))
X3 = R.normal(size=(2, 3, 4))
POS = R.uniform(0.5, 2.0, (3, 4))
LABELS = np.array([0, 2, 1])


def _run(lib, fn, arrays, grad=True):
    ts = [
        lib.tensor(a.copy(), requires_grad=grad and a.dtype.kind == "f")
        if a.dtype.kind == "f"
        else lib.tensor(a.copy())
        for a in arrays
    ]
    out = fn(lib, *ts)
    if isinstance(out, (tuple, list)) and not hasattr(out, "shape"):
        out = out[0]
    value = np.array(out.detach().numpy() if hasattr(out, "detach") else out)
    grads = []
    if grad and getattr(out, "requires_grad", False):
        w = np.random.default_rng(1).normal(size=value.shape)
        (out * lib.tensor(w)).sum().backward()
        grads = [None if t.grad is None else np.array(t.grad.numpy()) for t in ts]
    return value, grads


def check(fn, *arrays, grad=True):
    ours, g_ours = _run(gn, fn, arrays, grad)
    theirs, g_theirs = _run(torch, fn, arrays, grad)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-9)
    assert len(g_ours) == len(g_theirs)
    for a, b in zip(g_ours, g_theirs, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


METHODS = {
    "to_float_double": (lambda L, x: x.to(L.float32).double(), [X]),
    "type": (lambda L, x: x.type(L.float32), [X]),
    "argmax_dim": (lambda L, x: x.argmax(dim=1), [X]),
    "argmax_flat": (lambda L, x: x.argmax(), [X]),
    "max_dim_values": (lambda L, x: x.max(1)[0], [X]),
    "max_dim_indices": (lambda L, x: x.max(1).indices, [X]),
    "min_keepdim": (lambda L, x: x.min(0, keepdim=True).values, [X]),
    "max_all": (lambda L, x: x.max(), [X]),
    "unsqueeze_squeeze": (lambda L, x: x.unsqueeze(1).squeeze(1) * x.unsqueeze(-1)[..., 0], [X]),
    "squeeze_all": (lambda L, x: x.reshape(1, 3, 1, 4).squeeze(), [X]),
    "view": (lambda L, x: x.view(4, 3) + x.view(-1)[:3], [X]),
    "reshape_tuple": (lambda L, x: x.reshape((2, 6)), [X]),
    "permute": (lambda L, x: x.permute(2, 0, 1), [X3]),
    "t_and_T": (lambda L, x: x.t() + x.T, [X]),
    "sum_dim": (lambda L, x: x.sum(1) + x.sum(dim=0, keepdim=True).sum(), [X]),
    "sum_dims": (lambda L, x: x.sum((0, 2)), [X3]),
    "mean_dim": (lambda L, x: x.mean(-1), [X]),
    "elementwise": (lambda L, x: x.exp() + x.sin() * x.cos() - x.abs().sqrt() + x.pow(3), [X]),
    "log": (lambda L, x: x.log(), [POS]),
    "clamp": (lambda L, x: x.clamp(-0.5, 0.5) + x.clamp(min=0.1), [X]),
    "pow_tensor": (lambda L, x, p: x.pow(p), [POS, np.array([1, 2, 3, 1])]),
    "rpow_rsub_rdiv": (lambda L, x: 2.0**x - (1.0 - x) / (3.0 / (x.abs() + 1)), [X]),
    "activations": (lambda L, x: x.relu() + x.sigmoid() + x.tanh(), [X]),
    "softmax_methods": (lambda L, x: x.softmax(1) + x.log_softmax(dim=0), [X]),
    "clone": (lambda L, x: x.clone() * 2, [X]),
    "detach": (lambda L, x: x.detach() * x, [X]),
    "index_range_tensor": (lambda L, x, y: x[range(3), y], [X, LABELS]),
    "index_bool": (lambda L, x: x[x > 0], [X]),
    "index_list_repeats": (lambda L, x: x[[0, 0, 2]], [X]),
    "index_basic": (lambda L, x: x[1:, ::2] * x[None, :2, 1].T, [X]),
    "comparisons": (lambda L, x: (x > 0).float() + (x <= 0.1).double() + (x == x).float(), [X]),
    "matmul_operator": (lambda L, a, b: a @ b.T, [X, POS]),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_tensor_method_matches_torch(name):
    fn, arrays = METHODS[name]
    check(fn, *arrays)


FUNCTIONS = {
    "cat": (lambda L, a, b: L.cat([a, b], dim=1), [X, POS]),
    "stack": (lambda L, a, b: L.stack([a, b]), [X, POS]),
    "where": (lambda L, a, b: L.where(a > 0, a, b), [X, POS]),
    "matmul": (lambda L, a, b: L.matmul(a, b.T), [X, POS]),
    "math": (lambda L, x: L.exp(x) + L.sin(x) + L.cos(x) + L.abs(x) + L.sqrt(L.abs(x)), [X]),
    "log": (lambda L, x: L.log(x), [POS]),
    "activations": (lambda L, x: L.sigmoid(x) + L.tanh(x) + L.relu(x), [X]),
    "softmax": (lambda L, x: L.softmax(x, dim=1) + L.log_softmax(x, dim=0), [X]),
    "reductions": (lambda L, x: L.sum(x, 1) + L.mean(x, dim=1) + L.max(x), [X]),
    "argmax": (lambda L, x: L.argmax(x, dim=1), [X]),
    "max_dim": (lambda L, x: L.max(x, 1)[0] + L.min(x, dim=1).values, [X]),
    "shape": (lambda L, x: L.unsqueeze(L.squeeze(L.reshape(x, (1, 12))), 0), [X]),
    "flatten": (lambda L, x: L.flatten(x, 1), [X3]),
    "clamp": (lambda L, x: L.clamp(x, min=-0.2, max=0.3), [X]),
}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_top_level_function_matches_torch(name):
    fn, arrays = FUNCTIONS[name]
    check(fn, *arrays)


def test_creation_functions_match_torch():
    for fn in (
        lambda L: L.zeros(2, 3),
        lambda L: L.ones((2, 3), dtype=L.float64),
        lambda L: L.arange(5),
        lambda L: L.arange(1.0, 2.0, 0.25),
        lambda L: L.linspace(-1.0, 1.0, 7),
        lambda L: L.full((2, 2), 3.5),
        lambda L: L.zeros_like(L.tensor(X)) + L.ones_like(L.tensor(X)),
        lambda L: L.tensor([1, 2, 3]),
        lambda L: L.tensor([1.0, 2.0]),
        lambda L: L.from_numpy(X.copy()),
    ):
        ours, theirs = fn(gn), fn(torch)
        assert str(ours.dtype) == str(theirs.dtype).replace("torch.", "")
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6, atol=1e-6)
    assert gn.float == gn.float32 and gn.long == gn.int64 and gn.double == gn.float64
    gn.manual_seed(3)
    a = gn.randn(2, 3)
    gn.manual_seed(3)
    assert np.array_equal(a.numpy(), gn.randn((2, 3)).numpy()) and a.dtype == gn.float32


def test_item_tolist_size_and_bool():
    for L in (gn, torch):
        t = L.tensor([[1.5, 2.0]])
        assert t.sum().item() == 3.5 and isinstance(L.tensor([3]).sum().item(), int)
        assert t.tolist() == [[1.5, 2.0]] and t.size() == (1, 2) and t.size(1) == 2
        assert t.dim() == 2 and t.numel() == 2 and bool(t.sum() > 3)
        with pytest.raises(RuntimeError, match="ambiguous"):
            bool(t > 0)


def _targets(L):
    return {
        "labels": L.tensor(LABELS),
        "probs": L.tensor(np.abs(POS) / np.abs(POS).sum(1, keepdims=True)),
        "binary": L.tensor((POS > 1.0).astype("float64")),
        "values": L.tensor(POS),
    }


F_CASES = {
    "relu_sigmoid_tanh": lambda L, F, x, T: F.relu(x) + F.sigmoid(x) + F.tanh(x),
    "softmax": lambda L, F, x, T: F.softmax(x, dim=1) + F.log_softmax(x, dim=1),
    "gelu": lambda L, F, x, T: F.gelu(x) + F.gelu(x, approximate="tanh"),
    "leaky_elu_silu_softplus": lambda L, F, x, T: (
        F.leaky_relu(x, 0.2) + F.elu(x, alpha=2.0) + F.silu(x) + F.softplus(x)
    ),
    "linear": lambda L, F, x, T: F.linear(x, x[:2] * 0.5, x[0, :2]),
    "dropout_eval": lambda L, F, x, T: F.dropout(x, 0.5, training=False),
    "pad": lambda L, F, x, T: F.pad(x, (1, 2, 0, 1), value=0.5),
    "ce_labels": lambda L, F, x, T: F.cross_entropy(x, T["labels"]),
    "ce_probs": lambda L, F, x, T: F.cross_entropy(x, T["probs"]),
    "ce_sum": lambda L, F, x, T: F.cross_entropy(x, T["labels"], reduction="sum"),
    "ce_none": lambda L, F, x, T: F.cross_entropy(x, T["labels"], reduction="none"),
    "ce_weight": lambda L, F, x, T: F.cross_entropy(
        x, T["labels"], weight=L.tensor(np.array([1.0, 2.0, 0.5, 1.0]))
    ),
    "ce_ignore": lambda L, F, x, T: F.cross_entropy(x, T["labels"], ignore_index=2),
    "ce_smoothing": lambda L, F, x, T: F.cross_entropy(x, T["labels"], label_smoothing=0.1),
    "ce_smoothing_weight_sum": lambda L, F, x, T: F.cross_entropy(
        x,
        T["labels"],
        weight=L.tensor(np.array([1.0, 2.0, 0.5, 1.0])),
        label_smoothing=0.2,
        reduction="sum",
    ),
    "ce_probs_smoothing_none": lambda L, F, x, T: F.cross_entropy(
        x, T["probs"], label_smoothing=0.1, reduction="none"
    ),
    "nll": lambda L, F, x, T: F.nll_loss(F.log_softmax(x, dim=1), T["labels"]),
    "nll_weight_sum": lambda L, F, x, T: F.nll_loss(
        x, T["labels"], weight=L.tensor(np.array([1.0, 2.0, 0.5, 1.0])), reduction="sum"
    ),
    "mse": lambda L, F, x, T: (
        F.mse_loss(x, T["values"]) + F.mse_loss(x, T["values"], reduction="sum")
    ),
    "mse_none": lambda L, F, x, T: F.mse_loss(x, T["values"], reduction="none"),
    "l1": lambda L, F, x, T: F.l1_loss(x, T["values"]) + F.l1_loss(x, T["values"], reduction="sum"),
    "huber": lambda L, F, x, T: F.huber_loss(x * 3, T["values"], delta=0.7),
    "bce": lambda L, F, x, T: F.binary_cross_entropy(F.sigmoid(x), T["binary"]),
    "bce_none": lambda L, F, x, T: F.binary_cross_entropy(
        F.sigmoid(x), T["binary"], reduction="none"
    ),
    "bce_logits": lambda L, F, x, T: F.binary_cross_entropy_with_logits(x, T["binary"]),
    "bce_logits_pos_weight": lambda L, F, x, T: F.binary_cross_entropy_with_logits(
        x, T["binary"], pos_weight=L.tensor(np.array([1.0, 2.0, 3.0, 0.5])), reduction="sum"
    ),
}


@pytest.mark.parametrize("name", sorted(F_CASES))
def test_nn_functional_matches_torch(name):
    check(lambda L, x: F_CASES[name](L, L.nn.functional, x, _targets(L)), X)


def test_one_hot_matches_torch():
    for n in (-1, 5):
        ours = gn.nn.functional.one_hot(gn.tensor(LABELS), n)
        theirs = torch.nn.functional.one_hot(torch.tensor(LABELS), n)
        assert ours.dtype == gn.int64 and np.array_equal(ours.numpy(), theirs.numpy())


def _snapshot(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def _same_weights(ours, state):
    assert list(ours.state_dict()) == list(state)
    ours.load_state_dict(state)


MODULES = {
    "relu": lambda L: L.nn.ReLU(),
    "elu_alpha": lambda L: L.nn.ELU(alpha=2.0),
    "gelu_tanh": lambda L: L.nn.GELU(approximate="tanh"),
    "gelu": lambda L: L.nn.GELU(),
    "leaky": lambda L: L.nn.LeakyReLU(0.1),
    "sigmoid": lambda L: L.nn.Sigmoid(),
    "tanh": lambda L: L.nn.Tanh(),
    "silu": lambda L: L.nn.SiLU(),
    "selu": lambda L: L.nn.SELU(),
    "softplus": lambda L: L.nn.Softplus(),
    "softmax": lambda L: L.nn.Softmax(dim=1),
    "log_softmax": lambda L: L.nn.LogSoftmax(dim=1),
    "dropout_eval": lambda L: L.nn.Dropout(0.3),
    "flatten": lambda L: L.nn.Flatten(),
}
LOSSES = ["MSELoss", "L1Loss", "HuberLoss", "CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss"]


def _steps(L, act, loss_name, reduction, steps=10):
    gn.config.set_floatx("float64")
    torch.set_default_dtype(torch.float64)
    try:
        net = L.nn.Sequential(L.nn.Linear(4, 6), act(L), L.nn.Linear(6, 3))
        loss_fn = getattr(L.nn, loss_name)(reduction=reduction)
    finally:
        gn.config.set_floatx("float32")
        torch.set_default_dtype(torch.float32)
    return net, loss_fn


@pytest.mark.parametrize("act", sorted(MODULES))
@pytest.mark.parametrize("loss_name", LOSSES)
def test_modules_and_losses_train_as_torch(act, loss_name):
    reduction = {"L1Loss": "sum", "NLLLoss": "sum"}.get(loss_name, "mean")
    traces, state = {}, {}
    for L in (torch, gn):
        net, loss_fn = _steps(L, MODULES[act], loss_name, reduction)
        if L is torch:
            state = _snapshot(net)
        else:
            _same_weights(net, state)
        net.eval() if act == "dropout_eval" else net.train()
        opt = L.optim.SGD(net.parameters(), lr=0.05)
        x = L.tensor(X)
        if loss_name in ("CrossEntropyLoss", "NLLLoss"):
            y = L.tensor(LABELS)
        elif loss_name == "BCEWithLogitsLoss":
            y = L.tensor((X[:, :3] > 0).astype("float64"))
        else:
            y = L.tensor(POS[:, :3])
        trace = []
        for _ in range(10):
            out = net(x)
            if loss_name == "NLLLoss":
                out = L.nn.functional.log_softmax(out, dim=1)
            loss = loss_fn(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            trace.append(loss.item())
        traces[L.__name__] = trace + [float(v) for v in net[0].weight.detach().numpy().ravel()]
    np.testing.assert_allclose(traces["gpunet"], traces["torch"], rtol=1e-7, atol=1e-10)


def test_losses_reject_an_unknown_reduction():
    with pytest.raises(ValueError, match="avg is not a valid value for reduction"):
        nn.MSELoss(reduction="avg")


# -- in-place updates ---------------------------------------------------------------------
INPLACE = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "add_": lambda t, v: t.add_(v, alpha=2.0),
    "sub_": lambda t, v: t.sub_(v),
    "mul_": lambda t, v: t.mul_(v),
    "div_": lambda t, v: t.div_(v),
    "zero_": lambda t, v: t.zero_(),
    "fill_": lambda t, v: t.fill_(0.25),
    "copy_": lambda t, v: t.copy_(v),
    "@=": lambda t, v: operator.imatmul(t, v.T @ v),
}
# NOTE: torch tensors have no __imatmul__, so there `a @= b` rebinds `a` to a new
# tensor; gpunet multiplies in place (or raises when the shape would change), so
# that `p @= m` under no_grad updates a parameter instead of silently not.
TORCH_INPLACE = sorted(set(INPLACE) - {"@="})


@pytest.mark.parametrize("op", sorted(INPLACE))
def test_inplace_on_a_leaf_that_requires_grad_raises_as_torch(op):
    for L in (gn, torch) if op in TORCH_INPLACE else (gn,):
        w = L.tensor(POS.copy(), requires_grad=True)
        with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
            INPLACE[op](w, L.tensor(X))


@pytest.mark.parametrize("op", TORCH_INPLACE)
def test_inplace_under_no_grad_updates_the_parameter_in_place(op):
    """Also in the optimizer's flat buffer: the parameter stays a view of it."""
    results, state = {}, {}
    for L in (torch, gn):
        lin = L.nn.Linear(4, 3)
        if L is gn:
            _same_weights(lin, state)
        else:
            state = _snapshot(lin)
        opt = L.optim.SGD(lin.parameters(), lr=0.1)
        w = lin.weight
        before = id(w)
        with L.no_grad():
            out = INPLACE[op](w, L.tensor(POS[:, :4].astype("float32")))
        assert out is w and id(lin.weight) == before
        lin(L.tensor(X.astype("float32"))).sum().backward()
        opt.step()
        results[L.__name__] = w.detach().numpy().copy()
        if L is gn:
            flat = opt.groups[0].P  # the update ran on the buffer the in-place op wrote
            np.testing.assert_array_equal(flat[: w.numpy().size], w.numpy().ravel())
    np.testing.assert_allclose(results["gpunet"], results["torch"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("op", sorted(INPLACE))
def test_inplace_on_a_constant_writes_its_memory(op):
    arr = POS.copy()
    t = gn.tensor(arr)
    ref = torch.tensor(POS.copy())
    assert INPLACE[op](t, gn.tensor(X)) is t
    ref = INPLACE[op](ref, torch.tensor(X))  # the same tensor, except torch's @= (rebinds)
    assert np.shares_memory(t.numpy(), arr)
    np.testing.assert_allclose(arr, ref.numpy(), rtol=1e-12)


@pytest.mark.parametrize("op", ["+=", "-=", "*=", "/=", "add_", "mul_"])
def test_inplace_on_a_graph_tensor_raises_instead_of_rebinding(op):
    w = gn.tensor(POS, requires_grad=True)
    h = w * 2.0
    with pytest.raises(RuntimeError, match="write the out-of-place form"):
        INPLACE[op](h, gn.tensor(X))


def test_a_constant_updated_by_a_graph_tensor_carries_the_gradient():
    grads = []
    for L in (gn, torch):
        w = L.tensor(POS.copy(), requires_grad=True)
        acc = L.zeros(3, 4, dtype=L.float64)
        acc += w * 3.0
        (acc * w).sum().backward()
        grads.append(w.grad.numpy())
    np.testing.assert_allclose(grads[0], grads[1])


def test_inplace_matmul_and_lossy_casts_as_torch():
    for L in (gn, torch):
        a = L.tensor(X[:, :3].copy())
        a @= a.T
        np.testing.assert_allclose(a.numpy(), X[:, :3] @ X[:, :3].T)
        i = L.tensor([1, 2])
        with pytest.raises(RuntimeError, match="can't be cast"):
            i += 0.5
        with pytest.raises(RuntimeError, match="shape"):
            L.tensor([1.0]).add_(L.tensor([1.0, 2.0]))
    with pytest.raises(RuntimeError, match="shape"):  # torch would rebind a to a new shape
        a = gn.tensor(X[:, :3].copy())
        a @= gn.tensor(X)


def test_matmul_in_place_under_no_grad_updates_a_parameter():
    lin = nn.Linear(3, 3)
    opt = optim.SGD(lin.parameters(), lr=0.1)
    expected = lin.weight.numpy() @ np.eye(3) * 2
    with gn.no_grad():
        lin.weight @= gn.tensor(np.eye(3, dtype="float32") * 2)
    np.testing.assert_allclose(lin.weight.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(opt.groups[0].P[:9], expected.ravel(), rtol=1e-6)


def test_manual_sgd_with_inplace_updates_trains():
    """The issue's silent no-op: the loss must fall, as it does in torch."""
    net = nn.Sequential(nn.Linear(4, 1), nn.Flatten(0, 1))
    loss_fn = nn.MSELoss(reduction="sum")
    first = None
    for _ in range(20):
        loss = loss_fn(net(X), gn.tensor(POS[:, 0]))
        first = first if first is not None else loss.item()
        net.zero_grad()
        loss.backward()
        with gn.no_grad():
            for p in net.parameters():
                p -= 0.01 * p.grad
    assert loss.item() < 0.5 * first


# -- gradients and NumPy views ------------------------------------------------------------
def test_grad_is_a_tensor_that_zero_resets_in_place():
    out = {}
    for L in (gn, torch):
        a = L.tensor(X.copy(), requires_grad=True)
        b = L.tensor(POS.copy(), requires_grad=True)
        (a + b).sum().backward()
        a.grad.zero_()  # must not touch b.grad, even where backward shared an array
        (a * b).sum().backward()
        a.grad += 1.0
        out[L.__name__] = (a.grad.numpy().copy(), b.grad.numpy().copy())
        assert isinstance(a.grad, L.Tensor)
    for ours, theirs in zip(out["gpunet"], out["torch"], strict=True):
        np.testing.assert_allclose(ours, theirs)


def test_np_array_of_a_tensor_is_a_snapshot():
    lin = nn.Linear(3, 2)
    opt = optim.SGD(lin.parameters(), lr=0.5)
    snap, live = np.array(lin.weight), np.asarray(lin.weight)
    lin(np.ones((2, 3))).sum().backward()
    opt.step()
    assert not np.allclose(snap, lin.weight.numpy())  # np.array copied, as torch copies
    assert np.array_equal(live, lin.weight.numpy())  # np.asarray shares, as .numpy() does


# -- modules: state dicts, names and printing -------------------------------------------------
def _nets(L):
    class Net(L.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = L.nn.Linear(4, 8)
            self.act = L.nn.ReLU()
            self.blocks = L.nn.ModuleList([L.nn.Linear(8, 8), L.nn.Linear(8, 8)])
            self.heads = L.nn.ModuleDict({"a": L.nn.Linear(8, 2), "b": L.nn.Linear(8, 1)})
            self.scale = L.nn.Parameter(L.ones(1))

        def forward(self, x):
            h = self.act(self.fc1(x))
            for blk in self.blocks:
                h = self.act(blk(h))
            return self.heads["a"](h) * self.scale

    seq = L.nn.Sequential(
        L.nn.Linear(3, 4),
        L.nn.ELU(alpha=2.0),
        L.nn.Dropout(0.1),
        L.nn.GELU(approximate="tanh"),
        L.nn.LeakyReLU(0.1),
        L.nn.Softmax(dim=1),
        L.nn.Flatten(0, 1),
    )
    return Net(), seq


def test_state_dict_names_order_and_repr_match_torch():
    for ours, theirs in zip(_nets(gn), _nets(torch), strict=True):
        assert list(ours.state_dict()) == list(theirs.state_dict())
        assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
        assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
        assert [type(m).__name__ for m in ours.children()] == [
            type(m).__name__ for m in theirs.children()
        ]
        assert str(ours) == str(theirs)
        assert ours.train() is ours and ours.eval() is ours
        assert not any(m.training for m in ours.modules())
        for k, v in theirs.state_dict().items():
            assert ours.state_dict()[k].shape == tuple(v.shape)


def test_load_state_dict_from_torch_gives_torch_outputs():
    ours, theirs = _nets(gn)[0], _nets(torch)[0]
    result = ours.load_state_dict(theirs.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    x = np.random.default_rng(3).normal(size=(5, 4)).astype("float32")
    np.testing.assert_allclose(
        ours(x).numpy(), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6
    )


def test_load_state_dict_is_strict_by_default():
    net = _nets(gn)[0]
    state = dict(net.state_dict())
    state.pop("fc1.bias")
    state["extra.weight"] = np.zeros(2)
    before = net.fc1.weight.numpy().copy()
    with pytest.raises(RuntimeError, match=r'Missing key.*"fc1\.bias"') as err:
        net.load_state_dict({**state, "fc1.weight": np.ones((8, 4))})
    assert 'Unexpected key(s) in state_dict: "extra.weight"' in str(err.value)
    assert np.array_equal(net.fc1.weight.numpy(), before)  # nothing copied
    keys = net.load_state_dict(state, strict=False)
    assert keys.missing_keys == ["fc1.bias"] and keys.unexpected_keys == ["extra.weight"]
    with pytest.raises(RuntimeError, match=r"size mismatch for fc1\.weight"):
        net.load_state_dict({**dict(net.state_dict()), "fc1.weight": np.zeros((4, 8))})


def test_save_and_load_a_state_dict_without_pickle(tmp_path):
    net = _nets(gn)[0]
    path = tmp_path / "net.safetensors"
    gn.save(net.state_dict(), path)
    raw = path.read_bytes()
    assert raw[8:9] == b"{" and b"pickle" not in raw
    loaded = gn.load(path)
    assert list(loaded) == list(net.state_dict())
    other = _nets(gn)[0]
    other.load_state_dict(loaded)
    for (k, a), b in zip(net.state_dict().items(), other.state_dict().values(), strict=True):
        assert np.array_equal(a.numpy(), b.numpy()), k
    with pytest.raises(TypeError, match="state dict"):
        gn.save(net, tmp_path / "model.bin")


def test_sequential_indexing_slicing_and_len():
    seq = _nets(gn)[1]
    assert len(seq) == 7 and isinstance(seq[0], nn.Linear) and isinstance(seq[-1], nn.Flatten)
    head = seq[:2]
    assert isinstance(head, nn.Sequential) and len(head) == 2 and head[0] is seq[0]
    assert head(np.ones((2, 3))).shape == (2, 4)
    assert [type(m).__name__ for m in seq][:2] == ["Linear", "ELU"]


def test_linear_layout_init_and_errors():
    gn.manual_seed(0)
    lin = nn.Linear(16, 5)
    assert lin.weight.shape == (5, 16) and lin.bias.shape == (5,)
    bound = 1 / 4.0
    assert np.abs(lin.weight.numpy()).max() <= bound and np.abs(lin.bias.numpy()).max() <= bound
    assert np.abs(lin.weight.numpy()).max() > 0.8 * bound  # PyTorch's U(-1/sqrt(in), ...)
    assert nn.Linear(3, 2, bias=False).bias is None
    with pytest.raises(gn.errors.InputValidationError, match=r"expects inputs of shape \(\*, 16\)"):
        lin(np.ones((2, 3)))
    assert isinstance(lin.weight, nn.Parameter)
    p = nn.Parameter(gn.randn(2, 2), requires_grad=False)
    assert isinstance(p, nn.Parameter) and not p.requires_grad


def test_batchnorm1d_running_statistics_match_torch():
    """PyTorch keeps the unbiased batch variance in running_var (Keras 3 the biased one)."""
    X = np.random.default_rng(4).normal(size=(6, 3))
    ours = gn.nn.BatchNorm1d(3, momentum=0.3)
    theirs = torch.nn.BatchNorm1d(3, momentum=0.3).double()
    for _ in range(3):
        ours(gn.tensor(X), training=True)
        theirs.train()(torch.tensor(X))
    np.testing.assert_allclose(ours.moving_mean.numpy(), theirs.running_mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(ours.moving_variance.numpy(), theirs.running_var.numpy(), rtol=1e-6)


def _subclassed(lib, base, body):
    """A subclass of ``lib.nn.<base>`` whose forward wraps the built-in one."""

    class Sub(getattr(lib.nn, base)):  # type: ignore[misc]
        def forward(self, x):
            return body(super().forward(x))

    return Sub


@pytest.mark.parametrize(
    "base,args,shape",
    [("Linear", (4, 3), (5, 4)), ("Conv2d", (2, 3, 3), (1, 2, 5, 5)), ("ReLU", (), (3, 4))],
)  # fmt: skip
def test_a_subclass_forward_of_a_builtin_module_runs_as_in_pytorch(base, args, shape):
    # it was silently skipped: the module ran its built-in pass alone
    x = R.normal(size=shape).astype(np.float32)
    g, t = (_subclassed(lib, base, lambda y: y * 2.0 + 1.0)(*args) for lib in (gn, torch))
    g.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    gx, tx = gn.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    gy, ty = g(gx), t(tx)
    np.testing.assert_allclose(gy.numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    (gy * gy).sum().backward()
    (ty * ty).sum().backward()
    np.testing.assert_allclose(gx.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    for (name, p), q in zip(g.named_parameters(), t.parameters(), strict=True):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-4, err_msg=name)
    np.testing.assert_allclose(g.forward(gx).numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert not g.runs_on_arrays  # the graph-free step may not skip the subclass's forward


def test_builtin_modules_still_run_their_own_pass_and_modules_need_a_forward():
    lin = nn.Linear(4, 3)
    assert lin.runs_on_arrays and nn.ReLU().runs_on_arrays
    np.testing.assert_allclose(
        nn.ReLU().forward(gn.tensor(np.array([-1.0, 2.0]))).numpy(), [0.0, 2.0]
    )

    class NoForward(nn.Module):
        pass

    with pytest.raises(NotImplementedError, match="forward"):
        NoForward()(np.ones((1, 4)))


class _Doubled(nn.Linear):
    def forward(self, x):
        return super().forward(x) * 2.0


def test_a_subclass_forward_inside_sequential_is_kept_by_predict_and_fit():
    # the graph-free step (predict, fit) would have run the built-in pass alone
    x = R.normal(size=(6, 4)).astype(np.float32)
    model = nn.Sequential(_Doubled(4, 3), nn.ReLU())
    model(x)
    assert not model.runs_on_arrays
    np.testing.assert_allclose(model.predict(x, verbose=0), model(x).numpy(), rtol=1e-6)
    plain = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    plain(x)
    assert plain.runs_on_arrays  # built-in modules keep the fast step


def test_a_linear_subclass_with_its_own_call_is_not_run_on_arrays():
    class Called(nn.Linear):
        def call(self, x, training=False, activation="linear"):
            return super().call(x, training) + 1.0

    assert not Called(4, 3).runs_on_arrays and nn.Linear(4, 3).runs_on_arrays


def test_forward_called_directly_on_a_sequential_subclass_runs_its_body_once():
    class PlusOne(nn.Sequential):
        def forward(self, x):
            return super().forward(x) + 1.0

    m, x = PlusOne(nn.ReLU()), np.array([[1.0, -2.0]], np.float32)
    np.testing.assert_allclose(m(x).numpy(), [[2.0, 1.0]])
    np.testing.assert_allclose(m.forward(gn.tensor(x)).numpy(), [[2.0, 1.0]])


def test_an_encoder_layer_with_its_feed_forward_linear_wrapped_as_in_pytorch():
    # the block's fused linear1 + activation must not assume linear1 is nn.Linear
    def wrapper(lib):
        class Wrapped(lib.nn.Module):  # a LoRA-style wrapper around the block's linear1
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, x):
                return self.inner(x) * 0.5

        return Wrapped

    gl = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    tl = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    gl.load_state_dict({k: v.detach().numpy() for k, v in tl.state_dict().items()})
    gl.linear1, tl.linear1 = wrapper(gn)(gl.linear1), wrapper(torch)(tl.linear1)
    x = R.normal(size=(2, 5, 8)).astype(np.float32)
    with torch.no_grad():
        want = tl(torch.tensor(x)).numpy()
    np.testing.assert_allclose(gl(x).numpy(), want, rtol=1e-4, atol=1e-5)


def test_a_subclass_forward_of_attention_and_recurrent_modules_runs_as_in_pytorch():
    # modules whose built-in pass is their own call (not an array pass) dispatch too
    def sub(lib, base):
        class Sub(getattr(lib.nn, base)):  # type: ignore[misc]
            def forward(self, x, *args, **kwargs):
                out = super().forward(x, *args, **kwargs)
                return out[0] * 2.0 + 1.0

        return Sub

    x = R.normal(size=(2, 5, 8)).astype(np.float32)
    for base, args, kw, call in [
        ("MultiheadAttention", (8, 2), {"batch_first": True}, lambda m, t: m(t, t, t)),
        ("LSTM", (8, 4), {"batch_first": True}, lambda m, t: m(t)),
    ]:
        g, t = (sub(lib, base)(*args, **kw) for lib in (gn, torch))
        g.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
        with torch.no_grad():
            want = call(t, torch.tensor(x)).numpy()
        np.testing.assert_allclose(call(g, x).numpy(), want, rtol=1e-4, atol=1e-5, err_msg=base)
        np.testing.assert_allclose(
            g.forward(gn.tensor(x), *([gn.tensor(x)] * 2 if base != "LSTM" else [])).numpy(),
            want, rtol=1e-4, atol=1e-5, err_msg=f"{base}.forward called directly",
        )  # fmt: skip


def test_identity_module_passes_its_input_as_torch():
    x = np.random.default_rng(0).standard_normal((3, 4)).astype("float32")
    ours, theirs = nn.Identity(54, unused=0.1), torch.nn.Identity(54, unused=0.1)
    t = gn.tensor(x, requires_grad=True)
    y = ours(t)
    np.testing.assert_array_equal(y.numpy(), theirs(torch.from_numpy(x)).numpy())
    (y * 3.0).sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), np.full_like(x, 3.0))
    assert repr(ours) == repr(theirs) == "Identity()"
    seq = nn.Sequential(nn.Linear(4, 2), nn.Identity())
    assert seq(x).shape == (3, 2) and len(list(seq.parameters())) == 2


def test_weightless_modules_and_containers_keep_their_inputs_dtype_as_torch():
    """A float64 model in nn.Sequential stays float64 end to end (it went through
    float32 in the container and the activations, silently losing precision)."""
    x = np.full((2, 3), 1.0 + 1e-12)
    w = np.ones((4, 3)) + np.arange(12).reshape(4, 3) * 1e-3
    ours = nn.Sequential(nn.Linear(3, 4, dtype="float64"), nn.ReLU(), nn.Dropout(0.0),
                         nn.Flatten(), nn.Identity(), nn.Softmax(dim=-1))  # fmt: skip
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 4, dtype=torch.float64), torch.nn.ReLU(),
                                 torch.nn.Dropout(0.0), torch.nn.Flatten(), torch.nn.Identity(),
                                 torch.nn.Softmax(dim=-1))  # fmt: skip
    with torch.no_grad():
        theirs[0].weight.copy_(torch.from_numpy(w))
        theirs[0].bias.zero_()
    ours.load_state_dict(theirs.state_dict())
    t = gn.tensor(x, requires_grad=True)
    ts = torch.tensor(x, requires_grad=True)
    y, ty = ours(t), theirs(ts)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-14, atol=1e-15)
    g = np.arange(8.0).reshape(2, 4)  # a direction over y
    (y * gn.tensor(g)).sum().backward()
    (ty * torch.from_numpy(g)).sum().backward()
    assert t.grad.dtype == np.float64
    np.testing.assert_allclose(t.grad.numpy(), ts.grad.numpy(), rtol=1e-10, atol=1e-16)
    for m in (nn.ReLU(), nn.Tanh(), nn.Flatten(), nn.Identity()):
        for dt in ("float32", "float64"):
            assert m(gn.tensor(np.ones((2, 3), dt))).dtype == np.dtype(dt), (m, dt)
    assert nn.Linear(3, 2)(gn.tensor(x)).dtype == np.float32  # weights cast their input
