"""``torch.backends``' questions and settings as ``gn.backends``: ``mps.is_available()``
(no Apple GPU backend here: False) and ``cudnn``'s flags. gpunet runs no cuDNN
kernels (its convolutions are im2col and cuBLAS GEMMs), so ``cudnn.is_available()``
is False and setting ``cudnn.benchmark`` or ``cudnn.deterministic`` changes
nothing: scripts that set them run as they are. gpunet's own kernels are
deterministic at a given thread count.

Example:
    >>> import gpunet as gn
    >>> gn.backends.cudnn.benchmark = True  # accepted; no effect here
    >>> gn.backends.mps.is_available()
    False
"""

from __future__ import annotations

import types


def _false() -> bool:
    return False


mps = types.SimpleNamespace(is_available=_false, is_built=_false)
cudnn = types.SimpleNamespace(is_available=_false, enabled=True, benchmark=False,
                              deterministic=False, allow_tf32=False)  # fmt: skip
