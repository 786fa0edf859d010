"""One LSTM time step, fused: the NumPy twin (the course's ``lstm_cell_forward``) and the CUDA kernel.

Shapes: B examples, H units; gate pre-activations are (B, 4H) in the order
i (input), f (forget), g (candidate), o (output). Both functions write into
the output arrays they are given, so the layer can keep every step in one
preallocated (T, ...) buffer.
"""

import numpy as np

import gpunn.backend as backend
from gpunn.backend import kernels


def _sigmoid(xp, z):
    return 0.5 * (1 + xp.tanh(0.5 * z))


def lstm_step_forward_cpu(zx, zh, c_prev, gates, c, h):
    """gates <- [i, f, g, o];  c <- f c_prev + i g;  h <- o tanh(c)."""
    xp = backend.get_array_module(zx)
    n = c_prev.shape[-1]
    z = zx + zh
    gates[:, :3 * n] = _sigmoid(xp, z[:, :3 * n])  # i, f and (overwritten next) the g slot
    gates[:, 2 * n:3 * n] = xp.tanh(z[:, 2 * n:3 * n])
    gates[:, 3 * n:] = _sigmoid(xp, z[:, 3 * n:])
    i, f, g, o = (gates[:, k * n:(k + 1) * n] for k in range(4))
    c[...] = f * c_prev + i * g
    h[...] = o * xp.tanh(c)


def lstm_step_backward_cpu(dh_out, dh_rec, dc_next, gates, c_prev, c, dz, dc_prev):
    """dz <- dL/dz (B, 4H) and dc_prev <- dL/dc_{t-1}, from dh = dh_out + dh_rec and dc_next."""
    xp = backend.get_array_module(c)
    n = c.shape[-1]
    i, f, g, o = (gates[:, k * n:(k + 1) * n] for k in range(4))
    tc = xp.tanh(c)
    dh = dh_out + dh_rec
    dc = dc_next + dh * o * (1 - tc * tc)
    dz[:, :n] = dc * g * i * (1 - i)
    dz[:, n:2 * n] = dc * c_prev * f * (1 - f)
    dz[:, 2 * n:3 * n] = dc * i * (1 - g * g)
    dz[:, 3 * n:] = dh * tc * o * (1 - o)
    dc_prev[...] = dc * f


def lstm_step_forward_gpu(zx, zh, c_prev, gates, c, h):
    b, n = c.shape
    kernels.launch("lstm", "lstm_step_forward", b * n, (zx, zh, c_prev, gates, c, h, np.int64(b), np.int64(n)))


def lstm_step_backward_gpu(dh_out, dh_rec, dc_next, gates, c_prev, c, dz, dc_prev):
    b, n = c.shape
    kernels.launch("lstm", "lstm_step_backward", b * n,
                   (dh_out, dh_rec, dc_next, gates, c_prev, c, dz, dc_prev, np.int64(b), np.int64(n)))


def lstm_step_forward(zx, zh, c_prev, gates, c, h):
    args = (zx, zh, c_prev, gates, c, h)
    (lstm_step_forward_gpu if kernels.takes(*args) else lstm_step_forward_cpu)(*args)


def lstm_step_backward(dh_out, dh_rec, dc_next, gates, c_prev, c, dz, dc_prev):
    args = (dh_out, dh_rec, dc_next, gates, c_prev, c, dz, dc_prev)
    (lstm_step_backward_gpu if kernels.takes(*args) else lstm_step_backward_cpu)(*args)
