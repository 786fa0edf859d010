"""The Transformer's building blocks: positional encoding, residual connections, the encoder and decoder blocks.

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


class TransformerDecoder(Layer):
    """One Transformer decoder block, KerasNLP's post-norm layout, called as ``dec(x, encoder_outputs)``::

        x = LayerNorm(x + Dropout(MultiHeadAttention(x, causal)))                 masked self-attention
        x = LayerNorm(x + Dropout(MultiHeadAttention(x, encoder_outputs)))        cross-attention
        y = LayerNorm(x + Dropout(Dense(d)(Dense(ff_dim, relu)(x))))              position-wise feed-forward

    Position i of the target attends to positions j <= i of the target (what it has produced so far,
    teacher forcing in training) and to every position of the source. Backward runs the three blocks in
    reverse; the cross-attention sends a gradient to both: ``backward(dy)`` returns dL/dx and leaves
    dL/dencoder_outputs in ``decoder.encoder_grad`` (a model routes both).

    In a model the masks come from the inputs: ``mask`` is the target's padding, ``encoder_outputs_mask``
    the source's (padded source steps are never looked at).

    Args:
        num_heads, key_dim: of both attentions.
        ff_dim: the hidden size of the feed-forward network.
        dropout: after each attention and after the feed-forward network.
    """

    supports_masking = True  # the output keeps the target's mask (gpunn.layers.masking)

    def __init__(self, num_heads, key_dim, ff_dim, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(ff_dim, (int, np.integer)) or ff_dim < 1:
            raise ValueError(f"Layer '{self.name}': ff_dim must be a positive integer; received ff_dim={ff_dim!r}")
        self.num_heads, self.key_dim, self.ff_dim, self.dropout = num_heads, key_dim, int(ff_dim), dropout

    def build(self, input_shape, encoder_shape=None):
        super().build(input_shape)
        encoder_shape = tuple(input_shape if encoder_shape is None else encoder_shape)
        for what, shape in (("x", input_shape), ("encoder_outputs", encoder_shape)):
            if len(shape) != 2:
                raise ValueError(f"Layer '{self.name}' expects {what} of sample shape (time, features); "
                                 f"received {tuple(shape)}")
        depth, p = input_shape[-1], self.name
        self.self_attention = MultiHeadAttention(self.num_heads, self.key_dim, use_causal_mask=True,
                                                 name=f"{p}_self_attention")
        self.self_block = Residual([self.self_attention, Dropout(self.dropout, name=f"{p}_dropout_1")],
                                   name=f"{p}_residual_1")
        self.cross_attention = MultiHeadAttention(self.num_heads, self.key_dim, name=f"{p}_cross_attention")
        self.cross_dropout = Dropout(self.dropout, name=f"{p}_dropout_2")
        self.feed_forward = Residual([Dense(self.ff_dim, activation="relu", name=f"{p}_ff_1"),
                                      Dense(depth, name=f"{p}_ff_2"), Dropout(self.dropout, name=f"{p}_dropout_3")],
                                     name=f"{p}_residual_3")
        self.norms = [LayerNormalization(name=f"{p}_norm_{i}") for i in (1, 2, 3)]
        self.self_block.build(tuple(input_shape))
        self.cross_attention.build(tuple(input_shape), encoder_shape)
        self.feed_forward.build(tuple(input_shape))
        for norm in self.norms:
            norm.build(tuple(input_shape))
        self.sublayers = [self.self_block, self.norms[0], self.cross_attention, self.cross_dropout, self.norms[1],
                          self.feed_forward, self.norms[2]]

    def build_for(self, shapes):
        self.build(shapes["x"], shapes["encoder_outputs"])

    def output_shape_for(self, shapes):
        return tuple(shapes["x"])

    def forward(self, x, encoder_outputs, mask=None, encoder_outputs_mask=None, training=False):
        check_rank(self, x, 3, "x of shape (batch, time, features)")
        check_rank(self, encoder_outputs, 3, "encoder_outputs of shape (batch, time, features)")
        x = self.norms[0].forward(self.self_block.forward(x, mask=mask, training=training))
        context = self.cross_attention.forward(x, encoder_outputs, value_mask=encoder_outputs_mask)
        x = self.norms[1].forward(x + self.cross_dropout.forward(context, training=training))
        return self.norms[2].forward(self.feed_forward.forward(x, training=training))

    def backward(self, dy):
        d = self.feed_forward.backward(self.norms[2].backward(dy))
        d = self.norms[1].backward(d)
        d = d + self.cross_attention.backward(self.cross_dropout.backward(d))  # the residual, then the query's path
        grads = self.cross_attention.input_grads
        self.encoder_grad = grads["value"] + grads["key"]
        return self.self_block.backward(self.norms[0].backward(d))

    def backward_call(self, dy, arguments):
        dx = self.backward(dy)
        return {"x": dx, "encoder_outputs": self.encoder_grad}

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "key_dim": self.key_dim, "ff_dim": self.ff_dim,
                "dropout": self.dropout}
