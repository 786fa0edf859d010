"""Convolution layers, channels-first: images are (N, C, H, W), as in ``input_shape=(1, 28, 28)``."""

import numpy as np

import gpunn.backend as backend
from gpunn import activations
from gpunn.layers.base import Layer, check_rank, config_of
from gpunn.ops.im2col import Geometry, col2im, im2col, resolve_padding


def normalize_pair(value, what, layer):
    """2 -> (2, 2); (2, 3) stays; anything else is an error naming the layer."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in pair):
        raise ValueError(f"Layer '{layer.name}': {what} must be a positive integer or a pair of them; received {value!r}")
    return tuple(int(v) for v in pair)


def check_padding(padding, layer):
    ok = padding in ("valid", "same") or isinstance(padding, (int, np.integer)) and padding >= 0 or (
        isinstance(padding, (tuple, list)) and len(padding) == 2)
    if not ok:
        raise ValueError(f"Layer '{layer.name}': padding must be 'valid', 'same', an int or a pair; received {padding!r}")
    return padding if isinstance(padding, (str, int, np.integer)) else tuple(padding)


def check_images(layer, x, channels):
    """x must be (N, C, H, W) with the layer's C; a channels-last batch gets told how to transpose."""
    check_rank(layer, x, 4, "(N, C, H, W)")
    if x.shape[1] != channels:
        hint = (" gpunn is channels-first (N, C, H, W); this looks channels-last (N, H, W, C): use "
                "x.transpose(0, 3, 1, 2)") if x.shape[-1] == channels else ""
        raise ValueError(f"Layer '{layer.name}' expects {channels} input channels on axis 1 of (N, C, H, W); "
                         f"received an array of shape {tuple(x.shape)}.{hint}")


class Conv2D(Layer):
    """2-D convolution as im2col + one matrix product.

    With F filters of size C x KH x KW, ``col = im2col(X)`` of shape (C*KH*KW, N*OH*OW) --
    one column per output pixel of every image -- and ``W2 = W.reshape(F, C*KH*KW)``::

        Z = W2 . col + b                  (F, N*OH*OW), seen as (N, F, OH, OW)
        A = g(Z)

    Backward, with dZ = dA * g'(Z) laid out as (F, N*OH*OW) like Z::

        db   = sum over images and pixels of dZ
        dW2  = dZ . col^T
        dcol = W2^T . dZ
        dX   = col2im(dcol)               (the adjoint of im2col)

    Forward and both gradients are each one 2-D matrix product over the whole batch.
    Output size per axis: floor((size + padding - dilation*(k - 1) - 1) / stride) + 1.

    Args:
        filters: number of output channels F.
        kernel_size: int or (KH, KW).
        strides: int or (SH, SW), >= 1.
        padding: 'valid' (none), 'same' (output = ceil(input / stride)), an int, or
            ((top, bottom), (left, right)).
        dilation_rate: int or pair; 1 is an ordinary convolution.
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 dilation_rate=1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(filters, (int, np.integer)) or filters < 1:
            raise ValueError(f"Layer '{self.name}': filters must be a positive integer; received filters={filters!r}")
        self.filters = int(filters)
        self.kernel_size = normalize_pair(kernel_size, "kernel_size", self)
        self.strides = normalize_pair(strides, "strides", self)
        self.dilation_rate = normalize_pair(dilation_rate, "dilation_rate", self)
        self.padding = check_padding(padding, self)
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.kernel_regularizer = kernel_regularizer

    def geometry(self, x_shape):
        n, _, h, w = x_shape
        pads = [resolve_padding(p, size, k, s, d) for p, size, k, s, d in zip(
            self.padding if isinstance(self.padding, tuple) else (self.padding, self.padding),
            (h, w), self.kernel_size, self.strides, self.dilation_rate)]
        return Geometry(x_shape, self.kernel_size, self.strides, pads, self.dilation_rate)

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"Layer '{self.name}' expects samples of shape (C, H, W); received input_shape={input_shape}")
        self.compute_output_shape(input_shape)  # fails early when the kernel does not fit
        super().build(input_shape)
        kh, kw = self.kernel_size
        self.add_weight("kernel", (self.filters, input_shape[0], kh, kw), self.kernel_initializer, self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer)

    def compute_output_shape(self, input_shape):
        g = self.geometry((1,) + tuple(input_shape))
        if g.OH < 1 or g.OW < 1:
            raise ValueError(f"Layer '{self.name}': kernel {self.kernel_size} (dilation {self.dilation_rate}) is larger "
                             f"than the padded input {(g.H + g.PT + g.PB, g.W + g.PL + g.PR)} of samples {tuple(input_shape)}")
        return self.filters, g.OH, g.OW

    def forward(self, x, training=False):
        check_images(self, x, self.kernel.shape[1])
        self.g = g = self.geometry(x.shape)
        self.col = im2col(x, g)
        z = (self.kernel.reshape(self.filters, -1) @ self.col).reshape(self.filters, g.N, g.OH, g.OW)
        z = z.transpose(1, 0, 2, 3)  # (N, F, OH, OW), a view; the bias add writes it out in that order
        z = z + self.bias[:, None, None] if self.use_bias else backend.get_array_module(z).ascontiguousarray(z)
        return self.activation.forward(z)

    def backward(self, dy):
        g = self.g
        xp = backend.get_array_module(dy)
        dz = self.activation.backward(dy)  # (N, F, OH, OW)
        dz = xp.ascontiguousarray(dz.transpose(1, 0, 2, 3)).reshape(self.filters, -1)  # (F, N*OH*OW), like Z
        if self.use_bias:
            self.grads["bias"] = dz.sum(axis=1)
        self.grads["kernel"] = (dz @ self.col.T).reshape(self.kernel.shape)
        if not self.needs_input_grad:
            return None
        dcol = self.kernel.reshape(self.filters, -1).T @ dz
        return col2im(dcol, g)

    def get_config(self):
        padding = self.padding if isinstance(self.padding, (str, int)) else [list(p) if isinstance(p, tuple) else p
                                                                            for p in self.padding]
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": padding, "dilation_rate": list(self.dilation_rate),
                "activation": self.activation.get_config(), "use_bias": self.use_bias,
                "kernel_initializer": config_of(self.kernel_initializer),
                "bias_initializer": config_of(self.bias_initializer),
                "kernel_regularizer": config_of(self.kernel_regularizer)}


class ZeroPadding2D(Layer):
    """Adds rows and columns of zeros around each image: padding=1, (ph, pw) or ((top, bottom), (left, right))."""

    def __init__(self, padding=1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(padding, (int, np.integer)):
            padding = ((padding, padding), (padding, padding))
        elif all(isinstance(p, (int, np.integer)) for p in padding):
            padding = ((padding[0], padding[0]), (padding[1], padding[1]))
        self.padding = tuple(tuple(int(v) for v in p) for p in padding)
        if any(v < 0 for p in self.padding for v in p):
            raise ValueError(f"Layer '{self.name}': padding must be non-negative; received {padding!r}")

    def compute_output_shape(self, input_shape):
        (t, b), (l, r) = self.padding
        c, h, w = input_shape
        return c, h + t + b, w + l + r

    def forward(self, x, training=False):
        check_rank(self, x, 4, "(N, C, H, W)")
        xp = backend.get_array_module(x)
        return xp.pad(x, ((0, 0), (0, 0)) + self.padding)

    def backward(self, dy):
        (t, b), (l, r) = self.padding
        return dy[:, :, t:dy.shape[2] - b, l:dy.shape[3] - r]

    def get_config(self):
        return {**super().get_config(), "padding": [list(p) for p in self.padding]}


Convolution2D = Conv2D  # Keras 1's name, still on slides
