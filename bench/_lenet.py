"""The LeNet training step of issue 14: 28x28x1 -> Conv 32 3x3 relu -> MaxPool 2 ->
Conv 64 3x3 relu -> MaxPool 2 -> Flatten -> Dense 128 relu -> Dense 10, batch 128,
float32, softmax cross-entropy, Adam.

Workload ``L`` runs with the machine's threads, ``L1`` with one (the worker process
starts with ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``/``GPUNET_NUM_THREADS`` = 1,
see ``_worker.Remote``). Implementations (same data, same initial weights):

* ``gpunet``: ``model.fit(...)`` of the Keras-style model, as ``_gpunet.GpunetFit``;
* ``torch``: ``nn.Sequential`` in NCHW (PyTorch's default), default Adam;
* ``torch_channels_last``: the same with model and input in ``channels_last``;
* ``numpy``: a plain NumPy step: im2col by per-tap strided copies into preallocated
  columns, ``matmul(out=)``, pooling by reshape, ReLU/pool backward by masks,
  col2im by per-tap slice adds, torch's Adam over one flat buffer;
* ``gemm_bound_numpy``: only that step's GEMMs, into preallocated outputs: the
  denominator of "/gemm" (the first conv's input gradient is never needed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from _workloads import LR, Data, HandStep, _Flat, sync_for

H0, K = 28, 3
C1, C2, D1, D2 = 32, 64, 128, 10
H1 = H0 - K + 1  # 26, pooled 13
H2 = H1 // 2 - K + 1  # 11, pooled 5 (the odd row and column dropped, as MaxPool2d)
P2 = H2 // 2
FLAT = P2 * P2 * C2  # 1600


@dataclass(frozen=True)
class LenetWorkload:
    key: str
    threads: int | None  # None: the machine's
    name: str = "lenet"
    sizes: tuple[str, ...] = ("28x28x1", "conv32", "pool2", "conv64", "pool2", "128", "10")
    batch: int = 128
    loss: str = "ce"
    steps: int = 20
    warmup: int = 3
    repeats: int = 7

    @property
    def n_params(self) -> int:
        return sum(W.size + b.size for W, b in _shapes())

    def gemm_flops(self) -> float:
        B = self.batch
        conv1 = 2.0 * B * H1 * H1 * K * K * C1  # forward; dW the same
        conv2 = 2.0 * B * H2 * H2 * K * K * C1 * C2  # forward, dW, dX
        d1, d2 = 2.0 * B * FLAT * D1, 2.0 * B * D1 * D2
        return 2 * conv1 + 3 * conv2 + 3 * d1 + 3 * d2


LENET = {"L": LenetWorkload("L", None), "L1": LenetWorkload("L1", 1)}


def _shapes() -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.empty(s), np.empty(s[-1])) for s in
            [(K, K, 1, C1), (K, K, C1, C2), (FLAT, D1), (D1, D2)]]  # fmt: skip


def make_data(w: LenetWorkload, seed: int = 1234) -> Data:
    """Seeded images and labels; weights in Keras' layout (kernels (kh, kw, in, out),
    Dense rows in NHWC flatten order), drawn as torch's default init."""
    rng = np.random.default_rng(seed)
    n = w.steps * w.batch
    X = rng.standard_normal((n, H0, H0, 1), dtype=np.float32)
    y = rng.integers(0, D2, n)
    weights = []
    for W, b in _shapes():
        bound = 1.0 / math.sqrt(int(np.prod(W.shape[:-1])))
        weights.append(
            (rng.uniform(-bound, bound, W.shape).astype(np.float32),
             rng.uniform(-bound, bound, b.shape).astype(np.float32))
        )  # fmt: skip
    return Data(X, y, weights)


# -- gpunet ---------------------------------------------------------------------------
class GpunetLenet:
    def __init__(self, w: LenetWorkload, data: Data, device: str = "cpu") -> None:
        import gpunet as gn

        L = gn.layers
        self.w, self.X, self.y = w, data.X, data.y
        self.model = gn.Sequential(
            [L.Conv2D(C1, K, activation="relu", input_shape=(H0, H0, 1)), L.MaxPooling2D(2),
             L.Conv2D(C2, K, activation="relu"), L.MaxPooling2D(2), L.Flatten(),
             L.Dense(D1, activation="relu"), L.Dense(D2)],
            device=device,
        )  # fmt: skip
        self.model.compile(
            optimizer=gn.optimizers.Adam(LR, epsilon=1e-8),
            loss=gn.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        self.model.set_weights([a for pair in data.weights for a in pair])

    def sync(self) -> None:
        self.model.ops.synchronize()

    def run(self, n: int) -> None:
        m = n * self.w.batch
        self.model.fit(self.X[:m], self.y[:m], batch_size=self.w.batch, epochs=1,
                       shuffle=False, verbose=0)  # fmt: skip

    def first_loss(self) -> float:
        B = self.w.batch
        return float(self.model.evaluate(self.X[:B], self.y[:B], batch_size=B, verbose=0))


# -- PyTorch ----------------------------------------------------------------------------
class TorchLenet:
    def __init__(self, w: LenetWorkload, data: Data, *, channels_last: bool = False,
                 device: str = "cpu") -> None:  # fmt: skip
        import torch
        from torch import nn

        self.w, self.torch = w, torch
        model = nn.Sequential(
            nn.Conv2d(1, C1, K), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(C1, C2, K), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(FLAT, D1), nn.ReLU(), nn.Linear(D1, D2),
        )  # fmt: skip
        (k1, b1), (k2, b2), (W3, b3), (W4, b4) = data.weights
        # NHWC flatten rows of W3 -> torch's NCHW flatten columns
        W3t = W3.reshape(P2, P2, C2, D1).transpose(2, 0, 1, 3).reshape(FLAT, D1).T
        params = [k1.transpose(3, 2, 0, 1), b1, k2.transpose(3, 2, 0, 1), b2, W3t, b3, W4.T, b4]
        with torch.no_grad():
            for p, v in zip(model.parameters(), params, strict=True):
                p.copy_(torch.from_numpy(np.ascontiguousarray(v)))
        X = torch.from_numpy(data.X.transpose(0, 3, 1, 2).copy()).to(device)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(device, memory_format=fmt)
        self.X = X.contiguous(memory_format=fmt)
        self.y = torch.from_numpy(data.y).to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.loss_fn = nn.CrossEntropyLoss()
        self.cuda = device.startswith("cuda")
        self.pos = 0

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def run(self, n: int) -> None:
        B = self.w.batch
        for _ in range(n):
            s = (self.pos % self.w.steps) * B
            self.pos += 1
            self.opt.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.model(self.X[s : s + B]), self.y[s : s + B])
            loss.backward()
            self.opt.step()

    def first_loss(self) -> float:
        B = self.w.batch
        with self.torch.no_grad():
            return float(self.loss_fn(self.model(self.X[:B]), self.y[:B]))


# -- plain NumPy ----------------------------------------------------------------------------
def _im2col(cols: np.ndarray, x: np.ndarray, Ho: int) -> None:
    """cols (B, Ho, Ho, 9, C) <- per-tap strided copies of x (Chainer's im2col)."""
    for i in range(K):
        for j in range(K):
            cols[:, :, :, i * K + j, :] = x[:, i : i + Ho, j : j + Ho, :]


def _pool(A: np.ndarray, n: int) -> np.ndarray:
    """2x2 max pool with stride 2 over the top-left 2n x 2n of A (B, H, H, C), by reshape."""
    B, C = A.shape[0], A.shape[-1]
    return A[:, : 2 * n, : 2 * n, :].reshape(B, n, 2, n, 2, C).max(axis=(2, 4))


def _unpool(dA: np.ndarray, A: np.ndarray, P: np.ndarray, dP: np.ndarray) -> None:
    """dA <- dP at the maxima of each window (the equality mask), zero elsewhere."""
    B, n, _, C = P.shape
    win = A[:, : 2 * n, : 2 * n, :].reshape(B, n, 2, n, 2, C)
    grad = (win == P[:, :, None, :, None, :]) * dP[:, :, None, :, None, :]
    if dA.shape[1] != 2 * n:
        dA[...] = 0.0
    dA[:, : 2 * n, : 2 * n, :] = grad.reshape(B, 2 * n, 2 * n, C)


class NumpyLenet(_Flat):
    def __init__(self, w: LenetWorkload, data: Data) -> None:
        super().__init__(np, [(W.reshape(-1, W.shape[-1]), b) for W, b in data.weights])
        self.xp, self.w, self.sync = np, w, sync_for(np)
        B, f = w.batch, np.float32
        self.Xd, self.y = data.X, data.y
        self.cols1 = np.empty((B, H1, H1, K * K, 1), f)
        self.cols2 = np.empty((B, H2, H2, K * K, C1), f)
        self.Z1, self.Z2 = np.empty((B * H1 * H1, C1), f), np.empty((B * H2 * H2, C2), f)
        self.Z3, self.Z4 = np.empty((B, D1), f), np.empty((B, D2), f)
        self.dA1, self.dA2 = np.empty((B, H1, H1, C1), f), np.empty((B, H2, H2, C2), f)
        self.dP1 = np.empty((B, H1 // 2, H1 // 2, C1), f)
        self.M, self.V, self.T = np.zeros_like(self.P), np.zeros_like(self.P), np.empty_like(self.P)
        self.rows = np.arange(B)
        self.t = self.pos = 0
        self.loss: Any = None

    adam = HandStep.adam

    def _dense(self, x: np.ndarray, i: int, out: np.ndarray, relu: bool) -> np.ndarray:
        np.matmul(x, self.W[i], out=out)
        out += self.b[i]
        if relu:
            np.maximum(out, 0.0, out=out)
        return out

    def forward(self, x: np.ndarray) -> None:
        B = x.shape[0]
        _im2col(self.cols1, x, H1)
        self.A1 = self._dense(self.cols1.reshape(-1, K * K), 0, self.Z1, True)
        self.A1 = self.A1.reshape(B, H1, H1, C1)
        self.P1 = _pool(self.A1, H1 // 2)
        _im2col(self.cols2, self.P1, H2)
        A2 = self._dense(self.cols2.reshape(-1, K * K * C1), 1, self.Z2, True)
        self.A2 = A2.reshape(B, H2, H2, C2)
        self.P2 = _pool(self.A2, P2)
        self.flat = self.P2.reshape(B, FLAT)
        self._dense(self.flat, 2, self.Z3, True)
        self._dense(self.Z3, 3, self.Z4, False)

    def loss_grad(self, y: np.ndarray) -> np.ndarray:
        Z, B = self.Z4, self.w.batch
        Z -= Z.max(axis=1, keepdims=True)
        zy = Z[self.rows, y]
        np.exp(Z, out=Z)
        s = Z.sum(axis=1, keepdims=True)
        self.loss = (np.log(s).sum() - zy.sum()) / B
        Z /= s
        Z[self.rows, y] -= 1.0
        Z *= 1.0 / B
        return Z

    def backward(self, dZ4: np.ndarray) -> None:
        B, gW, gb, W = self.w.batch, self.gW, self.gb, self.W
        np.matmul(self.Z3.T, dZ4, out=gW[3])
        np.sum(dZ4, axis=0, out=gb[3])
        dZ3 = dZ4 @ W[3].T
        dZ3 *= self.Z3 > 0
        np.matmul(self.flat.T, dZ3, out=gW[2])
        np.sum(dZ3, axis=0, out=gb[2])
        dP2 = (dZ3 @ W[2].T).reshape(B, P2, P2, C2)
        _unpool(self.dA2, self.A2, self.P2, dP2)
        self.dA2 *= self.A2 > 0
        dZ2 = self.dA2.reshape(-1, C2)
        c2 = self.cols2.reshape(-1, K * K * C1)
        np.matmul(c2.T, dZ2, out=gW[1])
        np.sum(dZ2, axis=0, out=gb[1])
        dcols = (dZ2 @ W[1].T).reshape(self.cols2.shape)
        dP1 = self.dP1
        dP1[...] = 0.0
        for i in range(K):  # col2im: the per-tap slices added back
            for j in range(K):
                dP1[:, i : i + H2, j : j + H2, :] += dcols[:, :, :, i * K + j, :]
        _unpool(self.dA1, self.A1, self.P1, dP1)
        self.dA1 *= self.A1 > 0
        dZ1 = self.dA1.reshape(-1, C1)
        np.matmul(self.cols1.reshape(-1, K * K).T, dZ1, out=gW[0])
        np.sum(dZ1, axis=0, out=gb[0])

    def run(self, n: int) -> None:
        B = self.w.batch
        for _ in range(n):
            s = (self.pos % self.w.steps) * B
            self.pos += 1
            self.forward(self.Xd[s : s + B])
            self.backward(self.loss_grad(self.y[s : s + B]))
            self.adam()

    def first_loss(self) -> float:
        B = self.w.batch
        self.forward(self.Xd[:B])
        self.loss_grad(self.y[:B])
        return float(self.loss)


class GemmBoundLenet:
    """Only the step's GEMMs: conv1 forward and dW, conv2 forward, dW and input
    gradient (as columns), both Dense layers' forward, dW and dX."""

    def __init__(self, w: LenetWorkload, data: Data) -> None:
        rng = np.random.default_rng(0)
        B, f = w.batch, np.float32
        self.sync = sync_for(np)

        def r(*shape: int) -> np.ndarray:
            return rng.standard_normal(shape, dtype=f)

        M1, M2, k1, k2 = B * H1 * H1, B * H2 * H2, K * K, K * K * C1
        # (A, B, out) triples, in step order
        self.gemms = [
            (r(M1, k1), r(k1, C1), np.empty((M1, C1), f)),
            (r(M2, k2), r(k2, C2), np.empty((M2, C2), f)),
            (r(B, FLAT), r(FLAT, D1), np.empty((B, D1), f)),
            (r(B, D1), r(D1, D2), np.empty((B, D2), f)),
            (r(D1, B), r(B, D2), np.empty((D1, D2), f)),  # dW4
            (r(B, D2), r(D2, D1), np.empty((B, D1), f)),  # dX4
            (r(FLAT, B), r(B, D1), np.empty((FLAT, D1), f)),  # dW3
            (r(B, D1), r(D1, FLAT), np.empty((B, FLAT), f)),  # dX3
            (r(M2, k2).T, r(M2, C2), np.empty((k2, C2), f)),  # dW2 = cols.T @ dZ
            (r(M2, C2), r(C2, k2), np.empty((M2, k2), f)),  # dcols2
            (r(M1, k1).T, r(M1, C1), np.empty((k1, C1), f)),  # dW1
        ]

    def run(self, n: int) -> None:
        for _ in range(n):
            for A, Bm, out in self.gemms:
                np.matmul(A, Bm, out=out)


def factories(key: str, w: LenetWorkload, data: Data, torch: bool, gpu: bool) -> dict[str, Any]:
    f: dict[str, Any] = {
        "gpunet": lambda: GpunetLenet(w, data),
        "numpy": lambda: NumpyLenet(w, data),
        "gemm_bound_numpy": lambda: GemmBoundLenet(w, data),
    }
    if torch:
        f["torch"] = lambda: TorchLenet(w, data)
        f["torch_channels_last"] = lambda: TorchLenet(w, data, channels_last=True)
    if gpu:
        f["gpunet_cuda"] = lambda: GpunetLenet(w, data, "cuda")
        if torch:
            f["torch_cuda"] = lambda: TorchLenet(w, data, channels_last=True, device="cuda")
    return f
