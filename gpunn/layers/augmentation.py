"""Data augmentation layers: each training batch is flipped, shifted, turned or cropped at random, image by image.

More data of the same kind is the surest cure for overfitting, and for images it comes cheap: a 7
moved two pixels to the right, or turned by 10 degrees, is still a 7. Put the layers first in a
model; like Dropout they act only in training (``fit``) and let images through untouched in
``evaluate`` and ``predict`` (RandomCrop then cuts the centre, so the output keeps its size)::

    model = Sequential([RandomTranslation(0.1, 0.1, fill_mode="constant", input_shape=(1, 28, 28)),
                        RandomRotation(0.05, fill_mode="constant"), Conv2D(32, 3, activation="relu"), ...])

The draws come from gpunn's device generator (``gpunn.utils.set_seed`` makes them repeatable; epoch e
draws the same whether training started there or resumed there) and never leave the device. Each image
gets its own draw. Channels-first by default, ``data_format="channels_last"`` as the other image layers.
Being linear in x for a given draw, each layer also has a backward pass (dy sent back through the same
flip, shift or turn), so it may sit anywhere in a model.

Keras's ``seed`` argument is not taken (as for Dropout: gpunn's random layers share the one generator that
``set_seed`` seeds), nor its ``value_range``.
"""

import math

import numpy as np

import gpunn.backend as backend
from gpunn.layers.image import ImageLayer
from gpunn.ops.sampling import FILL_MODES, INTERPOLATIONS, Sampling

FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")


def _uniform(shape, low, high, dtype):
    """Uniform draws in [low, high) on the device."""
    return low + (high - low) * backend.random(shape, dtype=dtype)


class _SameSize(ImageLayer):
    """An augmentation whose output has the input's shape."""

    def output_shape_channels_first(self, input_shape):
        return tuple(input_shape)


class RandomFlip(_SameSize):
    """Flips each image left-right and/or upside down, each with probability 1/2, in training.

    Args:
        mode: 'horizontal' (left-right), 'vertical' (upside down) or 'horizontal_and_vertical' (each on its own).
    """

    def __init__(self, mode="horizontal_and_vertical", **kwargs):
        super().__init__(**kwargs)
        if mode not in FLIP_MODES:
            raise ValueError(f"Layer '{self.name}': mode must be one of {FLIP_MODES}; received mode={mode!r}")
        self.mode = mode

    def forward_channels_first(self, x, training=False):
        self.flips = []  # (axis, which images): undone in reverse order by backward
        if training:
            for axis, name in ((3, "horizontal"), (2, "vertical")):
                if name in self.mode:
                    self.flips.append((axis, backend.random((len(x), 1, 1, 1), dtype=np.float32) < 0.5))
        return self._flip(x, self.flips)

    def backward_channels_first(self, dy):
        return self._flip(dy, self.flips[::-1])  # a flip is its own inverse and its own transpose

    @staticmethod
    def _flip(x, flips):
        xp = backend.get_array_module(x)
        for axis, chosen in flips:
            x = xp.where(chosen, xp.flip(x, axis=axis), x)
        return x

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def _factor_range(value, what, layer):
    """0.1 -> (-0.1, 0.1); (lower, upper) stays: the range of a factor, checked."""
    low, high = (-value, value) if isinstance(value, (int, float)) else tuple(value)
    if not -1 <= low <= high <= 1:
        raise ValueError(f"Layer '{layer.name}': {what} must be a number in [0, 1] or a pair (lower, upper) in "
                         f"[-1, 1] with lower <= upper; received {what}={value!r}")
    return float(low), float(high)


class _RandomWarp(_SameSize):
    """What RandomTranslation and RandomRotation share: each output pixel reads the image at a drawn source point."""

    def __init__(self, fill_mode="reflect", interpolation="bilinear", fill_value=0.0, **kwargs):
        super().__init__(**kwargs)
        if fill_mode not in FILL_MODES or interpolation not in INTERPOLATIONS:
            raise ValueError(f"Layer '{self.name}': fill_mode must be one of {FILL_MODES} and interpolation one of "
                             f"{INTERPOLATIONS}; received fill_mode={fill_mode!r}, interpolation={interpolation!r}")
        self.fill_mode, self.interpolation, self.fill_value = fill_mode, interpolation, float(fill_value)

    def forward_channels_first(self, x, training=False):
        self.sampling = None
        if not training:
            return x
        xp = backend.get_array_module(x)
        n, _, h, w = x.shape
        i, j = xp.arange(h, dtype=np.float32)[:, None], xp.arange(w, dtype=np.float32)[None, :]
        rows, cols = self.source_points(i, j, n, h, w)
        self.sampling = Sampling(rows, cols, (h, w), self.interpolation, self.fill_mode, self.fill_value)
        return self.sampling.forward(x)

    def backward_channels_first(self, dy):
        return dy if self.sampling is None else self.sampling.backward(dy)

    def source_points(self, i, j, n, h, w):
        """(rows, cols), broadcasting to (n, h, w): where output pixel (i, j) of each image reads the input."""
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "fill_mode": self.fill_mode, "interpolation": self.interpolation,
                "fill_value": self.fill_value}


class RandomTranslation(_RandomWarp):
    """Shifts each image by a random fraction of its height and width, in training.

    Image n moves down by t_h = u * H pixels and right by t_w = v * W, with u drawn uniformly in
    ``height_factor``'s range and v in ``width_factor``'s (fractions, not necessarily whole pixels)::

        out[i, j] = x[i - t_h, j - t_w]        (interpolated; outside the image: see fill_mode)

    Args:
        height_factor, width_factor: 0.1 for shifts within +-10% of the size, or (lower, upper) in [-1, 1]
            (negative: up or left).
        fill_mode: 'reflect' (Keras's default), 'constant', 'nearest' or 'wrap' (see :mod:`gpunn.ops.sampling`);
            'constant' with fill_value 0 suits digits on a black background.
        interpolation: 'bilinear' or 'nearest'.
        fill_value: what 'constant' reads outside the image.
    """

    def __init__(self, height_factor, width_factor, fill_mode="reflect", interpolation="bilinear", fill_value=0.0,
                 **kwargs):
        super().__init__(fill_mode, interpolation, fill_value, **kwargs)
        self.height_factor = _factor_range(height_factor, "height_factor", self)
        self.width_factor = _factor_range(width_factor, "width_factor", self)

    def source_points(self, i, j, n, h, w):
        t_h = _uniform((n, 1, 1), *self.height_factor, np.float32) * h
        t_w = _uniform((n, 1, 1), *self.width_factor, np.float32) * w
        return i - t_h, j - t_w

    def get_config(self):
        return {**super().get_config(), "height_factor": list(self.height_factor),
                "width_factor": list(self.width_factor)}


class RandomRotation(_RandomWarp):
    """Turns each image about its centre by a random angle, in training; positive angles turn it counter-clockwise.

    The angle is theta = 2 pi u, u drawn uniformly in ``factor``'s range (0.05: within +-18 degrees). Output
    pixel (i, j), at (x, y) = (j - (W-1)/2, i - (H-1)/2) from the centre (y pointing down), reads the input at
    the point that the turn brings there::

        x_src = cos(theta) x - sin(theta) y        y_src = sin(theta) x + cos(theta) y

    Args:
        factor: a fraction of a full turn, 0.05 for +-0.05 * 360 degrees, or (lower, upper) in [-1, 1].
        fill_mode, interpolation, fill_value: as for :class:`RandomTranslation`.
    """

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", fill_value=0.0, **kwargs):
        super().__init__(fill_mode, interpolation, fill_value, **kwargs)
        self.factor = _factor_range(factor, "factor", self)

    def source_points(self, i, j, n, h, w):
        xp = backend.get_array_module(i)
        theta = _uniform((n, 1, 1), *self.factor, np.float32) * np.float32(2 * math.pi)
        cos, sin = xp.cos(theta), xp.sin(theta)
        x, y = j - (w - 1) / 2, i - (h - 1) / 2
        return sin * x + cos * y + (h - 1) / 2, cos * x - sin * y + (w - 1) / 2

    def get_config(self):
        return {**super().get_config(), "factor": list(self.factor)}


class RandomCrop(ImageLayer):
    """Cuts a ``height`` x ``width`` window at a random place of each image in training, the centre one otherwise.

    Image n's window starts at row t ~ uniform{0..H-height} and column l ~ uniform{0..W-width}:
    out[i, j] = x[t + i, l + j]; backward puts dy back in the window, zeros around it. Images smaller
    than the window are refused.

    Args:
        height, width: the size of the window (and of the output).
    """

    def __init__(self, height, width, **kwargs):
        super().__init__(**kwargs)
        if not all(isinstance(v, (int, np.integer)) and v >= 1 for v in (height, width)):
            raise ValueError(f"Layer '{self.name}': height and width must be positive integers; received "
                             f"height={height!r}, width={width!r}")
        self.height, self.width = int(height), int(width)

    def output_shape_channels_first(self, input_shape):
        self._check_size(input_shape[1:])
        return input_shape[0], self.height, self.width

    def _check_size(self, size):
        if any(s is not None and s < k for s, k in zip(size, (self.height, self.width))):
            raise ValueError(f"Layer '{self.name}' cuts {self.height}x{self.width} windows; received images of "
                             f"{size[0]}x{size[1]} pixels")

    def forward_channels_first(self, x, training=False):
        xp = backend.get_array_module(x)
        n, _, h, w = self.x_shape = x.shape
        self._check_size((h, w))
        if not training:
            self.sampling, self.top, self.left = None, (h - self.height) // 2, (w - self.width) // 2
            return x[:, :, self.top:self.top + self.height, self.left:self.left + self.width]
        top, left = (xp.minimum(xp.floor(backend.random((n, 1, 1), dtype=np.float32) * (size - k + 1)), size - k)
                     for size, k in ((h, self.height), (w, self.width)))
        rows, cols = top + xp.arange(self.height, dtype=np.float32)[:, None], left + xp.arange(self.width,
                                                                                                 dtype=np.float32)
        self.sampling = Sampling(rows, cols, (h, w), interpolation="nearest")
        return self.sampling.forward(x)

    def backward_channels_first(self, dy):
        if self.sampling is not None:
            return self.sampling.backward(dy)
        dx = backend.get_array_module(dy).zeros(self.x_shape, dtype=dy.dtype)
        dx[:, :, self.top:self.top + self.height, self.left:self.left + self.width] = dy
        return dx

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width}
