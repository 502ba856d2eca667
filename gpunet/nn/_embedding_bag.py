"""``nn.EmbeddingBag`` and ``F.embedding_bag``: the sum, mean or max of each bag of
looked-up rows without the per-row output (PyTorch's text-classification tutorial
feeds it one flat tensor of token ids with the offsets where each text starts).

Example:
    >>> import numpy as np, gpunet as gn
    >>> W = gn.tensor(np.arange(8.0).reshape(4, 2))
    >>> gn.nn.functional.embedding_bag(gn.tensor([0, 1, 3]), W, gn.tensor([0, 2])).tolist()
    [[1.0, 2.0], [6.0, 7.0]]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpunet.autograd import Tensor
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers.base import Layer
from gpunet.nn._functional_norms import _tensor, embedding, same_dtype
from gpunet.nn._module import TorchModule, torch_param
from gpunet.nn.embedding import table

MODES = ("sum", "mean", "max")


def _bags(ids: np.ndarray, offsets: Any, last: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """``(flat ids, starts, end)``: 2-D ids are bags of their row length; 1-D ones start
    at ``offsets``, the last running to the input's end."""
    if ids.ndim == 2:
        if offsets is not None:
            raise InputValidationError("embedding_bag: offsets must be None for 2-D input")
        B, L = ids.shape
        return ids.reshape(-1), np.arange(B) * L, ids.size
    if ids.ndim != 1 or offsets is None:
        raise InputValidationError(
            f"embedding_bag: input must be 2-D (bags, length), or 1-D with offsets; got shape "
            f"{ids.shape} and offsets {'None' if offsets is None else 'given'}"
        )
    raw = offsets.numpy() if isinstance(offsets, Tensor) else offsets
    starts = np.asarray(raw).astype(np.int64)
    if starts.ndim != 1 or (starts.size and (starts[0] != 0 or (np.diff(starts) < 0).any())):
        raise InputValidationError(
            f"embedding_bag: offsets must be 1-D, start at 0 and not decrease, got {starts}"
        )
    if starts.size and starts[-1] > ids.size:
        raise InputValidationError(
            f"embedding_bag: offsets' last entry {int(starts[-1])} is past the input's "
            f"{ids.size} ids"
        )
    # include_last_offset: the final entry starts no bag; the last bag still runs to
    # the input's end (as PyTorch's CPU kernel, whatever that entry says)
    return ids, (starts[:-1] if last and starts.size else starts), ids.size


def embedding_bag(
    input: Any, weight: Tensor, offsets: Any = None, max_norm: float | None = None,
    norm_type: float = 2.0, scale_grad_by_freq: bool = False, mode: str = "mean",
    sparse: bool = False, per_sample_weights: Any = None, include_last_offset: bool = False,
    padding_idx: int | None = None,
) -> Tensor:  # fmt: skip
    """Each bag's rows of ``weight`` reduced by ``mode``; ids equal to ``padding_idx``
    are left out of their bag (a bag with none left is zeros, as an empty one);
    ``per_sample_weights`` scale the rows (``mode="sum"`` only)."""
    if mode not in MODES:
        raise InvalidParameterError(f"embedding_bag: mode must be one of {MODES}, got {mode!r}")
    if per_sample_weights is not None and mode != "sum":
        raise InvalidParameterError(
            f"embedding_bag: per_sample_weights is only supported for mode='sum', got mode={mode!r}"
        )
    W = _tensor(weight)
    ids_t = _tensor(input, W)
    ids, starts, end = _bags(np.asarray(ids_t.numpy()), offsets, include_last_offset)
    n = int(W.shape[0])
    if padding_idx is not None:
        if not -n <= padding_idx < n:
            raise InputValidationError(
                f"embedding_bag: padding_idx must be within [{-n}, {n}), got {padding_idx}"
            )
        padding_idx %= n
    B = len(starts)
    # each id's bag (-1: after the last bag's end), padding ids left out
    bag = np.full(ids.size, -1, np.int64)
    bag[:end] = np.repeat(np.arange(B), np.diff(np.append(starts, end)))
    kept = np.flatnonzero((bag >= 0) if padding_idx is None else (bag >= 0) & (ids != padding_idx))
    counts = np.bincount(bag[kept], minlength=B)
    # the kept positions bag by bag, padded to the longest bag by a sentinel row (ids.size)
    slot = np.full((B, max(int(counts.max(initial=0)), 1)), ids.size, np.int64)
    slot[bag[kept], np.arange(kept.size) - np.repeat(np.cumsum(counts) - counts, counts)] = kept
    rows = embedding(Tensor(W.ops.asarray(ids), W.ops), W, None, max_norm, norm_type)
    if per_sample_weights is not None:
        w = _tensor(per_sample_weights, W)
        same_dtype("embedding_bag", W, per_sample_weights=w)
        if tuple(w.shape) != tuple(ids_t.shape):
            raise InputValidationError(
                f"embedding_bag: per_sample_weights must have the input's shape "
                f"{tuple(ids_t.shape)}, got {tuple(w.shape)}"
            )
        rows = rows * w.reshape(-1, 1)
    fill = -np.inf if mode == "max" else 0.0
    sentinel = Tensor(W.ops.full((1, int(W.shape[1])), fill, rows.dtype), W.ops)
    from gpunet import functional as G

    # the block gathered as a lookup itself: a take and a segment-sum backward on any backend
    padded = embedding(Tensor(W.ops.asarray(slot), W.ops), G.concat([rows, sentinel], axis=0))
    if mode == "sum":
        return padded.sum(dim=1)  # type: ignore[no-any-return]
    some = Tensor(W.ops.asarray((counts > 0)[:, None]), W.ops)
    if mode == "mean":
        div = Tensor(W.ops.asarray(np.maximum(counts, 1)[:, None], dtype=rows.dtype), W.ops)
        return padded.sum(dim=1) / div  # type: ignore[no-any-return]
    return G.where(some, padded.max(dim=1).values, 0.0)


class EmbeddingBag(TorchModule, Layer):
    """``nn.EmbeddingBag(num_embeddings, embedding_dim, mode="mean", ...)``: ``weight``
    drawn from N(0, 1) (the ``padding_idx`` row zero); ``forward(input, offsets=None,
    per_sample_weights=None)`` as :func:`embedding_bag`."""

    int_inputs = True

    def __init__(
        self, num_embeddings: int, embedding_dim: int, max_norm: float | None = None,
        norm_type: float = 2.0, scale_grad_by_freq: bool = False, mode: str = "mean",
        sparse: bool = False, _weight: Any = None, include_last_offset: bool = False,
        padding_idx: int | None = None, device: Any = None, dtype: Any = None,
    ) -> None:  # fmt: skip
        super().__init__(dtype=None if dtype is None else np.dtype(dtype).name)
        if mode not in MODES:
            raise InvalidParameterError(f"EmbeddingBag mode must be one of {MODES}, got {mode!r}")
        if scale_grad_by_freq or sparse:
            raise InvalidParameterError("EmbeddingBag: scale_grad_by_freq and sparse are not "
                                        "supported")  # fmt: skip
        padding_idx, W = table("EmbeddingBag", num_embeddings, embedding_dim, padding_idx,
                               _weight)  # fmt: skip
        self.num_embeddings, self.embedding_dim, self.mode = num_embeddings, embedding_dim, mode
        self.max_norm, self.norm_type, self.padding_idx = max_norm, norm_type, padding_idx
        self.include_last_offset = bool(include_last_offset)
        self.weight = torch_param(self, "weight", W)
        self.built = True
        if device is not None:
            self.to(device)

    def call(self, input: Any, offsets: Any = None, per_sample_weights: Any = None,  # type: ignore[override]
             training: bool = False) -> Tensor:  # fmt: skip
        return embedding_bag(input, self.weight, offsets, self.max_norm, self.norm_type,
                             mode=self.mode, per_sample_weights=per_sample_weights,
                             include_last_offset=self.include_last_offset,
                             padding_idx=self.padding_idx)  # fmt: skip

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, mode={self.mode!r}"
