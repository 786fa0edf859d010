"""Optimizer updates, in place: the equations (``*_cpu``) and their fused CUDA kernels (``*_gpu``).

The ``*_cpu`` twins are written with the array module of their arguments, so
they also serve CuPy arrays the kernels do not cover (float64, non-contiguous).
Each dispatcher takes the kernel for contiguous float32 CuPy arrays: one launch
per weight instead of a chain of small element-wise operations.
"""

import numpy as np

import gpunn.backend as backend
from gpunn.backend import kernels


def _launch(name, w, *args):
    kernels.launch("optimizers", name, w.size, args)


# --- the twins: the course's equations ----------------------------------------------


def sgd_update_cpu(w, g, lr):
    w -= lr * g


def sgd_momentum_update_cpu(w, g, v, lr, momentum, nesterov):
    v *= momentum
    v -= lr * g
    if nesterov:
        w += momentum * v - lr * g
    else:
        w += v


def adagrad_update_cpu(w, g, s, lr, epsilon):
    xp = backend.get_array_module(w)
    s += g * g
    w -= lr * g / (xp.sqrt(s) + epsilon)


def rmsprop_update_cpu(w, g, s, lr, rho, epsilon):
    xp = backend.get_array_module(w)
    s *= rho
    s += (1 - rho) * g * g
    w -= lr * g / (xp.sqrt(s) + epsilon)


def adam_update_cpu(w, g, m, v, lr, beta_1, beta_2, epsilon, t):
    xp = backend.get_array_module(w)
    m *= beta_1
    m += (1 - beta_1) * g
    v *= beta_2
    v += (1 - beta_2) * g * g
    m_hat = m / (1 - beta_1 ** t)  # bias correction: early averages are pulled towards 0
    v_hat = v / (1 - beta_2 ** t)
    w -= lr * m_hat / (xp.sqrt(v_hat) + epsilon)


# --- the kernels ----------------------------------------------------------------------

f32 = np.float32


def sgd_update_gpu(w, g, lr):
    _launch("sgd_update", w, w, g, np.int64(w.size), f32(lr))


def sgd_momentum_update_gpu(w, g, v, lr, momentum, nesterov):
    _launch("sgd_momentum_update", w, w, g, v, np.int64(w.size), f32(lr), f32(momentum), np.int32(bool(nesterov)))


def adagrad_update_gpu(w, g, s, lr, epsilon):
    _launch("adagrad_update", w, w, g, s, np.int64(w.size), f32(lr), f32(epsilon))


def rmsprop_update_gpu(w, g, s, lr, rho, epsilon):
    _launch("rmsprop_update", w, w, g, s, np.int64(w.size), f32(lr), f32(rho), f32(epsilon))


def adam_update_gpu(w, g, m, v, lr, beta_1, beta_2, epsilon, t):
    _launch("adam_update", w, w, g, m, v, np.int64(w.size), f32(lr), f32(beta_1), f32(beta_2), f32(epsilon),
            f32(1 - beta_1 ** t), f32(1 - beta_2 ** t))


# --- dispatchers -------------------------------------------------------------------------


def sgd_update(w, g, lr):
    (sgd_update_gpu if kernels.takes(w, g) else sgd_update_cpu)(w, g, lr)


def sgd_momentum_update(w, g, v, lr, momentum, nesterov):
    (sgd_momentum_update_gpu if kernels.takes(w, g, v) else sgd_momentum_update_cpu)(w, g, v, lr, momentum, nesterov)


def adagrad_update(w, g, s, lr, epsilon):
    (adagrad_update_gpu if kernels.takes(w, g, s) else adagrad_update_cpu)(w, g, s, lr, epsilon)


def rmsprop_update(w, g, s, lr, rho, epsilon):
    (rmsprop_update_gpu if kernels.takes(w, g, s) else rmsprop_update_cpu)(w, g, s, lr, rho, epsilon)


def adam_update(w, g, m, v, lr, beta_1, beta_2, epsilon, t):
    (adam_update_gpu if kernels.takes(w, g, m, v) else adam_update_cpu)(w, g, m, v, lr, beta_1, beta_2, epsilon, t)
