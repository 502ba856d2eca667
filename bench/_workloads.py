"""Workload data, shared initial weights, and the array-library implementations
every gpunet figure is compared with: the GEMM bound and a hand-written step.

The workload definitions themselves live in ``gpunet.cli.quickbench.WORKLOADS`` so
``gpunet bench`` and this suite can never disagree about them.

Every implementation is an object with ``run(n)`` (``n`` training steps, or ``n``
predict batches, cycling through the data) and ``sync()`` (wait for queued
device work). The classes here take ``xp`` (NumPy, or CuPy for the "plain CuPy
without our kernels" rows), so the CPU and GPU versions are the same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpunet.cli.quickbench import WORKLOADS, Workload

__all__ = ["WORKLOADS", "Data", "GemmBound", "HandPredict", "HandStep", "Workload"]

BETA1, BETA2, LR, EPS = 0.9, 0.999, 1e-3, 1e-8  # torch.optim.Adam defaults


@dataclass
class Data:
    """One epoch of data (``steps`` batches) and the initial weights everyone uses."""

    X: np.ndarray  # (steps * batch, inputs) float32
    y: np.ndarray  # int64 class labels (ce) or float32 0/1 (bce), shape (n,)
    weights: list[tuple[np.ndarray, np.ndarray]]  # per layer: W (in, out), b (out,)


def make_data(w: Workload, seed: int = 1234) -> Data:
    """Seeded float32 data and torch's default ``Linear`` init drawn in NumPy:
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for W and b, so every implementation
    starts from the same weights."""
    rng = np.random.default_rng(seed)
    n = w.steps * w.batch
    X = rng.standard_normal((n, w.sizes[0]), dtype=np.float32)
    if w.loss == "bce":
        y: np.ndarray = rng.integers(0, 2, n).astype(np.float32)
    else:
        y = rng.integers(0, w.sizes[-1], n)
    weights = []
    for fan_in, fan_out in zip(w.sizes, w.sizes[1:], strict=False):
        bound = 1.0 / math.sqrt(fan_in)
        W = rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32)
        b = rng.uniform(-bound, bound, fan_out).astype(np.float32)
        weights.append((W, b))
    return Data(X, y, weights)


def sync_for(xp: Any) -> Any:
    """A function that waits for ``xp``'s queued work (a no-op for NumPy)."""
    if xp is np:
        return lambda: None
    return lambda: xp.cuda.Device().synchronize()


class _Flat:
    """Parameters in one flat buffer with W/b views, as gpunet's optimizers keep them
    (one Adam pass over 1 buffer instead of 2 per layer: 1.41x on B, perf notes)."""

    def __init__(self, xp: Any, weights: list[tuple[np.ndarray, np.ndarray]]) -> None:
        n = sum(W.size + b.size for W, b in weights)
        f32 = np.float32
        self.P, self.G = xp.empty(n, f32), xp.zeros(n, f32)
        self.W: list[Any] = []
        self.b: list[Any] = []
        self.gW: list[Any] = []
        self.gb: list[Any] = []
        off = 0
        for W, b in weights:
            for arr, dst, gdst in ((W, self.W, self.gW), (b, self.b, self.gb)):
                view = self.P[off : off + arr.size].reshape(arr.shape)
                view[...] = xp.asarray(arr)
                dst.append(view)
                gdst.append(self.G[off : off + arr.size].reshape(arr.shape))
                off += arr.size


class HandStep(_Flat):
    """The hand-written float32 step of the perf baselines: preallocated buffers,
    ``matmul(out=)``, in-place bias and ReLU, ReLU backward as
    ``multiply(dA, A > 0, out=dA)`` (12x faster than masked writes), stable
    softmax-CE / sigmoid-BCE, and torch's Adam (bias-corrected, eps after the
    sqrt) as 13 in-place passes over the flat buffer."""

    def __init__(self, w: Workload, data: Data, xp: Any = np) -> None:
        super().__init__(xp, data.weights)
        self.xp, self.w, self.sync = xp, w, sync_for(xp)
        B, f32 = w.batch, np.float32
        self.X, self.y = xp.asarray(data.X), xp.asarray(data.y)
        self.A = [xp.empty((B, o), f32) for o in w.sizes[1:]]  # layer outputs
        self.dA = [xp.empty((B, o), f32) for o in w.sizes[1:-1]]
        self.M, self.V, self.T = xp.zeros_like(self.P), xp.zeros_like(self.P), xp.empty_like(self.P)
        self.col = xp.empty((B, 1), f32)  # row max / row sum (ce) or scratch (bce)
        self.rows = xp.arange(B)
        self.t = self.pos = 0
        self.loss: Any = None  # stays on the device: no host sync inside the loop

    def _batch(self) -> tuple[Any, Any]:
        B, nb = self.w.batch, self.w.steps
        s = (self.pos % nb) * B
        self.pos += 1
        return self.X[s : s + B], self.y[s : s + B]

    def run(self, n: int) -> None:
        for _ in range(n):
            x, y = self._batch()
            self.forward(x)
            dZ = self.loss_grad(y)
            self.backward(x, dZ)
            self.adam()

    def forward(self, x: Any) -> None:
        xp, last = self.xp, len(self.A) - 1
        for i, Z in enumerate(self.A):
            xp.matmul(x, self.W[i], out=Z)
            xp.add(Z, self.b[i], out=Z)
            if i < last:
                xp.maximum(Z, 0, out=Z)
            x = Z

    def loss_grad(self, y: Any) -> Any:
        """Loss (kept on the device) and d(loss)/d(logits), written over the logits."""
        xp, Z, B, c = self.xp, self.A[-1], self.w.batch, self.col
        if self.w.loss == "ce":
            xp.max(Z, axis=1, keepdims=True, out=c)
            xp.subtract(Z, c, out=Z)
            zy = Z[self.rows, y]
            xp.exp(Z, out=Z)
            xp.sum(Z, axis=1, keepdims=True, out=c)
            self.loss = (xp.sum(xp.log(c)) - xp.sum(zy)) / B
            xp.divide(Z, c, out=Z)
            Z[self.rows, y] -= 1.0
        else:  # BCE from the logits: max(z,0) - z*t + log1p(exp(-|z|))
            t = y.reshape(B, 1)
            e = xp.exp(xp.negative(xp.abs(Z)))
            self.loss = xp.sum(xp.maximum(Z, 0) - Z * t + xp.log1p(e)) / B
            xp.add(e, 1.0, out=c)
            xp.divide(xp.where(Z >= 0, 1.0, e), c, out=Z)  # sigmoid, no overflow
            xp.subtract(Z, t, out=Z)
        xp.multiply(Z, 1.0 / B, out=Z)
        return Z

    def backward(self, x: Any, dZ: Any) -> None:
        xp = self.xp
        for i in range(len(self.A) - 1, -1, -1):
            A_in = x if i == 0 else self.A[i - 1]
            xp.matmul(A_in.T, dZ, out=self.gW[i])
            xp.sum(dZ, axis=0, out=self.gb[i])
            if i:
                dA = self.dA[i - 1]
                xp.matmul(dZ, self.W[i].T, out=dA)
                xp.multiply(dA, A_in > 0, out=dA)
                dZ = dA

    def adam(self) -> None:
        xp, P, G, M, V, T = self.xp, self.P, self.G, self.M, self.V, self.T
        self.t += 1
        xp.multiply(M, BETA1, out=M)
        xp.multiply(G, 1.0 - BETA1, out=T)
        xp.add(M, T, out=M)
        xp.multiply(V, BETA2, out=V)
        xp.multiply(G, G, out=T)
        xp.multiply(T, 1.0 - BETA2, out=T)
        xp.add(V, T, out=V)
        xp.sqrt(V, out=T)
        xp.multiply(T, 1.0 / math.sqrt(1.0 - BETA2**self.t), out=T)
        xp.add(T, EPS, out=T)
        xp.divide(M, T, out=T)
        xp.multiply(T, LR / (1.0 - BETA1**self.t), out=T)
        xp.subtract(P, T, out=P)

    def first_loss(self) -> float:
        """Loss of batch 0 at the initial weights (the same-function check)."""
        x, y = self.X[: self.w.batch], self.y[: self.w.batch]
        self.forward(x)
        self.loss_grad(y)
        return float(self.loss)


class GemmBound:
    """Only the GEMMs of a step, into preallocated outputs: forward ``X @ W`` per
    layer, backward ``dW = X.T @ dY`` per layer and ``dX = dY @ W.T`` for all but
    the input layer (the real steps skip it too). The denominator of "/gemm"."""

    def __init__(
        self, w: Workload, data: Data, xp: Any = np, *, forward_only: bool = False
    ) -> None:
        rng = np.random.default_rng(0)
        self.xp, self.w, self.sync, self.forward_only = xp, w, sync_for(xp), forward_only
        B = w.batch
        self.X = xp.asarray(data.X)
        self.W = [xp.asarray(W) for W, _ in data.weights]
        self.A = [xp.empty((B, o), np.float32) for o in w.sizes[1:]]
        # gradients flowing back: random, so no denormal or zero shortcuts
        self.dZ = [xp.asarray(rng.standard_normal((B, o), dtype=np.float32)) for o in w.sizes[1:]]
        self.gW = [xp.empty_like(W) for W in self.W]
        self.dA = [xp.empty((B, o), np.float32) for o in w.sizes[1:-1]]
        self.pos = 0

    def run(self, n: int) -> None:
        xp, B = self.xp, self.w.batch
        for _ in range(n):
            s = (self.pos % self.w.steps) * B
            self.pos += 1
            x = self.X[s : s + B]
            for i, Z in enumerate(self.A):
                xp.matmul(x if i == 0 else self.A[i - 1], self.W[i], out=Z)
            if self.forward_only:
                continue
            for i in range(len(self.A) - 1, -1, -1):
                A_in = x if i == 0 else self.A[i - 1]
                xp.matmul(A_in.T, self.dZ[i], out=self.gW[i])
                if i:
                    xp.matmul(self.dZ[i], self.W[i].T, out=self.dA[i - 1])


class HandPredict:
    """Hand-written inference: forward into preallocated buffers, softmax (ce) or
    sigmoid (bce) outputs copied into one preallocated result, as ``predict``
    returns them. ``run(n)`` predicts ``n`` batches."""

    def __init__(self, w: Workload, data: Data, xp: Any = np) -> None:
        self.step = HandStep(w, data, xp)
        self.xp, self.w, self.sync = xp, w, self.step.sync
        self.out = xp.empty((w.steps * w.batch, w.sizes[-1]), np.float32)
        self.pos = 0

    def run(self, n: int) -> None:
        xp, st, B = self.xp, self.step, self.w.batch
        for _ in range(n):
            s = (self.pos % self.w.steps) * B
            self.pos += 1
            st.forward(st.X[s : s + B])
            Z, out, c = st.A[-1], self.out[s : s + B], st.col
            if self.w.loss == "ce":
                xp.max(Z, axis=1, keepdims=True, out=c)
                xp.subtract(Z, c, out=out)
                xp.exp(out, out=out)
                xp.sum(out, axis=1, keepdims=True, out=c)
                xp.divide(out, c, out=out)
            else:
                e = xp.exp(xp.negative(xp.abs(Z)))
                xp.divide(xp.where(Z >= 0, 1.0, e), xp.add(e, 1.0), out=out)
