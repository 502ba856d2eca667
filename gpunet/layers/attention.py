"""``MultiHeadAttention`` (Keras 3): projections of query, key and value into heads,
scaled dot-product attention over them (``Ops.attention``: batched GEMMs and a fused
masked softmax), and the output projection, as one graph node.

Weights are Keras' layouts and order (``get_weights``): query, key and value kernels
``(d, heads, key_dim)`` with biases ``(heads, key_dim)``, then the output kernel
``(heads, value_dim, d_out)`` and bias ``(d_out,)``, so ``set_weights`` takes the list
Keras' ``get_weights`` returns.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gpunet import initializers
from gpunet import regularizers as regs
from gpunet.autograd import Tensor
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers import spec
from gpunet.layers._protocol import _node, penalties
from gpunet.layers.base import Backprop, Layer, add_grad


def record_call(layer: Layer, xs: list[Tensor], Y: Any, backprop: Backprop) -> Tensor:
    """Record a ``forward_pass`` result (computed with extra arguments) as one node."""
    return _node(layer, layer.ops, Y, backprop, xs, True)  # type: ignore[no-any-return]


def _positive(layer: str, what: str, n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise InvalidParameterError(f"{layer} {what} must be a positive int, got {n!r}")
    return n


def as_mask(ops: Any, m: Any) -> Any:
    """A boolean mask on ``ops``'s device: True (or a number > 0.5, as Keras) keeps."""
    if not isinstance(m, Tensor):  # host data: made boolean before it moves
        host = np.asarray(m)
        return ops.asarray(host if host.dtype == bool else host > 0.5)
    return m.data if m.data.dtype == ops.xp.bool else m.data > 0.5


@spec.register
class MultiHeadAttention(Layer):
    """Multi-head attention as Keras' ``layers.MultiHeadAttention``.

    Called as ``mha(query, value, key=None, attention_mask=None,
    return_attention_scores=False, training=None, use_causal_mask=False)`` on inputs
    ``(batch, T, d)``; ``attention_mask`` is boolean, True where query ``i`` may attend
    to key ``j``, and broadcasts to ``(batch, Tq, Tk)`` (or ``(batch, heads, Tq, Tk)``).
    The inputs' Keras masks (``_keras_mask``, or ``query_mask``/``value_mask``/
    ``key_mask``) are combined with it, as Keras does. The scores returned with
    ``return_attention_scores`` carry no gradient.

    Args:
        num_heads: Number of attention heads.
        key_dim: Size of each head for query and key.
        value_dim: Size of each head for value (default ``key_dim``).
        dropout: Dropout rate on the attention weights while training.
        use_bias: Whether the projections have biases.
        output_shape: Width of the output (default: the query's last dimension).
        attention_axes: Only None (attention over axis 1 of 3-D inputs) is supported.
        kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer:
            As in ``Dense``, for every projection.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> mha = gn.layers.MultiHeadAttention(num_heads=2, key_dim=4)
        >>> x = np.ones((3, 5, 8), dtype="float32")
        >>> y, scores = mha(x, x, use_causal_mask=True, return_attention_scores=True)
        >>> y.shape, scores.shape
        ((3, 5, 8), (3, 2, 5, 5))
    """

    CONFIG = {
        "num_heads": spec.Int(1), "key_dim": spec.Int(1), "value_dim": spec.Optional(spec.Int(1)),
        "dropout": spec.Float(0.0, 0.999999), "use_bias": spec.Bool(),
        "output_shape": spec.Optional(spec.IntTuple(1, 1)),
        "attention_axes": spec.Optional(spec.IntTuple(1, 1, 1)),
        "kernel_initializer": spec.Initializer(), "bias_initializer": spec.Initializer(),
        "kernel_regularizer": spec.Optional(spec.Regularizer()),
        "bias_regularizer": spec.Optional(spec.Regularizer()),
    }  # fmt: skip
    PROJECTIONS = ("query", "key", "value")
    query_kernel: Any
    key_kernel: Any
    value_kernel: Any
    output_kernel: Any

    def __init__(
        self,
        num_heads: int,
        key_dim: int,
        value_dim: int | None = None,
        dropout: float = 0.0,
        use_bias: bool = True,
        output_shape: Any = None,
        attention_axes: Any = None,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        what = f"MultiHeadAttention {self.name!r}"
        self.num_heads = _positive(what, "num_heads", num_heads)
        self.key_dim = _positive(what, "key_dim", key_dim)
        self.value_dim = None if value_dim is None else _positive(what, "value_dim", value_dim)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise InvalidParameterError(f"{what}: dropout must be a float, got {dropout!r}")
        if not 0.0 <= dropout < 1.0:
            raise InvalidParameterError(f"{what}: dropout must be in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        self.use_bias = bool(use_bias)
        if isinstance(output_shape, int) and not isinstance(output_shape, bool):
            output_shape = (output_shape,)
        if output_shape is not None:
            output_shape = tuple(output_shape)
            if len(output_shape) != 1:
                raise InvalidParameterError(
                    f"{what}: output_shape must be an int (the output width), got "
                    f"{output_shape!r}; several output dimensions are not supported"
                )
            _positive(what, "output_shape", output_shape[0])
        self.output_shape_arg = output_shape
        if attention_axes is not None:
            axes = (attention_axes,) if isinstance(attention_axes, int) else tuple(attention_axes)
            if axes not in ((1,), (-2,)):
                raise InvalidParameterError(
                    f"{what}: attention_axes={attention_axes!r} is not supported; only None "
                    "(attention over axis 1 of inputs (batch, T, d)) is"
                )
            attention_axes = (1,)
        self.attention_axes = attention_axes
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regs.get(kernel_regularizer)
        self.bias_regularizer = regs.get(bias_regularizer)

    @property
    def _value_dim(self) -> int:
        return self.value_dim if self.value_dim is not None else self.key_dim

    # -- shapes and weights ------------------------------------------------------------
    def _shapes(self, input_shape: Any) -> tuple[Any, Any, Any]:
        if not isinstance(input_shape, list) or len(input_shape) not in (2, 3, 4):
            raise InputValidationError(
                f"layer {self.name!r} is called as mha(query, value, key=None); got inputs "
                f"of shape {input_shape!r}"
            )
        q, v = input_shape[0], input_shape[1]
        k = input_shape[2] if len(input_shape) > 2 else v
        return q, v, k

    def weight_specs(self, input_shape: Any) -> list[spec.WeightSpec]:
        q, v, k = self._shapes(input_shape)
        H, dims = self.num_heads, {"query": self.key_dim, "key": self.key_dim,
                                   "value": self._value_dim}  # fmt: skip
        widths = {"query": q[-1], "key": k[-1], "value": v[-1]}
        out = self.output_shape_arg[0] if self.output_shape_arg else q[-1]
        ki, bi, kr, br = (self.kernel_initializer, self.bias_initializer,
                          self.kernel_regularizer, self.bias_regularizer)  # fmt: skip
        specs = []
        for name in self.PROJECTIONS:
            specs.append(spec.WeightSpec(f"{name}_kernel", (widths[name], H, dims[name]), ki,
                                         regularizer=kr))  # fmt: skip
            if self.use_bias:
                specs.append(spec.WeightSpec(f"{name}_bias", (H, dims[name]), bi, regularizer=br))
        specs.append(spec.WeightSpec("output_kernel", (H, self._value_dim, out), ki,
                                     regularizer=kr))  # fmt: skip
        if self.use_bias:
            specs.append(spec.WeightSpec("output_bias", (out,), bi, regularizer=br))
        return specs

    def compute_output_shape(self, input_shape: Any, return_attention_scores: bool = False) -> Any:
        q, _, k = self._shapes(input_shape)
        out = self.output_shape_arg[0] if self.output_shape_arg else q[-1]
        if return_attention_scores:  # (output, scores (batch, heads, Tq, Tk))
            return [(*q[:-1], out), (q[0], self.num_heads, q[1], k[1])]
        return (*q[:-1], out)

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        """The output's mask is the query's (Keras)."""
        if isinstance(mask, (list, tuple)):
            return mask[0] if mask else None
        return mask

    def check_input(self, inputs: Any) -> None:
        if not isinstance(inputs, list) or len(inputs) not in (2, 3):
            raise InputValidationError(
                f"layer {self.name!r} is called as mha(query, value, key=None)"
            )
        names = ("query", "value", "key")
        for name, t in zip(names, inputs, strict=False):
            if t.ndim != 3:
                raise InputValidationError(
                    f"layer {self.name!r}: {name} must have shape (batch, T, features), got "
                    f"{t.shape} (inputs of more dimensions need attention_axes, which is not "
                    "supported)"
                )
            kernel = getattr(self, f"{name}_kernel")
            if t.shape[-1] != kernel.shape[0]:
                raise InputValidationError(
                    f"layer {self.name!r}: {name} has {t.shape[-1]} features, but the layer "
                    f"was built for {kernel.shape[0]} (its {name}_kernel is {kernel.shape})"
                )
        q, v = inputs[0], inputs[1]
        k = inputs[2] if len(inputs) > 2 else v
        if not q.shape[0] == v.shape[0] == k.shape[0]:
            raise InputValidationError(
                f"layer {self.name!r}: query, value and key have batch sizes "
                f"{q.shape[0]}, {v.shape[0]} and {k.shape[0]}; they must be equal"
            )
        if k.shape[1] != v.shape[1]:
            raise InputValidationError(
                f"layer {self.name!r}: key has {k.shape[1]} steps and value {v.shape[1]}; "
                "they must be equal"
            )

    # -- calling -------------------------------------------------------------------------
    def __call__(  # type: ignore[override]
        self,
        query: Any,
        value: Any = None,
        key: Any = None,
        *,
        attention_mask: Any = None,
        return_attention_scores: bool = False,
        training: bool | None = None,
        use_causal_mask: bool = False,
        query_mask: Any = None,
        value_mask: Any = None,
        key_mask: Any = None,
    ) -> Any:
        from gpunet.engine import functional

        if isinstance(query, (list, tuple)) and value is None:  # [q, v, k, mask] (a replay)
            parts = list(query)
            query, value = parts[0], parts[1] if len(parts) > 1 else None
            key = parts[2] if len(parts) > 2 else None
            attention_mask = parts[3] if len(parts) > 3 else attention_mask
        if value is None:
            raise InputValidationError(
                f"layer {self.name!r} is called as mha(query, value, key=None): value is missing"
            )
        kw: dict[str, Any] = {}
        if use_causal_mask:
            kw["use_causal_mask"] = True
        if return_attention_scores:
            kw["return_attention_scores"] = True
        same_key = key is None or key is value
        inputs = [query, value] if same_key else [query, value, key]
        if functional.is_symbolic(inputs):
            if functional.is_symbolic(attention_mask):
                inputs = [query, value, value if same_key else key, attention_mask]
            elif attention_mask is not None:
                raise InvalidParameterError(
                    f"layer {self.name!r}: in a functional model attention_mask must be a "
                    "gn.Input (or another symbolic tensor)"
                )
            return super().__call__(inputs, training=training, **kw)
        masks = [
            query_mask if query_mask is not None else getattr(query, "_keras_mask", None),
            value_mask if value_mask is not None else getattr(value, "_keras_mask", None),
            None if same_key else (key_mask if key_mask is not None
                                   else getattr(key, "_keras_mask", None)),
        ]  # fmt: skip
        kw["attention_mask"] = (attention_mask, masks)
        out = super().__call__(inputs, training=training, **kw)
        if masks[0] is not None:  # the output keeps the query's mask (Keras)
            y = out[0] if isinstance(out, tuple) else out
            try:
                y._keras_mask = masks[0]
            except AttributeError:  # a Tensor without the mask slot
                pass
        return out

    def call(  # type: ignore[override]
        self,
        inputs: list[Tensor],
        training: bool = False,
        attention_mask: Any = None,
        use_causal_mask: bool = False,
        return_attention_scores: bool = False,
    ) -> Any:
        ops = self.ops
        explicit, masks = attention_mask if isinstance(attention_mask, tuple) else (None, [])
        X = [x.data for x in inputs]
        mask = self.combined_mask(ops, X, explicit, masks, use_causal_mask)
        penalties(self)
        Y, backprop, P = self._forward(ops, X, training, mask, use_causal_mask,
                                       return_attention_scores)  # fmt: skip
        out = record_call(self, inputs, Y, backprop)
        return (out, Tensor(P, ops)) if return_attention_scores else out

    def combined_mask(
        self, ops: Any, X: list[Any], explicit: Any, masks: list[Any], causal: bool
    ) -> Any:
        """``attention_mask`` and the inputs' masks as one boolean ``(B|1, H|1, Tq, Tk)``
        array (None when nothing is masked). Raises on shapes that do not broadcast."""
        xp = ops.xp
        B, Tq, Tk = X[0].shape[0], X[0].shape[1], X[1].shape[1]
        if causal and Tq != Tk:
            raise InputValidationError(
                f"layer {self.name!r}: use_causal_mask needs query and key of one length, "
                f"got {Tq} query and {Tk} key steps"
            )
        keep = None
        named = [(masks[0] if masks else None, -1, Tq, "query_mask"),
                 (masks[1] if len(masks) > 1 else None, -2, Tk, "value_mask"),
                 (masks[2] if len(masks) > 2 else None, -2, Tk, "key_mask")]  # fmt: skip
        for m, axis, n, what in named:
            if m is None:
                continue
            arr = as_mask(ops, m)
            if tuple(arr.shape) != (B, n):
                raise InputValidationError(
                    f"layer {self.name!r}: {what} must have shape {(B, n)}, got {tuple(arr.shape)}"
                )
            arr = xp.reshape(arr, (B, 1, n, 1) if axis == -1 else (B, 1, 1, n))
            keep = arr if keep is None else xp.logical_and(keep, arr)
        if explicit is not None:
            arr = as_mask(ops, explicit)
            shape = tuple(arr.shape)
            full = (B, self.num_heads, Tq, Tk)
            if arr.ndim < 4 and arr.ndim >= 2:
                arr = xp.reshape(arr, (*shape[:-2], 1, *shape[-2:]))
            ok = (
                arr.ndim <= 4
                and arr.ndim >= 2
                and all(a in (1, b) for a, b in zip(arr.shape[::-1], full[::-1], strict=False))
            )
            if not ok:
                raise InputValidationError(
                    f"layer {self.name!r}: attention_mask of shape {shape} does not broadcast "
                    f"to (batch, Tq, Tk) = {(B, Tq, Tk)} (or (batch, heads, Tq, Tk))"
                )
            keep = arr if keep is None else xp.logical_and(keep, arr)
        return keep

    def forward_pass(self, ops: Any, X: Any, training: bool) -> tuple[Any, Backprop]:
        """Unmasked attention on arrays ``[query, value(, key)]``."""
        Y, backprop, _ = self._forward(ops, X, training, None, False, False)
        return Y, backprop

    def _project(self, ops: Any, X: Any, name: str) -> tuple[Any, Any]:
        """``X (B, T, d) -> (B, H, T, dh)`` through ``{name}_kernel``; and its backprop."""
        xp = ops.xp
        W, b = getattr(self, f"{name}_kernel"), getattr(self, f"{name}_bias", None)
        B, T, d = X.shape
        H, dh = W.shape[1], W.shape[2]
        X2, W2 = xp.reshape(X, (B * T, d)), xp.reshape(W.data, (d, H * dh))
        Y = ops.gemm(X2, W2)
        if b is not None:
            Y = Y + xp.reshape(b.data, (H * dh,))
        Y = xp.permute_dims(xp.reshape(Y, (B, T, H, dh)), (0, 2, 1, 3))

        def backprop(dY: Any, need_dX: bool) -> Any:
            dY2 = xp.reshape(xp.permute_dims(dY, (0, 2, 1, 3)), (B * T, H * dh))
            add_grad(W, xp.reshape(ops.gemm(X2, dY2, trans1=True), W.shape))
            if b is not None:
                add_grad(b, xp.reshape(xp.sum(dY2, axis=0), b.shape))
            return xp.reshape(ops.gemm(dY2, W2, trans2=True), (B, T, d)) if need_dX else None

        return Y, backprop

    def _forward(
        self, ops: Any, X: Any, training: bool, mask: Any, causal: bool, keep_probs: bool
    ) -> tuple[Any, Backprop, Any]:
        xp = ops.xp
        self_key = len(X) < 3
        q, v = X[0], X[1]
        k = v if self_key else X[2]
        Q, bq = self._project(ops, q, "query")
        K, bk = self._project(ops, k, "key")
        V, bv = self._project(ops, v, "value")
        rate = self.dropout if training else 0.0
        A, P, cache = ops.attention(Q, K, V, mask, scale=1.0 / math.sqrt(self.key_dim),
                                    causal=causal, dropout=rate, keep_probs=keep_probs)  # fmt: skip
        B, H, Tq, dv = A.shape
        A2 = xp.reshape(xp.permute_dims(A, (0, 2, 1, 3)), (B * Tq, H * dv))
        Wo, bo = self.output_kernel, getattr(self, "output_bias", None)
        Wo2 = xp.reshape(Wo.data, (H * dv, Wo.shape[2]))
        Y = ops.gemm(A2, Wo2)
        if bo is not None:
            Y = Y + bo.data

        def backprop(dY: Any, need_dX: bool) -> list[Any]:
            dY2 = xp.reshape(dY, (B * Tq, Wo.shape[2]))
            add_grad(Wo, xp.reshape(ops.gemm(A2, dY2, trans1=True), Wo.shape))
            if bo is not None:
                add_grad(bo, xp.sum(dY2, axis=0))
            dA = xp.permute_dims(xp.reshape(ops.gemm(dY2, Wo2, trans2=True), (B, Tq, H, dv)),
                                 (0, 2, 1, 3))  # fmt: skip
            dQ, dK, dV = ops.backprop_attention(dA, cache)
            dq = bq(dQ, need_dX)
            dk, dv_ = bk(dK, need_dX), bv(dV, need_dX)
            if self_key:
                return [dq, None if dv_ is None else dv_ + dk]
            return [dq, dv_, dk]

        return xp.reshape(Y, (B, Tq, Wo.shape[2])), backprop, P

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update({
            "output_shape": None if self.output_shape_arg is None else list(self.output_shape_arg),
            "attention_axes": None if self.attention_axes is None else list(self.attention_axes),
            "kernel_initializer": initializers.name_of(self.kernel_initializer),
            "bias_initializer": initializers.name_of(self.bias_initializer),
            "kernel_regularizer": _reg_cfg(self.kernel_regularizer),
            "bias_regularizer": _reg_cfg(self.bias_regularizer),
        })  # fmt: skip
        return cfg


def _reg_cfg(r: Any) -> Any:
    return None if r is None else r.get_config()
