"""The gradient of an embedding lookup: the NumPy twin and the deterministic CUDA kernel.

Forward is a gather, y[k] = E[ids[k]]; backward is its adjoint, a scatter-add::

    dE[v] = sum of dy[k] over every position k with ids[k] = v

The twin adds the rows position by position (``numpy.add.at``). On a GPU, atomic adds
would do it in whatever order the threads arrive, and two identical runs would differ
in the last bits; the kernel (``cuda_kernels/embedding.cu``) sorts the positions by id
and adds each id's run of rows in that fixed order instead.
"""

import numpy as np

import gpunn.backend as backend
from gpunn.backend import kernels


def embedding_backward_cpu(ids, dy, vocab):
    """dE (vocab, dim) from ids (n,) and dy (n, dim); repeated ids add up."""
    grad = backend.get_array_module(dy).zeros((vocab, dy.shape[-1]), dtype=dy.dtype)
    backend.scatter_add(grad, ids, dy)
    return grad


def embedding_backward_gpu(ids, dy, vocab):
    xp = backend.xp
    dim = dy.shape[-1]
    order = xp.argsort(ids)  # a stable sort: equal ids keep their positions' order
    starts = xp.searchsorted(ids[order], xp.arange(vocab + 1))  # id v's run: order[starts[v]:starts[v + 1]]
    grad = xp.empty((vocab, dim), dtype=dy.dtype)
    kernels.launch("embedding", "embedding_backward", vocab * dim,
                   (order, starts, xp.ascontiguousarray(dy), grad, np.int64(vocab), np.int64(dim)))
    return grad


def embedding_backward(ids, dy, vocab):
    """dE = the scatter-add of dy's rows onto the rows ``ids`` name; the kernel on the GPU (float32)."""
    if kernels.takes(dy) and kernels.on_gpu(ids):
        return embedding_backward_gpu(ids.astype(np.int64, copy=False), dy, vocab)
    return embedding_backward_cpu(ids, dy, vocab)
