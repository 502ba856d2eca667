"""Forward hooks, ParameterList / ParameterDict, parameters_to_vector and
nn.init.trunc_normal_, as PyTorch's: hook order and replacement, handles that
remove, state_dict names that load torch's, and the truncated draws' bounds."""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn

torch = pytest.importorskip("torch")
nn = gn.nn


def test_forward_hooks_see_and_replace_inputs_and_outputs():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    want = model[2](model[1](model[0](gn.tensor(x))) * 2.0).numpy() + 1.0  # before the hooks
    seen = {}
    h1 = model[1].register_forward_hook(lambda m, args, out: seen.setdefault("relu", out))
    h2 = model[2].register_forward_pre_hook(lambda m, args: (args[0] * 2.0,))
    h3 = model.register_forward_hook(lambda m, args, out: out + 1.0)
    got = model(x)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    assert seen["relu"].shape == (5, 4) and float(seen["relu"].numpy().min()) >= 0.0
    got.sum().backward()  # the replaced output is part of the graph
    assert model[0].weight.grad is not None
    for h in (h1, h2, h3):
        h.remove()
    plain = model[2](model[1](model[0](gn.tensor(x)))).numpy()
    np.testing.assert_allclose(model(x).numpy(), plain, rtol=1e-6)


def test_a_hook_on_a_subclass_forward_runs_once():
    calls = []

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(x)

    net = Net()
    net.register_forward_hook(lambda m, a, o: calls.append(o.shape))
    net(np.ones((3, 2), "float32"))
    assert calls == [(3, 2)]
    with pytest.raises(TypeError, match="callable"):
        net.register_forward_hook(3)


def test_parameter_list_and_dict_as_torch():
    class Ours(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ws = nn.ParameterList([nn.Parameter(gn.ones(2, 3)), nn.Parameter(gn.zeros(3))])
            self.named = nn.ParameterDict({"scale": nn.Parameter(gn.ones(3))})

    class Theirs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ws = torch.nn.ParameterList([torch.nn.Parameter(torch.randn(2, 3)),
                                             torch.nn.Parameter(torch.randn(3))])  # fmt: skip
            self.named = torch.nn.ParameterDict({"scale": torch.nn.Parameter(torch.randn(3))})

    ours, theirs = Ours(), Theirs()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    np.testing.assert_allclose(ours.ws[1].numpy(), theirs.ws[1].detach().numpy())
    assert len(ours.parameters()) == 3 and len(ours.ws) == 2 and "scale" in ours.named
    assert ours.ws[-1] is ours.ws[1] and list(ours.named) == ["scale"]
    with pytest.raises(IndexError, match="out of range"):
        ours.ws[2]


def test_parameters_to_vector_and_back_match_torch():
    lin, tl = nn.Linear(3, 2), torch.nn.Linear(3, 2)
    lin.load_state_dict(tl.state_dict())
    v = nn.utils.parameters_to_vector(lin.parameters())
    vt = torch.nn.utils.parameters_to_vector(tl.parameters())
    np.testing.assert_allclose(v.numpy(), vt.detach().numpy())
    nn.utils.vector_to_parameters(v * 0 + 1.5, lin.parameters())
    assert float(lin.weight.numpy().min()) == float(lin.bias.numpy().max()) == 1.5
    with pytest.raises(ValueError, match="8 elements"):
        nn.utils.vector_to_parameters(gn.zeros(3), lin.parameters())


def test_trunc_normal_stays_inside_its_bounds():
    gn.manual_seed(0)
    w = nn.Linear(200, 100).weight
    assert nn.init.trunc_normal_(w, std=0.02, a=-0.03, b=0.03) is w
    v = w.numpy()
    assert v.min() >= -0.03 and v.max() <= 0.03 and abs(v.mean()) < 1e-3
    assert 0.012 < v.std() < 0.02  # narrower than 0.02: the tails are cut
    with pytest.raises(ValueError, match="a < b"):
        nn.init.trunc_normal_(w, a=1.0, b=0.0)
