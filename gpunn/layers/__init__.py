"""gpunn layers, with Keras names."""

from gpunn.layers.activation_layers import Maxout, PReLU
from gpunn.layers.base import Layer
from gpunn.layers.convolutional import Conv2D, ZeroPadding2D
from gpunn.layers.core import Activation, Dense, Dropout, Flatten, Reshape
from gpunn.layers.normalization import BatchNormalization
from gpunn.layers.pooling import (AveragePooling2D, AvgPool2D, GlobalAveragePooling2D, MaxPool2D, MaxPooling2D)

__all__ = ["Activation", "AveragePooling2D", "AvgPool2D", "BatchNormalization", "Conv2D", "Dense", "Dropout",
           "Flatten", "GlobalAveragePooling2D", "Layer", "MaxPool2D", "MaxPooling2D", "Maxout", "PReLU", "Reshape",
           "ZeroPadding2D"]
