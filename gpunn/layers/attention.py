"""Attention and the Transformer encoder. Sequences are (batch, time, features)."""

import math

import numpy as np

import gpunn.backend as backend
from gpunn.layers.base import Layer, as_layer, check_rank, layer_config, on_backend
from gpunn.layers.core import Dense, Dropout
from gpunn.ops.attention import attention_backward, attention_forward, probabilities


class LayerNormalization(Layer):
    """Normalize each example's features (the last axis), then scale and shift.

    Forward (over the n features of one position):
        mu = mean(x), var = mean((x - mu)^2), x_hat = (x - mu) / sqrt(var + eps), y = gamma x_hat + beta
    Backward, with dx_hat = dy * gamma:
        dx = (n dx_hat - sum(dx_hat) - x_hat sum(dx_hat x_hat)) / (n sqrt(var + eps))

    Unlike BatchNormalization it does not look across the batch, so it behaves the
    same in training and at inference -- what Transformers use.
    """

    def __init__(self, epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        if epsilon <= 0:
            raise ValueError(f"Layer '{self.name}': epsilon must be positive; received epsilon={epsilon!r}")
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        super().build(input_shape)
        self.add_weight("gamma", (input_shape[-1],), "ones")
        self.add_weight("beta", (input_shape[-1],), "zeros")

    def forward(self, x, training=False):
        xp = backend.get_array_module(x)
        mu = x.mean(axis=-1, keepdims=True)
        self.inv_std = 1.0 / xp.sqrt(x.var(axis=-1, keepdims=True) + self.epsilon)
        self.x_hat = (x - mu) * self.inv_std
        return self.gamma * self.x_hat + self.beta

    def backward(self, dy):
        axes = tuple(range(dy.ndim - 1))
        self.grads["gamma"] = (dy * self.x_hat).sum(axis=axes)
        self.grads["beta"] = dy.sum(axis=axes)
        dx_hat = dy * self.gamma
        n = dy.shape[-1]
        return (self.inv_std / n) * (n * dx_hat - dx_hat.sum(axis=-1, keepdims=True)
                                     - self.x_hat * (dx_hat * self.x_hat).sum(axis=-1, keepdims=True))

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


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

    def forward(self, x, training=False):
        check_rank(self, x, 3, "(batch, time, features)")
        key = (x.shape[1], x.shape[2], x.dtype, backend.name)
        if getattr(self, "table_key", None) != key:
            self.table_key = key
            self.table = backend.to_device(sinusoidal_encoding(x.shape[1], x.shape[2]), dtype=x.dtype)
        return x + self.table

    def backward(self, dy):
        return dy


class MultiHeadAttention(Layer):
    """Multi-head scaled dot-product attention, as in Keras.

    For each head h, with learned projections::

        Q_h = query W^Q_h,  K_h = key W^K_h,  V_h = value W^V_h
        head_h = softmax(Q_h K_h^T / sqrt(key_dim)) V_h           (masked keys get weight 0)
        output = concat(head_1 .. head_H) W^O

    The attention itself is :func:`gpunn.ops.attention.attention_forward`: on a GPU a
    fused kernel that never stores the (L_q x L_k) weights.

    In a Sequential model the layer attends to its own input (self-attention). Called
    directly, ``layer(query, value, key=None, attention_mask=None, use_causal_mask=False,
    return_attention_scores=False)`` does cross-attention as Keras does; then ``backward(dy)``
    returns dL/dquery and leaves all three input gradients in ``layer.input_grads``.

    Args:
        num_heads, key_dim: heads and the size of each query/key projection.
        value_dim: size of each value projection (default key_dim).
        dropout: dropout on the attention weights (training only; uses the unfused path).
        use_causal_mask: the default for self-attention in a model: position i sees j <= i.
    """

    def __init__(self, num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True, use_causal_mask=False,
                 **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("num_heads", num_heads), ("key_dim", key_dim), ("value_dim", value_dim or key_dim)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Layer '{self.name}': {arg} must be a positive integer; received {arg}={value!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"Layer '{self.name}': dropout must be in [0, 1); received dropout={dropout!r}")
        self.num_heads, self.key_dim, self.value_dim = int(num_heads), int(key_dim), int(value_dim or key_dim)
        self.dropout, self.use_bias, self.use_causal_mask = float(dropout), use_bias, use_causal_mask
        self.attention_dropout = Dropout(dropout, name=f"{self.name}_dropout") if dropout else None

    def build(self, input_shape, value_shape=None, key_shape=None):
        super().build(input_shape)
        value_shape = value_shape or input_shape
        key_shape = key_shape or value_shape
        h, dk, dv = self.num_heads, self.key_dim, self.value_dim
        for name, features, size in (("query", input_shape[-1], dk), ("key", key_shape[-1], dk),
                                     ("value", value_shape[-1], dv)):
            self.add_weight(f"{name}_kernel", (features, h * size), "glorot_uniform")
            if self.use_bias:
                self.add_weight(f"{name}_bias", (h * size,), "zeros")
        self.add_weight("output_kernel", (h * dv, input_shape[-1]), "glorot_uniform")
        if self.use_bias:
            self.add_weight("output_bias", (input_shape[-1],), "zeros")

    def _project(self, x, name, size):
        """(B, L, features) -> (B, heads, L, size)."""
        y = x @ getattr(self, f"{name}_kernel")
        if self.use_bias:
            y = y + getattr(self, f"{name}_bias")
        return backend.get_array_module(y).ascontiguousarray(
            y.reshape(x.shape[0], x.shape[1], self.num_heads, size).transpose(0, 2, 1, 3))

    def _check(self, what, x, features):
        check_rank(self, x, 3, f"{what} of shape (batch, time, features)")
        if x.shape[-1] != features:
            raise ValueError(f"Layer '{self.name}' expects {what} with {features} features (its {what} projection "
                             f"is {features} x {self.num_heads} heads); received an array of shape {tuple(x.shape)}")

    def __call__(self, query, value=None, key=None, attention_mask=None, use_causal_mask=None,
                 return_attention_scores=False, training=False):
        query, value, key, attention_mask = map(on_backend, (query, value, key, attention_mask))
        value = query if value is None else value
        key = value if key is None else key
        if not self.built:
            self.build(tuple(query.shape[1:]), tuple(value.shape[1:]), tuple(key.shape[1:]))
        causal = self.use_causal_mask if use_causal_mask is None else use_causal_mask
        return self.attend(query, value, key, attention_mask, causal, training, return_attention_scores)

    def forward(self, x, training=False):
        return self.attend(x, x, x, None, self.use_causal_mask, training, False)

    def attend(self, query, value, key, attention_mask, causal, training, return_scores):
        self._check("query", query, self.query_kernel.shape[0])
        self._check("value", value, self.value_kernel.shape[0])
        self._check("key", key, self.key_kernel.shape[0])
        if len(key) != len(value) or key.shape[1] != value.shape[1]:
            raise ValueError(f"Layer '{self.name}': key and value must have the same batch and time sizes; received "
                             f"{tuple(key.shape)} and {tuple(value.shape)}")
        self.mask = self._key_mask(attention_mask, query, key)
        self.causal = causal
        self.inputs = (query, value, key)
        self.q = self._project(query, "query", self.key_dim)
        self.k = self._project(key, "key", self.key_dim)
        self.v = self._project(value, "value", self.value_dim)
        self.unfused = return_scores or (self.attention_dropout is not None and training)
        if self.unfused:  # the attention weights themselves are needed
            self.p, _ = probabilities(self.q, self.k, self.mask, causal)
            self.p_used = self.attention_dropout.forward(self.p, training) if self.attention_dropout else self.p
            self.heads = self.p_used @ self.v
        else:
            self.heads, self.lse = attention_forward(self.q, self.k, self.v, self.mask, causal)
        b, h, lq, dv = self.heads.shape
        self.concat = self.heads.transpose(0, 2, 1, 3).reshape(b, lq, h * dv)
        out = self.concat @ self.output_kernel
        if self.use_bias:
            out = out + self.output_bias
        return (out, self.p) if return_scores else out

    def _key_mask(self, attention_mask, query, key):
        """Keras's (B, Lq, Lk) mask or a (B, Lk) key-padding mask -> what the attention op takes."""
        if attention_mask is None:
            return None
        xp = backend.get_array_module(query)
        mask = xp.asarray(attention_mask).astype(bool)
        b, lq, lk = len(query), query.shape[1], key.shape[1]
        if mask.shape == (b, lk):
            return mask
        if mask.shape in ((b, lq, lk), (b, 1, lk)):
            if bool((mask == mask[:, :1]).all()):  # the same for every query: key padding
                return mask[:, 0]
            return mask[:, None]  # a general mask: the unfused path handles it
        raise ValueError(f"Layer '{self.name}': attention_mask must have shape (batch, key_len) = {(b, lk)} or "
                         f"(batch, query_len, key_len) = {(b, lq, lk)}; received {tuple(mask.shape)}")

    def backward(self, dy):
        xp = backend.get_array_module(dy)
        query, value, key = self.inputs
        b, lq, _ = dy.shape
        flat = lambda a: a.reshape(-1, a.shape[-1])  # noqa: E731 - (B, L, n) -> (B*L, n)
        self.grads["output_kernel"] = flat(self.concat).T @ flat(dy)
        if self.use_bias:
            self.grads["output_bias"] = dy.sum(axis=(0, 1))
        d_heads = xp.ascontiguousarray((dy @ self.output_kernel.T).reshape(b, lq, self.num_heads, self.value_dim)
                                       .transpose(0, 2, 1, 3))
        if self.unfused:
            dq, dk, dv = self._unfused_backward(d_heads)
        else:
            dq, dk, dv = attention_backward(self.q, self.k, self.v, self.heads, self.lse, d_heads, self.mask,
                                            self.causal)
        dx = {}
        for name, x, d in (("query", query, dq), ("key", key, dk), ("value", value, dv)):
            d = d.transpose(0, 2, 1, 3).reshape(x.shape[0], x.shape[1], -1)  # (B, L, heads * size)
            self.grads[f"{name}_kernel"] = flat(x).T @ flat(d)
            if self.use_bias:
                self.grads[f"{name}_bias"] = d.sum(axis=(0, 1))
            dx[name] = d @ getattr(self, f"{name}_kernel").T
        self.input_grads = dx
        return dx["query"] + dx["key"] + dx["value"] if query is key is value else dx["query"]

    def _unfused_backward(self, d_heads):
        """Through heads = dropout(P) V and P = softmax(S), with the stored P."""
        p = self.p
        dv = self.p_used.swapaxes(-1, -2) @ d_heads
        dp = d_heads @ self.v.swapaxes(-1, -2)
        if self.attention_dropout is not None:
            dp = self.attention_dropout.backward(dp)
        ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
        scale = 1.0 / math.sqrt(self.key_dim)
        return (ds @ self.k) * scale, (ds.swapaxes(-1, -2) @ self.q) * scale, dv

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "key_dim": self.key_dim,
                "value_dim": self.value_dim, "dropout": self.dropout, "use_bias": self.use_bias,
                "use_causal_mask": self.use_causal_mask}


class AdditiveAttention(Layer):
    """Bahdanau-style additive scoring, as Keras's AdditiveAttention (self-attention in a Sequential model).

        score(q_i, k_j) = sum_c scale_c tanh(q_ic + k_jc)         (learned scale vector)
        a_i = softmax_j(score(q_i, k_j)),   out_i = sum_j a_ij v_j

    Called directly, ``layer(query, value, key=None, return_attention_scores=False)``.
    """

    def __init__(self, use_scale=True, **kwargs):
        super().__init__(**kwargs)
        self.use_scale = use_scale

    def build(self, input_shape):
        super().build(input_shape)
        if self.use_scale:
            self.add_weight("scale", (input_shape[-1],), "glorot_uniform")

    def __call__(self, query, value=None, key=None, return_attention_scores=False, training=False):
        query, value, key = map(on_backend, (query, value, key))
        value = query if value is None else value
        key = value if key is None else key
        if not self.built:
            self.build(tuple(query.shape[1:]))
        out = self.attend(query, value, key)
        return (out, self.attention_weights) if return_attention_scores else out

    def forward(self, x, training=False):
        return self.attend(x, x, x)

    def attend(self, query, value, key):
        xp = backend.get_array_module(query)
        for what, x in (("query", query), ("value", value), ("key", key)):
            check_rank(self, x, 3, f"{what} of shape (batch, time, features)")
        if query.shape[-1] != key.shape[-1]:
            raise ValueError(f"Layer '{self.name}': query and key need the same number of features; received "
                             f"{tuple(query.shape)} and {tuple(key.shape)}")
        self.inputs = (query, value, key)
        self.t = xp.tanh(query[:, :, None, :] + key[:, None, :, :])  # (B, Lq, Lk, n)
        scale = self.scale if self.use_scale else 1.0
        scores = (self.t * scale).sum(axis=-1)
        e = xp.exp(scores - scores.max(axis=-1, keepdims=True))
        self.attention_weights = e / e.sum(axis=-1, keepdims=True)
        return self.attention_weights @ value

    def backward(self, dy):
        query, value, key = self.inputs
        a = self.attention_weights
        dvalue = a.swapaxes(-1, -2) @ dy
        da = dy @ value.swapaxes(-1, -2)
        dscores = a * (da - (da * a).sum(axis=-1, keepdims=True))
        scale = self.scale if self.use_scale else 1.0
        if self.use_scale:
            self.grads["scale"] = (dscores[..., None] * self.t).sum(axis=(0, 1, 2))
        dpre = dscores[..., None] * scale * (1 - self.t * self.t)  # through tanh, (B, Lq, Lk, n)
        dquery, dkey = dpre.sum(axis=2), dpre.sum(axis=1)
        return dquery + dkey + dvalue if query is key is value else dquery

    def get_config(self):
        return {**super().get_config(), "use_scale": self.use_scale}


class Residual(Layer):
    """A skip connection around a layer or a chain of layers:  y = x + f(x),  dx = dy + f'(x)^T dy.

    Example (inside a Sequential model):
        >>> Residual([MultiHeadAttention(4, 16), Dropout(0.1)])
    """

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

    def forward(self, x, training=False):
        y = x
        for layer in self.sublayers:
            y = layer.forward(y, training)
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

    def forward(self, x, training=False):
        for layer in self.sublayers:
            x = layer.forward(x, training)
        return x

    def backward(self, dy):
        for layer in reversed(self.sublayers):
            dy = layer.backward(dy)
        return dy

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "key_dim": self.key_dim, "ff_dim": self.ff_dim,
                "dropout": self.dropout, "use_causal_mask": self.use_causal_mask}


class GlobalAveragePooling1D(Layer):
    """(batch, time, features) -> (batch, features): the mean over time. Backward: dy / T at every step."""

    def compute_output_shape(self, input_shape):
        return (input_shape[-1],)

    def forward(self, x, training=False):
        check_rank(self, x, 3, "(batch, time, features)")
        self.x_shape = x.shape
        return x.mean(axis=1)

    def backward(self, dy):
        xp = backend.get_array_module(dy)
        return xp.broadcast_to((dy / self.x_shape[1])[:, None, :], self.x_shape)
