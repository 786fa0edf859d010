"""Weight initializers.

Why initialization matters (the course's argument): with all-zero weights
every unit of a layer computes the same thing and receives the same gradient,
so they never become different ("symmetry"). Random weights break symmetry;
scaling them by the layer's fan keeps the variance of activations (forward)
and gradients (backward) roughly constant from layer to layer:

- Xavier/Glorot (tanh, sigmoid): Var(w) = 2 / (fan_in + fan_out)
- He (ReLU): Var(w) = 2 / fan_in

Initializers draw on the host from :func:`gpunn.backend.host_rng`, so one
seed gives the same initial weights on NumPy and on CuPy.

Fans: a 2-D weight is (fan_in, fan_out) as in ``Dense``; a convolution kernel
is channels-first (filters, channels, kh, kw), so fan_in = channels*kh*kw and
fan_out = filters*kh*kw.
"""

import numpy as np

import gpunn.backend as backend
from gpunn.utils.registry import from_identifier


def compute_fans(shape):
    """(fan_in, fan_out) of a weight of this shape."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive_field = int(np.prod(shape[2:]))
    return shape[1] * receptive_field, shape[0] * receptive_field


class Initializer:
    """``init(shape, dtype)`` returns a NumPy array; layers move it to the device."""

    def __call__(self, shape, dtype=np.float32):
        return np.asarray(self.sample(tuple(shape)), dtype=dtype)

    def sample(self, shape):
        raise NotImplementedError

    def get_config(self):
        return {"name": self.name, **vars(self)}


class Zeros(Initializer):
    name = "zeros"

    def sample(self, shape):
        return np.zeros(shape)


class Ones(Initializer):
    name = "ones"

    def sample(self, shape):
        return np.ones(shape)


class Constant(Initializer):
    name = "constant"

    def __init__(self, value=0.0):
        self.value = float(value)

    def sample(self, shape):
        return np.full(shape, self.value)


class RandomNormal(Initializer):
    """w ~ N(mean, stddev^2); the default is the course's ``np.random.randn(...) * 0.01``."""

    name = "random_normal"

    def __init__(self, mean=0.0, stddev=0.01):
        self.mean, self.stddev = float(mean), float(stddev)

    def sample(self, shape):
        return self.mean + self.stddev * backend.host_rng().standard_normal(shape)


class RandomUniform(Initializer):
    """w ~ U(minval, maxval)."""

    name = "random_uniform"

    def __init__(self, minval=-0.05, maxval=0.05):
        self.minval, self.maxval = float(minval), float(maxval)

    def sample(self, shape):
        return backend.host_rng().uniform(self.minval, self.maxval, shape)


class GlorotNormal(Initializer):
    """Xavier: w ~ N(0, 2 / (fan_in + fan_out))."""

    name = "glorot_normal"

    def sample(self, shape):
        fan_in, fan_out = compute_fans(shape)
        return np.sqrt(2.0 / (fan_in + fan_out)) * backend.host_rng().standard_normal(shape)


class GlorotUniform(Initializer):
    """Xavier: w ~ U(-r, r) with r = sqrt(6 / (fan_in + fan_out)) (the same variance)."""

    name = "glorot_uniform"

    def sample(self, shape):
        fan_in, fan_out = compute_fans(shape)
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return backend.host_rng().uniform(-limit, limit, shape)


class HeNormal(Initializer):
    """He: w ~ N(0, 2 / fan_in), the course's ``randn(...) * sqrt(2 / n_prev)``."""

    name = "he_normal"

    def sample(self, shape):
        fan_in, _ = compute_fans(shape)
        return np.sqrt(2.0 / fan_in) * backend.host_rng().standard_normal(shape)


class HeUniform(Initializer):
    """He: w ~ U(-r, r) with r = sqrt(6 / fan_in)."""

    name = "he_uniform"

    def sample(self, shape):
        fan_in, _ = compute_fans(shape)
        limit = np.sqrt(6.0 / fan_in)
        return backend.host_rng().uniform(-limit, limit, shape)


class Orthogonal(Initializer):
    """A random orthogonal matrix (times ``gain``): Q from the QR decomposition of a Gaussian matrix.

    The default for recurrent kernels: multiplying h by an orthogonal U over and
    over neither blows it up nor shrinks it, which helps gradients survive many steps.
    """

    name = "orthogonal"

    def __init__(self, gain=1.0):
        self.gain = float(gain)

    def sample(self, shape):
        rows, cols = shape[0], int(np.prod(shape[1:]))
        a = backend.host_rng().standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))  # makes the result uniformly distributed over orthogonal matrices
        q = q if rows >= cols else q.T
        return self.gain * q.reshape(shape)


INITIALIZERS = {
    cls.name: cls
    for cls in (Zeros, Ones, Constant, RandomNormal, RandomUniform, GlorotNormal, GlorotUniform, HeNormal, HeUniform,
                Orthogonal)
}


def get(identifier):
    """An initializer from a name ('he_normal'), a config dict, or an instance."""
    if isinstance(identifier, Initializer):
        return identifier
    return from_identifier(identifier, INITIALIZERS, "initializer")
