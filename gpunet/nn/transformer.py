"""PyTorch's ``nn.TransformerEncoderLayer``, ``nn.TransformerEncoder`` and
``nn.TransformerDecoderLayer``: the same sublayers under the same names
(``self_attn.in_proj_weight``, ``linear1.weight``, ``norm1.weight``, ...), so a
PyTorch ``state_dict`` loads as it is, and the same post-norm (default) or pre-norm
(``norm_first=True``) blocks."""

from __future__ import annotations

from typing import Any

import numpy as np

from gpunet import functional as G
from gpunet.autograd import Tensor
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers.base import Layer
from gpunet.nn._module import TorchModule
from gpunet.nn.attention import MultiheadAttention
from gpunet.nn.modules import Dropout, Linear, ModuleList
from gpunet.nn.normalization import LayerNorm

ACTIVATIONS = ("relu", "gelu")


def _dropout(p: float, dtype: str) -> Dropout:
    layer = Dropout(p)
    layer.dtype = dtype  # nn.Dropout takes no dtype; a float32 one would cast to float32
    return layer


def _activation(name: Any) -> str:
    if name not in ACTIVATIONS:
        raise InvalidParameterError(
            f"Transformer activation must be one of {ACTIVATIONS}, got {name!r}"
        )
    return str(name)


class _Block(TorchModule, Layer):
    """What encoder and decoder layers share: arguments, the feed-forward block."""

    norm1: LayerNorm
    norm2: LayerNorm
    norm3: LayerNorm
    dropout1: Dropout
    dropout2: Dropout
    dropout3: Dropout
    multihead_attn: MultiheadAttention

    NORMS: int

    def __init__(
        self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
        activation: Any = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
        norm_first: bool = False, bias: bool = True, device: Any = None, dtype: Any = None,
    ) -> None:  # fmt: skip
        super().__init__(dtype=None if dtype is None else np.dtype(dtype).name)
        self._setup(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps,
                    batch_first, norm_first, bias, dtype, norms=self.NORMS)  # fmt: skip
        if device is not None:
            self.to(device)

    def _setup(
        self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, activation: Any,
        layer_norm_eps: float, batch_first: bool, norm_first: bool, bias: bool, dtype: Any,
        norms: int,
    ) -> None:  # fmt: skip
        self._init_kw = {"d_model": d_model, "nhead": nhead, "dim_feedforward": dim_feedforward,
                         "dropout": dropout, "activation": activation,
                         "layer_norm_eps": layer_norm_eps, "batch_first": batch_first,
                         "norm_first": norm_first, "bias": bias, "dtype": dtype}  # fmt: skip
        self.activation = _activation(activation)
        self.batch_first, self.norm_first = bool(batch_first), bool(norm_first)
        dt = self.dtype
        mha: dict[str, Any] = {"dropout": dropout, "bias": bias, "batch_first": True, "dtype": dt}
        self.self_attn = MultiheadAttention(d_model, nhead, **mha)
        if norms == 3:
            self.multihead_attn = MultiheadAttention(d_model, nhead, **mha)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dt)
        self.dropout = _dropout(dropout, dt)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dt)
        for i in range(1, norms + 1):
            setattr(self, f"norm{i}", LayerNorm(d_model, layer_norm_eps, dtype=dt))
        for i in range(1, norms + 1):
            setattr(self, f"dropout{i}", _dropout(dropout, dt))
        self.built = True

    def _ff(self, x: Tensor, drop: Layer) -> Tensor:
        if type(self.linear1) is Linear:  # one pass: bias and activation
            h = self.linear1(x, activation=self.activation)
        else:  # a module put in its place (a wrapper, a subclass): PyTorch's composition
            h = G.activation(self.linear1(x), self.activation)
        return drop(self.linear2(self.dropout(h)))  # type: ignore[no-any-return]

    def _attn(self, attn: Any, x: Tensor, mem: Tensor, mask: Any, kpm: Any, causal: Any,
              drop: Layer) -> Tensor:  # fmt: skip
        out = attn(x, mem, mem, key_padding_mask=kpm, attn_mask=mask, need_weights=False,
                   is_causal=bool(causal))[0]  # fmt: skip
        return drop(out)  # type: ignore[no-any-return]

    @staticmethod
    def _norm_of_sum(norm: Any, x: Tensor, r: Tensor) -> Tensor:
        """``norm(x + r)``: one node where ``norm`` is this module's LayerNorm, else (a
        module put in its place) PyTorch's composition."""
        if isinstance(norm, LayerNorm):
            return norm.of_sum(x, r)
        return norm(x + r)  # type: ignore[no-any-return]

    def _batch_first(self, x: Tensor) -> Tensor:
        return x if self.batch_first else G.permute(x, (1, 0, 2))


class TransformerEncoderLayer(_Block):
    """``nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=2048, dropout=0.1,
    activation="relu", layer_norm_eps=1e-5, batch_first=False, norm_first=False,
    bias=True)``, called as ``layer(src, src_mask=None, src_key_padding_mask=None,
    is_causal=False)``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> layer = gn.nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True)
        >>> layer(np.ones((3, 5, 8), dtype="float32")).shape
        (3, 5, 8)
    """

    NORMS = 2  # norm1, norm2 (and dropout1, dropout2)

    def call(  # type: ignore[override]
        self, src: Tensor, src_mask: Any = None, src_key_padding_mask: Any = None,
        is_causal: bool = False,
    ) -> Tensor:  # fmt: skip
        x = self._batch_first(src)
        sa = (src_mask, src_key_padding_mask, is_causal, self.dropout1)
        if self.norm_first:
            h = self.norm1(x)
            x = x + self._attn(self.self_attn, h, h, *sa)
            x = x + self._ff(self.norm2(x), self.dropout2)
        else:
            x = self._norm_of_sum(self.norm1, x, self._attn(self.self_attn, x, x, *sa))
            x = self._norm_of_sum(self.norm2, x, self._ff(x, self.dropout2))
        return self._batch_first(x)


class TransformerDecoderLayer(_Block):
    """``nn.TransformerDecoderLayer`` (same arguments as the encoder layer), called as
    ``layer(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False)``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> layer = gn.nn.TransformerDecoderLayer(8, 2, dim_feedforward=16, batch_first=True)
        >>> tgt, mem = np.ones((3, 4, 8), dtype="float32"), np.ones((3, 6, 8), dtype="float32")
        >>> causal = np.triu(np.ones((4, 4), dtype=bool), 1)  # True: may not attend
        >>> layer(tgt, mem, tgt_mask=causal, tgt_is_causal=True).shape
        (3, 4, 8)
    """

    NORMS = 3  # a third for the cross-attention over the memory

    def call(  # type: ignore[override]
        self, tgt: Tensor, memory: Any, tgt_mask: Any = None, memory_mask: Any = None,
        tgt_key_padding_mask: Any = None, memory_key_padding_mask: Any = None,
        tgt_is_causal: bool = False, memory_is_causal: bool = False,
    ) -> Tensor:  # fmt: skip
        x, mem = self._batch_first(tgt), self._batch_first(self._convert(memory))
        sa = (tgt_mask, tgt_key_padding_mask, tgt_is_causal, self.dropout1)
        ca = (memory_mask, memory_key_padding_mask, memory_is_causal, self.dropout2)
        if self.norm_first:
            h = self.norm1(x)
            x = x + self._attn(self.self_attn, h, h, *sa)
            x = x + self._attn(self.multihead_attn, self.norm2(x), mem, *ca)
            x = x + self._ff(self.norm3(x), self.dropout3)
        else:
            x = self._norm_of_sum(self.norm1, x, self._attn(self.self_attn, x, x, *sa))
            x = self._norm_of_sum(self.norm2, x, self._attn(self.multihead_attn, x, mem, *ca))
            x = self._norm_of_sum(self.norm3, x, self._ff(x, self.dropout3))
        return self._batch_first(x)


class _Stack(TorchModule, Layer):
    """``num_layers`` copies of a block (same starting weights, as PyTorch's deep
    copies) under ``layers.0``, ``layers.1``, ..., then ``norm`` when given."""

    BLOCK: type

    def __init__(self, layer: _Block, num_layers: int, norm: Any = None) -> None:
        cls = self.BLOCK
        if not isinstance(layer, cls):
            raise InvalidParameterError(f"expected a {cls.__name__}, got {type(layer).__name__}")
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise InvalidParameterError(f"num_layers must be an int >= 1, got {num_layers!r}")
        super().__init__(dtype=layer.dtype)
        state, copies = layer.state_dict(), []
        for _ in range(num_layers):
            copy = cls(**layer._init_kw)
            copy.load_state_dict(state)
            copy.to(layer.ops)
            copies.append(copy)
        self.layers = ModuleList(copies)
        self.num_layers = num_layers
        self.norm = norm
        self.built = True


class TransformerEncoder(_Stack):
    """``nn.TransformerEncoder(encoder_layer, num_layers, norm=None)``: ``num_layers``
    copies of ``encoder_layer`` (same starting weights, as PyTorch's deep copies) under
    ``layers.0``, ``layers.1``, ...; called as ``encoder(src, mask=None,
    src_key_padding_mask=None, is_causal=None)``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> layer = gn.nn.TransformerEncoderLayer(8, 2, dim_feedforward=16)
        >>> enc = gn.nn.TransformerEncoder(layer, num_layers=2)
        >>> enc(np.ones((5, 3, 8), dtype="float32")).shape, len(enc.layers)
        ((5, 3, 8), 2)
    """

    BLOCK = TransformerEncoderLayer

    def __init__(
        self, encoder_layer: TransformerEncoderLayer, num_layers: int, norm: Any = None,
        enable_nested_tensor: bool = True, mask_check: bool = True,
    ) -> None:  # fmt: skip
        super().__init__(encoder_layer, num_layers, norm)

    def call(  # type: ignore[override]
        self, src: Tensor, mask: Any = None, src_key_padding_mask: Any = None,
        is_causal: bool | None = None,
    ) -> Tensor:  # fmt: skip
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask,
                      is_causal=bool(is_causal))  # fmt: skip
        return x if self.norm is None else self.norm(x)


class TransformerDecoder(_Stack):
    """``nn.TransformerDecoder(decoder_layer, num_layers, norm=None)``, called as
    ``decoder(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False)``."""

    BLOCK = TransformerDecoderLayer

    def __init__(
        self, decoder_layer: TransformerDecoderLayer, num_layers: int, norm: Any = None
    ) -> None:
        super().__init__(decoder_layer, num_layers, norm)

    def call(  # type: ignore[override]
        self, tgt: Tensor, memory: Any, tgt_mask: Any = None, memory_mask: Any = None,
        tgt_key_padding_mask: Any = None, memory_key_padding_mask: Any = None,
        tgt_is_causal: bool | None = None, memory_is_causal: bool = False,
    ) -> Tensor:  # fmt: skip
        x = tgt
        kw = {"tgt_mask": tgt_mask, "memory_mask": memory_mask,
              "tgt_key_padding_mask": tgt_key_padding_mask,
              "memory_key_padding_mask": memory_key_padding_mask,
              "tgt_is_causal": bool(tgt_is_causal),
              "memory_is_causal": memory_is_causal}  # fmt: skip
        for layer in self.layers:
            x = layer(x, memory, **kw)
        return x if self.norm is None else self.norm(x)


class Transformer(TorchModule, Layer):
    """``nn.Transformer(d_model=512, nhead=8, num_encoder_layers=6,
    num_decoder_layers=6, dim_feedforward=2048, dropout=0.1, activation="relu",
    custom_encoder=None, custom_decoder=None, layer_norm_eps=1e-5, batch_first=False,
    norm_first=False, bias=True)``: an encoder and a decoder stack, each ending in a
    LayerNorm, called as ``model(src, tgt, src_mask=None, tgt_mask=None,
    memory_mask=None, src_key_padding_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, src_is_causal=None, tgt_is_causal=None,
    memory_is_causal=False)``.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> model = gn.nn.Transformer(8, 2, 1, 1, dim_feedforward=16, batch_first=True)
        >>> mask = gn.nn.Transformer.generate_square_subsequent_mask(4)
        >>> src, tgt = np.ones((2, 5, 8), "float32"), np.ones((2, 4, 8), "float32")
        >>> model(src, tgt, tgt_mask=mask).shape
        (2, 4, 8)
    """

    def __init__(
        self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6,
        num_decoder_layers: int = 6, dim_feedforward: int = 2048, dropout: float = 0.1,
        activation: Any = "relu", custom_encoder: Any = None, custom_decoder: Any = None,
        layer_norm_eps: float = 1e-5, batch_first: bool = False, norm_first: bool = False,
        bias: bool = True, device: Any = None, dtype: Any = None,
    ) -> None:  # fmt: skip
        super().__init__(dtype=None if dtype is None else np.dtype(dtype).name)
        kw = {"dim_feedforward": dim_feedforward, "dropout": dropout, "activation": activation,
              "layer_norm_eps": layer_norm_eps, "batch_first": batch_first,
              "norm_first": norm_first, "bias": bias, "dtype": dtype}  # fmt: skip
        self.encoder = custom_encoder or TransformerEncoder(
            TransformerEncoderLayer(d_model, nhead, **kw), num_encoder_layers,
            LayerNorm(d_model, layer_norm_eps, dtype=dtype))  # fmt: skip
        self.decoder = custom_decoder or TransformerDecoder(
            TransformerDecoderLayer(d_model, nhead, **kw), num_decoder_layers,
            LayerNorm(d_model, layer_norm_eps, dtype=dtype))  # fmt: skip
        self.d_model, self.nhead, self.batch_first = d_model, nhead, bool(batch_first)
        self.built = True
        if device is not None:
            self.to(device)

    def call(  # type: ignore[override]
        self, src: Tensor, tgt: Any, src_mask: Any = None, tgt_mask: Any = None,
        memory_mask: Any = None, src_key_padding_mask: Any = None,
        tgt_key_padding_mask: Any = None, memory_key_padding_mask: Any = None,
        src_is_causal: bool | None = None, tgt_is_causal: bool | None = None,
        memory_is_causal: bool = False,
    ) -> Tensor:  # fmt: skip
        tgt = self._convert(tgt)
        batch = 0 if self.batch_first else 1
        if src.ndim == 3 and src.shape[batch] != tgt.shape[batch]:
            raise InputValidationError(
                f"the batch number of src and tgt must be equal, got {src.shape[batch]} and "
                f"{tgt.shape[batch]} (axis {batch}, batch_first={self.batch_first})"
            )
        if src.shape[-1] != self.d_model or tgt.shape[-1] != self.d_model:
            raise InputValidationError(
                f"the feature number of src and tgt must be equal to d_model={self.d_model}, "
                f"got {src.shape[-1]} and {tgt.shape[-1]}"
            )
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask,
                              is_causal=src_is_causal)  # fmt: skip
        kw = {"tgt_mask": tgt_mask, "memory_mask": memory_mask,
              "tgt_key_padding_mask": tgt_key_padding_mask,
              "memory_key_padding_mask": memory_key_padding_mask,
              "tgt_is_causal": tgt_is_causal, "memory_is_causal": memory_is_causal}  # fmt: skip
        return self.decoder(tgt, memory, **kw)  # type: ignore[no-any-return]

    @staticmethod
    def generate_square_subsequent_mask(sz: int, device: Any = None, dtype: Any = None) -> Tensor:
        """The causal mask: 0 on and below the diagonal, ``-inf`` above (float)."""
        from gpunet import tensor

        upper = np.triu(np.ones((int(sz), int(sz)), dtype=bool), 1)
        return tensor(np.where(upper, -np.inf, 0.0), dtype=dtype or "float32", device=device)
