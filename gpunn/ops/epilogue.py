"""The epilogue of a convolution's matrix product: bias, activation and layout in one pass.

Conv2D computes the batch as one GEMM, ``zf = W2 @ col`` of shape (F, N*P) (F filters, N images,
P = OH*OW pixels), and hands on A = g(Z + b) laid out (N, F, P)::

    forward:   out[n, f, p] = g(zf[f, n*P + p] + b[f])
    backward:  dzf[f, n*P + p] = dy[n, f, p] * g'(z[n, f, p])     (g' read off out: see below)
               db[f] = sum over n, p of dzf[f, n*P + p]            (the bias gradient, in the same pass)

On a GPU each direction is one launch of ``cuda_kernels/epilogue.cu`` where CuPy needs 3-4
(a transpose written out by the bias add, ReLU's mask, its maximum...). g'(Z) is computed from
the output A itself -- relu: A > 0, sigmoid: A (1 - A), tanh: 1 - A^2 -- so the layer keeps
only A, and the activation object's own state (ReLU's ``positive``) is not used.

Each direction has the kernel (``*_gpu``) and its NumPy twin (``*_cpu``) with the same signature,
and a dispatcher (:func:`bias_act_forward`, :func:`bias_act_backward`) that allocates the output and
takes the kernel for contiguous float32 GPU arrays, the twin otherwise (float64 gradchecks).
"""

import numpy as np

import gpunn.backend as backend
from gpunn import activations
from gpunn.backend import kernels

LINEAR, RELU, SIGMOID, TANH = range(4)  # the kernels' activation codes
BLOCK = 256  # threads per block of the backward kernel


def activation_code(activation):
    """The kernels' code for ``activation``, or None: unknown to them (matched by exact class: a subclass may
    compute something else), or fused with the loss, which then reads the activation's own state (the logits)."""
    known = {activations.Linear: LINEAR, activations.ReLU: RELU, activations.Sigmoid: SIGMOID, activations.Tanh: TANH}
    return None if activation.fused else known.get(type(activation))


# --- NumPy twins (they run on CuPy arrays too) --------------------------------------


def _activate(z, activation):
    xp = backend.get_array_module(z)
    return [lambda: z, lambda: xp.maximum(z, 0), lambda: 0.5 * (1 + xp.tanh(0.5 * z)), lambda: xp.tanh(z)][activation]()


def _derivative_times(dy, a, activation):
    return [lambda: dy, lambda: dy * (a > 0), lambda: dy * a * (1 - a), lambda: dy * (1 - a * a)][activation]()


def conv_bias_act_forward_cpu(zf, bias, has_bias, out, F, N, P, activation):
    """out (N, F, P) = g(zf (F, N*P) + bias), with zf's axes 0 and 1 swapped."""
    z = zf.reshape(F, N, P).transpose(1, 0, 2)
    if has_bias:
        z = z + bias[:, None]
    out.reshape(N, F, P)[...] = _activate(z, activation)


def conv_bias_act_backward_cpu(dy, out, dzf, db, has_bias, partials, counters, F, N, P, activation, chunks):
    """dzf (F, N*P) = dy * g'(Z) (both (N, F, P)), with g' read off the forward's output; db (F,) = the sums
    of dzf's rows when ``has_bias``. (``partials``, ``counters`` and ``chunks`` are the kernel's way to sum.)"""
    dz = _derivative_times(dy.reshape(N, F, P), out.reshape(N, F, P), activation)
    dzf.reshape(F, N, P)[...] = dz.transpose(1, 0, 2)
    if has_bias:
        dzf.sum(axis=1, out=db)


# --- CUDA kernels -------------------------------------------------------------------


def conv_bias_act_forward_gpu(zf, bias, has_bias, out, F, N, P, activation):
    kernels.launch("epilogue", "conv_bias_act_forward", out.size,
                   (zf, bias, np.int32(has_bias), out, np.int64(F), np.int64(N), np.int64(P), np.int32(activation)))


def conv_bias_act_backward_gpu(dy, out, dzf, db, has_bias, partials, counters, F, N, P, activation, chunks):
    kernels.get_kernel("epilogue", "conv_bias_act_backward")(
        (F * chunks,), (BLOCK,), (dy, out, dzf, db, np.int32(has_bias), partials, counters, np.int64(F), np.int64(N),
                                  np.int64(P), np.int32(activation), np.int64(chunks)))


def row_chunks(F, L):
    """How many blocks share a row of L elements, F rows: about 1024 blocks in all (enough to fill a GPU),
    each with 4 elements a thread or more. The sums depend on it, so it depends on the sizes alone."""
    return max(1, min(-(-1024 // F), L // (4 * BLOCK)))


# --- dispatchers --------------------------------------------------------------------


def bias_act_forward(zf, bias, n, activation):
    """zf (F, N*P) -> A (N, F, P) = g(Z + b); ``bias`` (F,) or None; ``activation`` a code from
    :func:`activation_code`."""
    f, p = zf.shape[0], zf.shape[1] // max(n, 1)
    out = backend.xp.empty((n, f, p), dtype=zf.dtype)
    has_bias = bias is not None
    bias = bias if has_bias else zf  # never read; the kernel wants a pointer
    run = conv_bias_act_forward_gpu if kernels.takes(zf, bias, out) else conv_bias_act_forward_cpu
    run(zf, bias, int(has_bias), out, f, n, p, activation)
    return out


def bias_act_backward(dy, out, activation, has_bias=False, db=None):
    """dA (N, F, ...) and the forward's A -> (dZ (F, N*P), the layout of zf; dJ/db (F,) when ``has_bias``,
    else None), with db written in ``db`` when given (an array of shape (F,)). ``dy`` is not modified."""
    xp = backend.xp
    n, f = out.shape[:2]
    p = out.size // max(n * f, 1)
    dy = xp.ascontiguousarray(dy, dtype=out.dtype)  # no copy when it already is
    dzf = xp.empty((f, n * p), dtype=out.dtype)
    if has_bias and db is None:
        db = xp.empty(f, dtype=out.dtype)
    if kernels.takes(dy, out, dzf) and n * p and (db is None or kernels.takes(db)):
        chunks = row_chunks(f, n * p)
        partials = xp.empty(f * chunks if has_bias else 1, dtype=out.dtype)  # without a bias, never touched
        conv_bias_act_backward_gpu(dy, out, dzf, db if has_bias else partials, int(has_bias), partials,
                                   kernels.block_counters(f), f, n, p, activation, chunks)
    else:
        conv_bias_act_backward_cpu(dy, out, dzf, db, int(has_bias), None, None, f, n, p, activation, 1)
    return dzf, db
