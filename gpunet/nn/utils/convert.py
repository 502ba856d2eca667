"""``torch.nn.utils.parameters_to_vector`` and ``vector_to_parameters``."""

from __future__ import annotations

from typing import Any

from gpunet import functional as G
from gpunet.autograd import Tensor, no_grad


def parameters_to_vector(parameters: Any) -> Tensor:
    """The parameters flattened and concatenated, in order (differentiable)."""
    params = list(parameters)
    if not params:
        raise ValueError("parameters_to_vector got no parameters")
    return G.concat([G.reshape(p, (-1,)) for p in params], axis=0)  # type: ignore[no-any-return]


def vector_to_parameters(vec: Tensor, parameters: Any) -> None:
    """Copy consecutive slices of ``vec`` into the parameters (in place)."""
    params = list(parameters)
    total = sum(p.data.size for p in params)
    if vec.ndim != 1 or vec.shape[0] != total:
        raise ValueError(
            f"vector_to_parameters: expected a vector of {total} elements, got shape {vec.shape}"
        )
    at = 0
    with no_grad():
        for p in params:
            n = p.data.size
            p.copy_(vec[at : at + n].reshape(p.shape))
            at += n
