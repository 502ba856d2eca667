"""PyTorch's Tensor methods and functions of ``gpunet/_tensor_more.py``,
``_tensor_math.py`` and ``_torch_more.py`` against torch on the same inputs
(values, dtypes, shapes), a float64 central-difference check of each op with a
gradient, in-place semantics and bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

X = np.random.default_rng(7).normal(size=(3, 4))
I = np.array([[0, 2, 1, 3], [3, 3, 0, 1], [1, 0, 2, 2]])
B = X > 0.2

VALUES = {  # name: f(lib, x) for lib in (gn, torch), x a float64 (3, 4) tensor
    "new_zeros": lambda L, x: x.new_zeros(2, 3),
    "new_ones": lambda L, x: x.new_ones((2,)),
    "new_full": lambda L, x: x.new_full((2, 2), 1.5),
    "new_tensor": lambda L, x: x.new_tensor([1, 2]),
    "view_as": lambda L, x: x.view_as(L.zeros(4, 3)),
    "contiguous": lambda L, x: x.contiguous(),
    "narrow": lambda L, x: x.narrow(1, 1, 2),
    "narrow_neg": lambda L, x: x.narrow(-1, -3, 2),
    "expand": lambda L, x: x[:, :1].expand(2, 3, -1),
    "expand_as": lambda L, x: x[:1].expand_as(x),
    "repeat": lambda L, x: x.repeat(2, 1, 3),
    "chunk": lambda L, x: x.chunk(3, 1)[1],
    "chunk_last": lambda L, x: x.chunk(3, 1)[-1],
    "split": lambda L, x: x.split(3, dim=1)[1],
    "split_sizes": lambda L, x: x.split([1, 3], dim=1)[1],
    "masked_fill": lambda L, x: x.masked_fill(L.tensor(B), -1.0),
    "masked_fill_row": lambda L, x: x.masked_fill(L.tensor(B[:1]), 2.0),
    "index_select": lambda L, x: x.index_select(1, L.tensor([3, 0, 3])),
    "gather": lambda L, x: x.gather(1, L.tensor(I[:, :2])),
    "gather0": lambda L, x: x.gather(0, L.tensor(I[:2] % 3)),
    "scatter": lambda L, x: x.scatter(1, L.tensor(np.array([[1], [0], [3]])), 9.0),
    "scatter_src": lambda L, x: x.scatter(1, L.tensor(np.array([[1, 2], [0, 3], [3, 1]])), x * 2),
    "scatter_add": lambda L, x: x.scatter_add(1, L.tensor(np.array([[1, 1], [0, 3], [3, 1]])), x),
    "index_add": lambda L, x: x.index_add(0, L.tensor([2, 0, 2]), x * 3),
    "topk": lambda L, x: x.topk(2, dim=1).values,
    "topk_idx": lambda L, x: x.topk(2, dim=0, largest=False).indices,
    "sort": lambda L, x: x.sort(dim=1, descending=True)[0],
    "sort_idx": lambda L, x: x.sort(0).indices,
    "argsort": lambda L, x: x.argsort(dim=1),
    "div": lambda L, x: x.div(2.0),
    "div_floor": lambda L, x: x.div(0.3, rounding_mode="floor"),
    "div_int": lambda L, x: L.tensor(I).div(2),
    "div_int_trunc": lambda L, x: L.tensor(I).div(-2, rounding_mode="trunc"),
    "mul": lambda L, x: x.mul(x),
    "add_alpha": lambda L, x: x.add(x, alpha=2),
    "sub_alpha": lambda L, x: x.sub(1.0, alpha=3),
    "neg": lambda L, x: x.neg(),
    "clip": lambda L, x: x.clip(-0.5, 0.5),
    "transpose": lambda L, x: x.reshape(3, 2, 2).transpose(0, 2),
    "unbind": lambda L, x: x.unbind(1)[2],
    "flip": lambda L, x: x.flip(0, 1),
    "cumsum": lambda L, x: x.cumsum(1),
    "cumsum0": lambda L, x: x.cumsum(dim=0),
    "prod": lambda L, x: x.prod(1),
    "prod_all": lambda L, x: x.prod(),
    "prod_zero": lambda L, x: (x * L.tensor(I != 0)).prod(1, keepdim=True),
    "std": lambda L, x: x.std(1),
    "std_all": lambda L, x: x.std(),
    "var": lambda L, x: x.var(0, keepdim=True),
    "var_biased": lambda L, x: x.var(1, unbiased=False),
    "var_corr": lambda L, x: x.var(dim=1, correction=0),
    "norm": lambda L, x: x.norm(),
    "norm_dim": lambda L, x: x.norm(dim=1),
    "norm_p1": lambda L, x: x.norm(p=1, dim=0, keepdim=True),
    "norm_p3": lambda L, x: x.norm(p=3, dim=1),
    "all": lambda L, x: (x > -3).all(),
    "any_dim": lambda L, x: (x > 1).any(dim=1),
    "eq": lambda L, x: x.eq(x[0]),
    "ne": lambda L, x: x.ne(0.0),
    "lt": lambda L, x: x.lt(0.1),
    "gt": lambda L, x: x.gt(x.t().t()),
    "le": lambda L, x: x.le(0.0),
    "ge": lambda L, x: x.ge(0.0),
    "where": lambda L, x: x.where(x > 0, -x),
    "half": lambda L, x: x.half(),
    "type_as": lambda L, x: x.type_as(L.tensor([1, 2])),
    "sign": lambda L, x: x.sign(),
    "floor": lambda L, x: (x * 3).floor(),
    "ceil": lambda L, x: (x * 3).ceil(),
    "round": lambda L, x: (x * 3).round(),
    "rsqrt": lambda L, x: x.abs().rsqrt(),
    "reciprocal": lambda L, x: x.reciprocal(),
    "matmul": lambda L, x: x.matmul(x.t()),
    "matmul_vec": lambda L, x: x.matmul(x[0]),
    "vec_matmul": lambda L, x: x[:, 0].matmul(x),
    "mm": lambda L, x: x.mm(x.t()),
    "bmm": lambda L, x: x.reshape(3, 2, 2).bmm(x.reshape(3, 2, 2)),
    "dot": lambda L, x: x[0].dot(x[1]),
    "outer": lambda L, x: x[0].outer(x[1]),
    "unflatten": lambda L, x: x.unflatten(1, (2, 2)),
    "repeat_interleave": lambda L, x: x.repeat_interleave(2, dim=0),
    "tril": lambda L, x: x.tril(),
    "triu": lambda L, x: x.triu(1),
    "tril_neg": lambda L, x: x.tril(-1),
    "diag_vec": lambda L, x: x[0].diag(),
    "diag_vec_k": lambda L, x: x[0].diag(1),
    "diag_mat": lambda L, x: x.diag(),
    "diag_mat_neg": lambda L, x: x.diag(-1),
    "diagonal": lambda L, x: x.diagonal(1),
    "diagonal_3d": lambda L, x: x.reshape(3, 2, 2).diagonal(0, 1, 2),
    "isnan": lambda L, x: (x / (x * (x > 0))).isnan(),
    "isfinite": lambda L, x: (x / (x * (x > 0))).isfinite(),
    "nan_to_num": lambda L, x: (x / (x * (x > 0))).nan_to_num(0.5, 100.0, -100.0),
    "logsumexp": lambda L, x: x.logsumexp(1),
    "logsumexp_keep": lambda L, x: x.logsumexp(dim=0, keepdim=True),
    "amax": lambda L, x: x.amax(1),
    "amin": lambda L, x: x.amin(dim=0, keepdim=True),
    "amax_all": lambda L, x: x.amax(),
    "masked_select": lambda L, x: x.masked_select(L.tensor(B)),
    "nonzero": lambda L, x: (x > 0).nonzero(),
    "count_nonzero": lambda L, x: (x > 0).count_nonzero(dim=1),
    "unique": lambda L, x: L.tensor(I).unique(),
    "roll": lambda L, x: x.roll(1, 1),
    "roll_flat": lambda L, x: x.roll(5),
    "roll_2": lambda L, x: x.roll((1, -1), (0, 1)),
    "softplus": lambda L, x: L.nn.functional.softplus(x * 10),
    "erf": lambda L, x: x.erf(),
    "lerp": lambda L, x: x.lerp(x * 2, 0.3),
    "lerp_t": lambda L, x: x.lerp(-x, x.abs() / 3),
    # functions
    "f_split": lambda L, x: L.split(x, 2, 1)[1],
    "f_chunk": lambda L, x: L.chunk(x, 2)[0],
    "f_mm": lambda L, x: L.mm(x, x.t()),
    "f_bmm": lambda L, x: L.bmm(x.reshape(3, 2, 2), x.reshape(3, 2, 2)),
    "f_einsum": lambda L, x: L.einsum("ij,kj->ik", x, x),
    "f_einsum_sum": lambda L, x: L.einsum("ij->j", x),
    "f_einsum_bmm": lambda L, x: L.einsum("bij,bjk->bik", x.reshape(3, 2, 2), x.reshape(3, 2, 2)),
    "f_topk": lambda L, x: L.topk(x, 3).values,
    "f_sort": lambda L, x: L.sort(x, dim=0).values,
    "f_argsort": lambda L, x: L.argsort(x, dim=1, descending=True),
    "f_clip": lambda L, x: L.clip(x, min=0.0),
    "f_transpose": lambda L, x: L.transpose(x, 0, 1),
    "f_tril": lambda L, x: L.tril(x),
    "f_triu": lambda L, x: L.triu(x, -1),
    "f_full_like": lambda L, x: L.full_like(x, 3.0),
    "f_empty_shape": lambda L, x: L.empty(2, 3).shape,
    "f_empty_like": lambda L, x: L.empty_like(x).shape,
    "f_eye": lambda L, x: L.eye(3, 4),
    "f_cumsum": lambda L, x: L.cumsum(x, dim=1),
    "f_logsumexp": lambda L, x: L.logsumexp(x, 1),
    "f_norm": lambda L, x: L.norm(x),
    "f_allclose": lambda L, x: L.allclose(x, x + 1e-9),
    "f_equal": lambda L, x: (L.equal(x, x), L.equal(x, x + 1)),
    "f_isnan": lambda L, x: L.isnan(x),
    "f_isfinite": lambda L, x: L.isfinite(x),
    "f_is_tensor": lambda L, x: (L.is_tensor(x), L.is_tensor(1.0)),
    "f_numel": lambda L, x: L.numel(x),
    "f_gather": lambda L, x: L.gather(x, 1, L.tensor(I)),
    "f_masked_fill": lambda L, x: L.masked_fill(x, L.tensor(B), 0.0),
    "f_outer": lambda L, x: L.outer(x[0], x[2]),
    "f_diag": lambda L, x: L.diag(x),
    "element_size": lambda L, x: (x.element_size(), x.float().element_size()),
    "nelement": lambda L, x: x.nelement(),
    "is_contiguous": lambda L, x: x.is_contiguous(),
}


def _np(v):
    if isinstance(v, (gn.Tensor, torch.Tensor)):
        return v.numpy() if isinstance(v, gn.Tensor) else v.detach().numpy()
    return np.asarray(v)


@pytest.mark.parametrize("name", list(VALUES))
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_matches_torch(name):
    fn = VALUES[name]
    ours, theirs = _np(fn(gn, gn.tensor(X))), _np(fn(torch, torch.tensor(X)))
    assert ours.shape == theirs.shape, name
    assert ours.dtype == theirs.dtype, (name, ours.dtype, theirs.dtype)
    np.testing.assert_allclose(ours.astype(float), theirs.astype(float), rtol=1e-6, atol=1e-9)


GRADS = {  # name: f(x) of a gpunet float64 tensor, a tensor whose sum is checked
    k: VALUES[k]
    for k in (
        "view_as narrow expand expand_as repeat chunk split split_sizes masked_fill "
        "index_select gather gather0 scatter scatter_src scatter_add index_add topk sort div "
        "mul add_alpha sub_alpha neg clip transpose unbind flip cumsum cumsum0 prod prod_all "
        "prod_zero std std_all var var_biased norm norm_dim norm_p1 norm_p3 where rsqrt "
        "reciprocal matmul matmul_vec vec_matmul mm bmm dot outer unflatten repeat_interleave "
        "tril triu diag_vec diag_vec_k diag_mat diagonal diagonal_3d logsumexp logsumexp_keep "
        "amax amin amax_all masked_select roll roll_flat roll_2 softplus erf lerp lerp_t "
        "f_einsum f_einsum_sum f_einsum_bmm f_topk f_gather f_outer"
    ).split()
}


@pytest.mark.parametrize("name", list(GRADS))
def test_gradient_matches_central_differences(name):
    fn = GRADS[name]
    W = np.random.default_rng(1).normal(size=_np(fn(gn, gn.tensor(X))).shape)
    x = gn.tensor(X.copy(), requires_grad=True)
    (fn(gn, x) * gn.tensor(W)).sum().backward()
    eps, num = 1e-6, np.zeros_like(X)
    for i in np.ndindex(X.shape):
        d = np.zeros_like(X)
        d[i] = eps
        up = (_np(fn(gn, gn.tensor(X + d))) * W).sum()
        down = (_np(fn(gn, gn.tensor(X - d))) * W).sum()
        num[i] = (up - down) / (2 * eps)
    np.testing.assert_allclose(x.grad.numpy(), num, rtol=1e-5, atol=1e-6, err_msg=name)
    if name in ("scatter_src", "scatter_add"):
        return  # torch 2.13's own backward rejects a src larger than the index
    # and torch's gradient, the oracle
    t = torch.tensor(X, requires_grad=True)
    (fn(torch, t) * torch.tensor(W)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-6, atol=1e-9, err_msg=name)


def test_topk_and_sort_return_named_pairs():
    x = gn.tensor(X)
    for res in (x.topk(2), x.sort(), gn.sort(x, 1)):
        values, indices = res
        assert res.values is values and res.indices is indices
        assert indices.dtype == np.int64


def test_in_place_methods_return_self_and_write_the_array():
    x = gn.tensor(X.copy())
    arr = x.data
    assert x.masked_fill_(gn.tensor(B), 0.0) is x and x.data is arr
    np.testing.assert_array_equal(x.numpy(), np.where(B, 0.0, X))
    assert x.clamp_(-0.1, 0.1) is x and float(x.abs().max()) <= 0.1
    assert x.exp_() is x and x.data is arr
    assert x.uniform_(2.0, 3.0) is x and 2.0 <= float(x.min()) <= float(x.max()) <= 3.0
    assert x.normal_() is x and x.data is arr
    y = gn.zeros(3, 4)
    assert y.index_add_(0, gn.tensor([1]), gn.ones(1, 4)) is y and float(y.sum()) == 4.0
    assert y.scatter_(1, gn.tensor(np.zeros((3, 1), "int64")), value=5.0) is y
    assert y.unsqueeze_(0) is y and y.shape == (1, 3, 4)
    assert y.squeeze_() is y and y.shape == (3, 4)


def test_in_place_on_a_leaf_that_requires_grad_raises_as_torch():
    w = gn.tensor(X.copy(), requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        w.masked_fill_(gn.tensor(B), 0.0)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        w.uniform_()
    with gn.no_grad():
        assert w.uniform_() is w


def test_in_place_on_a_graph_tensor_keeps_the_gradient():
    x = gn.tensor(X.copy(), requires_grad=True)
    y = x * 2
    y.masked_fill_(gn.tensor(B), 0.0)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.where(B, 0.0, 2.0))


def test_hooks_and_retain_grad():
    x = gn.tensor(X.copy(), requires_grad=True)
    seen = []
    h = x.register_hook(lambda g: seen.append(g.numpy().copy()))
    y = x * 3
    y.retain_grad()
    y.register_hook(lambda g: g * 2)  # doubles what flows on to x
    (y * y).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), 2 * 3 * X)
    np.testing.assert_allclose(x.grad.numpy(), 2 * 2 * 3 * X * 3)
    np.testing.assert_allclose(seen[0], x.grad.numpy())
    assert y.grad_fn is not None and x.grad_fn is None
    h.remove()
    x.grad = None
    (x * 1).sum().backward()
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x: x.narrow(1, 3, 2), "narrow"),
        (lambda x: x.expand(3, 5), "expand"),
        (lambda x: x.topk(5, dim=1), "topk"),
        (lambda x: x.gather(1, gn.tensor([0, 1])), "index"),
        (lambda x: x.gather(3, gn.tensor(I)), "dim=3"),
        (lambda x: x.masked_fill(gn.tensor(I), 0.0), "boolean"),
        (lambda x: x.split([1, 1], 1), "sum exactly"),
        (lambda x: x.chunk(0), "chunks"),
        (lambda x: x.norm(p=-1), "p=-1"),
        (lambda x: x.div(2, rounding_mode="up"), "rounding_mode"),
        (lambda x: x.repeat(2), "repeat"),
        (lambda x: x.mm(x[0]), "mm"),
        (lambda x: x.bfloat16(), "bfloat16"),
        (lambda x: gn.multinomial(-x, 1), "multinomial"),
        (lambda x: gn.multinomial(x.abs(), 5), "num_samples"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, match):
    with pytest.raises((RuntimeError, ValueError, IndexError, TypeError), match=match):
        call(gn.tensor(X))


def test_multinomial_and_randperm_are_seeded():
    w = gn.tensor(np.array([[0.0, 1.0, 3.0], [1.0, 0.0, 2.0]]))
    gn.manual_seed(5)
    a = gn.multinomial(w, 2).numpy()
    gn.manual_seed(5)
    np.testing.assert_array_equal(a, gn.multinomial(w, 2).numpy())
    assert a.dtype == np.int64 and a.shape == (2, 2)
    # without replacement: both non-zero categories, each once
    assert sorted(a[0]) == [1, 2] and sorted(a[1]) == [0, 2]
    draws = gn.multinomial(gn.tensor([1.0, 0.0, 3.0]), 400, replacement=True).numpy()
    assert 1 not in set(draws) and abs((draws == 2).mean() - 0.75) < 0.1
    gn.manual_seed(2)
    p = gn.randperm(10)
    assert sorted(p.tolist()) == list(range(10)) and p.dtype == np.int64


def test_grad_mode_managers():
    x = gn.tensor([1.0], requires_grad=True)
    with gn.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert (x * 2).requires_grad
    with gn.inference_mode():
        assert not gn.is_grad_enabled()
    assert gn.is_grad_enabled()


def test_nn_init_matches_torch_statistics_and_shapes():
    init = gn.nn.init
    gn.manual_seed(0)
    w = gn.nn.Linear(400, 300).weight
    assert init.xavier_uniform_(w) is w
    assert abs(w.numpy().max() - np.sqrt(6 / 700)) < 1e-3
    init.kaiming_normal_(w, nonlinearity="relu")
    assert abs(w.numpy().std() - np.sqrt(2 / 400)) < 2e-3
    init.kaiming_uniform_(w, a=np.sqrt(5))
    tw = torch.empty(300, 400)
    torch.nn.init.kaiming_uniform_(tw, a=np.sqrt(5))
    assert abs(w.numpy().max() - tw.max().item()) < 1e-3
    init.xavier_normal_(w, gain=init.calculate_gain("tanh"))
    assert abs(w.numpy().std() - 5 / 3 * np.sqrt(2 / 700)) < 2e-3
    q = gn.nn.Linear(5, 3).weight
    init.orthogonal_(q)
    np.testing.assert_allclose(q.numpy() @ q.numpy().T, np.eye(3), atol=1e-5)
    assert float(init.zeros_(q).abs().sum()) == 0 and float(init.ones_(q).sum()) == 15
    assert float(init.constant_(q, 2.0).mean()) == 2.0
    init.normal_(q, 1.0, 0.0)
    assert float(q.min()) == 1.0
    assert init.calculate_gain("leaky_relu", 0.2) == torch.nn.init.calculate_gain("leaky_relu", 0.2)
    with pytest.raises(ValueError, match="fan in"):
        init.xavier_uniform_(gn.nn.Linear(2, 3).bias)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_clip_grad_norm_matches_torch(norm_type):
    gs = [X, X[:2] * 5]
    ours = [gn.tensor(g.copy(), requires_grad=True) for g in gs]
    theirs = [torch.tensor(g.copy(), requires_grad=True) for g in gs]
    for p, q, g in zip(ours, theirs, gs, strict=True):
        p.grad, q.grad = g.copy(), torch.tensor(g.copy())
    n1 = gn.nn.utils.clip_grad_norm_(ours, 0.5, norm_type)
    n2 = torch.nn.utils.clip_grad_norm_(theirs, 0.5, norm_type)
    np.testing.assert_allclose(float(n1), float(n2), rtol=1e-6)
    for p, q in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-6)


def test_clip_grad_value_matches_torch():
    p, q = gn.tensor(X.copy(), requires_grad=True), torch.tensor(X.copy(), requires_grad=True)
    p.grad, q.grad = X.copy(), torch.tensor(X.copy())
    gn.nn.utils.clip_grad_value_([p], 0.3)
    torch.nn.utils.clip_grad_value_([q], 0.3)
    np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy())


def test_parameters_is_a_list_and_an_iterator():
    net = gn.nn.Linear(2, 3)
    assert len(net.parameters()) == 2
    assert next(net.parameters()) is net.weight


def test_sim_device_ops_stay_on_the_device():
    pytest.importorskip("array_api_strict")
    x = gn.tensor(X.astype("float32"), device="sim", requires_grad=True)
    idx = gn.tensor(I, device="sim")
    out = (
        x.gather(1, idx)
        + x.topk(2).values.sum()
        + x.expand(2, 3, 4).sum(0)
        + x.prod(1, keepdim=True)
    )
    out = out + x.norm(dim=1, keepdim=True) + x.logsumexp(1, keepdim=True) + x.amax(0)
    out = (
        out
        + x.scatter(1, idx[:, :1], 1.0)
        + x.cumsum(1)
        + x.narrow(0, 0, 3)
        + x.var(1, keepdim=True)
    )
    out.sum().backward()
    cpu = gn.tensor(X, requires_grad=True)
    ref = cpu.gather(1, gn.tensor(I)) + cpu.topk(2).values.sum() + cpu.expand(2, 3, 4).sum(0)
    ref = ref + cpu.prod(1, keepdim=True) + cpu.norm(dim=1, keepdim=True)
    ref = (
        ref
        + cpu.logsumexp(1, keepdim=True)
        + cpu.amax(0)
        + cpu.scatter(1, gn.tensor(I[:, :1]), 1.0)
    )
    ref = ref + cpu.cumsum(1) + cpu.narrow(0, 0, 3) + cpu.var(1, keepdim=True)
    ref.sum().backward()
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(x.grad.numpy(), cpu.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_setitem_writes_in_place_and_records_a_gradient():
    line = gn.zeros(3, 1, 4)
    line[1][0][2] = 1  # the char-RNN tutorial's lineToTensor
    ref = torch.zeros(3, 1, 4)
    ref[1][0][2] = 1
    np.testing.assert_array_equal(line.numpy(), ref.numpy())
    w = gn.tensor(X.copy(), requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        w[0, 1] = 0.0
    for lib in (gn, torch):  # a graph tensor and a value that requires grad
        x = lib.tensor(X.copy(), requires_grad=True)
        v = lib.tensor(np.array([0.5, -1.0, 2.0, 3.0]), requires_grad=True)
        y = x * 2
        y[1] = v * v
        y[:, 0] = 7.0
        (y * y).sum().backward()
        if lib is gn:
            ours = (y.numpy(), x.grad.numpy(), v.grad.numpy())
    np.testing.assert_allclose(ours[0], y.detach().numpy())
    np.testing.assert_allclose(ours[1], x.grad.numpy())
    np.testing.assert_allclose(ours[2], v.grad.numpy())


def test_module_apply_visits_children_first_as_torch():
    def order(lib):
        seen = []
        net = lib.nn.Sequential(
            lib.nn.Linear(2, 3), lib.nn.Sequential(lib.nn.ReLU(), lib.nn.Linear(3, 1))
        )
        assert net.apply(lambda m: seen.append(type(m).__name__)) is net
        return seen

    assert order(gn) == order(torch)


def test_nn_init_fills_a_parameters_data_array_in_place():
    w = gn.nn.Linear(50, 40).weight
    gn.nn.init.normal_(w.data, 1.0, 0.02)  # the DCGAN tutorial's weights_init
    assert abs(float(w.mean()) - 1.0) < 0.01 and 0.015 < float(w.std()) < 0.025
    gn.nn.init.constant_(w.data, 0)
    assert float(w.abs().sum()) == 0.0


def test_forward_with_several_inputs_and_tied_weights_as_torch():
    def build(lib):
        class Tied(lib.nn.Module):
            def __init__(self):
                super().__init__()
                self.enc = lib.nn.Embedding(5, 3)
                self.dec = lib.nn.Linear(3, 5)
                self.dec.weight = self.enc.weight

            def forward(self, ids, scale):
                return self.dec(self.enc(ids)) * scale

        return Tied()

    ours, theirs = build(gn), build(torch)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert ours.dec.weight is ours.enc.weight and len(ours.parameters()) == 2
    out = ours(gn.tensor([[1, 2]]), 2.0)
    out.sum().backward()
    assert out.shape == (1, 2, 5) and ours.enc.weight.grad is not None


@pytest.mark.parametrize("fn", ["max_pool2d", "avg_pool2d"])
def test_functional_pools_match_torch(fn):
    x = np.random.default_rng(3).normal(size=(2, 3, 6, 6))
    ours = getattr(gn.nn.functional, fn)(gn.tensor(x), 2)
    theirs = getattr(torch.nn.functional, fn)(torch.tensor(x), 2)
    np.testing.assert_allclose(
        ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6
    )  # the module computes in float32
    ours = getattr(gn.nn.functional, fn)(gn.tensor(x), 3, stride=2, padding=1)
    theirs = getattr(torch.nn.functional, fn)(torch.tensor(x), 3, stride=2, padding=1)
    np.testing.assert_allclose(
        ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6
    )  # the module computes in float32


def test_numpy_reductions_of_a_tensor_give_numpy_results():
    x = gn.tensor(X)
    assert np.any(x > 1.0) is np.any(X > 1.0)
    np.testing.assert_array_equal(np.all(x > -1.0, axis=0), np.all(X > -1.0, axis=0))
    np.testing.assert_allclose(np.prod(x, axis=1), np.prod(X, axis=1))
    assert np.std(x) == np.std(X) and isinstance(np.std(x), np.floating)  # ddof=0, NumPy's
    np.testing.assert_allclose(np.var(x, axis=1, keepdims=True), np.var(X, axis=1, keepdims=True))
    assert x.std().item() == pytest.approx(np.std(X, ddof=1))  # and PyTorch's own


def test_unsupported_einsum_and_unique_forms_say_what_to_do_instead():
    a = gn.tensor(np.eye(3), requires_grad=True)
    with pytest.raises(NotImplementedError, match="name every axis"):
        gn.einsum("...i,i->...", a, gn.ones(3))
    with pytest.raises(NotImplementedError, match=r"repeated index in 'ii'.*diagonal"):
        gn.einsum("ii->i", a)
    np.testing.assert_allclose(gn.einsum("ii->i", a.detach()).numpy(), np.ones(3))  # no grad: fine
    with pytest.raises(NotImplementedError, match="not available on device 'sim'"):
        gn.einsum("ij->ji", gn.tensor(np.eye(2), dtype="float32", device="sim"))
    with pytest.raises(NotImplementedError, match=r"unique\(dim=...\) is not supported"):
        gn.tensor(np.eye(2)).unique(dim=0)
