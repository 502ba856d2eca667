"""Activations by name and as functions.

Each function takes a ``Tensor`` (and returns one, recorded on the graph) or an
array-like (and returns a NumPy array). Layers take the same names:
``Dense(64, activation="relu")``.

Example:
    >>> import numpy as np, gpunet as gn
    >>> gn.activations.sigmoid(np.array([-1e4, 0.0, 1e4]))
    array([0. , 0.5, 1. ])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gpunet import functional as F
from gpunet.autograd import Tensor
from gpunet.backend._activation_ops import ACTIVATIONS
from gpunet.errors import InvalidParameterError

_ALIASES = {None: "linear", "identity": "linear", "silu": "swish", "logistic": "sigmoid"}


def _apply(x: Any, name: str, **kw: Any) -> Any:
    if isinstance(x, Tensor):
        return F.activation(x, name, **kw)
    import numpy as np

    from gpunet.backend import get_ops

    ops = get_ops("cpu")
    X = np.asarray(x)
    if not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float64)
    return ops.activation(name, X, **kw)


def _make(name: str) -> Callable[..., Any]:
    def fn(x: Any, **kw: Any) -> Any:
        return _apply(x, name, **kw)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"The ``{name}`` activation of a Tensor or array (see module docs)."
    fn._gpunet_name = name  # type: ignore[attr-defined]
    return fn


linear = _make("linear")
relu = _make("relu")
elu = _make("elu")
selu = _make("selu")
gelu = _make("gelu")
swish = _make("swish")
silu = swish
sigmoid = _make("sigmoid")
tanh = _make("tanh")
softplus = _make("softplus")
softmax = _make("softmax")
log_softmax = _make("log_softmax")


def leaky_relu(x: Any, negative_slope: float = 0.2) -> Any:
    """``x`` where positive, ``negative_slope * x`` elsewhere (Keras default 0.2)."""
    return _apply(x, "leaky_relu", alpha=float(negative_slope))


leaky_relu._gpunet_name = "leaky_relu"  # type: ignore[attr-defined]


def get(spec: Any) -> tuple[str | None, dict[str, Any], Callable[..., Any] | None]:
    """Resolve an activation spec to ``(name, kwargs, custom_callable)``.

    Names and gpunet's own functions give a fused ``name``; any other callable is
    applied as is after the layer's linear part.

    Raises:
        InvalidParameterError: for an unknown name, listing the valid ones.
    """
    if isinstance(spec, dict):  # {"name": ..., **kwargs} from a saved config
        kw = {k: v for k, v in spec.items() if k != "name"}
        name, _, _ = get(spec.get("name"))
        return name, kw, None
    if spec is None or isinstance(spec, str):
        name = _ALIASES.get(spec, spec)
        if name not in ACTIVATIONS:
            valid = ", ".join(sorted(set(ACTIVATIONS) | {"silu"}))
            raise InvalidParameterError(f"unknown activation {spec!r}; expected one of {valid}")
        return name, {}, None
    own = getattr(spec, "_gpunet_name", None)
    if own is not None:
        return own, {}, None
    if callable(spec):
        return None, {}, spec
    raise InvalidParameterError(f"activation must be a name or a callable, got {spec!r}")
