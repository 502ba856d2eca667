"""``torch.nn.utils`` spellings: ``rnn.pad_sequence``."""

from gpunet.nn.utils import rnn

__all__ = ["rnn"]
