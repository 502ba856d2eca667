"""Two PyTorch tutorials, run as written with ``import gpunet as torch``, against torch.

"Learning PyTorch with Examples" (the tensor, autograd, nn, optim, custom-module and
dynamic-net parts: a cubic fit of sin(x)) and "What is torch.nn really?" (logistic
regression, then the nn.functional, nn.Module, nn.Linear, optim and validation
refactors; sklearn's digits stand in for MNIST). Each tutorial is one function of
the library it is given, so gpunet and torch run the same lines. Two things are
shared so the numbers can agree: ``randn`` draws from one NumPy stream (through a
proxy of the library) and ``nn.Linear`` weights are loaded from one state dict (the
one added line, ``same_weights(model)``). The Dataset/DataLoader refactor batches
by hand: ``gn.data`` is built separately.
"""

from __future__ import annotations

import functools
import math
import random
from typing import Any

import numpy as np
import pytest

import gpunet

torch_lib = pytest.importorskip("torch")
torch_lib.set_num_threads(1)

STEPS = 300


class Lib:
    """The library, with ``randn`` drawing from a shared seeded NumPy stream."""

    def __init__(self, lib: Any, seed: int = 0) -> None:
        self._lib, self._rng = lib, np.random.default_rng(seed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lib, name)

    def randn(self, *size: Any, dtype: Any = None, device: Any = None,
              requires_grad: bool = False) -> Any:  # fmt: skip
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], tuple) else size
        values = self._rng.standard_normal(shape).astype("float32")
        t = self._lib.tensor(values, dtype=dtype)
        return t.requires_grad_() if requires_grad else t


def linear_weights(model: Any, seed: int = 1) -> None:
    """Give every nn.Linear of ``model`` the same weights in both libraries."""
    rng = np.random.default_rng(seed)
    state = {
        k: rng.uniform(-0.5, 0.5, tuple(v.shape)).astype("float32")
        for k, v in model.state_dict().items()
    }
    lib = torch_lib if isinstance(model, torch_lib.nn.Module) else gpunet
    model.load_state_dict({k: lib.tensor(v) for k, v in state.items()})


# -- Learning PyTorch with Examples ---------------------------------------------------
def polynomial_tensors(torch: Any) -> list[float]:
    dtype = torch.float
    device = torch.device("cpu")
    x = torch.linspace(-math.pi, math.pi, 2000, device=device, dtype=dtype)
    y = torch.sin(x)
    a = torch.randn((), device=device, dtype=dtype)
    b = torch.randn((), device=device, dtype=dtype)
    c = torch.randn((), device=device, dtype=dtype)
    d = torch.randn((), device=device, dtype=dtype)
    learning_rate = 1e-6
    losses = []
    for _t in range(STEPS):
        y_pred = a + b * x + c * x**2 + d * x**3
        loss = (y_pred - y).pow(2).sum().item()
        losses.append(loss)
        grad_y_pred = 2.0 * (y_pred - y)
        grad_a = grad_y_pred.sum()
        grad_b = (grad_y_pred * x).sum()
        grad_c = (grad_y_pred * x**2).sum()
        grad_d = (grad_y_pred * x**3).sum()
        a -= learning_rate * grad_a
        b -= learning_rate * grad_b
        c -= learning_rate * grad_c
        d -= learning_rate * grad_d
    return [*losses, a.item(), b.item(), c.item(), d.item()]


def polynomial_autograd(torch: Any) -> list[float]:
    dtype = torch.float
    device = torch.device("cpu")
    x = torch.linspace(-math.pi, math.pi, 2000, device=device, dtype=dtype)
    y = torch.sin(x)
    a = torch.randn((), device=device, dtype=dtype, requires_grad=True)
    b = torch.randn((), device=device, dtype=dtype, requires_grad=True)
    c = torch.randn((), device=device, dtype=dtype, requires_grad=True)
    d = torch.randn((), device=device, dtype=dtype, requires_grad=True)
    learning_rate = 1e-6
    losses = []
    for _t in range(STEPS):
        y_pred = a + b * x + c * x**2 + d * x**3
        loss = (y_pred - y).pow(2).sum()
        losses.append(loss.item())
        loss.backward()
        with torch.no_grad():
            a -= learning_rate * a.grad
            b -= learning_rate * b.grad
            c -= learning_rate * c.grad
            d -= learning_rate * d.grad
            a.grad = None
            b.grad = None
            c.grad = None
            d.grad = None
    return [*losses, a.item(), b.item(), c.item(), d.item()]


def polynomial_nn(torch: Any, optimizer_name: str | None = None) -> list[float]:
    x = torch.linspace(-math.pi, math.pi, 2000)
    y = torch.sin(x)
    p = torch.tensor([1, 2, 3])
    xx = x.unsqueeze(-1).pow(p)
    model = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Flatten(0, 1))
    linear_weights(model)
    loss_fn = torch.nn.MSELoss(reduction="sum")
    losses = []
    if optimizer_name is None:
        learning_rate = 1e-6
        for _t in range(STEPS):
            y_pred = model(xx)
            loss = loss_fn(y_pred, y)
            losses.append(loss.item())
            model.zero_grad()
            loss.backward()
            with torch.no_grad():
                for param in model.parameters():
                    param -= learning_rate * param.grad
    else:
        learning_rate = 1e-3
        optimizer = getattr(torch.optim, optimizer_name)(model.parameters(), lr=learning_rate)
        for _t in range(STEPS):
            y_pred = model(xx)
            loss = loss_fn(y_pred, y)
            losses.append(loss.item())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    linear_layer = model[0]
    result = [linear_layer.bias.item()] + [linear_layer.weight[:, i].item() for i in range(3)]
    return losses + result


class Polynomial3Factory:
    @staticmethod
    def make(torch: Any) -> Any:
        class Polynomial3(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.a = torch.nn.Parameter(torch.randn(()))
                self.b = torch.nn.Parameter(torch.randn(()))
                self.c = torch.nn.Parameter(torch.randn(()))
                self.d = torch.nn.Parameter(torch.randn(()))

            def forward(self, x):
                return self.a + self.b * x + self.c * x**2 + self.d * x**3

            def string(self):
                return (
                    f"y = {self.a.item()} + {self.b.item()} x + "
                    f"{self.c.item()} x^2 + {self.d.item()} x^3"
                )

        return Polynomial3()


def polynomial_module(torch: Any) -> list[float]:
    x = torch.linspace(-math.pi, math.pi, 2000)
    y = torch.sin(x)
    model = Polynomial3Factory.make(torch)
    criterion = torch.nn.MSELoss(reduction="sum")
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
    losses = []
    for _t in range(STEPS):
        y_pred = model(x)
        loss = criterion(y_pred, y)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model.string().startswith("y = ")
    return losses + [float(p.item()) for p in model.parameters()]


def dynamic_net(torch: Any) -> list[float]:
    class DynamicNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Parameter(torch.randn(()))
            self.b = torch.nn.Parameter(torch.randn(()))
            self.c = torch.nn.Parameter(torch.randn(()))
            self.d = torch.nn.Parameter(torch.randn(()))
            self.e = torch.nn.Parameter(torch.randn(()))

        def forward(self, x):
            y = self.a + self.b * x + self.c * x**2 + self.d * x**3
            for exp in range(4, random.randint(4, 6)):
                y = y + self.e * x**exp
            return y

    random.seed(0)
    x = torch.linspace(-math.pi, math.pi, 2000)
    y = torch.sin(x)
    model = DynamicNet()
    criterion = torch.nn.MSELoss(reduction="sum")
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-8, momentum=0.9)
    losses = []
    for _t in range(STEPS):
        y_pred = model(x)
        loss = criterion(y_pred, y)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return losses


# -- What is torch.nn really? -----------------------------------------------------------
@functools.cache
def digits() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype("float32")
    return X[:1500], y[:1500].astype("int64"), X[1500:], y[1500:].astype("int64")


def nn_really_from_scratch(torch: Any, functional: bool) -> list[float]:
    F = torch.nn.functional
    x_train, y_train, x_valid, y_valid = map(torch.tensor, digits())
    n, c = x_train.shape
    weights = torch.randn(c, 10) / math.sqrt(c)
    weights.requires_grad_()
    bias = torch.zeros(10, requires_grad=True)

    def log_softmax(x):
        return x - x.exp().sum(-1).log().unsqueeze(-1)

    def model(xb):
        if functional:
            return xb @ weights + bias
        return log_softmax(xb @ weights + bias)

    def nll(input, target):
        return -input[range(target.shape[0]), target].mean()

    loss_func = F.cross_entropy if functional else nll

    def accuracy(out, yb):
        preds = torch.argmax(out, dim=1)
        return (preds == yb).float().mean()

    bs, lr, epochs = 64, 0.5, 2
    losses = []
    for _epoch in range(epochs):
        for i in range((n - 1) // bs + 1):
            start_i = i * bs
            end_i = start_i + bs
            xb = x_train[start_i:end_i]
            yb = y_train[start_i:end_i]
            pred = model(xb)
            loss = loss_func(pred, yb)
            losses.append(loss.item())
            loss.backward()
            with torch.no_grad():
                weights -= weights.grad * lr
                bias -= bias.grad * lr
                weights.grad.zero_()
                bias.grad.zero_()
    out = model(x_valid)
    return [*losses, loss_func(out, y_valid).item(), accuracy(out, y_valid).item()]


def nn_really_modules(torch: Any, step: str) -> list[float]:
    nn, F, optim = torch.nn, torch.nn.functional, torch.optim
    x_train, y_train, x_valid, y_valid = map(torch.tensor, digits())
    n, c = x_train.shape

    class Mnist_Logistic(nn.Module):
        def __init__(self):
            super().__init__()
            if step == "module":
                self.weights = nn.Parameter(torch.randn(c, 10) / math.sqrt(c))
                self.bias = nn.Parameter(torch.zeros(10))
            else:
                self.lin = nn.Linear(c, 10)

        def forward(self, xb):
            if step == "module":
                return xb @ self.weights + self.bias
            return self.lin(xb)

    loss_func = F.cross_entropy
    bs, lr, epochs = 64, 0.5, 2
    model = Mnist_Logistic()
    if step != "module":
        linear_weights(model)
    opt = optim.SGD(model.parameters(), lr=lr)
    # the Dataset/DataLoader step, batched by hand (gn.data is built separately)
    train_dl = [(x_train[i : i + bs], y_train[i : i + bs]) for i in range(0, n, bs)]
    valid_dl = [(x_valid[i : i + bs * 2], y_valid[i : i + bs * 2]) for i in range(0, 297, bs * 2)]
    losses = []
    for _epoch in range(epochs):
        model.train()
        for xb, yb in train_dl:
            pred = model(xb)
            loss = loss_func(pred, yb)
            losses.append(loss.item())
            loss.backward()
            if step in ("module", "linear"):
                with torch.no_grad():
                    for p in model.parameters():
                        p -= p.grad * lr
                    model.zero_grad()
            else:
                opt.step()
                opt.zero_grad()
        model.eval()
        with torch.no_grad():
            valid_loss = sum(loss_func(model(xb), yb) for xb, yb in valid_dl)
        losses.append((valid_loss / len(valid_dl)).item())
        nums = [len(xb) for xb, _ in valid_dl]
        with torch.no_grad():
            batch = [loss_func(model(xb), yb).item() for xb, yb in valid_dl]
        losses.append(float(np.sum(np.multiply(batch, nums)) / np.sum(nums)))
    return losses


CASES = {
    "tensors": polynomial_tensors,
    "autograd": polynomial_autograd,
    "nn": polynomial_nn,
    "optim_rmsprop": lambda t: polynomial_nn(t, "RMSprop"),
    "custom_module": polynomial_module,
    "dynamic_net": dynamic_net,
    "nn_really_scratch": lambda t: nn_really_from_scratch(t, functional=False),
    "nn_really_functional": lambda t: nn_really_from_scratch(t, functional=True),
    "nn_really_module": lambda t: nn_really_modules(t, "module"),
    "nn_really_linear": lambda t: nn_really_modules(t, "linear"),
    "nn_really_optim": lambda t: nn_really_modules(t, "optim"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_tutorial_matches_torch(name):
    gpunet.config.set_floatx("float32")
    ours = np.array(CASES[name](Lib(gpunet)))
    theirs = np.array(CASES[name](Lib(torch_lib)))
    assert ours.shape == theirs.shape and np.all(np.isfinite(ours))
    np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=1e-6, err_msg=name)


def test_the_polynomial_fit_learns():
    losses = polynomial_autograd(Lib(gpunet))
    assert losses[STEPS - 1] < 0.5 * losses[0]
