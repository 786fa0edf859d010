"""Attention over a sequence of keys, one score per (query, key) pair: Luong's dot product and Bahdanau's additive score.

Both follow the same three steps (Keras's ``Attention`` and ``AdditiveAttention``); only the score differs::

    s_ij = score(q_i, k_j)                           (batch, L_q, L_k)
    a_ij = softmax_j(s_ij)                           masked keys (padding, or j > i with use_causal_mask) get 0
    out_i = sum_j a_ij v_j                           a context vector per query: zero at a masked query

Backward, through the softmax, with da = dOut V^T:  ds_ij = a_ij (da_ij - sum_j' a_ij' da_ij'),  dV = A^T dOut;
then each score passes ds back to the queries and keys.

Called as in Keras, ``layer([query, value])`` or ``layer([query, value, key])`` (``mask=[query_mask,
value_mask]``), or ``layer(query, value, key)``, or ``layer(x)`` (self-attention, as in a Sequential model);
``return_attention_scores=True`` also returns the weights a, (batch, L_q, L_k), for a heatmap (they take no
gradient). In a model the masks come from the inputs (:mod:`gpunn.layers.masking`).
"""

import numpy as np

import gpunn.backend as backend
from gpunn.layers.base import Layer, check_rank
from gpunn.layers.core import Dropout
from gpunn.ops.attention import allowed


class Attention(Layer):
    """Luong's dot-product attention:  s_ij = q_i . k_j  (times a learned scalar with ``use_scale``), as Keras's.

    Queries and keys must have the same width (give them one with a Dense layer first, or use
    ``AdditiveAttention(units=...)``). Unlike the Transformer's, the score is not divided by sqrt(d).

    Args:
        use_scale: learn a scalar ``scale`` (starting at 1) that multiplies the scores -- a temperature.
        score_mode: 'dot' (Keras's other mode, 'concat', is gpunn's ``AdditiveAttention(use_scale=False)``
            without its scalar weights).
        dropout: on the attention weights, in training.
    """

    supports_masking = True

    def __init__(self, use_scale=False, score_mode="dot", dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if score_mode != "dot":
            raise ValueError(f"Layer '{self.name}': gpunn's Attention has score_mode='dot' only (for an additive "
                             f"score use AdditiveAttention); received score_mode={score_mode!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"Layer '{self.name}': dropout must be in [0, 1); received dropout={dropout!r}")
        self.use_scale, self.score_mode, self.dropout = bool(use_scale), score_mode, float(dropout)
        self.weight_dropout = Dropout(dropout, name=f"{self.name}_dropout") if dropout else None

    # --- shapes --------------------------------------------------------------------------------
    def build_for(self, shapes):
        query, value, key = _parts(shapes["query"], shapes.get("value"), shapes.get("key"))
        self.build(query, key)

    def build(self, input_shape, key_shape=None):
        super().build(input_shape)
        if self.use_scale:
            self.add_weight("scale", (), "ones")

    def output_shape_for(self, shapes):
        query, value, key = _parts(shapes["query"], shapes.get("value"), shapes.get("key"))
        out = tuple(query[:-1]) + (value[-1],)
        return [out, (query[0], key[0])] if shapes.get("return_attention_scores") else out

    def compute_mask(self, x, mask):
        return mask[0] if isinstance(mask, (list, tuple)) else mask  # the queries' mask

    # --- forward -----------------------------------------------------------------------------------
    def forward(self, query, value=None, key=None, mask=None, value_mask=None, return_attention_scores=False,
                use_causal_mask=False, training=False):
        """``mask`` is Keras's ``[query_mask, value_mask]`` for the list form, else the queries' mask."""
        listed = isinstance(query, (list, tuple))
        if listed:
            query, value, key = (list(query) + [None])[:3]
            query_mask, value_mask = (list(mask) if mask is not None else [None, None])[:2]
        else:
            query_mask = mask
        if value is None:  # self-attention
            value, value_mask = query, query_mask if value_mask is None else value_mask
        key = value if key is None else key
        for what, x in (("query", query), ("value", value), ("key", key)):
            check_rank(self, x, 3, f"{what} of shape (batch, time, features)")
        if key.shape[:2] != value.shape[:2]:
            raise ValueError(f"Layer '{self.name}': key and value must have the same batch and time sizes; received "
                             f"{tuple(key.shape)} and {tuple(value.shape)}")
        out = self.attend(query, value, key, query_mask, value_mask, use_causal_mask, training)
        return [out, self.attention_weights] if return_attention_scores else out

    def attend(self, query, value, key, query_mask, value_mask, causal, training):
        xp = backend.get_array_module(query)
        self.inputs = (query, value, key)
        s = self.scores(query, key)  # (B, Lq, Lk)
        allow = allowed(query.shape[1], key.shape[1], value_mask, causal, xp)  # broadcasts to (B, 1, Lq, Lk)
        self.attention_weights = masked_softmax(s, None if allow is None else allow[:, 0])
        self.used_weights = self.attention_weights if self.weight_dropout is None else \
            self.weight_dropout.forward(self.attention_weights, training=training)
        out = self.used_weights @ value
        self.query_mask = None if query_mask is None else query_mask[:, :, None]
        return out if self.query_mask is None else xp.where(self.query_mask, out, 0)

    def scores(self, query, key):
        """s = q k^T (B, Lq, Lk), times ``scale``."""
        self.qk = query @ key.swapaxes(-1, -2)
        return self.qk * self.scale if self.use_scale else self.qk

    # --- backward ------------------------------------------------------------------------------
    def backward(self, dy):
        query, value, key = self.inputs
        if self.query_mask is not None:
            dy = backend.get_array_module(dy).where(self.query_mask, dy, 0)
        dvalue = self.used_weights.swapaxes(-1, -2) @ dy
        da = dy @ value.swapaxes(-1, -2)
        if self.weight_dropout is not None:
            da = self.weight_dropout.backward(da)
        a = self.attention_weights
        dscores = a * (da - (da * a).sum(axis=-1, keepdims=True))
        dquery, dkey = self.scores_backward(dscores)
        self.input_grads = (dquery, dvalue, dkey)
        return dquery + dkey + dvalue if query is key is value else dquery

    def scores_backward(self, ds):
        """(dL/dquery, dL/dkey) from dL/ds; fills the weights' gradients."""
        query, _, key = self.inputs
        if self.use_scale:
            self.grads["scale"] = (ds * self.qk).sum()
            ds = ds * self.scale
        return ds @ key, ds.swapaxes(-1, -2) @ query

    def backward_call(self, dy, arguments):
        if isinstance(dy, list):  # the attention weights take no gradient
            dy = dy[0]
        self.backward(dy)
        dquery, dvalue, dkey = self.input_grads
        given = arguments["query"]
        if isinstance(given, (list, tuple)):
            grads = [dquery, dvalue + (dkey if len(given) == 2 else 0), dkey][:len(given)]
            return {"query": grads}
        if arguments.get("value") is None:
            return {"query": dquery + dvalue + dkey}
        if arguments.get("key") is None:
            return {"query": dquery, "value": dvalue + dkey}
        return {"query": dquery, "value": dvalue, "key": dkey}

    def get_config(self):
        return {**super().get_config(), "use_scale": self.use_scale, "score_mode": self.score_mode,
                "dropout": self.dropout}


class AdditiveAttention(Attention):
    """Bahdanau's additive attention, the course's:  s_ij = w_v^T tanh(W_q q_i + W_k k_j).

    A one-hidden-layer network scores every (query, key) pair, so queries and keys may have
    different widths (a decoder's state against a bidirectional encoder's outputs). Weights:
    ``query_kernel`` W_q (query width, units), ``key_kernel`` W_k (key width, units) and ``scale``
    w_v (units,). Backward, with t_ij = tanh(W_q q_i + W_k k_j) and e_ij = ds_ij w_v (1 - t_ij^2)::

        dw_v = sum_ij ds_ij t_ij      dq_i = (sum_j e_ij) W_q^T      dk_j = (sum_i e_ij) W_k^T

    Without ``units`` it is Keras's ``AdditiveAttention``, which has no W_q, W_k (queries and keys
    of one width): s_ij = sum_c w_c tanh(q_ic + k_jc), and with ``use_scale=False`` no weights at all.

    Args:
        units: the size of the hidden layer (the course's form); None for Keras's weight-free form.
        use_scale: learn w_v (Keras's form only; the course's always has it).
        dropout: on the attention weights, in training.
    """

    def __init__(self, use_scale=True, units=None, dropout=0.0, **kwargs):
        super().__init__(use_scale=use_scale, dropout=dropout, **kwargs)
        if units is not None and (not isinstance(units, (int, np.integer)) or units < 1 or not use_scale):
            raise ValueError(f"Layer '{self.name}': units must be a positive integer (and use_scale True: w_v is "
                             f"part of the score); received units={units!r}, use_scale={use_scale!r}")
        self.units = None if units is None else int(units)

    def build(self, input_shape, key_shape=None):
        Layer.build(self, input_shape)
        key_shape = input_shape if key_shape is None else key_shape
        if self.units is None:
            if input_shape[-1] != key_shape[-1]:
                raise ValueError(f"Layer '{self.name}': without units, queries and keys need the same width; "
                                 f"received samples of shapes {tuple(input_shape)} and {tuple(key_shape)} (give "
                                 f"units=... to learn W_q and W_k)")
            if self.use_scale:
                self.add_weight("scale", (input_shape[-1],), "glorot_uniform")
            return
        self.add_weight("query_kernel", (input_shape[-1], self.units), "glorot_uniform")
        self.add_weight("key_kernel", (key_shape[-1], self.units), "glorot_uniform")
        self.add_weight("scale", (self.units,), "glorot_uniform")

    def scores(self, query, key):
        if self.units is None and query.shape[-1] != key.shape[-1]:
            raise ValueError(f"Layer '{self.name}': query and key need the same number of features; received "
                             f"{tuple(query.shape)} and {tuple(key.shape)}")
        xp = backend.get_array_module(query)
        q, k = (query, key) if self.units is None else (query @ self.query_kernel, key @ self.key_kernel)
        self.t = xp.tanh(q[:, :, None, :] + k[:, None, :, :])  # (B, Lq, Lk, units)
        return (self.t * self.scale).sum(axis=-1) if self.use_scale else self.t.sum(axis=-1)

    def scores_backward(self, ds):
        query, _, key = self.inputs
        if self.use_scale:
            self.grads["scale"] = (ds[..., None] * self.t).sum(axis=(0, 1, 2))
        e = ds[..., None] * (self.scale if self.use_scale else 1.0) * (1 - self.t * self.t)  # through tanh
        dq, dk = e.sum(axis=2), e.sum(axis=1)
        if self.units is None:
            return dq, dk
        flat = lambda a: a.reshape(-1, a.shape[-1])  # noqa: E731 - (B, L, n) -> (B*L, n)
        self.grads["query_kernel"] = flat(query).T @ flat(dq)
        self.grads["key_kernel"] = flat(key).T @ flat(dk)
        return dq @ self.query_kernel.T, dk @ self.key_kernel.T

    def get_config(self):
        config = {**super().get_config(), "units": self.units}
        config.pop("score_mode")
        return config


def masked_softmax(s, allow):
    """softmax over the last axis with the entries where ``allow`` is False set to exactly 0 (None: all allowed);
    a row with nothing allowed gives zeros, not NaN."""
    xp = backend.get_array_module(s)
    if allow is not None:
        s = xp.where(allow, s, -xp.inf)
    row_max = s.max(axis=-1, keepdims=True)
    e = xp.exp(s - xp.where(xp.isfinite(row_max), row_max, 0))
    total = e.sum(axis=-1, keepdims=True)
    return e / xp.where(total > 0, total, 1)


def _parts(query, value, key):
    """(query, value, key) from Keras's list form ``[query, value(, key)]`` or the three arguments."""
    if isinstance(query, (list, tuple)) and query and isinstance(query[0], (list, tuple)):  # a list of shapes
        query, value, key = (list(query) + [None])[:3]
    value = query if value is None else value
    return query, value, value if key is None else key
