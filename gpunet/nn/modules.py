"""PyTorch's modules over gpunet layers: ``nn.Module`` with ``forward``,
``nn.Sequential(nn.Linear(10, 64), nn.ReLU(), ...)``, ``nn.Parameter``,
``nn.ModuleList``/``nn.ModuleDict``. ``nn.Linear`` keeps PyTorch's ``(out, in)``
weight and initialization, so PyTorch weights load as they are.

Example:
    >>> import numpy as np
    >>> from gpunet import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> net(np.zeros((2, 4))).shape, net[0].weight.shape, len(net)
    ((2, 3), (8, 4), 3)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from gpunet import functional as F
from gpunet import mixed_precision
from gpunet import random as grandom
from gpunet.autograd import Tensor
from gpunet.backend import get_ops
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.layers import Activation, spec
from gpunet.layers import Dropout as _Dropout
from gpunet.layers import Flatten as _Flatten
from gpunet.layers import Identity as _Identity
from gpunet.layers._protocol import grad_out, record_pass
from gpunet.layers.base import Layer, add_grad, takes_training
from gpunet.layers.base import Parameter as _Parameter
from gpunet.models import Model
from gpunet.models import Sequential as _Sequential
from gpunet.nn._module import TorchModule, module_repr, overrides_forward, torch_param


class _ParameterType(type):
    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, _Parameter)


class Parameter(metaclass=_ParameterType):
    """``nn.Parameter(tensor)``: a leaf weight a module registers when assigned
    as an attribute (every layer's weights are ``nn.Parameter`` instances too).

    Example:
        >>> import gpunet as gn
        >>> p = gn.nn.Parameter(gn.zeros(3))
        >>> isinstance(p, gn.nn.Parameter), p.requires_grad
        (True, True)
    """

    def __new__(cls, data: Any = None, requires_grad: bool = True) -> Any:  # type: ignore[misc]
        if data is None:
            data = np.zeros((0,), dtype="float32")
        if isinstance(data, Tensor):
            ops, arr = data.ops, data.ops.copy(data.data) if data._node else data.data
        else:
            ops = get_ops("cpu")
            arr = ops.asarray(np.asarray(data))
        return _Parameter(arr, ops, name="param", trainable=bool(requires_grad))


class Module(TorchModule, Model):
    """Subclass it and define ``forward``; sublayers and ``nn.Parameter``
    attributes are registered in assignment order, as PyTorch does.

    An attribute named ``weights`` (as in "What is torch.nn really?") is the
    user's; the Keras list of all weights stays reachable as ``all_weights``.
    """

    forward: Any = None  # the subclass's (TorchModule's would call the module itself)

    @property  # type: ignore[override]
    def weights(self) -> Any:
        own = self.__dict__.get("weights")
        return own if own is not None else self.all_weights

    @weights.setter
    def weights(self, value: Any) -> None:
        self.__dict__["weights"] = value

    @property
    def all_weights(self) -> list[_Parameter]:
        return Model.weights.fget(self)  # type: ignore[attr-defined,no-any-return]

    @property
    def trainable_weights(self) -> list[_Parameter]:  # type: ignore[override]
        return [p for p in self.all_weights if p.requires_grad]

    @property
    def non_trainable_weights(self) -> list[_Parameter]:
        return [p for p in self.all_weights if not p.requires_grad]

    def count_params(self) -> int:
        return int(sum(int(np.prod(p.shape)) for p in self.all_weights))

    def call(self, x: Any, *args: Any, training: bool = False, **kwargs: Any) -> Any:  # type: ignore[override]
        # PyTorch's forward may take several inputs: forward(input, hidden)
        forward = getattr(self, "forward", None)
        if forward is not None and (args or kwargs):
            if takes_training(forward):
                kwargs["training"] = training
            return forward(x, *args, **kwargs)
        return super().call(x, training=training)

    def zero_grad(self) -> None:
        for p in self.all_weights:
            p.zero_grad()

    def get_weights(self) -> list[np.ndarray]:
        return [p.numpy().copy() for p in self.all_weights]


class Sequential(TorchModule, _Sequential):
    """``nn.Sequential(layer, layer, ...)``: indexable, sliceable, with ``len``."""

    def __init__(self, *layers: Any) -> None:
        super().__init__(list(layers))

    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, slice):
            return Sequential(*self._layers[idx])
        return self._layers[idx]

    def __len__(self) -> int:
        return len(self._layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(list(self._layers))

    def __bool__(self) -> bool:
        return True


class ModuleList(TorchModule, Layer):
    """A list of modules whose parameters the parent module sees."""

    def __init__(self, modules: Any = None) -> None:
        super().__init__()
        for m in modules or []:
            self.append(m)

    def _child_names(self) -> list[str]:
        return [str(i) for i in range(len(self._layers))]

    def __repr__(self) -> str:
        """PyTorch's form: a run of equal modules prints once, as ``(0-2): 3 x ...``."""
        reprs = [module_repr(m) for m in self._layers]
        if not reprs:
            return "ModuleList()"
        runs: list[list[Any]] = []
        for i, r in enumerate(reprs):
            if runs and runs[-1][2] == r:
                runs[-1][1] = i
            else:
                runs.append([i, i, r])
        lines = [
            (f"({a}): {r}" if a == b else f"({a}-{b}): {b - a + 1} x {r}").replace("\n", "\n  ")
            for a, b, r in runs
        ]
        return "ModuleList(\n  " + "\n  ".join(lines) + "\n)"

    def append(self, module: Layer) -> ModuleList:
        if not isinstance(module, Layer):
            raise TypeError(f"ModuleList holds modules, got {type(module).__name__}")
        self._layers.append(module)
        return self

    def extend(self, modules: Any) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def __getitem__(self, idx: Any) -> Any:
        return ModuleList(self._layers[idx]) if isinstance(idx, slice) else self._layers[idx]

    def __len__(self) -> int:
        return len(self._layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(list(self._layers))

    def __bool__(self) -> bool:
        return True


class ModuleDict(TorchModule, Layer):
    """A dict of modules by name, in insertion order."""

    _keys: list[str]

    def __init__(self, modules: Any = None) -> None:
        super().__init__()
        object.__setattr__(self, "_keys", [])
        for k, m in dict(modules or {}).items():
            self[k] = m

    def _child_names(self) -> list[str]:
        return list(self._keys)

    def __setitem__(self, key: str, module: Layer) -> None:
        if key in self._keys:
            self._layers[self._keys.index(key)] = module
        else:
            self._keys.append(key)
            self._layers.append(module)

    def __getitem__(self, key: str) -> Layer:
        if key not in self._keys:
            raise KeyError(key)
        return self._layers[self._keys.index(key)]

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._keys))

    def __bool__(self) -> bool:
        return True

    def keys(self) -> list[str]:
        return list(self._keys)

    def values(self) -> list[Layer]:
        return list(self._layers)

    def items(self) -> list[tuple[str, Layer]]:
        return list(zip(self._keys, self._layers, strict=True))


class Linear(TorchModule, Layer):
    """``y = x @ weight.T + bias`` with ``weight`` of shape ``(out, in)`` and
    PyTorch's initialization, ``U(-1/sqrt(in), 1/sqrt(in))`` for both weights."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
        **kwargs: Any,  # name=, trainable=: what a saved config also holds
    ) -> None:
        super().__init__(dtype=mixed_precision.dtype_arg(dtype), **kwargs)
        for what, n in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise InvalidParameterError(f"Linear {what} must be an int >= 0, got {n!r}")
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features) if in_features else 0.0
        rng = grandom.generator("init")
        self.weight = torch_param(
            self, "weight", rng.uniform(-bound, bound, (out_features, in_features))
        )
        self.bias = (
            torch_param(self, "bias", rng.uniform(-bound, bound, (out_features,))) if bias else None
        )
        self.built = True
        if device is not None:
            self.to(device)

    def check_input(self, inputs: Any) -> None:
        if (
            not isinstance(inputs, Tensor)
            or inputs.ndim < 1
            or inputs.shape[-1] != self.in_features
        ):
            shape = getattr(inputs, "shape", None)
            raise InputValidationError(
                f"Linear({self.in_features}, {self.out_features}) expects inputs of shape "
                f"(*, {self.in_features}), got {shape}"
            )

    def call(self, x: Any, training: bool = False, activation: str = "linear") -> Any:  # type: ignore[override]
        """The layer as one graph node; ``activation`` (not PyTorch's: what a block
        such as ``TransformerEncoderLayer`` applies next) fuses into the bias pass."""
        kw = {} if activation == "linear" else {"activation": activation}
        return record_pass(self, x, bool(training), **kw)

    @property
    def runs_on_arrays(self) -> bool:  # call is forward_pass's node, unless overridden
        return type(self).call is Linear.call and not overrides_forward(type(self))

    def forward_pass(
        self, ops: Any, X: Any, training: bool, activation: str = "linear"
    ) -> tuple[Any, Any]:
        """``activation(X @ weight.T + bias)`` on arrays (the layer protocol: the graph
        and the graph-free step both run it); bias and activation are one pass over
        the GEMM's output, and their gradients one pass over ``dY``."""
        xp, W, b = ops.xp, self.weight, self.bias
        lead = None
        if X.ndim != 2:
            lead = tuple(X.shape[:-1])
            X = xp.reshape(X, (-1, X.shape[-1]))
        Wd = W.data
        bd = None if b is None else b.data
        Y, Zb = ops.bias_activation(ops.gemm(X, Wd, trans2=True), bd, activation)

        def backprop(dY: Any, need_dX: bool) -> Any:
            if lead is not None:
                dY = xp.reshape(dY, (-1, dY.shape[-1]))
            need_db = b is not None and b.requires_grad
            dZ, db = ops.backprop_bias_activation(dY, Zb, Y, activation, need_db=need_db)
            add_grad(W, ops.gemm(dZ, X, trans1=True, out=grad_out(W)))
            if need_db:
                add_grad(b, db)
            if not need_dX:
                return None
            dX = ops.gemm(dZ, Wd)
            return dX if lead is None else xp.reshape(dX, (*lead, dX.shape[-1]))

        return (Y if lead is None else xp.reshape(Y, (*lead, self.out_features))), backprop

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "in_features": self.in_features,
                "out_features": self.out_features, "bias": self.bias is not None}  # fmt: skip

    def weight_specs(self, input_shape: Any) -> list[spec.WeightSpec]:
        specs = [spec.WeightSpec("weight", (self.out_features, self.in_features))]
        if self.bias is not None:
            specs.append(spec.WeightSpec("bias", (self.out_features,)))
        return specs

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (*input_shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        bias = self.bias is not None
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={bias}"


class _Act(TorchModule, Activation):
    spec: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("inplace", None)
        super().__init__(self.spec)


class ReLU(_Act):
    spec = "relu"


class Sigmoid(_Act):
    spec = "sigmoid"


class Tanh(_Act):
    spec = "tanh"


class SiLU(_Act):
    spec = "swish"


class SELU(_Act):
    spec = "selu"


class Softplus(_Act):
    spec = "softplus"

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        if beta != 1.0:
            raise InvalidParameterError(f"Softplus supports beta=1.0 only, got {beta!r}")
        super().__init__()


class _Param(TorchModule, Activation):
    def __init__(self, spec: dict[str, Any], extra: str) -> None:
        super().__init__(spec)
        self._extra = extra

    def extra_repr(self) -> str:
        return self._extra


class ELU(_Param):
    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__({"name": "elu", "alpha": float(alpha)}, f"alpha={float(alpha)}")


class GELU(_Param):
    def __init__(self, approximate: str = "none") -> None:
        if approximate not in ("none", "tanh"):
            raise InvalidParameterError(
                f"GELU approximate must be 'none' or 'tanh', got {approximate!r}"
            )
        spec = {"name": "gelu", "approximate": approximate == "tanh"}
        super().__init__(spec, "" if approximate == "none" else f"approximate='{approximate}'")


class LeakyReLU(_Param):
    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        slope = float(negative_slope)
        super().__init__({"name": "leaky_relu", "alpha": slope}, f"negative_slope={slope}")


class Softmax(_Param):
    def __init__(self, dim: int = -1) -> None:
        super().__init__({"name": "softmax", "axis": int(dim)}, f"dim={dim}")


class LogSoftmax(_Param):
    def __init__(self, dim: int = -1) -> None:
        super().__init__({"name": "log_softmax", "axis": int(dim)}, f"dim={dim}")


class Flatten(TorchModule, _Flatten):
    """Merge axes ``start_dim..end_dim`` (PyTorch's default keeps the batch axis)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def call(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return F.flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Identity(TorchModule, _Identity):
    """``nn.Identity(*args, **kwargs)``: its input (the arguments are ignored, as in
    PyTorch), e.g. in place of a layer being removed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()


class Dropout(TorchModule, _Dropout):
    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__(p)

    def extra_repr(self) -> str:
        return f"p={self.rate}, inplace=False"
