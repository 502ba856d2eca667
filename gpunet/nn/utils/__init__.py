"""``torch.nn.utils`` spellings: ``rnn.pad_sequence``, ``clip_grad_norm_`` and
``clip_grad_value_``."""

from gpunet.nn.utils import rnn
from gpunet.nn.utils.clip_grad import clip_grad_norm_, clip_grad_value_

__all__ = ["clip_grad_norm_", "clip_grad_value_", "rnn"]
