"""The PyTorch-named modules, functions and distributions added for public example
programs, on the strict simulated device: each runs forward and backward there
(no float64, no hidden host reads, no host arrays mixed in) and gives the CPU's
outputs and input gradients."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gpunet as gn

nn, NF = gn.nn, gn.nn.functional

MODULES = {
    "LayerNorm((4, 6))": (lambda: nn.LayerNorm((4, 6)), (2, 4, 4, 6)),
    "LayerNorm(no affine)": (lambda: nn.LayerNorm(6, elementwise_affine=False), (2, 4, 6)),
    "BatchNorm1d(N, C, L)": (lambda: nn.BatchNorm1d(4), (2, 4, 8)),
    "GroupNorm": (lambda: nn.GroupNorm(2, 4), (2, 4, 3, 5)),
    "InstanceNorm2d": (lambda: nn.InstanceNorm2d(4, affine=True), (2, 4, 3, 5)),
    "PixelShuffle": (lambda: nn.PixelShuffle(2), (2, 4, 3, 5)),
    "ReflectionPad2d": (lambda: nn.ReflectionPad2d((2, 1, 1, 2)), (2, 4, 3, 5)),
    "ReplicationPad1d": (lambda: nn.ReplicationPad1d(2), (2, 4, 6)),
    "Upsample": (lambda: nn.Upsample(scale_factor=2), (2, 4, 3, 5)),
    "MaxPool1d": (lambda: nn.MaxPool1d(3, 2, 1), (2, 4, 9)),
    "AvgPool1d": (lambda: nn.AvgPool1d(2), (2, 4, 8)),
    "PReLU": (lambda: nn.PReLU(4), (2, 4, 5)),
    "Mish": (lambda: nn.Mish(), (3, 5)),
    "ReLU6": (lambda: nn.ReLU6(), (3, 5)),
    "LSTMCell": (lambda: nn.LSTMCell(5, 3), (4, 5)),
    "GRUCell": (lambda: nn.GRUCell(5, 3), (4, 5)),
    "AdaptiveAvgPool2d((2, 4))": (lambda: nn.AdaptiveAvgPool2d((2, 4)), (2, 4, 3, 5)),
    "AdaptiveMaxPool1d(3)": (lambda: nn.AdaptiveMaxPool1d(3), (2, 4, 8)),
}


def _run(module: Any, x: np.ndarray, device: str) -> tuple[np.ndarray, np.ndarray]:
    module.to(device)
    xt = gn.tensor(x, device=device, requires_grad=True)
    y = module(xt)
    y = y[0] if isinstance(y, tuple) else y
    (y * y).sum().backward()
    return y.numpy(), xt.grad.numpy()


@pytest.mark.parametrize("name", list(MODULES))
def test_modules_on_the_simulated_device_match_the_cpu(name):
    make, shape = MODULES[name]
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    gn.manual_seed(1)
    cpu = make()
    gn.manual_seed(1)
    sim = make()
    y_cpu, g_cpu = _run(cpu, x, "cpu")
    y_sim, g_sim = _run(sim, x, "sim")
    np.testing.assert_allclose(y_sim, y_cpu, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(g_sim, g_cpu, rtol=2e-4, atol=2e-4)


FUNCTIONS = {
    "kl_div": lambda a: NF.kl_div(a.log_softmax(-1), a.softmax(-1).detach(), reduction="batchmean"),
    "smooth_l1_loss": lambda a: NF.smooth_l1_loss(a, a.detach() * 0.5),
    "normalize": lambda a: NF.normalize(a).sum(),
    "cosine_similarity": lambda a: NF.cosine_similarity(a, a * 2.0 + 1.0).sum(),
    "maximum": lambda a: gn.maximum(a, a * 0.0).sum(),
    "Categorical": lambda a: (gn.distributions.Categorical(logits=a).entropy().sum()
                              + gn.distributions.Categorical(probs=a.softmax(-1)).entropy().sum()),
    "Normal": lambda a: gn.distributions.Normal(a, a.detach().abs() + 1.0).log_prob(a * 0.5).sum(),
    "F.layer_norm": lambda a: (NF.layer_norm(a, (4,), _on(a, [1.0, 2.0, 0.5, 1.5]),
                                             _on(a, [0.1, 0.0, -0.1, 0.2])) ** 2).sum(),
    "F.batch_norm(training)": lambda a: (NF.batch_norm(a, None, None, training=True) ** 3).sum(),
    "F.conv1d": lambda a: (NF.conv1d(a.reshape(1, 5, 4), _on(a, np.ones((2, 5, 3)) * 0.1),
                                     padding=1) ** 2).sum(),
    "F.embedding_bag(max)": lambda a: (NF.embedding_bag(_on(a, [4, 1, 1, 0, 2], "int64"), a,
                                                        _on(a, [0, 2, 2], "int64"),
                                                        mode="max") ** 2).sum(),
    "margin_ranking (int target)": lambda a: NF.margin_ranking_loss(
        a[:, 0], a[:, 1], _on(a, [1, -1, 1, -1, 1], "int64"), margin=0.5),
    "triplet_margin": lambda a: NF.triplet_margin_loss(a, a * 0.5, -a.detach(), swap=True),
    "F.bilinear": lambda a: NF.bilinear(a, a * 0.5, _on(a, np.ones((3, 4, 4)) * 0.1)).sum(),
    "cosine_embedding": lambda a: NF.cosine_embedding_loss(a, a * 0.5 + 1.0,
                                                           _on(a, [1, -1, 1, -1, 1], "int64")),
}  # fmt: skip


def _on(a: Any, values: Any, dtype: str = "float32") -> Any:
    """A constant on ``a``'s device."""
    return gn.tensor(np.asarray(values, dtype=dtype), device=a.device)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_functions_on_the_simulated_device_match_the_cpu(name):
    x = np.random.default_rng(2).normal(size=(5, 4)).astype("float32")
    out = {}
    for device in ("cpu", "sim"):
        a = gn.tensor(x, device=device, requires_grad=True)
        loss = FUNCTIONS[name](a)
        loss.backward()
        out[device] = (float(loss.item()), a.grad.numpy())
    assert out["sim"][0] == pytest.approx(out["cpu"][0], rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(out["sim"][1], out["cpu"][1], rtol=2e-4, atol=2e-5)


def test_a_transformer_and_an_optimizer_cast_on_the_simulated_device():
    gn.manual_seed(3)
    model = nn.Transformer(8, 2, 1, 1, dim_feedforward=16, dropout=0.0, batch_first=True)
    opt = gn.optim.Adam(model.parameters(), lr=1e-2)
    model.to("sim")  # moved after the optimizer was made: it follows
    with pytest.raises(TypeError, match="device 'sim' has no float16"):
        model.half()  # refused before anything is cast
    f32 = gn.backend.get_ops("sim").dtype("float32")
    assert all(p.data.dtype == f32 for p in model.parameters())
    rng = np.random.default_rng(4)
    src = gn.tensor(rng.normal(size=(2, 5, 8)).astype("float32"), device="sim")
    tgt = gn.tensor(rng.normal(size=(2, 4, 8)).astype("float32"), device="sim")
    mask = nn.Transformer.generate_square_subsequent_mask(4, device="sim")
    losses = []
    for _ in range(5):
        loss = (model(src, tgt, tgt_mask=mask) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    assert losses[-1] < losses[0]
