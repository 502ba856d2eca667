"""Mask plumbing of the layer protocol (see ``gpunet.layers.masking`` for the rules):
which layers take, make and pass masks, and the checks. Imports no layer module, so
``gpunet.layers.base`` can use it."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from gpunet.autograd import Tensor
from gpunet.errors import InputValidationError

_TAKES: dict[type, bool] = {}
_MAKES: dict[type, bool] = {}
_NAMED: dict[type, tuple[tuple[int, str, str], ...]] = {}


def _is_base(cls: type, name: str) -> bool:
    """Whether ``cls.<name>`` is the one of ``gpunet.layers.base.Layer``."""
    for c in cls.__mro__:
        if name in c.__dict__:
            return c.__module__ == "gpunet.layers.base" and c.__name__ == "Layer"
    return True


def takes_mask(layer: Any) -> bool:
    """Whether ``layer`` is given the mask of its input: its ``call`` (or, for a layer
    that runs its ``forward_pass``, that) names a ``mask`` parameter."""
    cls = type(layer)
    known = _TAKES.get(cls)
    if known is None:
        fn = cls.forward_pass if _is_base(cls, "call") else cls.call
        code = getattr(fn, "__code__", None)
        n = 0 if code is None else code.co_argcount + code.co_kwonlyargcount
        known = _TAKES[cls] = code is not None and "mask" in code.co_varnames[:n]
    return known


def makes_mask(cls: type) -> bool:
    """Whether the layer type has a ``compute_mask`` of its own."""
    own = _MAKES.get(cls)
    if own is None:
        own = _MAKES[cls] = not _is_base(cls, "compute_mask")
    return own


def supports(layer: Any) -> bool:
    """Keras' ``supports_masking``: set by the layer, or a ``compute_mask`` of its own."""
    return makes_mask(type(layer)) or bool(getattr(layer, "supports_masking", False))


def mask_of(x: Any) -> Any:
    """The mask a tensor (or each tensor of a list) carries; None when none does."""
    if isinstance(x, (list, tuple)):
        masks = [getattr(v, "_keras_mask", None) for v in x]
        return None if all(m is None for m in masks) else masks
    return getattr(x, "_keras_mask", None)


def _named(cls: type) -> tuple[tuple[int, str, str], ...]:
    """``(position, argument, its mask parameter)`` for each tensor argument of ``call``
    with a ``<argument>_mask`` parameter (``query`` and ``query_mask``...), cached."""
    known = _NAMED.get(cls)
    if known is None:
        code = getattr(getattr(cls, "call", None), "__code__", None)
        names = (
            () if code is None else code.co_varnames[1 : code.co_argcount + code.co_kwonlyargcount]
        )
        known = _NAMED[cls] = tuple(
            (i, a, f"{a}_mask") for i, a in enumerate(names) if f"{a}_mask" in names
        )
    return known


def take(layer: Any, inputs: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The input mask of a call (``mask=`` given, else the one its first argument
    carries), checked; put in ``kwargs`` when the layer takes it. A call with several
    tensor arguments and ``<argument>_mask`` parameters is given each one's (Keras)."""
    if not getattr(layer, "keras_masks", True):  # a gn.nn module: its ``mask`` is its own
        return None
    named = _named(type(layer))
    if named:
        for i, arg, key in named:
            x = args[i] if i < len(args) else kwargs.get(arg)
            m = getattr(x, "_keras_mask", None)
            if m is not None and kwargs.get(key) is None:
                kwargs[key] = m
    mask = kwargs.pop("mask", None) if kwargs else None
    if mask is None:  # (the hot path: one attribute read)
        first = args[0]  # (before any cast, which makes a new tensor)
        mask = first._keras_mask if type(first) is Tensor else mask_of(first)
        if mask is None:
            return None
    mask = check(layer, mask, inputs)
    if mask is not None and takes_mask(layer):
        kwargs["mask"] = mask
    return mask


def check(layer: Any, mask: Any, inputs: Any) -> Any:
    """``mask`` as a boolean device array that fits ``inputs``, or a clear error.

    Raises:
        InputValidationError: for a mask whose shape is not the leading axes of the
            input's (``(batch, time)`` for ``(batch, time, features)``).
    """
    if mask is None or isinstance(mask, list) or not isinstance(inputs, Tensor):
        return mask
    ops = inputs.ops
    if isinstance(mask, Tensor):
        mask = mask.data
    if not hasattr(mask, "shape") or not hasattr(mask, "dtype") or isinstance(mask, np.ndarray):
        mask = ops.asarray(np.asarray(mask))
    shape, want = tuple(mask.shape), tuple(inputs.shape)
    if not 1 <= len(shape) <= len(want) or shape != want[: len(shape)]:
        raise InputValidationError(
            f"layer {layer.name!r} got a mask of shape {shape} for an input of shape {want}; "
            f"expected a boolean mask of shape {want[:2]} (batch, time)"
        )
    if mask.dtype != ops.dtype("bool"):
        mask = ops.xp.astype(mask, ops.dtype("bool"))
    return mask


def attach(layer: Any, inputs: Any, out: Any, mask: Any) -> None:
    """Set the mask of ``out`` after ``layer(inputs)`` given the input ``mask``."""
    if not supports(layer):
        if mask is not None:
            warnings.warn(
                f"Layer '{layer.name}' (of type {type(layer).__name__}) was passed an input "
                "with a mask attached to it. However, this layer does not support masking "
                "and will therefore destroy the mask information. Downstream layers will "
                "not see the mask.",
                stacklevel=3,
            )
        return
    if mask is None and not makes_mask(type(layer)):
        return
    outs = out if isinstance(out, (list, tuple)) else [out]
    if all(getattr(t, "_keras_mask", None) is not None for t in outs):
        return  # the layer set them itself
    new = layer.compute_mask(inputs, mask)
    if new is None:
        return
    for t, m in zip(outs, new if isinstance(new, (list, tuple)) else [new], strict=False):
        if isinstance(t, Tensor) and t._keras_mask is None and m is not None:
            t._keras_mask = m.data if isinstance(m, Tensor) else m


def merged(mask: Any) -> Any:
    """An elementwise merge's mask (Keras): the OR of its inputs' masks, None unless
    every input has one."""
    if mask is None or any(m is None for m in mask):
        return None
    out = mask[0]
    for m in mask[1:]:
        out = out | m
    return out


def concatenated(xp: Any, inputs: Any, mask: Any, axis: int) -> Any:
    """``Concatenate``'s mask (Keras): each input's mask (all True where it has none)
    broadcast to its shape, joined along ``axis``, then any over the last axis."""
    if mask is None or all(m is None for m in mask):
        return None
    parts = []
    for x, m in zip(inputs, mask, strict=True):
        X = x.data if isinstance(x, Tensor) else x
        full = xp.ones_like(X, dtype=xp.bool) if m is None else m
        if m is not None and m.ndim < X.ndim:
            lift = (*m.shape, *(1,) * (X.ndim - m.ndim))
            full = xp.broadcast_to(xp.reshape(m, lift), X.shape)
        parts.append(full)
    return xp.any(xp.concat(parts, axis=axis % parts[0].ndim), axis=-1)


def next_mask(layer: Any, X: Any, mask: Any) -> Any:
    """The graph-free step's mask after ``layer`` on the array ``X`` (None when none)."""
    if mask is None and not makes_mask(type(layer)):
        return None  # (the common case: nothing makes or carries one)
    return layer.compute_mask(X, mask) if supports(layer) else None


def symbolic(layer: Any, inputs: Any, mask: Any) -> Any:
    """The symbolic mask of ``layer``'s output on symbolic ``inputs`` (None when none):
    ``compute_mask`` run on a batch of one, its shape kept, batch axis unknown."""
    from gpunet.engine.functional import SymbolicTensor, flatten, rebuild

    if not supports(layer):
        if mask is not None:
            attach(layer, None, None, mask)  # Keras' warning, at model construction
        return None
    if not makes_mask(type(layer)):
        return mask  # passed through unchanged
    ops = layer.ops

    def probe(t: Any, fill: Any) -> Any:
        if t is None:
            return None
        shape = [1 if d is None else d for d in t.shape]
        return Tensor(ops.asarray(np.full(shape, fill, dtype=t.dtype)), ops)

    X = rebuild(inputs, iter([probe(t, 0) for t in flatten(inputs)]))
    M = [probe(m, True) for m in mask] if isinstance(mask, list) else probe(mask, True)
    out = layer.compute_mask(X, [None if m is None else m.data for m in M]
                             if isinstance(M, list) else None if M is None else M.data)  # fmt: skip
    if isinstance(out, (list, tuple)):  # one mask per output (``return_state``)
        return [
            None
            if m is None
            else SymbolicTensor((None, *tuple(m.shape)[1:]), "bool", name=f"{layer.name}_mask")
            for m in out
        ]
    if out is None:
        return None
    return SymbolicTensor((None, *tuple(out.shape)[1:]), "bool", name=f"{layer.name}_mask")


def masked_loss(loss: Any, y_true: Any, y_pred: Tensor, sample_weight: Any, mask: Any) -> Any:
    """Keras' loss of a sequence output with a ``(batch, time)`` mask: the padded
    steps weigh 0 and, for a mean, the real ones ``steps / real steps``, so the loss is
    the mean over the real steps (times any sample weights, one per sequence)."""
    from gpunet import functional as F

    ops = y_pred.ops
    xp, lead, N = ops.xp, tuple(mask.shape), int(np.prod(mask.shape))

    def rows(a: Any) -> Any:
        if isinstance(a, Tensor):
            return F.reshape(a, (N, *a.shape[len(lead) :]))
        a = a if hasattr(a, "shape") else np.asarray(a)
        space = np if isinstance(a, np.ndarray) else xp
        return space.reshape(a, (N, *tuple(a.shape)[len(lead) :]))

    W = xp.astype(mask, y_pred.dtype)
    if loss.reduction in ("sum_over_batch_size", "mean"):
        valid = xp.sum(W)
        W = W * xp.where(valid > 0, N / xp.where(valid > 0, valid, 1), 0)
    sw = sample_weight.data if isinstance(sample_weight, Tensor) else sample_weight
    if sw is not None and tuple(getattr(sw, "shape", ())) == lead:  # per step (Keras)
        W = W * xp.astype(ops.asarray(sw) if isinstance(sw, np.ndarray) else sw, W.dtype)
    elif sw is not None:  # per sequence: every step of it
        sw = loss._sample_weight(sample_weight, y_pred)
        W = W * xp.reshape(sw, (sw.shape[0], *(1,) * (len(lead) - 1)))
    out = loss(rows(y_true), rows(y_pred), xp.reshape(W, (N,)))
    return F.reshape(out, lead) if loss.reduction in ("none", None) else out
