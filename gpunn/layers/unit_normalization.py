"""UnitNormalization: scales each sample to length 1 (an L2 normalisation), as Keras's layer of that name."""

import numpy as np

import gpunn.backend as backend
from gpunn.layers.base import Layer


class UnitNormalization(Layer):
    """y = x / ||x||, the norm taken along ``axis``: every sample becomes a unit vector.

    A face (or digit) encoder ends with it so that only directions count: distances between
    encodings lie in [0, 4] (squared), whatever the scale of the layer before. With n = ||x||::

        y = x / n               dx = (dy - y (y . dy)) / n

    the component of dy along y is removed: lengthening x does not move y. (n is kept from 0 by a
    tiny floor, 1e-12 on n^2, as in Keras.)

    Args:
        axis: the axis (or tuple of axes) of the vector to normalise, -1 by default.
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = tuple(axis) if isinstance(axis, (tuple, list)) else int(axis)

    def build(self, input_shape):
        rank = len(input_shape) + 1
        for a in np.atleast_1d(self.axis):
            if not -rank < a < rank or a % rank == 0:
                raise ValueError(f"Layer '{self.name}': axis must pick axes of samples of shape {tuple(input_shape)} "
                                 f"(not the batch axis 0); received axis={self.axis!r}")
        super().build(input_shape)

    def forward(self, x, training=False):
        xp = backend.get_array_module(x)
        self.norm = xp.sqrt(xp.maximum((x * x).sum(axis=self.axis, keepdims=True), x.dtype.type(1e-12)))
        self.y = x / self.norm
        return self.y

    def backward(self, dy):
        return (dy - self.y * (self.y * dy).sum(axis=self.axis, keepdims=True)) / self.norm

    def get_config(self):
        return {**super().get_config(), "axis": list(self.axis) if isinstance(self.axis, tuple) else self.axis}
