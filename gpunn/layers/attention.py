"""MultiHeadAttention: scaled dot-product attention on the fused kernel.

Sequences are (batch, time, features). The Transformer's other blocks are in :mod:`gpunn.layers.transformer`;
the single-score attention layers of encoder-decoder RNNs (Luong's ``Attention``, Bahdanau's
``AdditiveAttention``) in :mod:`gpunn.layers.dense_attention`.
"""

import math

import numpy as np

import gpunn.backend as backend
from gpunn.layers.base import Layer, check_rank
from gpunn.layers.core import Dropout
from gpunn.ops.attention import attention_backward, attention_forward, probabilities


class MultiHeadAttention(Layer):
    """Multi-head scaled dot-product attention, as in Keras.

    For each head h, with learned projections::

        Q_h = query W^Q_h,  K_h = key W^K_h,  V_h = value W^V_h
        head_h = softmax(Q_h K_h^T / sqrt(key_dim)) V_h           (masked keys get weight 0)
        output = concat(head_1 .. head_H) W^O

    The attention itself is :func:`gpunn.ops.attention.attention_forward`: on a GPU a
    fused kernel that never stores the (L_q x L_k) weights.

    In a Sequential model the layer attends to its own input (self-attention). Called as
    ``layer(query, value, key=None, attention_mask=None, use_causal_mask=False,
    return_attention_scores=False)`` -- on arrays, or on symbolic tensors in a graph -- it does
    cross-attention as Keras does; ``backward(dy)`` then returns dL/dquery and leaves all
    three input gradients in ``layer.input_grads``. The attention scores, when returned, are
    for looking at: no gradient flows back through them.

    Masks (Keras's ``query_mask``, ``value_mask``, ``key_mask``, which a model fills from its padded
    tensors, :mod:`gpunn.layers.masking`): padded keys get weight exactly 0. Padded queries are not
    masked (Keras masks them too): their outputs keep the query's mask and the loss ignores them,
    which keeps the mask a (batch, key_len) key-padding mask that the fused kernel takes.

    Args:
        num_heads, key_dim: heads and the size of each query/key projection.
        value_dim: size of each value projection (default key_dim).
        dropout: dropout on the attention weights (training only; uses the unfused path).
        use_causal_mask: the default for self-attention in a model: position i sees j <= i.
    """

    supports_masking = True  # the output keeps the input's mask (gpunn.layers.masking)

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

    def build_for(self, shapes):
        self.build(shapes["query"], shapes.get("value"), shapes.get("key"))

    def output_shape_for(self, shapes):
        query = tuple(shapes["query"])
        if not shapes.get("return_attention_scores"):
            return query
        keys = (shapes.get("key") or shapes.get("value") or query)[0]
        return [query, (self.num_heads, query[0], keys)]

    def forward(self, query, value=None, key=None, attention_mask=None, use_causal_mask=None,
                return_attention_scores=False, query_mask=None, value_mask=None, key_mask=None, training=False):
        """Self-attention on ``query`` alone (as in a Sequential model), cross-attention with ``value`` (and ``key``)."""
        if value is None:  # self-attention: the queries are the keys and values, padding included
            value, value_mask = query, query_mask if value_mask is None else value_mask
        key = value if key is None else key
        padding = value_mask if key_mask is None else key_mask if value_mask is None else value_mask & key_mask
        causal = self.use_causal_mask if use_causal_mask is None else use_causal_mask
        return self.attend(query, value, key, attention_mask, causal, training, return_attention_scores, padding)

    def backward_call(self, dy, arguments):
        if isinstance(dy, list):  # (output, attention scores): the scores are for looking at, they take no gradient
            dy = dy[0]
        self.backward(dy)
        g = self.input_grads
        if arguments.get("value") is None:  # self-attention: query, key and value were one tensor
            return {"query": g["query"] + g["value"] + g["key"]}
        if arguments.get("key") is None:
            return {"query": g["query"], "value": g["value"] + g["key"]}
        return {"query": g["query"], "value": g["value"], "key": g["key"]}

    def attend(self, query, value, key, attention_mask, causal, training, return_scores, padding=None):
        self._check("query", query, self.query_kernel.shape[0])
        self._check("value", value, self.value_kernel.shape[0])
        self._check("key", key, self.key_kernel.shape[0])
        if len(key) != len(value) or key.shape[1] != value.shape[1]:
            raise ValueError(f"Layer '{self.name}': key and value must have the same batch and time sizes; received "
                             f"{tuple(key.shape)} and {tuple(value.shape)}")
        self.mask = self._key_mask(attention_mask, query, key, padding)
        self.causal = causal
        self.inputs = (query, value, key)
        self.q = self._project(query, "query", self.key_dim)
        self.k = self._project(key, "key", self.key_dim)
        self.v = self._project(value, "value", self.value_dim)
        self.unfused = return_scores or (self.attention_dropout is not None and training)
        if self.unfused:  # the attention weights themselves are needed
            self.p, _ = probabilities(self.q, self.k, self.mask, causal)
            self.p_used = self.attention_dropout.forward(self.p, training=training) if self.attention_dropout else self.p
            self.heads = self.p_used @ self.v
        else:
            self.heads, self.lse = attention_forward(self.q, self.k, self.v, self.mask, causal)
        b, h, lq, dv = self.heads.shape
        self.concat = self.heads.transpose(0, 2, 1, 3).reshape(b, lq, h * dv)
        out = self.concat @ self.output_kernel
        if self.use_bias:
            out = out + self.output_bias
        return (out, self.p) if return_scores else out

    def _key_mask(self, attention_mask, query, key, padding=None):
        """Keras's (B, Lq, Lk) mask or a (B, Lk) key-padding mask, and the keys' ``padding`` (B, Lk) -> what
        the attention op takes."""
        b, lq, lk = len(query), query.shape[1], key.shape[1]
        if padding is not None and tuple(padding.shape) != (b, lk):
            raise ValueError(f"Layer '{self.name}': the keys' mask must have shape (batch, key_len) = {(b, lk)}; "
                             f"received {tuple(padding.shape)}")
        padding = None if padding is None else padding.astype(bool, copy=False)
        if attention_mask is None:
            return padding
        xp = backend.get_array_module(query)
        mask = xp.asarray(attention_mask).astype(bool)
        if mask.shape in ((b, lq, lk), (b, 1, lk)):
            if bool((mask == mask[:, :1]).all()):  # the same for every query: key padding
                mask = mask[:, 0]
            else:
                mask = mask[:, None]  # a general mask: the unfused path handles it
        elif mask.shape != (b, lk):
            raise ValueError(f"Layer '{self.name}': attention_mask must have shape (batch, key_len) = {(b, lk)} or "
                             f"(batch, query_len, key_len) = {(b, lq, lk)}; received {tuple(mask.shape)}")
        if padding is not None:
            mask = mask & (padding if mask.ndim == 2 else padding[:, None, None, :])
        return mask

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
