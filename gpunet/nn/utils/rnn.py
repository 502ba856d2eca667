"""``torch.nn.utils.rnn``: batching sequences of different lengths."""

from __future__ import annotations

from typing import Any

from gpunet.autograd import Tensor, as_tensor, record
from gpunet.errors import InputValidationError


def pad_sequence(
    sequences: Any, batch_first: bool = False, padding_value: float = 0.0,
    padding_side: str = "right",
) -> Tensor:  # fmt: skip
    """Stack tensors of shape ``(L_i, *)`` into ``(L_max, B, *)`` (``(B, L_max, *)``
    with ``batch_first``), padding with ``padding_value``; differentiable, as PyTorch's.

    Raises:
        InputValidationError: for no sequences, or trailing shapes that differ.

    Example:
        >>> import numpy as np
        >>> from gpunet.nn.utils.rnn import pad_sequence
        >>> pad_sequence([np.array([1.0, 2.0]), np.array([3.0])], batch_first=True).numpy()
        array([[1., 2.],
               [3., 0.]])
    """
    if padding_side not in ("right", "left"):
        raise InputValidationError(
            f"pad_sequence padding_side must be 'right' or 'left', got {padding_side!r}"
        )
    seqs = list(sequences)
    if not seqs:
        raise InputValidationError("pad_sequence got no sequences; expected at least one")
    ops = next((s.ops for s in seqs if isinstance(s, Tensor)), None)
    if ops is None:
        from gpunet.backend import get_ops

        ops = get_ops("cpu")
    ts = [as_tensor(s, ops) for s in seqs]
    rest = tuple(ts[0].shape[1:])
    for i, t in enumerate(ts):
        if t.ndim < 1 or tuple(t.shape[1:]) != rest:
            raise InputValidationError(
                f"pad_sequence: sequence {i} has shape {t.shape}; expected (length, *{rest}) "
                "like sequence 0"
            )
    xp, L = ops.xp, max(int(t.shape[0]) for t in ts)
    dtype = ts[0].dtype
    Y = xp.full((len(ts), L, *rest), padding_value, dtype=dtype, **ops.device_kw)
    spans = []
    for b, t in enumerate(ts):
        n = int(t.shape[0])
        start = 0 if padding_side == "right" else L - n
        Y[b, start : start + n, ...] = xp.astype(t.data, dtype)
        spans.append((start, start + n))
    if not batch_first:
        Y = xp.permute_dims(Y, (1, 0, *range(2, Y.ndim)))

    def backward(dY: Any) -> tuple[Any, ...]:
        if not batch_first:
            dY = xp.permute_dims(dY, (1, 0, *range(2, dY.ndim)))
        return tuple(dY[b, s:e, ...] for b, (s, e) in enumerate(spans))

    return record(Y, ops, tuple(ts), backward, "pad_sequence")
