"""Safe model files: one self-describing, device-neutral ``.gpunet`` file.

A file holds the architecture as JSON (checked against an allow-list of layer
types, activations and keys: nothing is imported or called by a name from a
file), the weights in the safetensors layout and, optionally, the compile
settings and optimizer state, all covered by a SHA-256 checksum that is
verified before anything else is parsed. There is no pickle anywhere and no
fallback to a less safe loader. Any damaged, malformed or hostile file raises
``gpunet.errors.ModelFileError`` naming the problem. Custom layers are saved once
their class is registered with :func:`register_serializable` in both processes.

Every write is atomic (see :mod:`gpunet.saving.atomic`).

Example:
    >>> import os, tempfile, numpy as np, gpunet as gn
    >>> model = gn.Sequential([gn.layers.Dense(2, input_shape=(3,))])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.gpunet")
    >>> model.save(path)
    >>> again = gn.models.load_model(path)
    >>> bool(np.all(again.predict(np.ones((1, 3))) == model.predict(np.ones((1, 3)))))
    True
"""

from gpunet.saving._custom import register_keras_serializable, register_serializable
from gpunet.saving._estimator import load_estimator, save_estimator
from gpunet.saving._model import load_model, load_weights, save_model, save_weights
from gpunet.saving._tensors import named_weights

__all__ = [
    "load_estimator",
    "load_model",
    "load_weights",
    "named_weights",
    "register_keras_serializable",
    "register_serializable",
    "save_estimator",
    "save_model",
    "save_weights",
]
