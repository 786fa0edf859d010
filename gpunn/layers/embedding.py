"""Embedding: integer ids -> learned vectors."""

import numpy as np

import gpunn.backend as backend
from gpunn.layers.base import Layer, config_of
from gpunn.ops.embedding import embedding_backward


class Embedding(Layer):
    """Looks up row ``id`` of a (input_dim, output_dim) matrix E for every id.

    Forward:   y[b, t] = E[x[b, t]]                      (B, T) ids -> (B, T, output_dim)
    Backward:  dE[v] = sum of dy[b, t] over every (b, t) with x[b, t] = v   (a scatter-add;
               on a GPU a kernel that sums each row in a fixed order: same bits every run)

    The ids are indices, not values: there is no gradient for the input.

    Args:
        input_dim: vocabulary size; ids must lie in [0, input_dim).
        output_dim: size of each vector.
        input_length: the sequence length, as in Keras (sets input_shape).
        mask_zero: id 0 is padding: in a model the output carries the mask ``ids != 0``, which the
            recurrent layers, attention and the loss respect (:mod:`gpunn.layers.masking`). Id 0 then
            names no word, so ``input_dim`` is the vocabulary size + 1.
    """

    def __init__(self, input_dim, output_dim, input_length=None, embeddings_initializer="random_uniform",
                 mask_zero=False, **kwargs):
        if input_length is not None and "input_shape" not in kwargs:
            kwargs["input_shape"] = (input_length,)
        super().__init__(**kwargs)
        for arg, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Layer '{self.name}': {arg} must be a positive integer; received {arg}={value!r}")
        self.input_dim, self.output_dim, self.input_length = int(input_dim), int(output_dim), input_length
        self.embeddings_initializer, self.mask_zero = embeddings_initializer, bool(mask_zero)

    def build(self, input_shape):
        super().build(input_shape)
        self.add_weight("embeddings", (self.input_dim, self.output_dim), self.embeddings_initializer)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def validate_input(self, x):
        """Ids must be integers in [0, input_dim): checked once per dataset by the model (one copy to the host),
        and on every direct call ``layer(x)``; ``forward`` itself never waits for the device."""
        if not x.size:
            return
        xp = backend.get_array_module(x)
        lo, hi, fractional = backend.to_numpy(xp.stack([x.min(), x.max(), (x != xp.floor(x)).sum()]).astype(np.float64))
        if fractional:
            raise ValueError(f"Layer '{self.name}' expects integer ids; received non-integer values")
        lo, hi = int(lo), int(hi)
        if lo < 0 or hi >= self.input_dim:
            raise ValueError(f"Layer '{self.name}' expects ids in [0, {self.input_dim}); received ids from {lo} to "
                             f"{hi} in an array of shape {tuple(x.shape)}")

    def forward(self, x, training=False):
        self.ids = x.astype(np.int64)
        return self.embeddings[self.ids]

    def compute_mask(self, x, mask):
        return x != 0 if self.mask_zero else None

    def backward(self, dy):
        self.grads["embeddings"] = embedding_backward(self.ids.ravel(), dy.reshape(-1, self.output_dim),
                                                      self.input_dim)
        return None

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim,
                "embeddings_initializer": config_of(self.embeddings_initializer), "mask_zero": self.mask_zero}
