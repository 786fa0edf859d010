"""gpunn layers, with Keras names."""

from gpunn.layers.activation_layers import Maxout, PReLU
from gpunn.layers.attention import (AdditiveAttention, GlobalAveragePooling1D, LayerNormalization, MultiHeadAttention,
                                    PositionalEncoding, Residual, TransformerEncoder)
from gpunn.layers.base import Layer
from gpunn.layers.convolutional import Conv1D, Conv2D, Convolution1D, Convolution2D, ZeroPadding2D
from gpunn.layers.core import Activation, Dense, Dropout, Flatten, Reshape
from gpunn.layers.embedding import Embedding
from gpunn.layers.normalization import BatchNormalization
from gpunn.layers.pooling import (AveragePooling1D, AveragePooling2D, AvgPool1D, AvgPool2D, GlobalAveragePooling2D,
                                  MaxPool1D, MaxPool2D, MaxPooling1D, MaxPooling2D)
from gpunn.layers.recurrent import GRU, LSTM, SimpleRNN
from gpunn.layers.wrappers import Bidirectional, TimeDistributed

__all__ = ["Activation", "AdditiveAttention", "AveragePooling1D", "AveragePooling2D", "AvgPool1D", "AvgPool2D",
           "BatchNormalization", "Bidirectional", "Conv1D", "Conv2D", "Convolution1D", "Convolution2D", "Dense",
           "Dropout", "Embedding", "Flatten", "GRU", "GlobalAveragePooling1D", "GlobalAveragePooling2D", "LSTM",
           "Layer", "LayerNormalization", "MaxPool1D", "MaxPool2D", "MaxPooling1D", "MaxPooling2D", "Maxout",
           "MultiHeadAttention", "PReLU", "PositionalEncoding", "Reshape", "Residual", "SimpleRNN", "TimeDistributed",
           "TransformerEncoder", "ZeroPadding2D"]
