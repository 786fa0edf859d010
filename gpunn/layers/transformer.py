"""The Transformer's building blocks: positional encoding, residual connections, the encoder block.

Sequences are (batch, time, features). The attention itself is :mod:`gpunn.layers.attention`.
"""

import numpy as np

import gpunn.backend as backend
from gpunn.layers.attention import MultiHeadAttention
from gpunn.layers import masking
from gpunn.layers.base import Layer, as_layer, check_rank, layer_config
from gpunn.layers.core import Dense, Dropout
from gpunn.layers.normalization import LayerNormalization


def sinusoidal_encoding(length, depth):
    """PE[pos, 2i] = sin(pos / 10000^(2i/depth)),  PE[pos, 2i+1] = cos(pos / 10000^(2i/depth))."""
    positions = np.arange(length)[:, None]
    rates = 1.0 / 10000 ** (2 * (np.arange(depth) // 2) / depth)
    angles = positions * rates[None, :]
    return np.where(np.arange(depth) % 2 == 0, np.sin(angles), np.cos(angles))


class PositionalEncoding(Layer):
    """Adds the sinusoidal position signal of "Attention is all you need" to a (batch, time, depth) input.

    Attention alone cannot tell positions apart; adding PE gives every position a
    distinct pattern whose relative offsets are linear functions of each other.
    It has no weights; backward passes dy through unchanged. The table is built once per
    (length, depth) and kept on the device, so batches copy nothing from the host.
    """

    supports_masking = True  # the output keeps the input's mask (gpunn.layers.masking)

    def forward(self, x, training=False):
        check_rank(self, x, 3, "(batch, time, features)")
        key = (x.shape[1], x.shape[2], x.dtype, backend.name)
        if getattr(self, "table_key", None) != key:
            self.table_key = key
            self.table = backend.to_device(sinusoidal_encoding(x.shape[1], x.shape[2]), dtype=x.dtype)
        return x + self.table

    def backward(self, dy):
        return dy


class Residual(Layer):
    """A skip connection around a layer or a chain of layers:  y = x + f(x),  dx = dy + f'(x)^T dy.

    Example (inside a Sequential model):
        >>> Residual([MultiHeadAttention(4, 16), Dropout(0.1)])
    """

    supports_masking = True  # the output keeps the input's mask (gpunn.layers.masking)

    def __init__(self, layers, **kwargs):
        super().__init__(**kwargs)
        self.sublayers = [as_layer(layer) for layer in (layers if isinstance(layers, (list, tuple)) else [layers])]

    def build(self, input_shape):
        super().build(input_shape)
        shape = tuple(input_shape)
        for layer in self.sublayers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        if shape != tuple(input_shape):
            raise ValueError(f"Layer '{self.name}': the wrapped layers turn samples of shape {tuple(input_shape)} into "
                             f"{shape}; a residual connection needs them equal")

    def forward(self, x, mask=None, training=False):
        """``mask``: the input's padding, handed to the wrapped layers that take one (attention)."""
        y = x
        for layer in self.sublayers:
            y = layer.forward(y, **masking.first_mask(layer, mask), training=training)
        return x + y

    def backward(self, dy):
        d = dy
        for layer in reversed(self.sublayers):
            d = layer.backward(d)
        return dy + d

    def get_config(self):
        return {**super().get_config(),
                "layers": [layer_config(layer) for layer in self.sublayers]}


class TransformerEncoder(Layer):
    """One Transformer encoder block (post-norm, as in "Attention is all you need")::

        x = LayerNorm(x + Dropout(MultiHeadAttention(x)))
        y = LayerNorm(x + Dropout(Dense(d)(Dense(ff_dim, relu)(x))))      (position-wise feed-forward)

    After building, ``encoder.attention`` is its MultiHeadAttention layer (to look at its weights).

    Args:
        num_heads, key_dim: of the self-attention.
        ff_dim: the hidden size of the feed-forward network.
        dropout: after the attention and after the feed-forward network.
    """

    supports_masking = True  # the output keeps the input's mask (gpunn.layers.masking)

    def __init__(self, num_heads, key_dim, ff_dim, dropout=0.1, use_causal_mask=False, **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.key_dim, self.ff_dim = num_heads, key_dim, ff_dim
        self.dropout, self.use_causal_mask = dropout, use_causal_mask

    def build(self, input_shape):
        super().build(input_shape)
        if len(input_shape) != 2:
            raise ValueError(f"Layer '{self.name}' expects samples of shape (time, features); received {input_shape}")
        depth = input_shape[-1]
        p = self.name
        self.attention = MultiHeadAttention(self.num_heads, self.key_dim, use_causal_mask=self.use_causal_mask,
                                            name=f"{p}_attention")
        self.attention_block = Residual([self.attention, Dropout(self.dropout, name=f"{p}_dropout_1")],
                                        name=f"{p}_residual_1")
        self.norm_1 = LayerNormalization(name=f"{p}_norm_1")
        self.feed_forward = Residual([Dense(self.ff_dim, activation="relu", name=f"{p}_ff_1"),
                                      Dense(depth, name=f"{p}_ff_2"), Dropout(self.dropout, name=f"{p}_dropout_2")],
                                     name=f"{p}_residual_2")
        self.norm_2 = LayerNormalization(name=f"{p}_norm_2")
        self.sublayers = [self.attention_block, self.norm_1, self.feed_forward, self.norm_2]
        for layer in self.sublayers:
            layer.build(tuple(input_shape))

    def forward(self, x, mask=None, training=False):
        """``mask`` (batch, time): padded steps, which the self-attention never looks at."""
        for layer in self.sublayers:
            x = layer.forward(x, **masking.first_mask(layer, mask), training=training)
        return x

    def backward(self, dy):
        for layer in reversed(self.sublayers):
            dy = layer.backward(dy)
        return dy

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "key_dim": self.key_dim, "ff_dim": self.ff_dim,
                "dropout": self.dropout, "use_causal_mask": self.use_causal_mask}
