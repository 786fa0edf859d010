"""Optimizer updates, in place: the equations (``*_cpu``) and their fused CUDA kernels (``*_gpu``).

Each has a ``*_scheduled`` variant that reads the rate (and Adam's bias corrections) from a small
array in device memory, ``hyper = [lr, 1 - beta_1^t, 1 - beta_2^t]``, which ``optimizer_schedule``
writes for the next step t: what a training step captured as a CUDA graph runs (its kernels'
arguments are frozen at the capture; see :mod:`gpunn.models.captured`).

The ``*_cpu`` twins are written with the array module of their arguments, so
they also serve CuPy arrays the kernels do not cover (float64, non-contiguous).
Each dispatcher takes the kernel for contiguous float32 CuPy arrays: one launch
per weight instead of a chain of small element-wise operations. Nadam, Adadelta
and RMSprop's centered and momentum variants have no kernel yet: their one
function runs on either backend.
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
    _adam(w, g, m, v, lr, beta_1, beta_2, epsilon, 1 - beta_1 ** t, 1 - beta_2 ** t)


def _adam(w, g, m, v, lr, beta_1, beta_2, epsilon, bc1, bc2):
    xp = backend.get_array_module(w)
    m *= beta_1
    m += (1 - beta_1) * g
    v *= beta_2
    v += (1 - beta_2) * g * g
    m_hat = m / bc1  # bias correction, bc1 = 1 - beta_1^t: early averages are pulled towards 0
    v_hat = v / bc2
    w -= lr * m_hat / (xp.sqrt(v_hat) + epsilon)


# --- the same with the rate and Adam's bias corrections in device memory (captured CUDA graphs) -----
# hyper = [lr, bc1, bc2]; optimizer_schedule advances the step count and writes hyper, in the graph.


def optimizer_schedule_cpu(hyper, step, rate, beta_1, beta_2):
    step += 1
    t = float(step[0])
    hyper[...] = [rate[0], 1 - beta_1 ** t, 1 - beta_2 ** t]


def sgd_update_scheduled_cpu(w, g, hyper):
    sgd_update_cpu(w, g, hyper[0])


def sgd_momentum_update_scheduled_cpu(w, g, v, hyper, momentum, nesterov):
    sgd_momentum_update_cpu(w, g, v, hyper[0], momentum, nesterov)


def adagrad_update_scheduled_cpu(w, g, s, hyper, epsilon):
    adagrad_update_cpu(w, g, s, hyper[0], epsilon)


def rmsprop_update_scheduled_cpu(w, g, s, hyper, rho, epsilon):
    rmsprop_update_cpu(w, g, s, hyper[0], rho, epsilon)


def adam_update_scheduled_cpu(w, g, m, v, hyper, beta_1, beta_2, epsilon):
    _adam(w, g, m, v, hyper[0], beta_1, beta_2, epsilon, hyper[1], hyper[2])


# --- twins without a kernel: the same code runs on NumPy and CuPy arrays ---------------------


def rmsprop_centered_momentum_update(w, g, s, mg, velocity, lr, rho, momentum, epsilon):
    """RMSprop, centered (``mg`` holds the running mean of g) and/or with momentum (``velocity``); None: not used.

    Centered divides by an estimate of g's standard deviation instead of its root mean square.
    """
    xp = backend.get_array_module(w)
    s *= rho
    s += (1 - rho) * g * g
    if mg is not None:
        mg *= rho
        mg += (1 - rho) * g
        spread = xp.sqrt(xp.maximum(s - mg * mg, 0))  # >= 0 in exact arithmetic; rounding may dip below
    else:
        spread = xp.sqrt(s)
    step = lr * g / (spread + epsilon)
    if velocity is None:
        w -= step
    else:
        velocity *= momentum
        velocity += step
        w -= velocity


def nadam_update(w, g, m, v, lr, beta_1, beta_2, epsilon, t, u_product):
    """Adam with Nesterov momentum (Dozat), as Keras writes it: the momentum warms up along
    u_t = beta_1 (1 - 0.5 * 0.96^t), and ``u_product`` = u_1 u_2 ... u_t."""
    xp = backend.get_array_module(w)
    u_t, u_next = beta_1 * (1 - 0.5 * 0.96 ** t), beta_1 * (1 - 0.5 * 0.96 ** (t + 1))
    m *= beta_1
    m += (1 - beta_1) * g
    v *= beta_2
    v += (1 - beta_2) * g * g
    m_hat = u_next * m / (1 - u_product * u_next) + (1 - u_t) * g / (1 - u_product)  # look one step ahead
    v_hat = v / (1 - beta_2 ** t)
    w -= lr * m_hat / (xp.sqrt(v_hat) + epsilon)


def adadelta_update(w, g, s, d, lr, rho, epsilon):
    """Adadelta (Zeiler): the step's size comes from the running RMS of past steps (``d``) over that of g (``s``)."""
    xp = backend.get_array_module(w)
    s *= rho
    s += (1 - rho) * g * g
    delta = -xp.sqrt(d + epsilon) / xp.sqrt(s + epsilon) * g
    d *= rho
    d += (1 - rho) * delta * delta
    w += lr * delta


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


def optimizer_schedule_gpu(hyper, step, rate, beta_1, beta_2):
    kernels.get_kernel("optimizers", "optimizer_schedule")((1,), (1,), (hyper, step, rate, np.float64(beta_1),
                                                                        np.float64(beta_2)))


def sgd_update_scheduled_gpu(w, g, hyper):
    _launch("sgd_update_scheduled", w, w, g, np.int64(w.size), hyper)


def sgd_momentum_update_scheduled_gpu(w, g, v, hyper, momentum, nesterov):
    _launch("sgd_momentum_update_scheduled", w, w, g, v, np.int64(w.size), hyper, f32(momentum),
            np.int32(bool(nesterov)))


def adagrad_update_scheduled_gpu(w, g, s, hyper, epsilon):
    _launch("adagrad_update_scheduled", w, w, g, s, np.int64(w.size), hyper, f32(epsilon))


def rmsprop_update_scheduled_gpu(w, g, s, hyper, rho, epsilon):
    _launch("rmsprop_update_scheduled", w, w, g, s, np.int64(w.size), hyper, f32(rho), f32(epsilon))


def adam_update_scheduled_gpu(w, g, m, v, hyper, beta_1, beta_2, epsilon):
    _launch("adam_update_scheduled", w, w, g, m, v, np.int64(w.size), hyper, f32(beta_1), f32(beta_2), f32(epsilon))


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


def optimizer_schedule(hyper, step, rate, beta_1, beta_2):
    (optimizer_schedule_gpu if kernels.on_gpu(hyper, step, rate) else optimizer_schedule_cpu)(hyper, step, rate,
                                                                                             beta_1, beta_2)


def sgd_update_scheduled(w, g, hyper):
    (sgd_update_scheduled_gpu if kernels.takes(w, g) else sgd_update_scheduled_cpu)(w, g, hyper)


def sgd_momentum_update_scheduled(w, g, v, hyper, momentum, nesterov):
    (sgd_momentum_update_scheduled_gpu if kernels.takes(w, g, v) else sgd_momentum_update_scheduled_cpu)(
        w, g, v, hyper, momentum, nesterov)


def adagrad_update_scheduled(w, g, s, hyper, epsilon):
    (adagrad_update_scheduled_gpu if kernels.takes(w, g, s) else adagrad_update_scheduled_cpu)(w, g, s, hyper, epsilon)


def rmsprop_update_scheduled(w, g, s, hyper, rho, epsilon):
    (rmsprop_update_scheduled_gpu if kernels.takes(w, g, s) else rmsprop_update_scheduled_cpu)(w, g, s, hyper, rho,
                                                                                               epsilon)


def adam_update_scheduled(w, g, m, v, hyper, beta_1, beta_2, epsilon):
    (adam_update_scheduled_gpu if kernels.takes(w, g, m, v) else adam_update_scheduled_cpu)(w, g, m, v, hyper, beta_1,
                                                                                            beta_2, epsilon)
