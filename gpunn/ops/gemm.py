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

A layer's forward product and its epilogue -- bias, activation and layout, ``gpunn.ops.epilogue`` -- are
one kernel, ``sgemm_bias_act``, when :func:`product_bias_act` finds the product small: there the launch
saved counts for more than cuBLAS's speed (a LeNet step is bound by its launches, not by its arithmetic).
"""

import numpy as np

import gpunn.backend as backend
from gpunn.backend import graphs, kernels
from gpunn.ops.epilogue import bias_act_forward, conv_bias_act_forward_cpu

TILE = 64  # rows and columns of C per block (TILE in gemm.cu)
THREADS = 256  # threads per block (THREADS in gemm.cu)
MAX_ROW_BLOCKS = 65535  # CUDA's limit on gridDim.y; taller products loop over their row tiles
# The largest product (M * N * K multiply-adds) that product_bias_act fuses with its epilogue in an eager step;
# larger ones go to cuBLAS, then the epilogue kernel. A guess to be timed on a GPU (benchmarks/bench_lenet.py):
# all of LeNet-5's products up to batch 512 (the largest, conv2's at batch 512: 79 M) are under it.
FUSED_MAX = 1 << 27


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


def _takes_operands(a, b):
    """The kernels' conditions on a and b: float32 GPU arrays with whole-element strides (any layout)."""
    return (kernels.on_gpu(a, b) and a.dtype == "float32" and b.dtype == "float32"
            and all(s % x.itemsize == 0 for x in (a, b) for s in x.strides))


def _takes(a, b, out):
    """sgemm's conditions: a and b as above, out a C-contiguous float32 GPU array."""
    return _takes_operands(a, b) and kernels.takes(out)


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


def sgemm_bias_act_cpu(a, b, bias, has_bias, out, P, activation):
    """out (N/P, M, P) = g(a @ b + bias[:, None]): the product, then the epilogue's twin."""
    m, n = a.shape[0], b.shape[1]
    conv_bias_act_forward_cpu(backend.get_array_module(a).matmul(a, b), bias, has_bias, out, m, n // P, P, activation)


def sgemm_bias_act_gpu(a, b, bias, has_bias, out, P, activation):
    (m, k), n = a.shape, b.shape[1]
    grid = (kernels.grid(n, TILE), min(kernels.grid(m, TILE), MAX_ROW_BLOCKS))
    sizes = (np.int64(v) for v in (m, n, k, *element_strides(a), *element_strides(b), P))
    args = (a, b, bias, np.int32(has_bias), out, *sizes, np.int32(activation))
    kernels.get_kernel("gemm", "sgemm_bias_act")(grid, (THREADS,), args)


def product_bias_act(a, b, bias, images, activation):
    """A layer's forward on a GPU: g(a . b + bias) for a (F, K), b (K, images * P), ``bias`` (F,) or None and an
    activation code of ``gpunn.ops.epilogue``, laid out (images, F, P). One kernel while a step is prepared for a
    graph or when the product is small (at most FUSED_MAX multiply-adds); else cuBLAS, then the epilogue kernel."""
    (m, k), n = a.shape, b.shape[1]
    if b.shape[0] != k or (images and n % images) or (bias is not None and bias.shape != (m,)):
        raise ValueError(f"product_bias_act expects a (F, K), b (K, images * P) and bias (F,); received a {a.shape}, "
                         f"b {b.shape}, bias {None if bias is None else bias.shape} and images={images}")
    fused = graphs.in_graph() or m * n * k <= FUSED_MAX
    if not (fused and _takes_operands(a, b) and (bias is None or kernels.takes(bias))):
        return bias_act_forward(product(a, b), bias, images, activation)
    out = backend.xp.empty((images, m, n // max(images, 1)), dtype=a.dtype)
    if out.size:
        sgemm_bias_act_gpu(a, b, out if bias is None else bias, int(bias is not None), out, out.shape[2], activation)
    return out
