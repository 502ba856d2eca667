"""``torch.nn.functional``'s stateless forms of the layers whose weights a caller holds:
``layer_norm``, ``batch_norm`` and ``embedding`` (nanoGPT's LayerNorm with an optional
bias, a hand-written batch norm, tied input and output embeddings).

Example:
    >>> import gpunet as gn
    >>> F = gn.nn.functional
    >>> x = gn.tensor([[1.0, 3.0], [2.0, 2.0]])
    >>> F.layer_norm(x, (2,)).numpy().round(3).tolist()
    [[-1.0, 1.0], [0.0, 0.0]]
    >>> F.embedding(gn.tensor([1, 0]), gn.tensor([[0.0, 1.0], [2.0, 3.0]])).tolist()
    [[2.0, 3.0], [0.0, 1.0]]
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np

from gpunet.autograd import Tensor, as_tensor, no_grad, record
from gpunet.errors import InputValidationError
from gpunet.layers.embedding import check_ids
from gpunet.saving._tensors import dtype_name


def _tensor(x: Any, like: Tensor | None = None) -> Tensor:
    if isinstance(x, Tensor):
        return x
    from gpunet.backend import get_ops

    return as_tensor(np.asarray(x), like.ops if like is not None else get_ops("cpu"))


def same_dtype(fn: str, x: Tensor, **tensors: Any) -> None:
    """Refuse a weight of another dtype than the input's, as PyTorch does: here the
    float32 input would silently become float64 (a NumPy float64 kernel, say)."""
    for name, t in tensors.items():
        if t is not None and t.dtype != x.dtype:
            raise InputValidationError(
                f"{fn}: {name} is {dtype_name(t.dtype)} but the input is "
                f"{dtype_name(x.dtype)}; cast one (for example {name}.to(input.dtype))"
            )


def layer_norm(
    input: Tensor, normalized_shape: Any, weight: Tensor | None = None,
    bias: Tensor | None = None, eps: float = 1e-5,
) -> Tensor:  # fmt: skip
    """Layer norm over the last ``len(normalized_shape)`` axes, scaled by ``weight``
    and shifted by ``bias`` (each of ``normalized_shape``, or None) when given."""
    x = _tensor(input)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
    dims, k = tuple(int(d) for d in shape), len(tuple(shape))
    if k == 0 or x.ndim < k or tuple(x.shape[-k:]) != dims:
        raise InputValidationError(
            f"layer_norm: normalized_shape {list(dims)} must be the trailing axes of the "
            f"input, got an input of shape {tuple(x.shape)}"
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != dims:
            raise InputValidationError(
                f"layer_norm: {name} must have shape {dims}, got {tuple(t.shape)}"
            )
    same_dtype("layer_norm", x, weight=weight, bias=bias)
    ops, xp, n = x.ops, x.ops.xp, math.prod(dims)
    flat = xp.reshape(x.data, (-1, n))
    g = xp.reshape(weight.data, (n,)) if weight is not None else ops.full((n,), 1.0, x.dtype)
    b = xp.reshape(bias.data, (n,)) if bias is not None else ops.full((n,), 0.0, x.dtype)
    Y, Xhat, inv = ops.layernorm(flat, g, b, epsilon=float(eps))
    parents = tuple(t for t in (x, weight, bias) if t is not None)

    def backward(dY: Any) -> tuple[Any, ...]:
        dX, dg, db = ops.backprop_layernorm(xp.reshape(dY, Xhat.shape), Xhat, inv, g)
        grads = [xp.reshape(dX, x.shape)]
        if weight is not None:
            grads.append(xp.reshape(dg, dims))
        if bias is not None:
            grads.append(xp.reshape(db, dims))
        return tuple(grads)

    return record(xp.reshape(Y, x.shape), ops, parents, backward, "layer_norm")


def batch_norm(
    input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
    weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
    momentum: float = 0.1, eps: float = 1e-5,
) -> Tensor:  # fmt: skip
    """Batch norm of ``input (N, C, ...)`` over every axis but the channels (1).

    Training normalizes by the batch's mean and biased variance and, where running
    statistics are given, moves them in place by ``momentum`` (the variance's unbiased
    estimate, as PyTorch); evaluation normalizes by the running statistics."""
    x = _tensor(input)
    if x.ndim < 2:
        raise InputValidationError(
            f"batch_norm: expected an input of shape (N, C, ...), got {tuple(x.shape)}"
        )
    C = int(x.shape[1])
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):  # fmt: skip
        if t is not None and tuple(t.shape) != (C,):
            raise InputValidationError(
                f"batch_norm: {name} must have shape ({C},) for {C} channels, got {tuple(t.shape)}"
            )
    same_dtype("batch_norm", x, weight=weight, bias=bias, running_mean=running_mean,
               running_var=running_var)  # fmt: skip
    axes = (0, *range(2, x.ndim))
    per_channel = (1, C) + (1,) * (x.ndim - 2)
    if not training and (running_mean is None or running_var is None):
        raise RuntimeError("batch_norm: running_mean and running_var must be given in "
                           "evaluation mode (training=False)")  # fmt: skip
    if training:
        count = x.data.size // max(C, 1)
        if count <= 1:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input size "
                f"{tuple(x.shape)}"
            )
        mean = x.mean(dim=axes, keepdim=True)
        centred = x - mean
        var = (centred * centred).mean(dim=axes, keepdim=True)
        y = centred / (var + eps).sqrt()
        if running_mean is not None and running_var is not None:
            with no_grad():
                m = float(momentum)
                batch_mean = mean.reshape(C).detach()
                unbiased = var.reshape(C).detach() * (count / max(count - 1, 1))
                running_mean.data[...] = (1 - m) * running_mean.data + m * batch_mean.data
                running_var.data[...] = (1 - m) * running_var.data + m * unbiased.data
    else:
        assert running_mean is not None and running_var is not None
        rm = running_mean.detach().reshape(per_channel)
        rv = running_var.detach().reshape(per_channel)
        y = (x - rm) / (rv + eps).sqrt()
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return y


def embedding(
    input: Any, weight: Tensor, padding_idx: int | None = None, max_norm: float | None = None,
    norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False,
) -> Tensor:  # fmt: skip
    """Rows of ``weight (num_embeddings, D)`` by the integer ids ``input``; the row
    ``padding_idx`` gets no gradient. ``max_norm`` first rescales, in place, the
    looked-up rows whose ``norm_type``-norm exceeds it (as PyTorch)."""
    if scale_grad_by_freq or sparse:
        raise NotImplementedError("embedding: scale_grad_by_freq and sparse are not supported")
    W = _tensor(weight)
    if W.ndim != 2:
        raise InputValidationError(
            f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got {tuple(W.shape)}"
        )
    ops, xp = W.ops, W.ops.xp
    n, D = int(W.shape[0]), int(W.shape[1])
    ids = _tensor(input, W).data
    ids = check_ids(SimpleNamespace(name="embedding"), ops, ids, n)
    if padding_idx is not None:
        if not -n <= padding_idx < n:
            raise InputValidationError(
                f"embedding: padding_idx must be within [{-n}, {n}), got {padding_idx}"
            )
        padding_idx %= n
    flat = xp.reshape(ids, (-1,))
    if max_norm is not None and flat.size:
        rows = xp.unique_values(flat)
        sub = W.data[rows]
        norms = xp.sum(xp.abs(sub) ** norm_type, axis=1, keepdims=True) ** (1.0 / norm_type)
        scale = xp.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0)
        W.data[rows] = sub * xp.astype(scale, W.dtype)
    Y = xp.reshape(xp.take(W.data, flat, axis=0), (*ids.shape, D))

    def backward(dY: Any) -> tuple[Any]:
        dW = ops.embedding_backward(ids, dY, n)
        if padding_idx is not None:
            dW[padding_idx, ...] = 0
        return (dW,)

    return record(Y, ops, (W,), backward, "embedding")


__all__ = ["batch_norm", "embedding", "layer_norm"]
