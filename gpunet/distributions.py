"""``torch.distributions``' two workhorses as ``gn.distributions``: ``Categorical``
(a policy's actions in PyTorch's REINFORCE and actor-critic examples) and ``Normal``
(a VAE's or a Gaussian policy's), with PyTorch's arguments and methods:
``sample``, ``rsample`` (Normal: the reparameterized draw the gradient flows
through), ``log_prob``, ``entropy``, ``mean``, ``probs``/``logits``. Draws come
from gpunet's seeded stream (``gn.manual_seed``); ``log_prob`` and ``entropy``
are autograd ops.

Example:
    >>> import gpunet as gn
    >>> gn.manual_seed(0)
    >>> m = gn.distributions.Categorical(probs=gn.tensor([0.25, 0.75]))
    >>> m.sample((3,)).shape, round(float(m.log_prob(gn.tensor(1)).exp().item()), 4)
    ((3,), 0.75)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gpunet import random as grandom
from gpunet.autograd import Tensor
from gpunet.errors import InvalidParameterError


def _t(x: Any, like: Tensor | None = None) -> Tensor:
    if isinstance(x, Tensor):
        return x
    from gpunet import tensor

    if like is not None:  # host numbers (draws, constants) uploaded in like's dtype
        return Tensor(like.ops.asarray(np.asarray(x), dtype=like.data.dtype), like.ops)
    return tensor(x)


def _shape(sample_shape: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in (sample_shape or ()))


class Categorical:
    """``Categorical(probs=None, logits=None)`` over the last axis (batch axes before
    it); ``probs`` need not sum to 1 (they are normalized, as PyTorch)."""

    def __init__(self, probs: Any = None, logits: Any = None, validate_args: Any = None) -> None:
        if (probs is None) == (logits is None):
            raise InvalidParameterError(
                "Either `probs` or `logits` must be specified, but not both."
            )
        if probs is not None:
            p = _t(probs)
            if p.ndim < 1:
                raise InvalidParameterError("`probs` must be at least one-dimensional.")
            p = p / p.sum(dim=-1, keepdim=True)
            tiny = float(p.ops.xp.finfo(p.data.dtype).eps)
            self.probs, self.logits = p, p.clamp(tiny, 1.0 - tiny).log()
        else:
            z = _t(logits)
            if z.ndim < 1:
                raise InvalidParameterError("`logits` must be at least one-dimensional.")
            self.logits = z - z.logsumexp(dim=-1, keepdim=True)
            self.probs = self.logits.exp()
        self.batch_shape = tuple(self.probs.shape[:-1])
        self.num_categories = int(self.probs.shape[-1])

    def sample(self, sample_shape: Any = ()) -> Tensor:
        """Indices (int64) of shape ``sample_shape + batch_shape``; no gradient."""
        P = np.asarray(self.probs.ops.to_numpy(self.probs.data), dtype=np.float64)
        rows = P.reshape(-1, self.num_categories)
        n = math.prod(_shape(sample_shape))
        rng = grandom.generator("init")
        u = rng.random((n, rows.shape[0], 1))
        cdf = np.cumsum(rows / rows.sum(-1, keepdims=True), axis=-1)
        idx = np.minimum((u > cdf[None]).sum(-1), self.num_categories - 1)  # inverse CDF
        out = idx.reshape((*_shape(sample_shape), *self.batch_shape)).astype(np.int64)
        return Tensor(self.probs.ops.asarray(out), self.probs.ops)

    def log_prob(self, value: Any) -> Tensor:
        """The log-probability of each index in ``value`` (broadcast with the batch)."""
        index = _t(value).long()
        shape = tuple(np.broadcast_shapes(tuple(index.shape), self.batch_shape))
        logits = self.logits
        if tuple(logits.shape[:-1]) != shape:
            logits = logits.expand(*shape, self.num_categories)
        if tuple(index.shape) != shape:
            index = index.expand(*shape)
        return logits.gather(-1, index.unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> Tensor:
        floor = float(self.logits.ops.xp.finfo(self.logits.data.dtype).min)
        return -(self.probs * self.logits.clamp(min=floor)).sum(dim=-1)

    @property
    def mean(self) -> Tensor:
        """NaN of the batch shape, as PyTorch's: categories have no mean."""
        ops = self.probs.ops
        return Tensor(ops.full(self.batch_shape, float("nan"), self.probs.data.dtype), ops)

    variance = mean


class Normal:
    """``Normal(loc, scale)``, elementwise (``loc`` and ``scale`` broadcast)."""

    def __init__(self, loc: Any, scale: Any, validate_args: Any = None) -> None:
        self.loc = _t(loc)
        self.scale = _t(scale, self.loc)
        S = np.asarray(self.scale.ops.to_numpy(self.scale.data))
        if not (S > 0).all():
            raise InvalidParameterError("Normal: scale must be positive, got a value <= 0")
        self.batch_shape = tuple(np.broadcast_shapes(self.loc.shape, self.scale.shape))

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def stddev(self) -> Tensor:
        return self.scale

    @property
    def variance(self) -> Tensor:
        return self.scale * self.scale

    def rsample(self, sample_shape: Any = ()) -> Tensor:
        """``loc + scale * eps`` with ``eps ~ N(0, 1)``: differentiable in ``loc``, ``scale``."""
        shape = (*_shape(sample_shape), *self.batch_shape)
        eps = grandom.generator("init").standard_normal(shape)
        return self.loc + self.scale * _t(eps, self.loc)

    def sample(self, sample_shape: Any = ()) -> Tensor:
        return self.rsample(sample_shape).detach()

    def log_prob(self, value: Any) -> Tensor:
        x = _t(value, self.loc)
        d = x - self.loc
        return -(d * d) / (2.0 * self.variance) - self.scale.log() - 0.5 * math.log(2 * math.pi)

    def entropy(self) -> Tensor:
        return 0.5 + 0.5 * math.log(2 * math.pi) + self.scale.log() + self.loc * 0.0
