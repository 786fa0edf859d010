"""Normalization layers: BatchNormalization (over the batch) and LayerNormalization (over the features)."""

import numpy as np

import gpunn.backend as backend
from gpunn import config
from gpunn.distributed import batch_norm, group as distributed_group
from gpunn.layers.base import Layer


class BatchNormalization(Layer):
    """Normalize each feature (after Dense) or each channel (after Conv2D) over the batch.

    Training, over the m values of one feature in the batch (all N*H*W of a channel)::

        mu = mean(x)        var = mean((x - mu)^2)
        x_hat = (x - mu) / sqrt(var + eps)
        y = gamma * x_hat + beta
        moving_mean = momentum * moving_mean + (1 - momentum) * mu      (the same for the variance)

    At inference the moving averages replace mu and var.

    In data-parallel training (:mod:`gpunn.distributed`) each rank normalizes its share of the batch with
    the share's own mu and var, as in Keras and Horovod; ``synchronized=True`` takes mu and var over the
    whole batch instead (every rank's share), with the backward pass to match
    (:mod:`gpunn.distributed.batch_norm`). On one process the two are the same.

    Backward (training), with dx_hat = dy * gamma::

        dgamma = sum(dy * x_hat)     dbeta = sum(dy)
        dx = 1/(m sqrt(var + eps)) * (m dx_hat - sum(dx_hat) - x_hat * sum(dx_hat * x_hat))

    Args:
        axis: the axis of the features (channels) of a batch, each normalized on its own. None: the
            channels of images as :func:`gpunn.config.image_data_format` lays them out -- axis 1 of
            (N, C, H, W) or -1 of (N, H, W, C) -- and the last axis of anything else. After a layer
            given ``data_format='channels_last'`` while the default is channels-first, write axis=-1.
        momentum: of the moving averages (Keras's default 0.99).
        epsilon: added to the variance (Keras's default 1e-3).
        synchronized: in data-parallel training, the statistics of the whole batch rather than of each
            rank's share (one all-reduce in the forward pass and one in the backward pass).
    """

    supports_masking = True  # the output keeps the input's mask (gpunn.layers.masking)

    def __init__(self, axis=None, momentum=0.99, epsilon=1e-3, center=True, scale=True, synchronized=False, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= momentum < 1 or epsilon <= 0:
            raise ValueError(f"Layer '{self.name}': momentum must be in [0, 1) and epsilon > 0; "
                             f"received momentum={momentum!r}, epsilon={epsilon!r}")
        self.axis, self.momentum, self.epsilon, self.center, self.scale = axis, float(momentum), float(epsilon), \
            center, scale
        self.synchronized = bool(synchronized)

    def build(self, input_shape):
        rank = len(input_shape) + 1  # of a batch
        if self.axis is None:
            self.axis = 1 if rank == 4 and config.image_data_format() == "channels_first" else -1
        if not isinstance(self.axis, (int, np.integer)) or not -rank < self.axis < rank or self.axis % rank == 0:
            raise ValueError(f"Layer '{self.name}': axis must pick a feature axis of batches of shape "
                             f"{(None,) + tuple(input_shape)}; received axis={self.axis}")
        self.axis = int(self.axis) % rank  # saved as a positive index: the model reloads the same under any default
        super().build(input_shape)
        features = (input_shape[self.axis - 1],)
        self.add_weight("gamma", features, "ones", trainable=self.scale)
        self.add_weight("beta", features, "zeros", trainable=self.center)
        self.add_weight("moving_mean", features, "zeros", trainable=False)
        self.add_weight("moving_variance", features, "ones", trainable=False)

    def _axes(self, x):
        """Axes to average over (all but the features'), and the shape that broadcasts a per-feature vector against x."""
        shape = [1] * x.ndim
        shape[self.axis] = -1
        return tuple(a for a in range(x.ndim) if a != self.axis), tuple(shape)

    def forward(self, x, training=False):
        xp = backend.get_array_module(x)
        axes, shape = self._axes(x)
        gamma, beta = self.gamma.reshape(shape), self.beta.reshape(shape)
        self.group = self._process_group() if training else None
        if training:
            mu = x.mean(axis=axes)
            var = x.var(axis=axes)
            if self.group is not None:  # the whole batch's, from every rank's share
                mu, var, self.total = batch_norm.moments(self.group, mu, var, x.size // mu.size)
            self.moving_mean *= self.momentum
            self.moving_mean += (1 - self.momentum) * mu
            self.moving_variance *= self.momentum
            self.moving_variance += (1 - self.momentum) * var
        else:
            mu, var = self.moving_mean, self.moving_variance
        self.training = training
        self.inv_std = (1.0 / xp.sqrt(var + self.epsilon)).reshape(shape)
        self.x_hat = (x - mu.reshape(shape)) * self.inv_std
        return gamma * self.x_hat + beta

    def backward(self, dy):
        axes, shape = self._axes(dy)
        self.grads["gamma"] = (dy * self.x_hat).sum(axis=axes)
        self.grads["beta"] = dy.sum(axis=axes)
        dx_hat = dy * self.gamma.reshape(shape)
        if not self.training:  # mu and var are constants
            return dx_hat * self.inv_std
        m = dy.size // self.gamma.size
        sum_dx_hat, sum_dx_hat_x_hat = dx_hat.sum(axis=axes, keepdims=True), (dx_hat * self.x_hat).sum(axis=axes,
                                                                                                       keepdims=True)
        if self.group is not None:  # the sums over the whole batch
            sum_dx_hat, sum_dx_hat_x_hat = batch_norm.gradient_sums(self.group, sum_dx_hat, sum_dx_hat_x_hat, m,
                                                                    self.total)
        return (self.inv_std / m) * (m * dx_hat - sum_dx_hat - self.x_hat * sum_dx_hat_x_hat)

    def _process_group(self):
        """The ranks to synchronize the statistics with: None unless ``synchronized`` and gpunn.distributed started."""
        return distributed_group.current() if self.synchronized else None

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale, "synchronized": self.synchronized}


class LayerNormalization(Layer):
    """Normalize each example's features (the last axis), then scale and shift.

    Forward (over the n features of one position):
        mu = mean(x), var = mean((x - mu)^2), x_hat = (x - mu) / sqrt(var + eps), y = gamma x_hat + beta
    Backward, with dx_hat = dy * gamma:
        dx = (n dx_hat - sum(dx_hat) - x_hat sum(dx_hat x_hat)) / (n sqrt(var + eps))

    Unlike BatchNormalization it does not look across the batch, so it behaves the
    same in training and at inference -- what Transformers use.
    """

    supports_masking = True  # the output keeps the input's mask (gpunn.layers.masking)

    def __init__(self, epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        if epsilon <= 0:
            raise ValueError(f"Layer '{self.name}': epsilon must be positive; received epsilon={epsilon!r}")
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        super().build(input_shape)
        self.add_weight("gamma", (input_shape[-1],), "ones")
        self.add_weight("beta", (input_shape[-1],), "zeros")

    def forward(self, x, training=False):
        xp = backend.get_array_module(x)
        mu = x.mean(axis=-1, keepdims=True)
        self.inv_std = 1.0 / xp.sqrt(x.var(axis=-1, keepdims=True) + self.epsilon)
        self.x_hat = (x - mu) * self.inv_std
        return self.gamma * self.x_hat + self.beta

    def backward(self, dy):
        axes = tuple(range(dy.ndim - 1))
        self.grads["gamma"] = (dy * self.x_hat).sum(axis=axes)
        self.grads["beta"] = dy.sum(axis=axes)
        dx_hat = dy * self.gamma
        n = dy.shape[-1]
        return (self.inv_std / n) * (n * dx_hat - dx_hat.sum(axis=-1, keepdims=True)
                                     - self.x_hat * (dx_hat * self.x_hat).sum(axis=-1, keepdims=True))

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
