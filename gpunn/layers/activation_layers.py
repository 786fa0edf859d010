"""Activation layers with weights or structure of their own: PReLU and Maxout."""

import gpunn.backend as backend
from gpunn.layers.base import Layer, config_of


class PReLU(Layer):
    """Parametric ReLU: the leaky slope alpha is learned.

    Forward:   A = max(0, Z) + alpha * min(0, Z)
    Backward:  dZ = dA * (1 if Z > 0 else alpha)
               dalpha = sum over the batch (and shared axes) of dA * min(0, Z)

    Args:
        alpha_initializer: initial slopes (zeros: starts as a plain ReLU).
        shared_axes: sample axes (1-based, as in Keras) along which one alpha
            is shared, e.g. ``shared_axes=[2, 3]`` for one alpha per channel of an
            (N, C, H, W) image.
    """

    supports_masking = True  # the output keeps the input's mask (gpunn.layers.masking)

    def __init__(self, alpha_initializer="zeros", shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        self.alpha_initializer = alpha_initializer
        self.shared_axes = None if shared_axes is None else sorted(int(a) for a in shared_axes)

    def build(self, input_shape):
        super().build(input_shape)
        shape = [1 if self.shared_axes and i + 1 in self.shared_axes else d for i, d in enumerate(input_shape)]
        self.add_weight("alpha", tuple(shape), self.alpha_initializer)

    def forward(self, x, training=False):
        xp = backend.get_array_module(x)
        self.x = x
        self.negative = xp.minimum(x, 0)
        return xp.maximum(x, 0) + self.alpha * self.negative

    def backward(self, dy):
        xp = backend.get_array_module(dy)
        sum_axes = (0,) + tuple(self.shared_axes or ())
        self.grads["alpha"] = (dy * self.negative).sum(axis=sum_axes, keepdims=True)[0]
        return xp.where(self.x > 0, dy, dy * self.alpha)

    def get_config(self):
        return {**super().get_config(), "alpha_initializer": config_of(self.alpha_initializer),
                "shared_axes": self.shared_axes}


class Maxout(Layer):
    """Maxout (Goodfellow et al.): each output is the max of ``pieces`` inputs.

    The last axis of n = num_units * pieces features is cut into num_units
    groups of ``pieces`` consecutive features::

        A_j = max_k Z_{j, k}                 (k = 0 .. pieces - 1)
        dZ_{j, k} = dA_j if k is the arg-max of group j (the first one on ties) else 0

    Put a ``Dense(num_units * pieces)`` before it to get the classic maxout unit,
    a learned piecewise-linear convex activation.

    Args:
        num_units: number of outputs; must divide the number of input features.
    """

    def __init__(self, num_units, **kwargs):
        super().__init__(**kwargs)
        if int(num_units) < 1:
            raise ValueError(f"Layer '{self.name}': num_units must be positive; received num_units={num_units!r}")
        self.num_units = int(num_units)

    def build(self, input_shape):
        if input_shape[-1] % self.num_units:
            raise ValueError(f"Layer '{self.name}': {input_shape[-1]} input features cannot be cut into "
                             f"num_units={self.num_units} equal groups")
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_units,)

    def forward(self, x, training=False):
        xp = backend.get_array_module(x)
        pieces = x.shape[-1] // self.num_units
        z = x.reshape(x.shape[:-1] + (self.num_units, pieces))
        self.x_shape = x.shape
        self.argmax = z.argmax(axis=-1)[..., None]
        return xp.take_along_axis(z, self.argmax, axis=-1)[..., 0]

    def backward(self, dy):
        xp = backend.get_array_module(dy)
        pieces = self.x_shape[-1] // self.num_units
        winner = xp.arange(pieces) == self.argmax  # one-hot over each group's pieces
        return (winner * dy[..., None]).reshape(self.x_shape)

    def get_config(self):
        return {**super().get_config(), "num_units": self.num_units}
