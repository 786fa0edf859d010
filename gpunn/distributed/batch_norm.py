"""Synchronized batch normalization: the statistics of the whole batch, from every rank's share.

``BatchNormalization(synchronized=True)`` (Keras's name) calls these two functions when the
process group has been started; without it, the layer normalizes each rank's share on its own.

Forward. Rank r holds m_r samples of a feature, with mean mu_r and variance var_r. Over the M =
sum_r m_r samples of the batch::

    mu  = sum_r m_r mu_r / M
    var = sum_r m_r var_r / M  +  sum_r m_r mu_r^2 / M  -  mu^2      (within ranks + between ranks)

The sums are taken in float64, where the between-ranks part loses nothing to cancellation.

Backward. Each rank's loss averages over its own m_r samples, and the optimizer weighs rank r's
gradients by m_r / M (see :mod:`gpunn.distributed.data_parallel`). The layer's own backward pass,

    dx = 1/(m sqrt(var + eps)) * (m dx_hat - sum(dx_hat) - x_hat * sum(dx_hat * x_hat)),

stays the same on every rank's m = m_r samples, with the two sums replaced by the sums over the
whole batch in the same weighting: S = sum_r (m_r / M) S_r. (With one rank, S = S_r: the layer
normalizes as it always does.)
"""

import numpy as np

import gpunn.backend as backend


def moments(group, mu, var, m):
    """(mu, var, M) of the whole batch from this rank's ``mu``, ``var`` over ``m`` samples (one all-reduce)."""
    xp = backend.get_array_module(mu)
    parts = xp.concatenate([mu, var, mu * mu]).astype(np.float64) * m
    stats = xp.concatenate([parts, xp.full((1,), m, dtype=np.float64)])
    group.allreduce(stats)
    total = stats[-1]
    mean, within, between = (stats[i * len(mu):(i + 1) * len(mu)] / total for i in range(3))
    return mean.astype(mu.dtype), (within + (between - mean * mean)).astype(var.dtype), total


def gradient_sums(group, sum_dx_hat, sum_dx_hat_x_hat, m, total):
    """sum_r (m_r / M) S_r for the two sums of the backward pass (one all-reduce); ``total`` is M from forward."""
    xp = backend.get_array_module(sum_dx_hat)
    sums = xp.concatenate([sum_dx_hat.reshape(-1), sum_dx_hat_x_hat.reshape(-1)]).astype(np.float64) * (m / total)
    group.allreduce(sums)
    half = sum_dx_hat.size
    return (sums[:half].reshape(sum_dx_hat.shape).astype(sum_dx_hat.dtype),
            sums[half:].reshape(sum_dx_hat_x_hat.shape).astype(sum_dx_hat_x_hat.dtype))
