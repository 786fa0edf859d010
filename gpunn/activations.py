"""Activation functions g(Z) and their derivatives.

Each activation is a tiny object with the layer protocol the rest of gpunn
uses: ``forward(z)`` computes A = g(Z) and keeps what ``backward`` needs;
``backward(dA)`` returns dZ = dA * g'(Z) (element-wise), the chain rule
through the activation. Softmax is the one that mixes a row, so its backward
is a vector-Jacobian product.

When softmax (or sigmoid) ends a network trained with the matching
cross-entropy, :meth:`gpunn.models.Sequential.compile` fuses the two: the loss
hands back dZ = (A - Y) / m directly -- stable and cheap -- and the
activation's backward lets it pass unchanged (``fused = True``).
"""

import gpunn.backend as backend
from gpunn.ops import losses as loss_ops
from gpunn.utils.registry import from_identifier


class ActivationFunction:
    """Base class: ``forward(z) -> a`` and ``backward(da) -> dz``."""

    name = None
    fused = False  # set by compile when the loss already returns dL/dZ

    def forward(self, z):
        raise NotImplementedError

    def backward(self, da):
        if self.fused:
            return da
        return self.derivative(da)

    def derivative(self, da):
        raise NotImplementedError

    def get_config(self):
        return {"name": self.name}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class Linear(ActivationFunction):
    """g(z) = z;  g'(z) = 1."""

    name = "linear"

    def forward(self, z):
        return z

    def derivative(self, da):
        return da


class Sigmoid(ActivationFunction):
    """g(z) = 1 / (1 + e^-z);  g'(z) = a (1 - a).

    Computed as (1 + tanh(z/2)) / 2, the same function written so that no
    exp() ever overflows.
    """

    name = "sigmoid"

    def forward(self, z):
        xp = backend.get_array_module(z)
        self.z = z  # the fused cross-entropy reads the logits
        self.a = 0.5 * (1 + xp.tanh(0.5 * z))
        return self.a

    def derivative(self, da):
        return da * self.a * (1 - self.a)


class Tanh(ActivationFunction):
    """g(z) = tanh(z);  g'(z) = 1 - a^2."""

    name = "tanh"

    def forward(self, z):
        xp = backend.get_array_module(z)
        self.a = xp.tanh(z)
        return self.a

    def derivative(self, da):
        return da * (1 - self.a * self.a)


class ReLU(ActivationFunction):
    """g(z) = max(0, z);  g'(z) = 1 if z > 0 else 0."""

    name = "relu"

    def forward(self, z):
        xp = backend.get_array_module(z)
        self.positive = z > 0
        return xp.maximum(z, 0)

    def derivative(self, da):
        return da * self.positive


class LeakyReLU(ActivationFunction):
    """g(z) = z if z > 0 else alpha z;  g'(z) = 1 if z > 0 else alpha."""

    name = "leaky_relu"

    def __init__(self, alpha=0.3):
        self.alpha = float(alpha)

    def forward(self, z):
        xp = backend.get_array_module(z)
        self.positive = z > 0
        return xp.where(self.positive, z, self.alpha * z)

    def derivative(self, da):
        xp = backend.get_array_module(da)
        return xp.where(self.positive, da, self.alpha * da)

    def get_config(self):
        return {"name": self.name, "alpha": self.alpha}


class ELU(ActivationFunction):
    """g(z) = z if z > 0 else alpha (e^z - 1);  g'(z) = 1 if z > 0 else g(z) + alpha."""

    name = "elu"

    def __init__(self, alpha=1.0):
        self.alpha = float(alpha)

    def forward(self, z):
        xp = backend.get_array_module(z)
        self.positive = z > 0
        self.a = xp.where(self.positive, z, self.alpha * xp.expm1(xp.minimum(z, 0)))
        return self.a

    def derivative(self, da):
        xp = backend.get_array_module(da)
        return xp.where(self.positive, da, da * (self.a + self.alpha))


class Softplus(ActivationFunction):
    """g(z) = log(1 + e^z), a smooth ReLU;  g'(z) = 1 / (1 + e^-z), the sigmoid.

    Computed as max(z, 0) + log(1 + e^-|z|): the same function, with no exp() that overflows.
    """

    name = "softplus"

    def forward(self, z):
        xp = backend.get_array_module(z)
        self.z = z
        return xp.maximum(z, 0) + xp.log1p(xp.exp(-xp.abs(z)))

    def derivative(self, da):
        xp = backend.get_array_module(da)
        return da * 0.5 * (1 + xp.tanh(0.5 * self.z))


class Softmax(ActivationFunction):
    """a_i = e^{z_i} / sum_j e^{z_j} over the last axis.

    The Jacobian is da_i/dz_j = a_i (delta_ij - a_j), so
    dz = a * (da - sum(da * a)) row by row. Subtracting max(z) first changes
    nothing mathematically and keeps exp() from overflowing. Both ways are one
    CUDA kernel on the GPU (gpunn.ops.losses, a warp per row), NumPy otherwise.
    """

    name = "softmax"

    def forward(self, z):
        self.z = z  # the fused cross-entropy reads the logits
        self.a = loss_ops.softmax(z)
        return self.a

    def derivative(self, da):
        return loss_ops.softmax_backward(self.a, da)


ACTIVATIONS = {cls.name: cls for cls in (Linear, Sigmoid, Tanh, ReLU, LeakyReLU, ELU, Softplus, Softmax)}


def get(identifier):
    """An activation object from a name ('relu'), a config dict, an instance, or None (linear)."""
    if identifier is None:
        return Linear()
    if isinstance(identifier, ActivationFunction):  # a fresh copy: activations cache per-layer state
        identifier = identifier.get_config()
    return from_identifier(identifier, ACTIVATIONS, "activation")
