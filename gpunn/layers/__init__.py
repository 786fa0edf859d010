"""gpunn layers, with Keras names."""

from gpunn.layers.activation_layers import Maxout, PReLU
from gpunn.layers.attention import MultiHeadAttention
from gpunn.layers.augmentation import RandomCrop, RandomFlip, RandomRotation, RandomTranslation
from gpunn.layers.base import Layer
from gpunn.layers.convolutional import Conv1D, Conv2D, Convolution1D, Convolution2D, ZeroPadding2D
from gpunn.layers.core import Activation, Dense, Dropout, Flatten, Reshape
from gpunn.layers.dense_attention import AdditiveAttention, Attention
from gpunn.layers.embedding import Embedding
from gpunn.layers.merge import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract, add, average,
                                concatenate, dot, maximum, minimum, multiply, subtract)
from gpunn.layers.normalization import BatchNormalization, LayerNormalization
from gpunn.layers.pooling import (AveragePooling1D, AveragePooling2D, AvgPool1D, AvgPool2D, GlobalAveragePooling1D,
                                  GlobalAveragePooling2D, MaxPool1D, MaxPool2D, MaxPooling1D, MaxPooling2D)
from gpunn.layers.recurrent import GRU, LSTM, SimpleRNN
from gpunn.layers.transformer import PositionalEncoding, Residual, TransformerDecoder, TransformerEncoder
from gpunn.layers.unit_normalization import UnitNormalization
from gpunn.layers.wrappers import Bidirectional, TimeDistributed

# The layer classes (what a saved model may name), then Keras's lower-case shorthands for the merge layers.
__all__ = ["Activation", "Add", "AdditiveAttention", "Attention", "Average", "AveragePooling1D", "AveragePooling2D",
           "AvgPool1D", "AvgPool2D", "BatchNormalization", "Bidirectional", "Concatenate", "Conv1D", "Conv2D",
           "Convolution1D", "Convolution2D", "Dense", "Dot", "Dropout", "Embedding", "Flatten", "GRU",
           "GlobalAveragePooling1D", "GlobalAveragePooling2D", "LSTM", "Layer", "LayerNormalization", "MaxPool1D",
           "MaxPool2D", "MaxPooling1D", "MaxPooling2D", "Maximum", "Maxout", "Minimum", "MultiHeadAttention",
           "Multiply", "PReLU", "PositionalEncoding", "RandomCrop", "RandomFlip", "RandomRotation",
           "RandomTranslation", "Reshape", "Residual", "SimpleRNN", "Subtract", "TimeDistributed",
           "TransformerDecoder", "TransformerEncoder", "UnitNormalization", "ZeroPadding2D",
           "add", "average", "concatenate", "dot", "maximum", "minimum", "multiply", "subtract"]
