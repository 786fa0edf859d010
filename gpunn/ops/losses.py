"""Softmax and cross-entropy fused, with its gradient: the NumPy twin and the CUDA kernel.

For logits z (rows, k), integer labels y (rows,) and weights w (rows,) -- 1 when there are none::

    loss_r = w_r (logsumexp(z_r) - z_{r, y_r})              = -w_r log softmax(z_r)_{y_r}
    dz_r   = w_r (softmax(z_r) - onehot(y_r)) / rows

so that J = mean(loss) and dJ/dz = dz, the cross-entropy of a softmax output read from its logits
(see :mod:`gpunn.losses`). The twin writes it the course's way, a few NumPy lines; on the GPU,
``cuda_kernels/losses.cu`` does the whole of it in one launch, one warp per row.
"""

import numpy as np

import gpunn.backend as backend
from gpunn.backend import kernels

WARP = 32  # threads that share one row in the kernel


def softmax_cross_entropy_cpu(z, labels, weights, loss_rows, dz):
    """loss_rows (rows,) <- w (lse(z) - z[y]);  dz (rows, k) <- w (softmax(z) - onehot(y)) / rows.
    ``weights``: (rows,), or None for all ones."""
    xp = backend.get_array_module(z)
    rows = z.shape[0]
    zmax = z.max(axis=1, keepdims=True)
    lse = xp.log(xp.exp(z - zmax).sum(axis=1, keepdims=True)) + zmax  # (rows, 1)
    w = 1 if weights is None else weights.reshape(rows, 1)
    picked = xp.take_along_axis(z, labels.reshape(rows, 1), axis=1)
    loss_rows[...] = (w * (lse - picked))[:, 0]
    onehot = labels.reshape(rows, 1) == xp.arange(z.shape[1])
    dz[...] = w * (xp.exp(z - lse) - onehot) / rows


def softmax_cross_entropy_gpu(z, labels, weights, loss_rows, dz):
    rows, classes = z.shape
    has_weights = weights is not None
    kernels.launch("losses", "softmax_cross_entropy", rows * WARP,
                   (z, labels, weights if has_weights else z, np.int32(has_weights), loss_rows, dz,
                    np.int64(rows), np.int64(classes), np.float32(1.0 / rows)))


def softmax_cross_entropy(z, labels, weights=None):
    """(loss_rows, dz) of logits z (..., k), labels (...) and weights (...) or None: new arrays of z's
    shape without its last axis and of z's shape. The kernel for float32 GPU arrays, else the twin."""
    classes = z.shape[-1]
    flat = z.reshape(-1, classes)
    rows = flat.shape[0]
    xp = backend.xp if kernels.on_gpu(z) else backend.get_array_module(z)
    labels = xp.ascontiguousarray(labels.reshape(rows).astype(np.int64, copy=False))
    if weights is not None:
        weights = xp.ascontiguousarray(weights.reshape(rows).astype(z.dtype, copy=False))
    loss_rows, dz = xp.empty(rows, dtype=z.dtype), xp.empty_like(flat)
    (softmax_cross_entropy_gpu if kernels.takes(flat) else softmax_cross_entropy_cpu)(flat, labels, weights,
                                                                                      loss_rows, dz)
    return loss_rows.reshape(z.shape[:-1]), dz.reshape(z.shape)
