"""Convolution layers. They compute channels-first, (N, C, H, W) as in ``input_shape=(1, 28, 28)``;
``data_format="channels_last"`` takes Keras's (N, H, W, C) (see :mod:`gpunn.layers.image`)."""

import numpy as np

import gpunn.backend as backend
from gpunn import activations
from gpunn.backend import kernels
from gpunn.layers.base import config_of
from gpunn.layers.image import ImageLayer
from gpunn.ops.epilogue import activation_code, bias_act_backward
from gpunn.ops.gemm import product, product_bias_act
from gpunn.ops.im2col import (Geometry, col2im, conv_output_size, gradient_as_convolution_pays, im2col,
                              input_gradient_as_convolution, resolve_padding)


def normalize_pair(value, what, layer):
    """2 -> (2, 2); (2, 3) stays; anything else is an error naming the layer."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in pair):
        raise ValueError(f"Layer '{layer.name}': {what} must be a positive integer or a pair of them; received {value!r}")
    return tuple(int(v) for v in pair)


def normalize_single(value, what, layer_name):
    """3 or (3,) -> 3, for the 1-D layers (checked before the layer has its name)."""
    single = value[0] if isinstance(value, (tuple, list)) and len(value) == 1 else value
    if isinstance(single, bool) or not isinstance(single, (int, np.integer)) or single < 1:
        raise ValueError(f"Layer '{layer_name}': {what} must be a positive integer; received {what}={value!r}")
    return int(single)


def output_sizes(sizes, kernel_size, strides, paddings, dilation=(1, 1)):
    """The output's (OH, OW) for an input of (H, W) -- a size that is None (``Input(shape=(1, None, None))``: known
    only when the data comes) gives None; the arithmetic is :func:`gpunn.ops.im2col.conv_output_size`'s."""
    return tuple(None if n is None else conv_output_size(n, k, s, sum(resolve_padding(p, n, k, s, d)), d)
                 for n, k, s, p, d in zip(sizes, kernel_size, strides, paddings, dilation))


def check_padding(padding, layer):
    ok = padding in ("valid", "same") or isinstance(padding, (int, np.integer)) and padding >= 0 or (
        isinstance(padding, (tuple, list)) and len(padding) == 2)
    if not ok:
        raise ValueError(f"Layer '{layer.name}': padding must be 'valid', 'same', an int or a pair; received {padding!r}")
    return padding if isinstance(padding, (str, int, np.integer)) else tuple(padding)


class Conv2D(ImageLayer):
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

    (On the CPU, a stride-1 convolution whose input gradient is cheaper that way computes dX as a
    convolution of dZ with the flipped kernel instead: see ``input_gradient_as_convolution``.)

    Forward and both gradients are each one 2-D matrix product over the whole batch. On a GPU, the
    bias, a linear/relu/sigmoid/tanh activation and the change of layout are one kernel each way
    (``gpunn.ops.epilogue``), with g'(Z) read off the output A, and db summed by the backward one; a
    small forward product is in that kernel too (``gpunn.ops.gemm.product_bias_act``).
    Output size per axis: floor((size + padding - dilation*(k - 1) - 1) / stride) + 1.

    Args:
        filters: number of output channels F.
        kernel_size: int or (KH, KW).
        strides: int or (SH, SW), >= 1.
        padding: 'valid' (none), 'same' (output = ceil(input / stride)), an int, or
            ((top, bottom), (left, right)).
        dilation_rate: int or pair; 1 is an ordinary convolution.
        data_format: 'channels_first' or 'channels_last' (see :class:`gpunn.layers.image.ImageLayer`).
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

    def build_channels_first(self, input_shape):
        self.channels = input_shape[0]
        self.add_weight("kernel", (self.filters, self.channels) + self.kernel_shape(), self.kernel_initializer,
                        self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer)

    def kernel_shape(self):
        return self.kernel_size

    def output_shape_channels_first(self, input_shape):
        paddings = self.padding if isinstance(self.padding, tuple) else (self.padding, self.padding)
        oh, ow = output_sizes(input_shape[1:], self.kernel_size, self.strides, paddings, self.dilation_rate)
        if any(o is not None and o < 1 for o in (oh, ow)):
            padded = tuple(None if n is None else n + sum(resolve_padding(p, n, k, s, d)) for n, p, k, s, d in zip(
                input_shape[1:], paddings, self.kernel_size, self.strides, self.dilation_rate))
            raise ValueError(f"Layer '{self.name}': kernel {self.kernel_size} (dilation {self.dilation_rate}) is larger "
                             f"than the padded input {padded} of samples {self.own_shape(input_shape)}")
        return self.filters, oh, ow

    def forward_channels_first(self, x, training=False):
        self.g = g = self.geometry(x.shape)
        self.col = im2col(x, g)
        w2 = self.kernel.reshape(self.filters, -1)
        self.epilogue = activation_code(self.activation) if kernels.on_gpu(self.col) else None
        if self.epilogue is not None:  # on a GPU: bias, activation and layout in one kernel, with the product if small
            self.a = product_bias_act(w2, self.col, self.bias if self.use_bias else None, g.N, self.epilogue)
            return self.a.reshape(g.N, self.filters, g.OH, g.OW)
        zf = product(w2, self.col)  # (F, N*OH*OW)
        z = zf.reshape(self.filters, g.N, g.OH, g.OW).transpose(1, 0, 2, 3)  # (N, F, OH, OW): a view, written out by the bias add
        z = z + self.bias[:, None, None] if self.use_bias else backend.get_array_module(z).ascontiguousarray(z)
        return self.activation.forward(z)

    def backward_channels_first(self, dy):
        g = self.g
        xp = backend.get_array_module(dy)
        if self.epilogue is not None:  # g'(Z) read off A; dZ (F, N*OH*OW), like Z, and db = sum dZ in one kernel
            dz, db = bias_act_backward(dy, self.a, self.epilogue, self.use_bias, self.grad_out("bias"))
        else:
            dz = self.activation.backward(dy)  # (N, F, OH, OW)
            dz = xp.ascontiguousarray(dz.transpose(1, 0, 2, 3)).reshape(self.filters, -1)  # (F, N*OH*OW), like Z
            db = dz.sum(axis=1, out=self.grad_out("bias")) if self.use_bias else None
        if self.use_bias:
            self.grads["bias"] = db
        target = self.grad_out("kernel")  # the trainer's buffer for dW, or None
        dw = product(dz, self.col.T, out=None if target is None else target.reshape(self.filters, -1))
        self.grads["kernel"] = dw.reshape(self.kernel.shape)
        if not self.needs_input_grad:
            return None
        if xp is np and gradient_as_convolution_pays(g, self.filters):
            kernel = self.kernel.reshape(self.filters, g.C, g.KH, g.KW)  # Conv1D's (F, C, K) is (F, C, 1, K)
            return input_gradient_as_convolution(dz, kernel, g)  # on the CPU: one more GEMM, no col2im
        dcol = product(self.kernel.reshape(self.filters, -1).T, dz)
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


class ZeroPadding2D(ImageLayer):
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

    def output_shape_channels_first(self, input_shape):
        (t, b), (l, r) = self.padding
        c, h, w = input_shape
        return c, None if h is None else h + t + b, None if w is None else w + l + r

    def forward_channels_first(self, x, training=False):
        xp = backend.get_array_module(x)
        return xp.pad(x, ((0, 0), (0, 0)) + self.padding)

    def backward_channels_first(self, dy):
        (t, b), (l, r) = self.padding
        return dy[:, :, t:dy.shape[2] - b, l:dy.shape[3] - r]

    def get_config(self):
        return {**super().get_config(), "padding": [list(p) for p in self.padding]}


class OneD:
    """Makes a 2-D layer 1-D: (N, C, L) is computed as (N, C, 1, L), a row of height 1.

    Sequences come (N, L, C) by default -- gpunn's (batch, time, features), Keras's channels-last --
    whatever the default image format; ``data_format='channels_first'`` takes (N, C, L).
    """

    spatial_axes = ("L",)
    default_data_format = "channels_last"

    def output_shape_channels_first(self, input_shape):
        c, _, length = super().output_shape_channels_first((input_shape[0], 1, input_shape[1]))
        return c, length

    def forward_channels_first(self, x, training=False):
        return super().forward_channels_first(x[:, :, None, :], training)[:, :, 0, :]

    def backward_channels_first(self, dy):
        dx = super().backward_channels_first(dy[:, :, None, :])
        return None if dx is None else dx[:, :, 0, :]


class Conv1D(OneD, Conv2D):
    """1-D convolution over steps, as used on sequences and signals: the 2-D one with kernels (1, K).

    Z[n, f, t] = sum_c sum_k W[f, c, k] X[n, c, t*stride + k*dilation] + b[f]. The kernel is (F, C, K).

    Args:
        filters, kernel_size, strides, dilation_rate: as Conv2D's, single integers.
        padding: 'valid', 'same', or 'causal' (zeros before the start only: step t sees steps <= t).
        data_format: 'channels_last' (N, L, C), the default, or 'channels_first' (N, C, L).
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1, **kwargs):
        name = kwargs.get("name", type(self).__name__)
        k, s, d = (normalize_single(v, what, name) for v, what in ((kernel_size, "kernel_size"), (strides, "strides"),
                                                                   (dilation_rate, "dilation_rate")))
        if padding not in ("valid", "same", "causal"):
            raise ValueError(f"Layer '{name}': padding must be 'valid', 'same' or 'causal'; received {padding!r}")
        self.padding_1d = padding
        padding = ((0, 0), (d * (k - 1), 0)) if padding == "causal" else padding
        super().__init__(filters, (1, k), strides=(1, s), padding=padding, dilation_rate=(1, d), **kwargs)

    def kernel_shape(self):
        return self.kernel_size[1:]

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size[1], "strides": self.strides[1],
                "dilation_rate": self.dilation_rate[1], "padding": self.padding_1d}


Convolution1D = Conv1D  # Keras 1's names, still on slides
Convolution2D = Conv2D
