"""Core layers: Dense, Activation, Dropout, Flatten, Reshape.

Notation. The course stacks examples as columns (Z = W.A + b); gpunn, like
Keras and every framework, stacks them as rows: a batch X has shape
(m, n_in), the kernel W has shape (n_in, n_out), and Z = X.W + b. The
equations are the same ones transposed. The 1/m of the cost is already inside
the dy that the loss sends back, so no layer divides by m again.
"""

import numpy as np

import gpunn.backend as backend
from gpunn import activations
from gpunn.backend import kernels
from gpunn.layers.base import Layer, config_of
from gpunn.ops.epilogue import LINEAR, activation_code, bias_act_backward
from gpunn.ops.gemm import product, product_bias_act


class Dense(Layer):
    """Fully connected layer.

    Forward::

        Z = X . W + b          X: (m, n_in)   W: (n_in, units)   b: (units,)
        A = g(Z)

    Backward, given dA = dL/dA::

        dZ = dA * g'(Z)
        dW = X^T . dZ
        db = sum over the batch of dZ
        dX = dZ . W^T

    Inputs with more axes, (m, ..., n_in), are transformed along the last axis.

    On a GPU, Z is computed transposed, Z^T = W^T . X^T (units, m), so that adding b and applying
    g is one kernel that also lays A out as (m, units): Conv2D's epilogue with one pixel per image
    (:mod:`gpunn.ops.epilogue`), with the product in it when it is small (:mod:`gpunn.ops.gemm`);
    backward, dZ^T and db come out of one kernel, g'(Z) read off A.

    Args:
        units: number of output features (> 0).
        activation: name or object from :mod:`gpunn.activations`; None = linear.
        use_bias: add b.
        kernel_initializer, bias_initializer: see :mod:`gpunn.initializers`.
        kernel_regularizer: e.g. ``gpunn.regularizers.l2(1e-3)``.

    Example:
        >>> layer = Dense(3, activation="relu", input_shape=(4,))
    """

    supports_masking = True  # the output keeps the input's mask (gpunn.layers.masking)

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"Layer '{self.name}': units must be a positive integer; received units={units!r}")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self.kernel_regularizer = kernel_regularizer

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(f"Layer '{self.name}' needs a known size on the last axis of its samples to make its "
                             f"kernel; received samples of shape {tuple(input_shape)}")
        super().build(input_shape)
        n_in = input_shape[-1]
        self.add_weight("kernel", (n_in, self.units), self.kernel_initializer, self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def forward(self, x, training=False):
        if x.shape[-1] != self.kernel.shape[0]:
            raise ValueError(f"Layer '{self.name}' expects inputs with {self.kernel.shape[0]} features on the last axis; "
                             f"received an array of shape {tuple(x.shape)}")
        self.x = x
        x2d, shape = x.reshape(-1, x.shape[-1]), x.shape[:-1] + (self.units,)
        self.epilogue = activation_code(self.activation) if kernels.on_gpu(x) else None
        bias = self.bias if self.use_bias else None
        if self.epilogue is not None:  # on a GPU: Z^T = W^T . X^T, with b and g in the same kernel or the next
            self.a = product_bias_act(self.kernel.T, x2d.T, bias, x2d.shape[0], self.epilogue)  # (m, units, 1)
            return self.a.reshape(shape)
        if bias is not None and kernels.on_gpu(x):  # the same, b alone (g is one the epilogue has not: softmax)
            z = product_bias_act(self.kernel.T, x2d.T, bias, x2d.shape[0], LINEAR).reshape(shape)
        else:
            z = product(x2d, self.kernel).reshape(shape)
            if self.use_bias:
                z += self.bias
        return self.activation.forward(z)

    def backward(self, dy):
        x2d = self.x.reshape(-1, self.x.shape[-1])
        if self.epilogue is not None:
            dzf, db = bias_act_backward(dy.reshape(self.a.shape), self.a, self.epilogue, self.use_bias,
                                        self.grad_out("bias"))  # dZ^T (units, m), g' off A, and db = sum dZ
            self.grads["kernel"] = product(x2d.T, dzf.T, out=self.grad_out("kernel"))
            if self.use_bias:
                self.grads["bias"] = db
            return product(dzf.T, self.kernel.T).reshape(self.x.shape)
        dz2d = self.activation.backward(dy).reshape(-1, self.units)
        self.grads["kernel"] = product(x2d.T, dz2d, out=self.grad_out("kernel"))  # out=None: a new array
        if self.use_bias:
            self.grads["bias"] = dz2d.sum(axis=0, out=self.grad_out("bias"))
        return product(dz2d, self.kernel.T).reshape(self.x.shape)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation.get_config(),
                "use_bias": self.use_bias, "kernel_initializer": config_of(self.kernel_initializer),
                "bias_initializer": config_of(self.bias_initializer),
                "kernel_regularizer": config_of(self.kernel_regularizer)}


class Activation(Layer):
    """Applies an activation function on its own: A = g(Z), dZ = dA * g'(Z).

    Example:
        >>> model.add(Activation("softmax"))
    """

    supports_masking = True  # the output keeps the input's mask (gpunn.layers.masking)

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def forward(self, x, training=False):
        return self.activation.forward(x)

    def backward(self, dy):
        return self.activation.backward(dy)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation.get_config()}


class Dropout(Layer):
    """Inverted dropout (the course's version).

    In training, each unit is kept with probability keep_prob = 1 - rate::

        D = (U < keep_prob) / keep_prob      U ~ uniform(0, 1), one per unit
        A = X * D                            dX = dA * D

    Dividing by keep_prob keeps the expected activation unchanged, so at
    inference the layer does nothing at all.

    Args:
        rate: the fraction of units to drop, in [0, 1).
    """

    supports_masking = True  # the output keeps the input's mask (gpunn.layers.masking)

    def __init__(self, rate, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate < 1:
            raise ValueError(f"Layer '{self.name}': rate must be in [0, 1); received rate={rate!r}")
        self.rate = float(rate)

    def forward(self, x, training=False):
        if not training or self.rate == 0:
            self.mask = None
            return x
        keep_prob = 1.0 - self.rate
        self.mask = (backend.random(x.shape, dtype=x.dtype) < keep_prob) * x.dtype.type(1.0 / keep_prob)
        return x * self.mask

    def backward(self, dy):
        return dy if self.mask is None else dy * self.mask

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


class Flatten(Layer):
    """(m, d1, d2, ...) -> (m, d1*d2*...); backward reshapes the gradient back."""

    def compute_output_shape(self, input_shape):
        if None in input_shape:
            raise ValueError(f"Layer '{self.name}' needs samples of a fixed shape; received {tuple(input_shape)}. A "
                             f"model on images of any size ends in convolutions, or in a global pooling")
        return (int(np.prod(input_shape)),)

    def forward(self, x, training=False):
        self.x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self.x_shape)


class Reshape(Layer):
    """Reshapes each sample to ``target_shape`` (one entry may be -1), as in Keras."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(int(d) for d in target_shape)
        if sum(d == -1 for d in self.target_shape) > 1 or any(d == 0 or d < -1 for d in self.target_shape):
            raise ValueError(f"Layer '{self.name}': target_shape may hold positive sizes and at most one -1; "
                             f"received target_shape={target_shape!r}")

    def compute_output_shape(self, input_shape):
        size = int(np.prod(input_shape))
        known = int(np.prod([d for d in self.target_shape if d != -1]))
        shape = tuple(size // known if d == -1 else d for d in self.target_shape)
        if int(np.prod(shape)) != size:
            raise ValueError(f"Layer '{self.name}' cannot reshape samples of shape {tuple(input_shape)} "
                             f"({size} values) to {self.target_shape}")
        return shape

    def build(self, input_shape):
        self.output_shape = self.compute_output_shape(input_shape)
        super().build(input_shape)

    def forward(self, x, training=False):
        self.x_shape = x.shape
        return x.reshape((x.shape[0],) + self.output_shape)

    def backward(self, dy):
        return dy.reshape(self.x_shape)

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}
