"""``torch.nn.functional`` spellings: activations, ``linear``, ``dropout``,
``one_hot``, ``pad`` and the losses with PyTorch's ``reduction`` and argument
order ``(input, target)``.

Example:
    >>> import gpunet as gn
    >>> F = gn.nn.functional
    >>> logits = gn.tensor([[2.0, 0.0], [0.0, 2.0]])
    >>> round(F.cross_entropy(logits, gn.tensor([0, 1])).item(), 4)
    0.1269
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpunet import functional as G
from gpunet import losses as _losses
from gpunet.autograd import Tensor, as_tensor, record

linear = G.linear
REDUCTIONS = ("mean", "sum", "none")


def _t(x: Any, like: Tensor | None = None) -> Tensor:
    if isinstance(x, Tensor):
        return x
    from gpunet.backend import get_ops

    ops = like.ops if like is not None else get_ops("cpu")
    arr = np.asarray(x)
    return as_tensor(arr, ops, like.dtype if like is not None and arr.dtype.kind == "f" else None)


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    return G.activation(_t(input), "relu")


def sigmoid(input: Tensor) -> Tensor:
    return G.activation(_t(input), "sigmoid")


def tanh(input: Tensor) -> Tensor:
    return G.activation(_t(input), "tanh")


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    return G.activation(_t(input), "swish")


def softplus(input: Tensor) -> Tensor:
    return G.activation(_t(input), "softplus")


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    return G.activation(_t(input), "elu", alpha=float(alpha))


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return G.activation(_t(input), "gelu", approximate=approximate == "tanh")


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    return G.activation(_t(input), "leaky_relu", alpha=float(negative_slope))


def _softmax_dim(ndim: int) -> int:
    return 0 if ndim in (0, 1, 3) else 1  # PyTorch's implicit dim


def softmax(input: Tensor, dim: int | None = None) -> Tensor:
    x = _t(input)
    return G.activation(x, "softmax", axis=_softmax_dim(x.ndim) if dim is None else dim)


def log_softmax(input: Tensor, dim: int | None = None) -> Tensor:
    x = _t(input)
    return G.activation(x, "log_softmax", axis=_softmax_dim(x.ndim) if dim is None else dim)


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    return G.dropout(_t(input), float(p), training)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """Integer class indices to an int64 one-hot tensor (last axis the classes)."""
    t = _t(tensor)
    if t.ops.xp.isdtype(t.dtype, "real floating"):
        raise RuntimeError("one_hot is only applicable to index tensor")
    n = int(t.data.max()) + 1 if num_classes < 0 else int(num_classes)
    classes = t.ops.arange(n)
    return Tensor(t.ops.xp.astype(t.data[..., None] == classes, t.ops.dtype("int64")), t.ops)


def pad(input: Tensor, pad: Any, mode: str = "constant", value: float = 0.0) -> Tensor:
    """Padding with ``value`` (``mode="constant"``), the mirror image without the edge
    (``"reflect"``) or the edge repeated (``"replicate"``); ``pad`` pairs run from the
    last axis backwards."""
    x = _t(input)
    if mode not in ("constant", "reflect", "replicate"):
        raise NotImplementedError(
            f"pad mode {mode!r}: 'constant', 'reflect' and 'replicate' are supported"
        )
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad must have an even length of at most 2 * ndim, got {pad!r}")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    if any(a < 0 or b < 0 for a, b in widths):
        raise NotImplementedError(f"negative padding (cropping) is not supported: {pad!r}")
    if mode != "constant":
        from gpunet.nn.extra import gather_pad

        return gather_pad(x, widths, mode)
    ops = x.ops
    Y = ops.full(
        tuple(n + a + b for n, (a, b) in zip(x.shape, widths, strict=True)), value, x.dtype
    )
    inner = tuple(slice(a, a + n) for n, (a, _) in zip(x.shape, widths, strict=True))
    Y[inner] = x.data
    return record(Y, ops, (x,), lambda g: (g[inner],), "pad")


# -- losses ----------------------------------------------------------------------------
def _reduce(L: Tensor, reduction: str, denom: Any = None) -> Tensor:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    if reduction == "none":
        return L
    total = L.sum()
    if reduction == "sum":
        return total
    return total / denom if denom is not None else G.mean(L)


def mse_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    x = _t(input)
    t = _t(target, x)
    same = t.shape == x.shape and t.dtype == x.dtype and t.ops is x.ops
    if reduction in ("mean", "sum") and same and not t.requires_grad:
        return _squared_error(x, t, reduction == "mean")
    return _reduce((x - t) ** 2, reduction)


def _squared_error(x: Tensor, t: Tensor, mean: bool) -> Tensor:
    """``sum((x - t)**2)`` (over its size when ``mean``) as one node: the loss and its
    gradient in one op (one kernel pass on the host), the gradient kept for the
    backward instead of the three nodes' five temporaries."""
    ops = x.ops
    n = x.data.size if mean else 1
    total, G = ops.squared_error(x.data, t.data, scale=2.0 / max(n, 1))
    L = total / n if n else total * float("nan")  # PyTorch: the mean of none is NaN

    def backward(g: Any) -> tuple[Any]:
        # the usual seed, a host 1: G itself (this node's own; the engine frees the node)
        if ops.is_host and getattr(g, "shape", None) == () and g == 1.0:
            return (G,)
        return (G * g,)

    return record(L, ops, (x,), backward, "mse_loss")


def l1_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    x = _t(input)
    return _reduce(G.abs(x - _t(target, x)), reduction)


def huber_loss(input: Tensor, target: Any, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    x = _t(input)
    d = x - _t(target, x)
    a = G.abs(d)
    quad = G.clamp(a, max=delta)  # |d| up to delta, then linear beyond it
    return _reduce(0.5 * quad * quad + delta * (a - quad), reduction)


def smooth_l1_loss(
    input: Tensor, target: Any, reduction: str = "mean", beta: float = 1.0
) -> Tensor:
    """``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - beta / 2``: the Huber
    loss over ``beta`` (the L1 loss at ``beta = 0``)."""
    if beta < 0:
        raise ValueError(f"smooth_l1_loss does not support negative values for beta, got {beta}")
    if beta == 0:
        return l1_loss(input, target, reduction)
    return huber_loss(input, target, reduction, delta=beta) / beta


def kl_div(input: Tensor, target: Any, reduction: str = "mean", log_target: bool = False) -> Tensor:
    """``target * (log(target) - input)`` for log-probabilities ``input`` (0 where the
    target is 0); ``reduction="batchmean"`` divides the sum by the batch size, as the
    KL divergence's definition asks (``"mean"`` averages every element, as PyTorch)."""
    x = _t(input)
    t = _t(target, x)
    if log_target:
        L = G.exp(t) * (t - x)
    else:
        tiny = float(x.ops.xp.finfo(x.data.dtype).smallest_normal)  # any backend's dtype
        L = t * (G.log(G.clamp(t, min=tiny)) - x)  # t log t -> 0 at t = 0, finite gradient
    if reduction == "batchmean":
        return L.sum() / (x.shape[0] if x.ndim else 1)
    return _reduce(L, reduction)


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> Tensor:
    """``input / max(||input||_p, eps)`` over ``dim``."""
    x = _t(input)
    return x / G.clamp(x.norm(p=p, dim=dim, keepdim=True), min=eps)


def cosine_similarity(x1: Tensor, x2: Any, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """``sum(x1 x2) / (max(||x1||, eps) max(||x2||, eps))`` over ``dim`` (broadcast)."""
    a = _t(x1)
    b = _t(x2, a)
    na = G.clamp(a.norm(p=2, dim=dim, keepdim=True), min=eps)
    nb = G.clamp(b.norm(p=2, dim=dim, keepdim=True), min=eps)
    return ((a / na) * (b / nb)).sum(dim=dim)


def binary_cross_entropy(
    input: Tensor, target: Any, weight: Any = None, reduction: str = "mean"
) -> Tensor:
    """Of probabilities; each log is clamped at -100, as PyTorch's."""
    p = _t(input)
    t = _t(target, p)
    L = -(t * G.clamp(G.log(p), min=-100.0) + (1.0 - t) * G.clamp(G.log(1.0 - p), min=-100.0))
    return _reduce(L if weight is None else L * _t(weight, p), reduction)


def binary_cross_entropy_with_logits(
    input: Tensor, target: Any, weight: Any = None, reduction: str = "mean", pos_weight: Any = None
) -> Tensor:
    """Of logits, computed stably: ``softplus(x) - t * x`` (``pos_weight`` scales the
    positive term, ``pw * t * softplus(-x)``)."""
    x = _t(input)
    t = _t(target, x)
    if pos_weight is None:
        L = G.activation(x, "softplus") - t * x
    else:
        pw = _t(pos_weight, x)
        L = pw * t * G.activation(-x, "softplus") + (1.0 - t) * G.activation(x, "softplus")
    return _reduce(L if weight is None else L * _t(weight, x), reduction)


def nll_loss(
    input: Tensor,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """``-input[n, target[n]]`` of log-probabilities ``(N, C)``, weighted per class;
    ``mean`` divides by the summed weights of the counted targets."""
    x = _t(input)
    y = _t(target, x)
    if x.ndim != 2 or y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"nll_loss expects input (N, C) and target (N,), got {x.shape}, {y.shape}")
    ops, xp = x.ops, x.ops.xp
    Y = y.data
    keep = Y != ignore_index
    safe = xp.where(keep, Y, 0)
    w = ops.xp.astype(keep, x.dtype)
    if weight is not None:
        w = w * _t(weight, x).data[safe]
    picked = G.getitem(x, (ops.arange(x.shape[0]), safe))
    L = -picked * Tensor(w, ops)
    return _reduce(L, reduction, denom=Tensor(xp.sum(w), ops))


def cross_entropy(
    input: Tensor,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Softmax cross-entropy of logits ``(N, C)`` against class indices ``(N,)`` or
    class probabilities ``(N, C)``."""
    x = _t(input)
    y = _t(target, x)
    probs = y.ops.xp.isdtype(y.dtype, "real floating")
    if reduction not in REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    if reduction == "mean" and weight is None and x.ndim == 2:
        # NOTE: on a device, looking for ignored labels would cost a host sync per
        # step: there the fused kernel takes every label (ignore_index unsupported)
        plain = probs or y.ops.device != "cpu" or not bool(y.ops.xp.any(y.data == ignore_index))
        if plain:  # the fused softmax-cross-entropy kernel
            kind = (
                _losses.CategoricalCrossentropy if probs else _losses.SparseCategoricalCrossentropy
            )
            return kind(from_logits=True, label_smoothing=label_smoothing)(y, x)  # type: ignore[no-any-return]
    logp = log_softmax(x, dim=1)
    if probs:
        C = x.shape[1]
        t = y * (1.0 - label_smoothing) + label_smoothing / C
        if weight is not None:
            t = t * _t(weight, x)
        return _reduce(-(logp * t).sum(dim=1), reduction)
    nll = nll_loss(logp, y, weight, ignore_index, reduction)
    if not label_smoothing:
        return nll
    C = x.shape[1]
    keep = Tensor(x.ops.xp.astype(y.data != ignore_index, x.dtype), x.ops)
    w = 1.0 if weight is None else _t(weight, x)
    smooth = -(logp * w).sum(dim=1) * keep / C
    denom = keep.sum() if weight is None else nll_denom(y, weight, ignore_index, x)
    return (1.0 - label_smoothing) * nll + label_smoothing * _reduce(smooth, reduction, denom)


def nll_denom(y: Tensor, weight: Any, ignore_index: int, like: Tensor) -> Tensor:
    xp = like.ops.xp
    keep = y.data != ignore_index
    w = _t(weight, like).data[xp.where(keep, y.data, 0)] * xp.astype(keep, like.dtype)
    return Tensor(xp.sum(w), like.ops)


def max_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               dilation: Any = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> Tensor:  # fmt: skip
    """``nn.MaxPool2d``'s op over (N, C, H, W), as a function (the MNIST example's)."""
    from gpunet.nn.conv import MaxPool2d

    return MaxPool2d(kernel_size, stride, padding, dilation, return_indices, ceil_mode)(input)  # type: ignore[no-any-return]


def avg_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: Any = None) -> Tensor:  # fmt: skip
    from gpunet.nn.conv import AvgPool2d

    pool = AvgPool2d(kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
    return pool(input)  # type: ignore[no-any-return]


from gpunet.nn._adaptive import adaptive_avg_pool1d as adaptive_avg_pool1d  # noqa: E402
from gpunet.nn._adaptive import adaptive_avg_pool2d as adaptive_avg_pool2d  # noqa: E402
from gpunet.nn._adaptive import adaptive_max_pool1d as adaptive_max_pool1d  # noqa: E402
from gpunet.nn._adaptive import adaptive_max_pool2d as adaptive_max_pool2d  # noqa: E402
from gpunet.nn._bilinear import bilinear as bilinear  # noqa: E402
from gpunet.nn._bilinear import gumbel_softmax as gumbel_softmax  # noqa: E402
from gpunet.nn._embedding_bag import embedding_bag as embedding_bag  # noqa: E402
from gpunet.nn._functional_conv import conv1d as conv1d  # noqa: E402
from gpunet.nn._functional_conv import conv2d as conv2d  # noqa: E402
from gpunet.nn._functional_conv import conv_transpose1d as conv_transpose1d  # noqa: E402
from gpunet.nn._functional_conv import conv_transpose2d as conv_transpose2d  # noqa: E402
from gpunet.nn._functional_norms import batch_norm as batch_norm  # noqa: E402
from gpunet.nn._functional_norms import embedding as embedding  # noqa: E402
from gpunet.nn._functional_norms import layer_norm as layer_norm  # noqa: E402
from gpunet.nn._losses_more import cosine_embedding_loss as cosine_embedding_loss  # noqa: E402
from gpunet.nn._losses_more import margin_ranking_loss as margin_ranking_loss  # noqa: E402
from gpunet.nn._losses_more import pairwise_distance as pairwise_distance  # noqa: E402
from gpunet.nn._losses_more import triplet_margin_loss as triplet_margin_loss  # noqa: E402
from gpunet.nn.attention import scaled_dot_product_attention as scaled_dot_product_attention  # noqa: E402
from gpunet.nn.extra import hardtanh as hardtanh  # noqa: E402
from gpunet.nn.extra import logsigmoid as logsigmoid  # noqa: E402
from gpunet.nn.extra import mish as mish  # noqa: E402
from gpunet.nn.extra import prelu as prelu  # noqa: E402
from gpunet.nn.extra import relu6 as relu6  # noqa: E402
from gpunet.nn.extra import softsign as softsign  # noqa: E402
from gpunet.nn.spatial import avg_pool1d as avg_pool1d  # noqa: E402
from gpunet.nn.spatial import interpolate as interpolate  # noqa: E402
from gpunet.nn.spatial import max_pool1d as max_pool1d  # noqa: E402
