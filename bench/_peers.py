"""The peers: PyTorch (CPU, and CUDA when there is a GPU) and scikit-learn.

Each factory returns an object with ``run(n)`` and ``sync()`` like the ones in
``_workloads``; all start from ``Data.weights``, the same initial weights.
Imports happen inside the factories, so a missing peer costs only its rows.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from _workloads import LR, Data, Workload


def torch_threads(n: int | None) -> dict[str, Any]:
    """Pin torch's intra-op threads (to the NumPy BLAS threads by default: the
    same threads for everyone) and report what torch runs with."""
    import torch

    if n:
        torch.set_num_threads(n)
    return {"num_threads": torch.get_num_threads(), "interop": torch.get_num_interop_threads()}


def _torch_model(w: Workload, data: Data, device: str) -> Any:
    import torch
    from torch import nn

    layers: list[Any] = []
    for i, (W, b) in enumerate(data.weights):
        lin = nn.Linear(*W.shape)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W.T.copy()))  # torch keeps (out, in)
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if i < len(data.weights) - 1:
            layers.append(nn.ReLU())
    if w.loss == "bce":
        layers.append(nn.Sigmoid())  # as the tutorials write it: Sigmoid + BCELoss
    return nn.Sequential(*layers).to(device)


class TorchStep:
    """``zero_grad(set_to_none=True)``, forward, loss, ``backward()``, ``step()``.

    Default Adam on the CPU is the single-tensor for-loop implementation (foreach
    and fused are only defaulted on CUDA); ``fused=True`` is the fastest torch has.
    """

    def __init__(
        self, w: Workload, data: Data, *, fused: bool = False, device: str = "cpu"
    ) -> None:
        import torch
        from torch import nn

        self.w, self.torch = w, torch
        self.model = _torch_model(w, data, device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR, fused=fused or None)
        self.loss_fn = nn.CrossEntropyLoss() if w.loss == "ce" else nn.BCELoss()
        self.X = torch.from_numpy(data.X).to(device)
        y = torch.from_numpy(data.y)
        self.y = (y.reshape(-1, 1) if w.loss == "bce" else y).to(device)
        self.cuda = device.startswith("cuda")
        self.pos = 0

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def run(self, n: int) -> None:
        B, model, opt, loss_fn = self.w.batch, self.model, self.opt, self.loss_fn
        for _ in range(n):
            s = (self.pos % self.w.steps) * B
            self.pos += 1
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(self.X[s : s + B]), self.y[s : s + B])
            loss.backward()
            opt.step()

    def first_loss(self) -> float:
        B = self.w.batch
        with self.torch.no_grad():
            return float(self.loss_fn(self.model(self.X[:B]), self.y[:B]))


class TorchPredict:
    """Inference under ``torch.no_grad()`` in eval mode, softmax (ce) applied, the
    batches concatenated and returned as one NumPy array, as ``predict`` does."""

    def __init__(self, w: Workload, data: Data, device: str = "cpu") -> None:
        import torch

        self.w, self.torch = w, torch
        self.model = _torch_model(w, data, device).eval()
        self.X = torch.from_numpy(data.X).to(device)
        self.cuda = device.startswith("cuda")
        self.pos = 0

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def run(self, n: int) -> None:
        torch, B, outs = self.torch, self.w.batch, []
        with torch.no_grad():
            for _ in range(n):
                s = (self.pos % self.w.steps) * B
                self.pos += 1
                out = self.model(self.X[s : s + B])
                outs.append(torch.softmax(out, dim=1) if self.w.loss == "ce" else out)
            torch.cat(outs).cpu().numpy()


class TorchGemmBound:
    """The GEMM bound with ``torch.mm(out=)`` (MKL on the CPU, cuBLAS on CUDA)."""

    def __init__(self, w: Workload, data: Data, device: str = "cpu") -> None:
        import torch

        self.w, self.torch, self.cuda = w, torch, device.startswith("cuda")
        g = torch.Generator().manual_seed(0)
        B = w.batch
        self.X = torch.from_numpy(data.X).to(device)
        self.W = [torch.from_numpy(W).to(device) for W, _ in data.weights]
        self.A = [torch.empty(B, o, device=device) for o in w.sizes[1:]]
        self.dZ = [torch.randn(B, o, generator=g).to(device) for o in w.sizes[1:]]
        self.gW = [torch.empty_like(W) for W in self.W]
        self.dA = [torch.empty(B, o, device=device) for o in w.sizes[1:-1]]
        self.pos = 0

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def run(self, n: int) -> None:
        mm, B = self.torch.mm, self.w.batch
        for _ in range(n):
            s = (self.pos % self.w.steps) * B
            self.pos += 1
            x = self.X[s : s + B]
            for i, Z in enumerate(self.A):
                mm(x if i == 0 else self.A[i - 1], self.W[i], out=Z)
            for i in range(len(self.A) - 1, -1, -1):
                A_in = x if i == 0 else self.A[i - 1]
                mm(A_in.T, self.dZ[i], out=self.gW[i])
                if i:
                    mm(self.dZ[i], self.W[i].T, out=self.dA[i - 1])


class SklearnEpoch:
    """``MLPClassifier(solver="adam", alpha=0, batch_size=B)``; one ``partial_fit``
    is one epoch over the first ``n`` batches (it shuffles, as its ``fit`` does).
    The first ``partial_fit`` initialises the network, untimed. sklearn >= 1.x
    keeps float32 input in float32, so this is a float32 peer too."""

    def __init__(self, w: Workload, data: Data) -> None:
        from sklearn.neural_network import MLPClassifier

        self.w = w
        self.clf = MLPClassifier(
            hidden_layer_sizes=w.sizes[1:-1],
            activation="relu",
            solver="adam",
            alpha=0.0,
            batch_size=w.batch,
            learning_rate_init=LR,
            shuffle=True,
            random_state=0,
        )
        self.X = data.X
        self.y = data.y.astype(np.int64)
        classes = np.arange(2 if w.loss == "bce" else w.sizes[-1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.clf.partial_fit(self.X[: w.batch], self.y[: w.batch], classes=classes)
        self.dtype = str(self.clf.coefs_[0].dtype)

    def sync(self) -> None:
        pass

    def run(self, n: int) -> None:
        m = n * self.w.batch
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.clf.partial_fit(self.X[:m], self.y[:m])
