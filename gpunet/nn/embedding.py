"""``nn.Embedding``: PyTorch's spelling and initialization of the embedding lookup."""

from __future__ import annotations

from typing import Any

import numpy as np

from gpunet import random as grandom
from gpunet.errors import InvalidParameterError
from gpunet.layers import spec
from gpunet.layers.base import Layer
from gpunet.layers.embedding import lookup
from gpunet.nn._module import TorchModule, torch_param


def table(name: str, num_embeddings: Any, embedding_dim: Any, padding_idx: int | None,
          weight: Any) -> tuple[int | None, np.ndarray]:  # fmt: skip
    """``(padding_idx, W)`` of a PyTorch embedding table, checked: ``padding_idx`` made
    non-negative (as PyTorch keeps it), ``W`` the given ``weight`` or N(0, 1) draws with
    the padding row zero. Shared by ``nn.Embedding`` and ``nn.EmbeddingBag``."""
    for what, n in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidParameterError(f"{name} {what} must be an int >= 1, got {n!r}")
    if padding_idx is not None:
        if not -num_embeddings <= padding_idx < num_embeddings:
            raise InvalidParameterError(
                f"{name} padding_idx must be within [{-num_embeddings}, {num_embeddings}), "
                f"got {padding_idx}"
            )
        padding_idx %= num_embeddings
    shape = (num_embeddings, embedding_dim)
    if weight is None:
        W = grandom.generator("init").standard_normal(shape)
        if padding_idx is not None:
            W[padding_idx] = 0.0
        return padding_idx, W
    W = np.asarray(weight, dtype=np.float64)
    if W.shape != shape:
        raise InvalidParameterError(f"{name} _weight has shape {W.shape}, expected {shape}")
    return padding_idx, W


class Embedding(TorchModule, Layer):
    """A lookup table of ``num_embeddings`` vectors of ``embedding_dim``, ``weight``
    drawn from N(0, 1) as PyTorch's; the row ``padding_idx`` starts at zero and is
    never updated (its gradient is zero).

    Example:
        >>> import numpy as np
        >>> from gpunet import nn
        >>> emb = nn.Embedding(10, 3, padding_idx=0)
        >>> emb(np.array([[0, 4]])).shape, emb.weight.numpy()[0].tolist()
        ((1, 2, 3), [0.0, 0.0, 0.0])
    """

    int_inputs = True

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        _weight: Any = None,
        _freeze: bool = False,
        device: Any = None,
        dtype: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(dtype=None if dtype is None else np.dtype(dtype).name, **kwargs)
        unsupported = {"max_norm": max_norm is not None, "scale_grad_by_freq": scale_grad_by_freq,
                       "sparse": sparse}  # fmt: skip
        if any(unsupported.values()):
            raise InvalidParameterError(
                f"Embedding: {sorted(k for k, v in unsupported.items() if v)} not supported"
            )
        padding_idx, W = table("Embedding", num_embeddings, embedding_dim, padding_idx, _weight)
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = padding_idx
        self.weight = torch_param(self, "weight", W)
        if _freeze:
            self.weight.requires_grad = False
        self.built = True
        if device is not None:
            self.to(device)

    @classmethod
    def from_pretrained(cls, embeddings: Any, freeze: bool = True,
                        padding_idx: int | None = None, **kwargs: Any) -> Embedding:  # fmt: skip
        """An ``Embedding`` holding ``embeddings`` (2-D), frozen unless ``freeze=False``."""
        W = np.asarray(embeddings)
        if W.ndim != 2:
            raise InvalidParameterError(
                f"Embeddings parameter is expected to be 2-dimensional, got {W.shape}"
            )
        return cls(W.shape[0], W.shape[1], padding_idx, _weight=W, _freeze=freeze, **kwargs)

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Any]:
        return lookup(self, ops, self.weight, X, pad=self.padding_idx)

    def weight_specs(self, input_shape: Any) -> list[spec.WeightSpec]:
        return [spec.WeightSpec("weight", (self.num_embeddings, self.embedding_dim))]

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (*input_shape, self.embedding_dim)

    def extra_repr(self) -> str:
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"
