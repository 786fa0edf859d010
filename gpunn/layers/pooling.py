"""Pooling layers. Each channel is pooled on its own, so an (N, C, H, W) batch is
seen as N*C one-channel images. On a GPU, gpunn's pooling kernels read the windows straight
from the images (:mod:`gpunn.ops.pooling`: one launch forward, one backward). On NumPy the
images are cut into windows with the same im2col as the convolution: col (KH*KW, N*C*OH*OW),
one column per window, in the order of the output (n, c, oh, ow) -- pooling is then a
reduction over axis 0 -- or, when the windows tile the image, viewed in place (``tiles``).

Like the convolutions they compute channels-first and take ``data_format="channels_last"``
(see :mod:`gpunn.layers.image`); the 1-D poolings are the 2-D ones on (N, C, 1, L)."""

import numpy as np

import gpunn.backend as backend
from gpunn.layers.base import Layer, check_rank
from gpunn.layers.convolutional import OneD, check_padding, normalize_pair, normalize_single, output_sizes
from gpunn.layers.image import ImageLayer
from gpunn.ops.im2col import Geometry, col2im, im2col, resolve_padding
from gpunn.ops.pooling import avg_pool_backward, avg_pool_forward, kernels_take, max_pool_backward, max_pool_forward


class _Pooling2D(ImageLayer):
    fill = 0.0  # what the padding holds

    def __init__(self, pool_size=2, strides=None, padding="valid", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = normalize_pair(pool_size, "pool_size", self)
        self.strides = self.pool_size if strides is None else normalize_pair(strides, "strides", self)
        self.padding = check_padding(padding, self)
        if self.padding not in ("valid", "same"):
            raise ValueError(f"Layer '{self.name}': padding must be 'valid' or 'same'; received {padding!r}")

    def geometry(self, x_shape):
        n, c, h, w = x_shape
        pads = [resolve_padding(self.padding, size, k, s) for size, k, s in zip((h, w), self.pool_size, self.strides)]
        return Geometry((n * c, 1, h, w), self.pool_size, self.strides, pads)

    def output_shape_channels_first(self, input_shape):
        oh, ow = output_sizes(input_shape[1:], self.pool_size, self.strides, (self.padding, self.padding))
        if any(o is not None and o < 1 for o in (oh, ow)):
            raise ValueError(f"Layer '{self.name}': pool_size {self.pool_size} is larger than the input "
                             f"{self.own_shape(input_shape)}")
        return input_shape[0], oh, ow

    def on_kernels(self, x):
        """True (and the geometry kept) when gpunn's pooling kernels take x: a float GPU array."""
        if not kernels_take(x):
            return False
        self.x_shape, self.g = x.shape, self.geometry(x.shape)
        return True

    def windows(self, x):
        self.x_shape = x.shape
        self.g = self.geometry(x.shape)
        return im2col(x.reshape(self.g.N, 1, self.g.H, self.g.W), self.g, self.fill)

    def unwindows(self, dcol):
        return col2im(dcol, self.g).reshape(self.x_shape)

    def tiles(self, x):
        """On NumPy, when the windows tile the image (stride = pool size, no padding): the view
        (N, C, OH, KH, OW, KW) of x that holds window (oh, ow) at [:, :, oh, :, ow, :], else None.

        Pooling is then a reduction over axes 3 and 5 of that view, with no im2col copy and no col2im.
        (On a GPU the pooling kernels do it in one launch; this is one more per tap.)
        """
        g = self.geometry(x.shape)
        if backend.get_array_module(x) is not np or (g.SH, g.SW) != (g.KH, g.KW) or g.PT + g.PB + g.PL + g.PR:
            return None
        self.x_shape, self.g = x.shape, g
        n, c = x.shape[:2]
        cropped = x[:, :, :g.OH * g.KH, :g.OW * g.KW]  # 'valid' drops the rows and columns no window covers
        return cropped.reshape(n, c, g.OH, g.KH, g.OW, g.KW)

    def untile(self, d6):
        """(N, C, OH, KH, OW, KW) gradients back to (N, C, H, W), zeros where no window reached."""
        n, c, oh, kh, ow, kw = d6.shape
        d = d6.reshape(n, c, oh * kh, ow * kw)
        if d.shape == self.x_shape:
            return d
        dx = np.zeros(self.x_shape, dtype=d6.dtype)
        dx[:, :, :oh * kh, :ow * kw] = d
        return dx

    def as_image(self, pooled):
        """(N*C*OH*OW,) -> (N, C, OH, OW)."""
        n, c = self.x_shape[:2]
        return pooled.reshape(n, c, self.g.OH, self.g.OW)

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding}


class MaxPool2D(_Pooling2D):
    """Max pooling: each window gives its largest value.

    Backward: the whole gradient of a window goes to its arg-max (the first one
    when several are equal), the other inputs get 0 -- the same on both backends.
    """

    fill = -np.inf  # padding never wins the max

    def forward_channels_first(self, x, training=False):
        self.winners = None
        self.direct = self.on_kernels(x)
        if self.direct:  # one launch: the max and its tap, per window
            pooled, self.argmax = max_pool_forward(x, self.g)
            return pooled
        tiles = self.tiles(x)
        if tiles is not None:
            best = tiles[:, :, :, 0, :, 0].copy()
            for tap in taps_of(tiles)[1:]:  # tap by tap: NumPy's max over axes (3, 5) of this view is 50x slower
                np.maximum(best, tap, out=best)
            self.winners = first_max_mask(tiles, best)
            return best
        pooled, self.argmax = max_and_argmax(self.windows(x))
        return self.as_image(pooled)

    def backward_channels_first(self, dy):
        if self.winners is not None:  # dy of each window on its (first) arg-max, 0 elsewhere
            return self.untile(np.multiply(self.winners, dy[:, :, :, None, :, None], dtype=dy.dtype))
        if self.direct:  # one launch: dy of each window to its arg-max, summed where windows overlap
            return max_pool_backward(dy, self.argmax, self.g)
        xp = backend.get_array_module(dy)
        taps = xp.arange(self.g.KH * self.g.KW)[:, None]
        dcol = (taps == self.argmax[None, :]) * dy.reshape(1, -1)  # (taps, windows): dy at each arg-max
        return self.unwindows(dcol.astype(dy.dtype, copy=False))


def taps_of(tiles):
    """The KH*KW views (N, C, OH, OW) of tiles (N, C, OH, KH, OW, KW): one position of every window each."""
    return [tiles[:, :, :, ki, :, kj] for ki in range(tiles.shape[3]) for kj in range(tiles.shape[5])]


def first_max_mask(tiles, best):
    """True at the first position (in reading order) of each window's max, of tiles (N, C, OH, KH, OW, KW)."""
    mask = np.zeros(tiles.shape, dtype=bool)
    taken = np.zeros(best.shape, dtype=bool)
    for (ki, kj), tap in zip(np.ndindex(tiles.shape[3], tiles.shape[5]), taps_of(tiles)):
        hit = tap == best
        hit &= ~taken  # an earlier tap with the same value keeps the gradient: ties go to the first
        mask[:, :, :, ki, :, kj] = hit
        taken |= hit
    return mask


def max_and_argmax(col):
    """The max over axis 0 of col (taps, windows) and the first index reaching it.

    CuPy: one reduction kernel each. NumPy: its argmax over a short axis pays a
    per-window overhead, so walk the few taps backwards instead, marking each tap
    equal to the max: the last mark, the smallest index, wins -- the same tie rule
    as argmax.
    """
    xp = backend.get_array_module(col)
    best = col.max(axis=0)
    if xp is not np:
        return best, col.argmax(axis=0)
    arg = np.full(best.shape, col.shape[0] - 1, dtype=np.int32)
    for k in reversed(range(col.shape[0] - 1)):
        arg = np.where(col[k] == best, np.int32(k), arg)
    return best, arg


class AvgPool2D(_Pooling2D):
    """Average pooling: each window gives its mean (with 'same' padding, the mean of
    the real pixels only, as in Keras). Backward spreads dy / count evenly over the window."""

    def forward_channels_first(self, x, training=False):
        self.direct = self.on_kernels(x)
        if self.direct:  # one launch: each window's sum over its real pixels, divided by their count
            return avg_pool_forward(x, self.g)
        self.tiled = self.tiles(x)
        if self.tiled is not None:
            self.count = x.dtype.type(self.g.KH * self.g.KW)
            total = self.tiled[:, :, :, 0, :, 0].copy()
            for tap in taps_of(self.tiled)[1:]:
                total += tap
            return total / self.count
        col = self.windows(x)
        xp = backend.get_array_module(x)
        g = self.g
        if self.padding == "same":  # how many real pixels each window of one image covers: (OH*OW,)
            ones = xp.ones((1, 1, g.H, g.W), dtype=x.dtype)
            self.count = im2col(ones, Geometry((1, 1, g.H, g.W), (g.KH, g.KW), (g.SH, g.SW),
                                               ((g.PT, g.PB), (g.PL, g.PR)))).sum(axis=0)
        else:
            self.count = x.dtype.type(g.KH * g.KW)
        return self.as_image(col.sum(axis=0).reshape(g.N, -1) / self.count)

    def backward_channels_first(self, dy):
        if self.direct:  # one launch: dy / count on every real pixel of each window
            return avg_pool_backward(dy, self.g)
        xp = backend.get_array_module(dy)
        if self.tiled is not None:  # dy / count on every pixel of the window
            return self.untile(np.broadcast_to((dy / self.count)[:, :, :, None, :, None], self.tiled.shape).copy())
        share = (dy.reshape(self.g.N, -1) / self.count).reshape(1, -1)  # dy / count, once per window
        return self.unwindows(xp.broadcast_to(share, self.g.col_shape))


class GlobalAveragePooling2D(ImageLayer):
    """(N, C, H, W) -> (N, C): the mean of each channel. Backward: dy / (H W) on every pixel."""

    def output_shape_channels_first(self, input_shape):
        return (input_shape[0],)

    def forward_channels_first(self, x, training=False):
        self.x_shape = x.shape
        return x.mean(axis=(2, 3))

    def backward_channels_first(self, dy):
        xp = backend.get_array_module(dy)
        h, w = self.x_shape[2:]
        return xp.broadcast_to((dy / (h * w))[:, :, None, None], self.x_shape)


class _Pooling1D(OneD):
    """A 1-D pooling: the 2-D one with windows (1, pool_size) on (N, C, 1, L)."""

    def __init__(self, pool_size=2, strides=None, padding="valid", **kwargs):
        name = kwargs.get("name", type(self).__name__)
        pool_size = normalize_single(pool_size, "pool_size", name)
        strides = pool_size if strides is None else normalize_single(strides, "strides", name)
        super().__init__((1, pool_size), (1, strides), padding, **kwargs)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size[1], "strides": self.strides[1]}


class MaxPooling1D(_Pooling1D, MaxPool2D):
    """Max pooling over steps: (N, L, C) -> (N, L', C), each window of ``pool_size`` steps gives its largest value."""


class AveragePooling1D(_Pooling1D, AvgPool2D):
    """Average pooling over steps: (N, L, C) -> (N, L', C), each window of ``pool_size`` steps gives its mean."""


MaxPooling2D = MaxPool2D
AveragePooling2D = AvgPool2D
MaxPool1D = MaxPooling1D
AvgPool1D = AveragePooling1D


class GlobalAveragePooling1D(Layer):
    """(batch, time, features) -> (batch, features): the mean over time. Backward: dy / T at every step.

    With a ``mask`` (padded sequences, see :mod:`gpunn.layers.masking`) the mean is over the real
    steps alone, y = sum_t m_t x_t / sum_t m_t, and the padded steps get no gradient.
    """

    def compute_output_shape(self, input_shape):
        return (input_shape[-1],)

    def compute_mask(self, x, mask):
        return None  # the time axis is gone

    def forward(self, x, mask=None, training=False):
        check_rank(self, x, 3, "(batch, time, features)")
        self.x_shape = x.shape
        if mask is None:
            self.weights = None
            return x.mean(axis=1)
        xp = backend.get_array_module(x)
        real = mask.astype(x.dtype)[:, :, None]
        self.weights = real / xp.maximum(real.sum(axis=1, keepdims=True), 1)  # m_t / sum m: (batch, time, 1)
        return (x * self.weights).sum(axis=1)

    def backward(self, dy):
        xp = backend.get_array_module(dy)
        if self.weights is not None:
            return dy[:, None, :] * self.weights
        return xp.broadcast_to((dy / self.x_shape[1])[:, None, :], self.x_shape)
