"""Softmax over rows, and its cross-entropy: the NumPy twins and the CUDA kernels.

For logits z (rows, k), each row turned into probabilities, and back::

    a_r  = e^(z_r - max z_r) / sum_j e^(z_rj - max z_r)      softmax_forward
    dz_r = a_r * (da_r - sum_j da_rj a_rj)                   softmax_backward (the Jacobian, applied)

and, for integer labels y (rows,) and weights w (rows,) -- 1 when there are none -- the two fused::

    loss_r = w_r (logsumexp(z_r) - z_{r, y_r})              = -w_r log softmax(z_r)_{y_r}
    dz_r   = w_r (softmax(z_r) - onehot(y_r)) / rows

so that J = mean(loss) and dJ/dz = dz, the cross-entropy of a softmax output read from its logits
(see :mod:`gpunn.losses`). The twins write it the course's way, a few NumPy lines; on the GPU,
``cuda_kernels/losses.cu`` does each in one launch, one warp per row.
"""

import numpy as np

import gpunn.backend as backend
from gpunn.backend import kernels

WARP = 32  # threads that share one row in the kernel


def softmax_forward_cpu(z, a):
    """a (rows, k) <- softmax of each row of z (rows, k), its maximum subtracted first."""
    e = backend.get_array_module(z).exp(z - z.max(axis=1, keepdims=True))
    a[...] = e / e.sum(axis=1, keepdims=True)


def softmax_forward_gpu(z, a):
    rows, classes = z.shape
    kernels.launch("losses", "softmax_forward", rows * WARP, (z, a, np.int64(rows), np.int64(classes)))


def softmax_backward_cpu(a, da, dz):
    """dz (rows, k) <- a * (da - sum_j da_j a_j), row by row: dL/dz from a = softmax(z) and da = dL/da."""
    dz[...] = a * (da - (da * a).sum(axis=1, keepdims=True))


def softmax_backward_gpu(a, da, dz):
    rows, classes = a.shape
    kernels.launch("losses", "softmax_backward", rows * WARP, (a, da, dz, np.int64(rows), np.int64(classes)))


def _rows(x):
    """x (..., k) as (rows, k), and the array module to allocate its results with."""
    xp = backend.xp if kernels.on_gpu(x) else backend.get_array_module(x)
    return x.reshape(-1, x.shape[-1]), xp


def softmax(z):
    """softmax(z) over the last axis of z (..., k): a new array of z's shape. The kernel for float32 GPU
    arrays, else the twin."""
    flat, xp = _rows(z)
    a = xp.empty_like(flat)
    (softmax_forward_gpu if kernels.takes(flat) else softmax_forward_cpu)(flat, a)
    return a.reshape(z.shape)


def softmax_backward(a, da):
    """dL/dz from a = softmax(z) and da = dL/da, both (..., k): a new array; neither input is changed."""
    if a.shape != da.shape:
        raise ValueError(f"softmax_backward: a and da must have the same shape; received {a.shape} and {da.shape}")
    flat_a, xp = _rows(a)
    flat_da = da.reshape(flat_a.shape)
    dz = xp.empty(flat_a.shape, dtype=np.result_type(a.dtype, da.dtype))
    (softmax_backward_gpu if kernels.takes(flat_a, flat_da) else softmax_backward_cpu)(flat_a, flat_da, dz)
    return dz.reshape(a.shape)


def softmax_cross_entropy_cpu(z, labels, weights, loss_rows, dz, loss_mean, partials, counter):
    """loss_rows (rows,) <- w (lse(z) - z[y]);  dz (rows, k) <- w (softmax(z) - onehot(y)) / rows;
    loss_mean (1,) <- the mean of loss_rows. ``weights``: (rows,), or None for all ones. (``partials`` and
    ``counter`` are the kernel's way to sum the mean.)"""
    xp = backend.get_array_module(z)
    rows = z.shape[0]
    zmax = z.max(axis=1, keepdims=True)
    lse = xp.log(xp.exp(z - zmax).sum(axis=1, keepdims=True)) + zmax  # (rows, 1)
    w = 1 if weights is None else weights.reshape(rows, 1)
    picked = xp.take_along_axis(z, labels.reshape(rows, 1), axis=1)
    loss_rows[...] = (w * (lse - picked))[:, 0]
    onehot = labels.reshape(rows, 1) == xp.arange(z.shape[1])
    dz[...] = w * (xp.exp(z - lse) - onehot) / rows
    loss_mean[...] = loss_rows.mean()


BLOCKS = 1024  # the loss kernel's grid at most (a grid-stride loop covers more rows)


def loss_blocks(rows):
    """The loss kernel's grid: a warp per row, 8 to a block."""
    return min(kernels.grid(rows * WARP, 8 * WARP), BLOCKS)


def softmax_cross_entropy_gpu(z, labels, weights, loss_rows, dz, loss_mean, partials, counter):
    rows, classes = z.shape
    has_weights = weights is not None
    kernels.get_kernel("losses", "softmax_cross_entropy")(
        (loss_blocks(rows),), (8 * WARP,), (z, labels, weights if has_weights else z, np.int32(has_weights), loss_rows,
                                             dz, loss_mean, partials, counter, np.int64(rows), np.int64(classes),
                                             np.float32(1.0 / rows)))


def softmax_cross_entropy(z, labels, weights=None):
    """(loss_rows, J, dz) of logits z (..., k), labels (...) and weights (...) or None: new arrays of z's shape
    without its last axis, of shape () (the mean of loss_rows) and of z's shape. The kernel for float32 GPU
    arrays, else the twin."""
    flat, xp = _rows(z)
    rows = flat.shape[0]
    labels = xp.ascontiguousarray(labels.reshape(rows).astype(np.int64, copy=False))
    if weights is not None:
        weights = xp.ascontiguousarray(weights.reshape(rows).astype(z.dtype, copy=False))
    loss_rows, dz, loss_mean = xp.empty(rows, dtype=z.dtype), xp.empty_like(flat), xp.empty(1, dtype=z.dtype)
    if kernels.takes(flat) and rows:
        partials = xp.empty(loss_blocks(rows), dtype=z.dtype)
        softmax_cross_entropy_gpu(flat, labels, weights, loss_rows, dz, loss_mean, partials, kernels.block_counters(1))
    else:
        softmax_cross_entropy_cpu(flat, labels, weights, loss_rows, dz, loss_mean, None, None)
    return loss_rows.reshape(z.shape[:-1]), loss_mean.reshape(()), dz.reshape(z.shape)
