"""``Embedding``: rows of a weight matrix looked up by integer id (Keras), and the
id checks and the array pass it shares with ``gn.nn.Embedding``."""

from __future__ import annotations

import warnings
from typing import Any

from gpunet import initializers
from gpunet import regularizers as regs
from gpunet.autograd import Tensor
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers import spec
from gpunet.layers.base import Backprop, Layer, add_grad, grad_out


def check_ids(layer: Any, ops: Any, ids: Any, n: int) -> Any:
    """``ids`` as integers in ``[0, n)`` (floats are cast, as Keras does), or a clear
    error naming the layer, the bad id and the range.

    The range is read back from the device: one small read per call, a sync on a GPU.
    """
    xp = ops.xp
    if not xp.isdtype(ids.dtype, "integral"):
        if xp.isdtype(ids.dtype, "bool") or not xp.isdtype(ids.dtype, "real floating"):
            raise InputValidationError(
                f"layer {layer.name!r} takes integer ids, got an input of dtype "
                f"{str(ids.dtype).rsplit('.', 1)[-1]}"
            )
        ids = xp.astype(ids, ops.dtype("int32"))
    if ids.size == 0:
        return ids
    lo_hi = ops.to_numpy(xp.stack([xp.min(ids), xp.max(ids)]))
    lo, hi = int(lo_hi[0]), int(lo_hi[1])
    if lo < 0 or hi >= n:
        bad = lo if lo < 0 else hi
        raise InputValidationError(
            f"layer {layer.name!r} got id {bad}, outside the range [0, {n}) of its "
            f"{n} embeddings (ids must be integers from 0 to {n - 1})"
        )
    return ids


def lookup(layer: Any, ops: Any, W: Any, X: Any, pad: int | None = None
           ) -> tuple[Any, Backprop]:  # fmt: skip
    """``W[X]`` and its backprop (a segment sum into ``W``'s gradient; the row ``pad``
    gets none, as PyTorch's ``padding_idx``)."""
    xp = ops.xp
    n, D = int(W.shape[0]), int(W.shape[1])
    ids = check_ids(layer, ops, X, n)
    Y = xp.reshape(xp.take(W.data, xp.reshape(ids, (-1,)), axis=0), (*ids.shape, D))

    def backprop(dY: Any, need_dX: bool) -> Any:
        if W.requires_grad:
            dW = ops.embedding_backward(ids, dY, n, out=grad_out(W))
            if pad is not None:
                dW[pad, ...] = 0
            add_grad(W, dW)
        return None  # ids have no gradient

    return Y, backprop


@spec.register
class Embedding(Layer):
    """Turn integer ids into dense vectors: row ``i`` of ``embeddings`` for id ``i``.

    Args:
        input_dim: Number of ids (the vocabulary size; ids run from 0 to
            ``input_dim - 1``).
        output_dim: Width of each vector.
        embeddings_initializer: Initializer of ``embeddings`` (default ``"uniform"``,
            uniform in [-0.05, 0.05] as Keras').
        embeddings_regularizer: ``"l1"``, ``"l2"``, ``gn.regularizers.L1L2(...)`` or None.
        mask_zero: Id 0 is padding: the output carries a mask, False where the id is
            0, for the layers that read masks (so ``input_dim`` counts the 0).

    Example:
        >>> import numpy as np, gpunet as gn
        >>> layer = gn.layers.Embedding(10, 3, mask_zero=True)
        >>> y = layer(np.array([[4, 2, 0]]))
        >>> y.shape, y._keras_mask.tolist()
        ((1, 3, 3), [[True, True, False]])
    """

    CONFIG = {
        "input_dim": spec.Int(1), "output_dim": spec.Int(1), "mask_zero": spec.Bool(),
        "embeddings_initializer": spec.Initializer(),
        "embeddings_regularizer": spec.Optional(spec.Regularizer()),
    }  # fmt: skip
    int_inputs = True

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        embeddings_initializer: Any = "uniform",
        embeddings_regularizer: Any = None,
        mask_zero: bool = False,
        input_length: int | None = None,
        **kwargs: Any,
    ) -> None:
        for what, v in (("input_dim", input_dim), ("output_dim", output_dim)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise InvalidParameterError(f"Embedding {what} must be a positive int, got {v!r}")
        if input_length is not None:  # Keras 3 warns the same
            warnings.warn("Argument `input_length` is deprecated. Just remove it.", stacklevel=2)
        super().__init__(**kwargs)
        self.input_dim, self.output_dim = input_dim, output_dim
        self.mask_zero = bool(mask_zero)
        self.supports_masking = self.mask_zero
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = regs.get(embeddings_regularizer)
        self.embeddings: Any = None

    def weight_specs(self, input_shape: Any) -> list[spec.WeightSpec]:
        return [
            spec.WeightSpec(
                "embeddings", (self.input_dim, self.output_dim), self.embeddings_initializer,
                regularizer=self.embeddings_regularizer,
            )
        ]  # fmt: skip

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (*input_shape, self.output_dim)

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        if not self.mask_zero:
            return None
        X = inputs.data if isinstance(inputs, Tensor) else inputs
        return X != 0

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        return lookup(self, ops, self.embeddings, X)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "embeddings_initializer": initializers.name_of(self.embeddings_initializer),
            "embeddings_regularizer": None
            if self.embeddings_regularizer is None
            else self.embeddings_regularizer.get_config(),
        }
