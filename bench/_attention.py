"""The attention workloads of issue 16 ("Speed and memory").

* ``E`` / ``E1``: one training step of a Transformer encoder block (d_model 128,
  4 heads, length 64, batch 32, FFN 512, post-norm, ReLU, no dropout, float32),
  MSE against a random target, Adam; at 2 threads (``E``) and 1 (``E1``).
* ``S`` / ``S1``: attention alone at length 2,048 (batch 1, 4 heads, head dim 32),
  forward and backward through ``scaled_dot_product_attention``; full and causal;
  at 2 threads (``S``) and 1 (``S1``).

The worker process of a workload starts with ``OPENBLAS_NUM_THREADS``,
``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``GPUNET_NUM_THREADS`` set to its
``threads`` (``_worker._thread_env``) and torch pinned to the same.
Implementations (same data, same initial weights):

* ``gpunet``: ``gn.nn.TransformerEncoderLayer`` with ``gn.optim.Adam`` (E), or
  ``gn.nn.functional.scaled_dot_product_attention`` and ``.backward`` (S);
  ``gpunet_causal`` with ``is_causal=True`` (S);
* ``torch``: ``torch.nn.TransformerEncoderLayer`` and ``torch.optim.Adam`` (E), or
  ``torch.nn.functional.scaled_dot_product_attention`` (S); ``torch_causal`` (S);
* ``gemm_bound_numpy``: only the step's GEMMs into preallocated outputs (the
  input gradient of the first projection is never needed; the scores of S as one
  full (heads, T, T) GEMM, whatever the chunking of the real implementations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from _workloads import LR, Data, sync_for


@dataclass(frozen=True)
class AttnWorkload:
    key: str
    threads: int
    name: str
    sizes: tuple[int, ...]  # (batch, heads, length, head dim) or (batch, length, d_model, ffn)
    batch: int
    loss: str = "mse"
    steps: int = 10
    warmup: int = 2
    repeats: int = 7

    @property
    def encoder(self) -> bool:
        return self.name == "encoder"

    @property
    def n_params(self) -> int:
        if not self.encoder:
            return 0
        _, _, D, F = self.sizes
        return 4 * D * D + 4 * D + 2 * D * F + D + F + 4 * D

    def gemm_flops(self) -> float:
        """Flops of the GEMMs of one step (what ``GemmBoundAttn`` runs)."""
        return sum(2.0 * int(np.prod(o.shape)) * a.shape[-1] for a, _, o in _gemms(self))


ENC = (32, 64, 128, 512)  # batch, length, d_model, FFN
SDPA = (1, 4, 2048, 32)  # batch, heads, length, head dim
HEADS = 4
ATTENTION = {
    "E": AttnWorkload("E", 2, "encoder", ENC, 32),
    "E1": AttnWorkload("E1", 1, "encoder", ENC, 32),
    "S": AttnWorkload("S", 2, "sdpa", SDPA, 1, steps=3, warmup=1, repeats=5),
    "S1": AttnWorkload("S1", 1, "sdpa", SDPA, 1, steps=3, warmup=1, repeats=5),
}
TITLES = {
    "E": "Transformer encoder block step, MSE, Adam (2 threads)",
    "E1": "Transformer encoder block step, MSE, Adam (1 thread)",
    "S": "attention T=2048 forward+backward (2 threads)",
    "S1": "attention T=2048 forward+backward (1 thread)",
}


def make_data(w: AttnWorkload, seed: int = 1234) -> Data:
    """Seeded float32 inputs and targets; for E the weights as a torch state dict
    drawn in NumPy (``Data.weights`` holds ``(name, array)`` pairs then)."""
    rng = np.random.default_rng(seed)
    if w.encoder:
        B, T, D, F = w.sizes
        X = rng.standard_normal((w.steps * B, T, D), dtype=np.float32)
        y = rng.standard_normal((w.steps * B, T, D), dtype=np.float32)
        shapes = [("self_attn.in_proj_weight", (3 * D, D)), ("self_attn.in_proj_bias", (3 * D,)),
                  ("self_attn.out_proj.weight", (D, D)), ("self_attn.out_proj.bias", (D,)),
                  ("linear1.weight", (F, D)), ("linear1.bias", (F,)),
                  ("linear2.weight", (D, F)), ("linear2.bias", (D,))]  # fmt: skip
        weights: list[Any] = [
            (k, rng.uniform(-(s[-1] ** -0.5), s[-1] ** -0.5, s).astype(np.float32))
            for k, s in shapes
        ]
        for i in (1, 2):
            weights += [(f"norm{i}.weight", np.ones(D, np.float32)),
                        (f"norm{i}.bias", np.zeros(D, np.float32))]  # fmt: skip
        return Data(X, y, weights)
    QKV = rng.standard_normal((4, *w.sizes), dtype=np.float32)  # q, k, v, dO
    return Data(QKV, np.empty(0), [])


# -- gpunet ------------------------------------------------------------------------------
class GpunetEncoder:
    def __init__(self, w: AttnWorkload, data: Data) -> None:
        import gpunet as gn

        self.gn, self.w, self.X, self.y = gn, w, data.X, data.y
        _, _, D, F = w.sizes
        self.model = gn.nn.TransformerEncoderLayer(D, HEADS, F, dropout=0.0, batch_first=True)
        self.model.load_state_dict(dict(data.weights))
        self.opt = gn.optim.Adam(self.model.parameters(), lr=LR)
        self.pos = 0

    def sync(self) -> None:
        pass

    def run(self, n: int) -> None:
        F, B = self.gn.nn.functional, self.w.batch
        for _ in range(n):
            s = (self.pos % self.w.steps) * B
            self.pos += 1
            loss = F.mse_loss(self.model(self.X[s : s + B]), self.y[s : s + B])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()

    def first_loss(self) -> float:
        B = self.w.batch
        with self.gn.no_grad():
            out = self.model(self.X[:B])
        return float(self.gn.nn.functional.mse_loss(out, self.y[:B]).item())


class GpunetSdpa:
    def __init__(self, w: AttnWorkload, data: Data, causal: bool) -> None:
        import gpunet as gn

        self.gn, self.causal = gn, causal
        q, k, v, dO = data.X
        self.q, self.k, self.v = (gn.tensor(a, requires_grad=True) for a in (q, k, v))
        self.dO = gn.tensor(dO)

    def sync(self) -> None:
        pass

    def run(self, n: int) -> None:
        sdpa = self.gn.nn.functional.scaled_dot_product_attention
        for _ in range(n):
            for t in (self.q, self.k, self.v):
                t.grad = None
            sdpa(self.q, self.k, self.v, is_causal=self.causal).backward(self.dO)

    def first_loss(self) -> float:
        """``sum(O * dO)``: the function whose gradient the step back-propagates."""
        with self.gn.no_grad():
            O = self.gn.nn.functional.scaled_dot_product_attention(
                self.q, self.k, self.v, is_causal=self.causal
            )
        return float(np.sum(O.numpy().astype(np.float64) * self.dO.numpy()))


# -- PyTorch ---------------------------------------------------------------------------
class TorchEncoder:
    def __init__(self, w: AttnWorkload, data: Data) -> None:
        import torch
        from torch import nn

        self.torch, self.w = torch, w
        _, _, D, F = w.sizes
        self.model = nn.TransformerEncoderLayer(D, HEADS, F, dropout=0.0, batch_first=True)
        self.model.load_state_dict({k: torch.from_numpy(v) for k, v in data.weights})
        self.X, self.y = torch.from_numpy(data.X), torch.from_numpy(data.y)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.pos = 0

    def sync(self) -> None:
        pass

    def run(self, n: int) -> None:
        F, B = self.torch.nn.functional, self.w.batch
        for _ in range(n):
            s = (self.pos % self.w.steps) * B
            self.pos += 1
            self.opt.zero_grad(set_to_none=True)
            F.mse_loss(self.model(self.X[s : s + B]), self.y[s : s + B]).backward()
            self.opt.step()

    def first_loss(self) -> float:
        B = self.w.batch
        with self.torch.no_grad():
            out = self.model(self.X[:B])
            return float(self.torch.nn.functional.mse_loss(out, self.y[:B]))


class TorchSdpa:
    def __init__(self, w: AttnWorkload, data: Data, causal: bool) -> None:
        import torch

        self.torch, self.causal = torch, causal
        q, k, v, dO = (torch.from_numpy(a.copy()) for a in data.X)
        self.q, self.k, self.v = (t.requires_grad_() for t in (q, k, v))
        self.dO = dO

    def sync(self) -> None:
        pass

    def run(self, n: int) -> None:
        sdpa = self.torch.nn.functional.scaled_dot_product_attention
        for _ in range(n):
            for t in (self.q, self.k, self.v):
                t.grad = None
            sdpa(self.q, self.k, self.v, is_causal=self.causal).backward(self.dO)

    def first_loss(self) -> float:
        """``sum(O * dO)``, as ``GpunetSdpa.first_loss``."""
        with self.torch.no_grad():
            O = self.torch.nn.functional.scaled_dot_product_attention(
                self.q, self.k, self.v, is_causal=self.causal
            )
        return float(np.sum(O.numpy().astype(np.float64) * self.dO.numpy()))


# -- the GEMM bound ------------------------------------------------------------------------
def _gemms(w: AttnWorkload) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(A, B, out) of every GEMM of one step, in step order, random float32."""
    rng = np.random.default_rng(0)

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32)

    def mm(m: tuple[int, ...], k: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return r(*m, k), r(*m[:-1], k, n), np.empty((*m, n), np.float32)

    if w.encoder:
        B, T, D, F = w.sizes
        M, BH, dh = B * T, B * HEADS, D // HEADS
        fwd = [mm((M,), D, 3 * D), mm((BH, T), dh, T), mm((BH, T), T, dh), mm((M,), D, D),
               mm((M,), D, F), mm((M,), F, D)]  # fmt: skip
        dense_bwd = [mm((F,), M, D), mm((M,), D, F), mm((D,), M, F), mm((M,), F, D),
                     mm((D,), M, D), mm((M,), D, D), mm((D,), M, 3 * D)]  # fmt: skip
        attn_bwd = [mm((BH, T), dh, T), mm((BH, T), T, dh), mm((BH, T), T, dh),
                    mm((BH, T), T, dh)]  # fmt: skip
        return fwd + dense_bwd + attn_bwd
    B, H, T, dh = w.sizes
    s = (B * H, T)
    # forward: S = Q K^T, O = P V; backward: dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q
    return [mm(s, dh, T), mm(s, T, dh), mm(s, T, dh), mm(s, dh, T), mm(s, T, dh), mm(s, T, dh)]


class GemmBoundAttn:
    def __init__(self, w: AttnWorkload, data: Data) -> None:
        self.gemms, self.sync = _gemms(w), sync_for(np)

    def run(self, n: int) -> None:
        for _ in range(n):
            for A, Bm, out in self.gemms:
                np.matmul(A, Bm, out=out)


def factories(key: str, w: AttnWorkload, data: Data, torch: bool) -> dict[str, Any]:
    f: dict[str, Any] = {"gemm_bound_numpy": lambda: GemmBoundAttn(w, data)}
    if w.encoder:
        f["gpunet"] = lambda: GpunetEncoder(w, data)
        if torch:
            f["torch"] = lambda: TorchEncoder(w, data)
        return f
    f["gpunet"] = lambda: GpunetSdpa(w, data, False)
    f["gpunet_causal"] = lambda: GpunetSdpa(w, data, True)
    if torch:
        f["torch"] = lambda: TorchSdpa(w, data, False)
        f["torch_causal"] = lambda: TorchSdpa(w, data, True)
    return f
