"""Max and average pooling read straight from the images, without im2col.

Each of the N*C channels is pooled on its own. Window (oh, ow) of a channel holds the KH x KW
pixels ``x[oh*SH - PT + ki, ow*SW - PL + kj]``; taps that fall in the padding are skipped,
so padding never wins a max and never counts in a mean::

    max:  y = max over the window's real pixels,   arg = the tap k = ki*KW + kj of the first max
          dx[h, w] = sum of dy over the windows whose arg-max is pixel (h, w)
    avg:  y = (sum of the window's real pixels) / count,   count = how many are real
          dx[h, w] = sum of dy / count over the windows that cover (h, w)

(with 'valid' padding every pixel of a window is real and count = KH*KW; with 'same' the
windows at the border hold fewer, as in Keras). Windows overlap when the stride is smaller
than the pool: a pixel then gets the gradient of every window that chose it.

Each op has two implementations with the same signature:

- ``*_cpu``: NumPy, a loop over the KH*KW taps of the window (the readable reference);
- ``*_gpu``: gpunn's CUDA kernels in ``cuda_kernels/pooling.cu``, one launch each;

and a dispatcher (``max_pool_forward``...) that picks one by the array's type. ``g`` is the
:class:`gpunn.ops.im2col.Geometry` of the windows (its pool size, strides, padding and output
size); x and dy are (N, C, H, W) and (N, C, OH, OW).
"""

import numpy as np

import gpunn.backend as backend
from gpunn.backend import kernels
from gpunn.ops.im2col import SUFFIX

# --- NumPy twins -------------------------------------------------------------------


def taps(g):
    """(k, ki, kj) for every tap of a window, in reading order."""
    return [(ki * g.KW + kj, ki, kj) for ki in range(g.KH) for kj in range(g.KW)]


def real_pixels(g, ki, kj):
    """(OH, OW) booleans: where tap (ki, kj) of each window reads a pixel of the image, not padding."""
    h = np.arange(g.OH) * g.SH - g.PT + ki
    w = np.arange(g.OW) * g.SW - g.PL + kj
    return ((h >= 0) & (h < g.H))[:, None] & ((w >= 0) & (w < g.W))[None, :]


def padded(a, g):
    """a (N, C, H, W) with g's padding of zeros around each image (skipped or cropped by the callers)."""
    return np.pad(a, ((0, 0), (0, 0), (g.PT, g.PB), (g.PL, g.PR)))


def tap_view(xpad, g, ki, kj):
    """The (N, C, OH, OW) view of the padded input ``xpad`` that tap (ki, kj) of every window reads."""
    return xpad[:, :, ki:ki + g.SH * (g.OH - 1) + 1:g.SH, kj:kj + g.SW * (g.OW - 1) + 1:g.SW]


def window_counts(g, dtype):
    """(OH, OW): how many real pixels each window holds."""
    return sum(real_pixels(g, ki, kj) for _, ki, kj in taps(g)).astype(dtype)


def max_pool_forward_cpu(x, g):
    """x (N, C, H, W) -> (y, arg), both (N, C, OH, OW): each window's max and the tap of its first max."""
    xpad = padded(x, g)
    best = np.zeros(x.shape[:2] + (g.OH, g.OW), dtype=x.dtype)
    arg = np.full(best.shape, -1, dtype=np.int32)  # -1: no real pixel seen yet
    for k, ki, kj in taps(g):
        v = tap_view(xpad, g, ki, kj)
        # the first real pixel, then only a strictly larger one (ties go to the first), or a NaN
        take = real_pixels(g, ki, kj) & ((arg < 0) | (v > best) | (np.isnan(v) & ~np.isnan(best)))
        best = np.where(take, v, best)
        arg[take] = k
    return best, arg


def max_pool_backward_cpu(dy, arg, g):
    """dy, arg (N, C, OH, OW) -> dx (N, C, H, W): dy of each window on its arg-max, summed where windows overlap."""
    dxp = padded(np.zeros(dy.shape[:2] + (g.H, g.W), dtype=dy.dtype), g)
    for k, ki, kj in taps(g):  # the taps in reading order: the kernel's order of summation
        tap_view(dxp, g, ki, kj)[...] += np.where(arg == k, dy, dy.dtype.type(0))
    return dxp[:, :, g.PT:g.PT + g.H, g.PL:g.PL + g.W]


def avg_pool_forward_cpu(x, g):
    """x (N, C, H, W) -> y (N, C, OH, OW): the mean of each window's real pixels."""
    xpad = padded(x, g)
    total = np.zeros(x.shape[:2] + (g.OH, g.OW), dtype=x.dtype)
    for _, ki, kj in taps(g):
        total += tap_view(xpad, g, ki, kj)  # the padding adds zeros
    return total / window_counts(g, x.dtype)


def avg_pool_backward_cpu(dy, g):
    """dy (N, C, OH, OW) -> dx (N, C, H, W): dy / count on every real pixel of each window."""
    share = dy / window_counts(g, dy.dtype)
    dxp = padded(np.zeros(dy.shape[:2] + (g.H, g.W), dtype=dy.dtype), g)
    for _, ki, kj in taps(g):
        tap_view(dxp, g, ki, kj)[...] += share  # what lands in the padding is cropped below
    return dxp[:, :, g.PT:g.PT + g.H, g.PL:g.PL + g.W]


# --- CUDA kernels -------------------------------------------------------------------


def _geometry_args(shape, g):
    n, c = shape[:2]
    return (np.int64(n * c), np.int64(g.H), np.int64(g.W), np.int32(g.KH), np.int32(g.KW),
            np.int32(g.SH), np.int32(g.SW), np.int32(g.PT), np.int32(g.PL), np.int64(g.OH), np.int64(g.OW))


def _launch(name, out, *args):
    kernels.launch("pooling", f"{name}_{SUFFIX[out.dtype]}", out.size, args)
    return out


def max_pool_forward_gpu(x, g):
    x = backend.xp.ascontiguousarray(x)
    y = backend.xp.empty(x.shape[:2] + (g.OH, g.OW), dtype=x.dtype)
    arg = backend.xp.empty(y.shape, dtype=np.int32)
    return _launch("max_pool_forward", y, x, y, arg, *_geometry_args(x.shape, g)), arg


def max_pool_backward_gpu(dy, arg, g):
    dy, arg = backend.xp.ascontiguousarray(dy), backend.xp.ascontiguousarray(arg)
    dx = backend.xp.empty(dy.shape[:2] + (g.H, g.W), dtype=dy.dtype)
    return _launch("max_pool_backward", dx, dy, arg, dx, *_geometry_args(dy.shape, g))


def avg_pool_forward_gpu(x, g):
    x = backend.xp.ascontiguousarray(x)
    y = backend.xp.empty(x.shape[:2] + (g.OH, g.OW), dtype=x.dtype)
    return _launch("avg_pool_forward", y, x, y, *_geometry_args(x.shape, g))


def avg_pool_backward_gpu(dy, g):
    dy = backend.xp.ascontiguousarray(dy)
    dx = backend.xp.empty(dy.shape[:2] + (g.H, g.W), dtype=dy.dtype)
    return _launch("avg_pool_backward", dx, dy, dx, *_geometry_args(dy.shape, g))


# --- dispatchers --------------------------------------------------------------------


def kernels_take(a):
    """True when the pooling kernels can run on ``a``: a float32 or float64 GPU array."""
    return kernels.on_gpu(a) and a.dtype in SUFFIX


def max_pool_forward(x, g):
    """(y, arg) on the array's own backend."""
    return max_pool_forward_gpu(x, g) if kernels_take(x) else max_pool_forward_cpu(x, g)


def max_pool_backward(dy, arg, g):
    """dx (N, C, H, W) on the array's own backend."""
    return max_pool_backward_gpu(dy, arg, g) if kernels_take(dy) else max_pool_backward_cpu(dy, arg, g)


def avg_pool_forward(x, g):
    """y (N, C, OH, OW) on the array's own backend."""
    return avg_pool_forward_gpu(x, g) if kernels_take(x) else avg_pool_forward_cpu(x, g)


def avg_pool_backward(dy, g):
    """dx (N, C, H, W) on the array's own backend."""
    return avg_pool_backward_gpu(dy, g) if kernels_take(dy) else avg_pool_backward_cpu(dy, g)
