"""The matrix product C = A . B (+ C), float32, without cuBLAS.

Every layer that learns is built on a matrix product: Dense's Z = X . W, Conv2D's Z = W2 . col, their
gradients dW = X^T . dZ and dX = dZ . W^T. CuPy hands ``a @ b`` to cuBLAS, which is fast, but CuPy refuses
cuBLAS calls while a stream is being captured into a CUDA graph -- how a whole training step is recorded
once and replayed. So gpunn has its own kernel for that path, ``cuda_kernels/gemm.cu``::

    C[i, j] = sum_k A[i, k] B[k, j] (+ C[i, j])     A (M, K), B (K, N), C (M, N)

computed as a sum of outer products of K-slices, in 64 x 64 tiles of C, K streamed through shared memory
16 slices at a time, each thread keeping a 4 x 4 block of C in registers (the .cu file explains why).

The kernel reads A and B through strides counted in elements -- A[i, k] is at ``A[i * a_row + k * a_col]``
-- so transposed operands, as in dW = X^T . dZ, are passed as views (``x.T``) and never copied.

:func:`sgemm_gpu` launches the kernel and :func:`sgemm_cpu` is its NumPy twin, with the same signature;
:func:`matmul` checks shapes, allocates the output, and takes the kernel for float32 GPU arrays (with a
C-contiguous output), the twin otherwise (NumPy, float64 gradchecks). Layers call :func:`product`,
which is cuBLAS (``xp.matmul``) in an eager step and this kernel while a step is prepared for a graph.
"""

import numpy as np

import gpunn.backend as backend
from gpunn.backend import graphs, kernels

TILE = 64  # rows and columns of C per block (TILE in gemm.cu)
THREADS = 256  # threads per block (THREADS in gemm.cu)
MAX_ROW_BLOCKS = 65535  # CUDA's limit on gridDim.y; taller products loop over their row tiles


def sgemm_cpu(a, b, c, beta):
    """c[...] = a @ b + beta * c, with the array module of the arguments; beta 0 never reads c."""
    product = backend.get_array_module(a).matmul(a, b)
    c[...] = product + beta * c if beta else product


def element_strides(x):
    """(row, column) strides of a 2-D array, in elements rather than bytes."""
    return tuple(s // x.itemsize for s in x.strides)


def sgemm_gpu(a, b, c, beta):
    """The kernel: a (M, K) and b (K, N) any float32 views, c (M, N) C-contiguous float32."""
    (m, k), n = a.shape, b.shape[1]
    if not c.flags.c_contiguous:
        raise ValueError(f"sgemm_gpu writes C row by row: it must be C-contiguous, received strides {c.strides}")
    if m == 0 or n == 0:
        return  # nothing to write (and a grid of 0 blocks is not a launch)
    grid = (kernels.grid(n, TILE), min(kernels.grid(m, TILE), MAX_ROW_BLOCKS))
    args = (a, b, c, *(np.int64(v) for v in (m, n, k, *element_strides(a), *element_strides(b))), np.float32(beta))
    kernels.get_kernel("gemm", "sgemm")(grid, (THREADS,), args)


def _takes(a, b, out):
    """The kernel's conditions: float32 GPU arrays, out C-contiguous, a and b with whole-element strides."""
    return (kernels.on_gpu(a, b, out) and all(x.dtype == "float32" for x in (a, b, out))
            and out.flags.c_contiguous and all(s % x.itemsize == 0 for x in (a, b) for s in x.strides))


def matmul(a, b, out=None, accumulate=False):
    """a (M, K) . b (K, N) -> out (M, N); with ``accumulate=True``, out += a . b (out must be given).

    ``a`` and ``b`` may be any 2-D views (transposes, slices); ``out`` is written in place and returned.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul expects a (M, K) and b (K, N) with the same K, received a of shape {a.shape} "
                         f"and b of shape {b.shape}")
    shape = (a.shape[0], b.shape[1])
    if out is None:
        if accumulate:
            raise ValueError("matmul(..., accumulate=True) adds to out: pass out, an array of shape "
                             f"{shape}; received out=None")
        out = backend.xp.empty(shape, dtype=np.result_type(a.dtype, b.dtype))
    elif out.shape != shape:
        raise ValueError(f"matmul expects out of shape {shape} (a {a.shape} . b {b.shape}), "
                         f"received out of shape {out.shape}")
    run = sgemm_gpu if _takes(a, b, out) else sgemm_cpu
    run(a, b, out, 1.0 if accumulate else 0.0)
    return out


def product(a, b, out=None):
    """a (M, K) . b (K, N) for the layers (into ``out`` when given): cuBLAS in an eager step, gpunn's kernel
    while a step is prepared for a CUDA graph (:func:`gpunn.backend.graphs.in_graph`), where CuPy refuses cuBLAS."""
    if graphs.in_graph() and kernels.on_gpu(a, b):
        return matmul(a, b, out)
    return backend.get_array_module(a).matmul(a, b, out=out)
