"""Helpers for students: gradient checking, input gradients, one-hot labels, mini-batches, seeding, timing."""

import numpy as np

import gpunn.backend as backend
from gpunn.utils.data import PyDataset, Sequence, batch_slices, random_mini_batches, to_categorical
from gpunn.utils.gradcheck import gradcheck
from gpunn.utils.input_gradient import value_and_input_gradient
from gpunn.utils.timing import elapsed, format_profile, profile_layers, time_fn


def set_seed(seed):
    """Make runs repeatable: seeds gpunn's host and device generators and NumPy's global one."""
    backend.seed(seed)
    np.random.seed(seed)


__all__ = ["PyDataset", "Sequence", "batch_slices", "elapsed", "format_profile", "gradcheck", "profile_layers",
           "random_mini_batches", "set_seed", "time_fn", "to_categorical", "value_and_input_gradient"]
