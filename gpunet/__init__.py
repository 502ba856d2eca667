"""gpunet: neural networks on NumPy (CPU) or CuPy (CUDA GPU), with Keras-style
``Sequential``/``compile``/``fit``, scikit-learn estimators and a PyTorch-style loop.

Example:
    >>> import numpy as np, gpunet as gn
    >>> model = gn.Sequential([gn.layers.Dense(8, activation="relu", input_shape=(4,)),
    ...                        gn.layers.Dense(1, activation="sigmoid")])
    >>> model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    >>> history = model.fit(np.zeros((8, 4)), np.zeros(8), epochs=1, verbose=0)
    >>> sorted(history.history)
    ['accuracy', 'loss']
"""

from gpunet import (
    activations,
    callbacks,
    config,
    data,
    errors,
    functional,
    initializers,
    layers,
    losses,
    metrics,
    nn,
    optim,
    optimizers,
    random,
    regularizers,
    schedules,
    utils,
)
from gpunet import kops as ops  # Keras 3's keras.ops names
from gpunet.autograd import Tensor, enable_grad, is_grad_enabled, no_grad
from gpunet.backend import available_devices, get_ops
from gpunet.engine.functional import Input
from gpunet.models import Model, Sequential

optimizers.schedules = schedules  # type: ignore[attr-defined]  # Keras path

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # gn.distributed on first use: MPI is an optional extra, never loaded by `import gpunet`
    if name == "distributed":
        import importlib

        return importlib.import_module("gpunet.distributed")
    raise AttributeError(f"module 'gpunet' has no attribute {name!r}")


def tensor(
    data: object, *, device: object = None, dtype: object = None, requires_grad: bool = False
) -> Tensor:
    """A tensor from array-like ``data`` on ``device`` (``"cpu"`` by default).

    Python numbers become the default float dtype (as in PyTorch); arrays keep
    theirs; ``dtype=`` overrides both.

    Example:
        >>> import numpy as np, gpunet as gn
        >>> gn.tensor([1.0, 2.0]).dtype, gn.tensor(np.zeros(2)).dtype
        (dtype('float32'), dtype('float64'))
    """
    import numpy as np

    ops = get_ops(device)
    arr = np.asarray(data)
    if dtype is None:
        from_python = arr.dtype.kind == "f" and not hasattr(data, "dtype")
        dtype = config.floatx() if from_python or arr.dtype.kind not in "fiub" else arr.dtype
    return Tensor(ops.asarray(arr, dtype=dtype), ops, requires_grad=requires_grad)


__all__ = [
    "Input",
    "Model",
    "Sequential",
    "Tensor",
    "activations",
    "available_devices",
    "callbacks",
    "config",
    "data",
    "enable_grad",
    "errors",
    "functional",
    "get_ops",
    "initializers",
    "is_grad_enabled",
    "layers",
    "losses",
    "metrics",
    "nn",
    "no_grad",
    "ops",
    "optim",
    "optimizers",
    "random",
    "regularizers",
    "schedules",
    "tensor",
    "utils",
]
