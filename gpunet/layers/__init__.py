"""Layers, in Keras vocabulary.

Example:
    >>> import gpunet as gn
    >>> gn.layers.Dense(64, activation="relu", input_shape=(10,)).kernel.shape
    (10, 64)
"""

# keras.layers.Input, as Keras spells it too; not in __all__, which lists the layers
from gpunet.engine.functional import Input  # noqa: F401
from gpunet.layers.attention import MultiHeadAttention
from gpunet.layers.base import Layer, Parameter
from gpunet.layers.bidirectional import Bidirectional
from gpunet.layers.conv import Conv1D, Conv2D
from gpunet.layers.conv_transpose import Conv2DTranspose
from gpunet.layers.core import Activation, Dropout, Flatten, LeakyReLU, Softmax
from gpunet.layers.dense import Dense
from gpunet.layers.embedding import Embedding
from gpunet.layers.masking import Masking
from gpunet.layers.merge import (
    Add,
    Average,
    Concatenate,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
    add,
    average,
    concatenate,
    maximum,
    minimum,
    multiply,
    subtract,
)
from gpunet.layers.normalization import BatchNormalization, LayerNormalization
from gpunet.layers.pooling import (
    AveragePooling1D,
    AveragePooling2D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    MaxPooling1D,
    MaxPooling2D,
)
from gpunet.layers.position import PositionEmbedding, SinePositionEncoding
from gpunet.layers.recurrent import GRU, LSTM, SimpleRNN
from gpunet.layers.reshaping import (
    Cropping2D,
    Reshape,
    SpatialDropout2D,
    UpSampling2D,
    ZeroPadding2D,
)
from gpunet.layers.simple import (
    ELU,
    GaussianDropout,
    GaussianNoise,
    Identity,
    Lambda,
    Permute,
    ReLU,
    RepeatVector,
    Rescaling,
    SpatialDropout1D,
)
from gpunet.layers.time_distributed import TimeDistributed

# Keras' short names are the same classes (a saved model names the long one)
MaxPool1D, MaxPool2D = MaxPooling1D, MaxPooling2D
AvgPool1D, AvgPool2D = AveragePooling1D, AveragePooling2D
GlobalAvgPool1D, GlobalAvgPool2D = GlobalAveragePooling1D, GlobalAveragePooling2D
GlobalMaxPool1D, GlobalMaxPool2D = GlobalMaxPooling1D, GlobalMaxPooling2D

__all__ = [
    "ELU",
    "GRU",
    "LSTM",
    "Activation",
    "Add",
    "Average",
    "AveragePooling1D",
    "AveragePooling2D",
    "BatchNormalization",
    "Bidirectional",
    "Concatenate",
    "Conv1D",
    "Conv2D",
    "Conv2DTranspose",
    "Cropping2D",
    "Dense",
    "Dropout",
    "Embedding",
    "Flatten",
    "GaussianDropout",
    "GaussianNoise",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "Identity",
    "Lambda",
    "Layer",
    "LayerNormalization",
    "LeakyReLU",
    "Masking",
    "MaxPooling1D",
    "MaxPooling2D",
    "Maximum",
    "Minimum",
    "MultiHeadAttention",
    "Multiply",
    "Parameter",
    "Permute",
    "PositionEmbedding",
    "ReLU",
    "RepeatVector",
    "Rescaling",
    "Reshape",
    "SimpleRNN",
    "SinePositionEncoding",
    "Softmax",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "Subtract",
    "TimeDistributed",
    "UpSampling2D",
    "ZeroPadding2D",
    "add",
    "average",
    "concatenate",
    "maximum",
    "minimum",
    "multiply",
    "subtract",
]
