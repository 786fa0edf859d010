"""im2col and col2im: a convolution as one matrix product.

For a kernel of size KH x KW, ``im2col`` copies, for every output pixel of every
image, the C x KH x KW patch of the input it sees into one column::

    x   (N, C, H, W)  ->  col (C*KH*KW, N*OH*OW)
    out = W.reshape(F, C*KH*KW) @ col                -> (F, N*OH*OW), then (N, F, OH, OW)

The images sit side by side in ``col``, so the whole batch is a single 2-D matrix
product (one large GEMM: BLAS uses every core, cuBLAS one launch), and so are
both gradients of the convolution.

``col2im`` is its adjoint (the transpose of that linear map): it adds every
column entry back onto the input pixel it came from, which is exactly how the
gradient dcol flows back to dx. Pixels seen by several patches receive the sum.

Each op has two implementations with the same signature:

- ``*_cpu``: NumPy, vectorised with stride tricks (the readable reference);
- ``*_gpu``: gpunn's CUDA kernels in ``cuda_kernels/im2col.cu``;

and a dispatcher (``im2col``, ``col2im``) that picks one by the array's type.
"""

import numpy as np

import gpunn.backend as backend
from gpunn.backend import kernels


def conv_output_size(size, kernel, stride, pad_total, dilation=1):
    """The one formula: out = floor((size + pad - dilation*(kernel - 1) - 1) / stride) + 1."""
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def resolve_padding(padding, size, kernel, stride, dilation=1):
    """(before, after) padding for one axis from 'valid', 'same', an int or a (before, after) pair.

    'same' (as in Keras) gives out = ceil(size / stride), with the odd pixel of
    padding, if any, at the end.
    """
    if padding == "valid":
        return 0, 0
    if padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
        return total // 2, total - total // 2
    if isinstance(padding, (int, np.integer)):
        return int(padding), int(padding)
    before, after = padding
    return int(before), int(after)


class Geometry:
    """Everything about one convolution's shapes, computed once."""

    def __init__(self, x_shape, kernel_size, stride, padding, dilation=(1, 1)):
        self.N, self.C, self.H, self.W = x_shape
        self.KH, self.KW = kernel_size
        self.SH, self.SW = stride
        self.DH, self.DW = dilation
        (self.PT, self.PB) = padding[0]
        (self.PL, self.PR) = padding[1]
        self.OH = conv_output_size(self.H, self.KH, self.SH, self.PT + self.PB, self.DH)
        self.OW = conv_output_size(self.W, self.KW, self.SW, self.PL + self.PR, self.DW)
        self.col_shape = (self.C * self.KH * self.KW, self.N * self.OH * self.OW)


# --- NumPy twins -------------------------------------------------------------------


def im2col_cpu(x, g, fill=0.0):
    """x (N, C, H, W) -> col (C*KH*KW, N*OH*OW), with ``fill`` in the padding."""
    padded = np.pad(x, ((0, 0), (0, 0), (g.PT, g.PB), (g.PL, g.PR)), constant_values=fill)
    sN, sC, sH, sW = padded.strides
    # A view (C, KH, KW, N, OH, OW): element [c, ki, kj, n, oh, ow] is
    # padded[n, c, oh*SH + ki*DH, ow*SW + kj*DW]. No copy until the reshape.
    patches = np.lib.stride_tricks.as_strided(
        padded, shape=(g.C, g.KH, g.KW, g.N, g.OH, g.OW),
        strides=(sC, g.DH * sH, g.DW * sW, sN, g.SH * sH, g.SW * sW), writeable=False)
    return patches.reshape(g.col_shape)


def col2im_cpu(col, g):
    """The adjoint of im2col_cpu: col (C*KH*KW, N*OH*OW) -> dx (N, C, H, W)."""
    col = col.reshape(g.C, g.KH, g.KW, g.N, g.OH, g.OW)
    dxp = np.zeros((g.N, g.C, g.H + g.PT + g.PB, g.W + g.PL + g.PR), dtype=col.dtype)
    for ki in range(g.KH):  # a loop over the kernel's taps, never over pixels
        h0 = ki * g.DH
        for kj in range(g.KW):
            w0 = kj * g.DW
            tap = col[:, ki, kj].transpose(1, 0, 2, 3)  # (N, C, OH, OW), a view
            dxp[:, :, h0:h0 + g.SH * g.OH:g.SH, w0:w0 + g.SW * g.OW:g.SW] += tap
    return dxp[:, :, g.PT:g.PT + g.H, g.PL:g.PL + g.W]


def input_gradient_as_convolution(dz, kernel, g):
    """dX of a stride-1 convolution as a convolution itself (NumPy): dZ, padded, correlated with the
    kernel flipped in space and with its two channel axes swapped.

        dX[n, c, h, w] = sum_f sum_ki,kj dZ[n, f, h + PT - ki*DH, w + PL - kj*DW] W[f, c, ki, kj]

    With ki' = KH - 1 - ki this reads dZ at h - (DH*(KH - 1) - PT) + ki'*DH: a correlation of dZ
    padded by DH*(KH - 1) - PT above (and DH*(KH - 1) - PB below) with W[f, c, KH-1-ki', KW-1-kj'].
    It moves F*H*W values per image where col2im adds C*OH*OW (strided): the layer picks the cheaper.

    Args:
        dz: (F, N*OH*OW), the layout of Z.  kernel: (F, C, KH, KW).  g: the forward Geometry (stride 1).
    """
    f = kernel.shape[0]
    pads = ((g.DH * (g.KH - 1) - g.PT, g.DH * (g.KH - 1) - g.PB), (g.DW * (g.KW - 1) - g.PL, g.DW * (g.KW - 1) - g.PR))
    back = Geometry((g.N, f, g.OH, g.OW), (g.KH, g.KW), (1, 1), pads, (g.DH, g.DW))
    flipped = kernel[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(g.C, -1)  # (C, F*KH*KW)
    col = im2col_cpu(dz.reshape(f, g.N, g.OH, g.OW).transpose(1, 0, 2, 3), back)
    return (flipped @ col).reshape(g.C, g.N, g.H, g.W).transpose(1, 0, 2, 3)


def gradient_as_convolution_pays(g, filters):
    """Whether :func:`input_gradient_as_convolution` beats W^T dZ + col2im on the CPU for this convolution:
    stride 1, padding within the kernel's reach, and no more values to move (F*H*W <= C*OH*OW)."""
    reach = (g.DH * (g.KH - 1), g.DW * (g.KW - 1))
    return ((g.SH, g.SW) == (1, 1) and max(g.PT, g.PB) <= reach[0] and max(g.PL, g.PR) <= reach[1]
            and filters * g.H * g.W <= g.C * g.OH * g.OW)


# --- CUDA kernels -------------------------------------------------------------------

SUFFIX = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}  # the .cu's instantiations


def _geometry_args(g):
    return (np.int64(g.N), np.int64(g.C), np.int64(g.H), np.int64(g.W),
            np.int32(g.KH), np.int32(g.KW), np.int32(g.SH), np.int32(g.SW), np.int32(g.PT), np.int32(g.PL),
            np.int32(g.DH), np.int32(g.DW), np.int64(g.OH), np.int64(g.OW))


def _launch(name, out, *args):
    kernels.launch("im2col", f"{name}_{SUFFIX[out.dtype]}", out.size, args)
    return out


def im2col_gpu(x, g, fill=0.0):
    x = backend.xp.ascontiguousarray(x)
    col = backend.xp.empty(g.col_shape, dtype=x.dtype)
    return _launch("im2col_forward", col, x, col, *_geometry_args(g), x.dtype.type(fill))


def col2im_gpu(col, g):
    col = backend.xp.ascontiguousarray(col)
    dx = backend.xp.empty((g.N, g.C, g.H, g.W), dtype=col.dtype)
    return _launch("col2im_backward", dx, col, dx, *_geometry_args(g))


# --- dispatchers --------------------------------------------------------------------


def _check_dtype(a):
    if a.dtype not in SUFFIX:
        raise TypeError(f"im2col/col2im work on float32 or float64 arrays; received {a.dtype}")


def im2col(x, g, fill=0.0):
    """x (N, C, H, W) -> col (C*KH*KW, N*OH*OW) on the array's own backend."""
    _check_dtype(x)
    return im2col_gpu(x, g, fill) if kernels.on_gpu(x) else im2col_cpu(x, g, fill)


def col2im(col, g):
    """col (C*KH*KW, N*OH*OW) -> dx (N, C, H, W), summing overlapping patches."""
    _check_dtype(col)
    return col2im_gpu(col, g) if kernels.on_gpu(col) else col2im_cpu(col, g)
