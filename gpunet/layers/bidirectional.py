"""``Bidirectional``: a recurrent layer read forwards and a copy read backwards, their
outputs merged (Keras)."""

from __future__ import annotations

from typing import Any

from gpunet.autograd import Tensor
from gpunet.errors import InvalidParameterError
from gpunet.layers import spec
from gpunet.layers._protocol import penalties
from gpunet.layers.base import Backprop, Layer
from gpunet.layers.recurrent import _RNN, record_outputs

MERGE_MODES = ("concat", "sum", "mul", "ave")


@spec.register
class Bidirectional(Layer):
    """Run ``layer`` over the sequence and a copy of it over the reversed sequence.

    Args:
        layer: A ``SimpleRNN``, ``LSTM`` or ``GRU`` (its config is copied twice: the
            forward layer and the backward layer, ``go_backwards`` flipped).
        merge_mode: ``"concat"`` (default), ``"sum"``, ``"mul"``, ``"ave"``, or None
            (return the two outputs as a list).
        backward_layer: The backward layer, if not a copy of ``layer``.

    With ``return_sequences`` the backward outputs are put back in time order before
    the merge, and padded steps output zeros (Keras). With ``return_state`` the layer
    returns ``[output, *forward states, *backward states]``; ``initial_state`` takes
    them in that order. Weights: the forward layer's, then the backward layer's.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> bi = gn.layers.Bidirectional(gn.layers.LSTM(4, return_sequences=True))
        >>> bi(np.ones((2, 5, 3), dtype="float32")).shape
        (2, 5, 8)
    """

    CONFIG = {"layer": spec.Nested(), "merge_mode": spec.Optional(spec.Choice(MERGE_MODES))}

    def __init__(
        self,
        layer: Any,
        merge_mode: str | None = "concat",
        backward_layer: Any = None,
        **kwargs: Any,
    ) -> None:
        layer = spec.layer_of(layer)  # a saved config (checked by gpunet.saving) or a layer
        if not isinstance(layer, _RNN):
            raise InvalidParameterError(
                f"Bidirectional wraps a SimpleRNN, LSTM or GRU layer, got {layer!r}"
            )
        if merge_mode not in (*MERGE_MODES, None):
            raise InvalidParameterError(
                f"Bidirectional merge_mode must be one of {MERGE_MODES} or None, got {merge_mode!r}"
            )
        kwargs.setdefault("dtype", layer.dtype)  # the wrapper computes in its layer's dtype
        if layer.input_shape_hint is not None and "input_shape" not in kwargs:
            kwargs["input_shape"] = layer.input_shape_hint
        super().__init__(**kwargs)
        self.merge_mode = merge_mode
        cfg = {k: v for k, v in layer.get_config().items() if k != "input_shape"}
        self.layer_config = {"class_name": type(layer).__name__, "config": cfg}
        zero = {"zero_output_for_mask": layer.return_sequences}
        self.forward_layer = type(layer)(**{**cfg, **zero, "name": f"forward_{layer.name}"})
        if backward_layer is None:
            backward_layer = type(layer)(**{**cfg, **zero, "name": f"backward_{layer.name}",
                                            "go_backwards": not layer.go_backwards})  # fmt: skip
        elif not isinstance(backward_layer, _RNN):
            raise InvalidParameterError(
                f"backward_layer must be a recurrent layer, got {backward_layer!r}"
            )
        self.backward_layer = backward_layer
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        if self.input_shape_hint is not None:
            self.build((None, *self.input_shape_hint))
            self.built = True

    def weight_specs(self, input_shape: Any) -> list[spec.WeightSpec]:
        out = []
        for i, sub in enumerate((self.forward_layer, self.backward_layer)):
            for w in sub.weight_specs(input_shape):
                out.append(spec.WeightSpec(f"layers.{i}.{w.name}", w.shape, w.initializer,
                                           w.trainable, w.regularizer))  # fmt: skip
        return out

    def build(self, input_shape: Any) -> None:
        for sub in (self.forward_layer, self.backward_layer):
            if not sub.built:
                sub.build(input_shape)
                sub.built_input_shape, sub.built = input_shape, True

    def compute_output_shape(self, input_shape: Any) -> Any:
        f = self.forward_layer.compute_output_shape(input_shape)
        b = self.backward_layer.compute_output_shape(input_shape)
        fo, bo = (f[0], b[0]) if self.return_state else (f, b)
        outs = [fo, bo] if self.merge_mode is None else [fo]
        if self.merge_mode == "concat":
            outs = [(*fo[:-1], fo[-1] + bo[-1])]
        if self.return_state:
            return [*outs, *f[1:], *b[1:]]
        return outs[0] if len(outs) == 1 else outs

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        out = mask if self.return_sequences else None
        masks = [out] * (1 if self.merge_mode is not None else 2)
        if self.return_state:
            masks += [None] * (len(self.forward_layer.state_size) * 2)
        return masks[0] if len(masks) == 1 else masks

    def check_symbolic_call(self, input_shape: Any, kwargs: dict[str, Any]) -> None:
        """Check ``initial_state=`` (forward then backward states) on symbolic tensors."""
        states = kwargs.get("initial_state")
        if states is None:
            return
        shapes = [tuple(s.shape) for s in states]
        nf, nb = len(self.forward_layer.state_size), len(self.backward_layer.state_size)
        if len(shapes) != nf + nb:
            raise InvalidParameterError(
                f"layer {self.name!r} takes {nf + nb} initial states "
                f"(forward then backward), got {len(shapes)}"
            )
        self.forward_layer.check_states(shapes[:nf], input_shape[0])
        self.backward_layer.check_states(shapes[nf:], input_shape[0])

    @property
    def runs_on_arrays(self) -> bool:
        return self.merge_mode is not None and not self.return_state

    def check_input(self, inputs: Any) -> None:
        self.forward_layer.check_input(inputs)

    # -- on arrays -----------------------------------------------------------------------
    def _pass(
        self, ops: Any, X: Any, init: list[Any], M: Any, training: bool
    ) -> tuple[list[Any], list[Any], Any]:
        """``(outputs, states, back)``; ``back(douts, dstates, need_dX) -> (dX, d0)``."""
        xp, fwd, bwd = ops.xp, self.forward_layer, self.backward_layer
        nf = len(fwd.state_size)
        init_f, init_b = (init[:nf], init[nf:]) if init else ([], [])
        Yf, Sf, back_f = fwd._pass(ops, X, init_f, M, training)
        Yb, Sb, back_b = bwd._pass(ops, X, init_b, M, training)
        seq = self.return_sequences
        if seq:
            Yb = xp.flip(Yb, axis=1)
        mode = self.merge_mode
        if mode == "concat":
            outs = [xp.concat([Yf, Yb], axis=-1)]
        elif mode == "sum":
            outs = [Yf + Yb]
        elif mode == "ave":
            outs = [(Yf + Yb) * 0.5]
        elif mode == "mul":
            outs = [Yf * Yb]
        else:
            outs = [Yf, Yb]

        def back(douts: list[Any], dS: list[Any], need_dX: bool) -> tuple[Any, list[Any]]:
            d = douts[0]
            if mode == "concat":
                n = Yf.shape[-1]
                dYf, dYb = d[..., :n], d[..., n:]
            elif mode == "sum":
                dYf = dYb = d
            elif mode == "ave":
                dYf = dYb = d * 0.5
            elif mode == "mul":
                dYf, dYb = d * Yb, d * Yf
            else:
                dYf, dYb = douts[0], douts[1]
            if seq:
                dYb = xp.flip(dYb, axis=1)
            dXf, d0f = back_f(dYf, dS[:nf], need_dX)
            dXb, d0b = back_b(dYb, dS[nf:], need_dX)
            return (dXf + dXb if need_dX else None), [*d0f, *d0b]

        return outs, [*Sf, *Sb], back

    def forward_pass(
        self, ops: Any, X: Any, training: bool, mask: Any = None
    ) -> tuple[Any, Backprop]:
        M = self.forward_layer._mask(ops, mask, tuple(X.shape))
        outs, _, back = self._pass(ops, X, [], M, training)
        return outs[0], lambda dY, need_dX: back([dY], [], need_dX)[0]

    def call(
        self, inputs: Tensor, initial_state: Any = None, mask: Any = None, training: bool = False
    ) -> Any:
        ops, fwd, bwd = self.ops, self.forward_layer, self.backward_layer
        if mask is None:
            mask = getattr(inputs, "_keras_mask", None)
        M = fwd._mask(ops, mask, tuple(inputs.shape))
        nf, nb = len(fwd.state_size), len(bwd.state_size)
        if initial_state is None:
            init: list[Any] = [None] * (nf + nb)
        else:
            states = list(initial_state)
            if len(states) != nf + nb:
                raise InvalidParameterError(
                    f"layer {self.name!r} takes {nf + nb} initial states "
                    f"(forward then backward), got {len(states)}"
                )
            init = fwd._initial(states[:nf], inputs) + bwd._initial(states[nf:], inputs)
        for sub in (fwd, bwd):
            sub.losses = []
            penalties(sub)
        X0 = [None if s is None else s.data for s in init]
        outs, states, back = self._pass(ops, inputs.data, X0, M, training)
        n_out = len(outs)
        arrays = [*outs, *states] if self.return_state else outs

        def backward(douts: list[Any]) -> tuple[list[Any], Any]:
            dX, d0 = back(douts[:n_out], douts[n_out:], inputs.requires_grad)
            return [dX], d0

        result = record_outputs(self, inputs, init, arrays, backward)
        return result if len(result) > 1 else result[0]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "layer": self.layer_config, "merge_mode": self.merge_mode}
