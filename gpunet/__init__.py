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

import builtins
from typing import TYPE_CHECKING

from gpunet import (
    accelerator,
    activations,
    amp,
    backends,
    callbacks,
    config,
    cuda,
    data,
    distributions,
    errors,
    functional,
    initializers,
    layers,
    losses,
    metrics,
    mixed_precision,
    optim,
    optimizers,
    random,
    regularizers,
    schedules,
    utils,
)
from gpunet import kops as ops  # Keras 3's keras.ops names
from gpunet._torch_more import *  # noqa: F403  # more torch.<name> functions
from gpunet._torch_more import __all__ as _torch_more_names
from gpunet.amp import autocast
from gpunet.autograd import Tensor, enable_grad, is_grad_enabled, no_grad
from gpunet.backend import available_devices, get_ops
from gpunet.engine.functional import Input
from gpunet.models import Model, Sequential
from gpunet.tensor_functions import (
    abs,
    arange,
    argmax,
    argmin,
    cat,
    clamp,
    concat,
    cos,
    device,
    double,
    exp,
    flatten,
    float16,
    float32,
    float64,
    from_numpy,
    full,
    half,
    int32,
    int64,
    linspace,
    load,
    log,
    log_softmax,
    long,
    manual_seed,
    matmul,
    max,
    mean,
    min,
    ones,
    ones_like,
    permute,
    pow,
    rand,
    randint,
    randn,
    relu,
    reshape,
    save,
    sigmoid,
    sin,
    softmax,
    sqrt,
    squeeze,
    stack,
    sum,
    tanh,
    unsqueeze,
    where,
    zeros,
    zeros_like,
)

if TYPE_CHECKING:  # the lazy submodules, for type checkers
    from gpunet import distributed as distributed
    from gpunet import nn as nn
    from gpunet import saving as saving

optimizers.schedules = schedules  # type: ignore[attr-defined]  # Keras path

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # gn.distributed on first use: MPI is an optional extra, never loaded by `import gpunet`;
    # gn.saving too (gn.saving.register_serializable): the file format loads on first use
    # gn.nn (the PyTorch-style modules) too: a Keras or scikit-learn user never pays for it
    if name in ("distributed", "saving", "nn"):
        import importlib

        return importlib.import_module(f"gpunet.{name}")
    raise AttributeError(f"module 'gpunet' has no attribute {name!r}")


def tensor(
    data: object,
    *,
    device: object = None,
    dtype: object = None,
    requires_grad: builtins.bool = False,
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


# torch.bool and torch.float; bound last so the annotations above mean the builtins
from gpunet.tensor_functions import bool_ as bool  # noqa: E402
from gpunet.tensor_functions import float_ as float  # noqa: E402

__all__ = [
    "Input",
    "Model",
    "Sequential",
    "Tensor",
    "abs",
    "activations",
    "amp",
    "arange",
    "argmax",
    "argmin",
    "autocast",
    "available_devices",
    "bool",
    "callbacks",
    "cat",
    "clamp",
    "concat",
    "config",
    "cos",
    "data",
    "device",
    "double",
    "enable_grad",
    "errors",
    "exp",
    "flatten",
    "float",
    "float16",
    "float32",
    "float64",
    "from_numpy",
    "full",
    "functional",
    "get_ops",
    "half",
    "initializers",
    "int32",
    "int64",
    "is_grad_enabled",
    "layers",
    "linspace",
    "load",
    "log",
    "log_softmax",
    "long",
    "losses",
    "accelerator",
    "backends",
    "distributions",
    "cuda",
    "manual_seed",
    "matmul",
    "max",
    "mean",
    "metrics",
    "min",
    "mixed_precision",
    "nn",
    "no_grad",
    "ones",
    "ones_like",
    "ops",
    "optim",
    "optimizers",
    "permute",
    "pow",
    "rand",
    "randint",
    "randn",
    "random",
    "regularizers",
    "relu",
    "reshape",
    "save",
    "schedules",
    "sigmoid",
    "sin",
    "softmax",
    "sqrt",
    "squeeze",
    "stack",
    "sum",
    "tanh",
    "tensor",
    "unsqueeze",
    "utils",
    "where",
    "zeros",
    "zeros_like",
    *_torch_more_names,
]
