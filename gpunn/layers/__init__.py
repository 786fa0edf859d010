"""gpunn layers, with Keras names."""

from gpunn.layers.activation_layers import Maxout, PReLU
from gpunn.layers.base import Layer
from gpunn.layers.core import Activation, Dense, Dropout, Flatten, Reshape

__all__ = ["Activation", "Dense", "Dropout", "Flatten", "Layer", "Maxout", "PReLU", "Reshape"]
