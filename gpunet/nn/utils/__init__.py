"""``torch.nn.utils`` spellings: ``rnn.pad_sequence``, ``clip_grad_norm_``,
``clip_grad_value_``, ``parameters_to_vector`` and ``vector_to_parameters``."""

from gpunet.nn.utils import rnn
from gpunet.nn.utils.clip_grad import clip_grad_norm_, clip_grad_value_
from gpunet.nn.utils.convert import parameters_to_vector, vector_to_parameters

__all__ = ["clip_grad_norm_", "clip_grad_value_", "parameters_to_vector", "rnn",
           "vector_to_parameters"]  # fmt: skip
