"""``trainable`` as Keras 3 reads it: at each step, not at ``compile``.

Keras 2 took a snapshot of ``trainable`` when a model was compiled, so the classic GAN
code compiled the discriminator, froze it, and still trained it in its own
``train_on_batch``. Keras 3 (and gpunet) read it at each step: a frozen model's step
warns and changes nothing, and a weight made trainable after the optimizer was built on
the others is an error. A loop that sets ``trainable`` before each model's step runs the
same on both.

Example:
    >>> import warnings, numpy as np, gpunet as gn
    >>> model = gn.Sequential([gn.Input((2,)), gn.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> model.trainable = False
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = model.train_on_batch(np.ones((4, 2)), np.ones((4, 1)))
    >>> str(caught[0].message)[:46]
    'The model does not have any trainable weights.'
"""

from __future__ import annotations

import warnings
from typing import Any

from gpunet.errors import InvalidParameterError


def frozen(model: Any) -> bool:
    """Whether ``model`` has no trainable weights (warned about, as Keras 3 does);
    raises when its optimizer was built for other weights than the trainable ones."""
    trainable = model.trainable_weights
    if not trainable:
        warnings.warn(
            "The model does not have any trainable weights. (`trainable` is read at each "
            "step, as in Keras 3: set it back to True before this model's own "
            "train_on_batch or fit)",
            UserWarning,
            stacklevel=4,  # the user's train_on_batch
        )
        return True
    if model.optimizer.built:
        known = {id(p) for p in model.optimizer.params}
        unknown = [p.name for p in trainable if id(p) not in known]
        if unknown:
            raise InvalidParameterError(
                f"the optimizer of model {model.name!r} was built for other weights than "
                f"the trainable ones now, e.g. {unknown[0]!r}: a layer was made trainable "
                "after the first step (Keras 3 refuses this too); set it back, or compile "
                "again for a new optimizer"
            )
    return False
