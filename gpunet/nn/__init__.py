"""PyTorch spellings over gpunet layers and losses, for code written as in a
PyTorch tutorial: ``nn.Module`` with ``forward``, ``nn.Sequential(nn.Linear(10, 64),
nn.ReLU(), ...)``, ``nn.CrossEntropyLoss()``, ``nn.functional``. Losses take
``(input, target)``.

Example:
    >>> import numpy as np
    >>> from gpunet import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> net(np.zeros((2, 4))).shape
    (2, 3)
"""

from gpunet.nn import functional, init, utils
from gpunet.nn.attention import MultiheadAttention
from gpunet.nn.cells import GRUCell, LSTMCell, RNNCell
from gpunet.nn.conv import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    Conv1d,
    Conv2d,
    ConvTranspose2d,
    MaxPool2d,
    Unflatten,
)
from gpunet.nn.embedding import Embedding
from gpunet.nn.losses import (
    BCELoss,
    BCEWithLogitsLoss,
    CosineSimilarity,
    CrossEntropyLoss,
    HuberLoss,
    KLDivLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)
from gpunet.nn.modules import (
    ELU,
    GELU,
    SELU,
    Dropout,
    Flatten,
    Identity,
    LeakyReLU,
    Linear,
    LogSoftmax,
    Module,
    ModuleDict,
    ModuleList,
    Parameter,
    ReLU,
    Sequential,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)
from gpunet.nn.normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from gpunet.nn.recurrent import GRU, LSTM, RNN
from gpunet.nn.spatial import (
    AdaptiveAvgPool1d,
    AvgPool1d,
    Dropout1d,
    Dropout2d,
    MaxPool1d,
    Upsample,
)
from gpunet.nn.transformer import (
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)

__all__ = [
    "ELU",
    "GELU",
    "GRU",
    "LSTM",
    "RNN",
    "SELU",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AvgPool1d",
    "AvgPool2d",
    "BCELoss",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv1d",
    "Conv2d",
    "ConvTranspose2d",
    "CosineSimilarity",
    "CrossEntropyLoss",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Embedding",
    "Flatten",
    "GRUCell",
    "HuberLoss",
    "Identity",
    "KLDivLoss",
    "L1Loss",
    "LSTMCell",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MSELoss",
    "MaxPool1d",
    "MaxPool2d",
    "Module",
    "ModuleDict",
    "ModuleList",
    "MultiheadAttention",
    "NLLLoss",
    "Parameter",
    "RNNCell",
    "ReLU",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "SmoothL1Loss",
    "Softmax",
    "Softplus",
    "Tanh",
    "Transformer",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "Unflatten",
    "Upsample",
    "functional",
    "init",
    "utils",
]
