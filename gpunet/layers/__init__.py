"""Layers, in Keras vocabulary.

Example:
    >>> import gpunet as gn
    >>> gn.layers.Dense(64, activation="relu", input_shape=(10,)).kernel.shape
    (10, 64)
"""

from gpunet.layers.base import Layer, Parameter
from gpunet.layers.conv import Conv1D, Conv2D
from gpunet.layers.core import Activation, Dropout, Flatten, Softmax
from gpunet.layers.dense import Dense
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

__all__ = [
    "Activation",
    "Add",
    "Average",
    "BatchNormalization",
    "Concatenate",
    "Conv1D",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "Layer",
    "LayerNormalization",
    "Maximum",
    "Minimum",
    "Multiply",
    "Parameter",
    "Softmax",
    "Subtract",
    "add",
    "average",
    "concatenate",
    "maximum",
    "minimum",
    "multiply",
    "subtract",
]
