"""Saliency maps (Simonyan, Vedaldi and Zisserman, 2014): which pixels the class score depends on most.

For an image x and the model's score y_c of class c, the map is the size of dy_c/dx at each pixel --
the largest over the channels. Bright pixels are those whose change would change the score most: what
the network looks at.
"""

import numpy as np

import gpunn.backend as backend
from gpunn.utils.input_gradient import value_and_input_gradient


def saliency_map(model, x, classes=None):
    """|dy_c/dx|, the maximum over the channels, for each image of ``x`` (N, C, H, W): (N, H, W), NumPy.

    Args:
        model: a classifier with one output (N, K) -- probabilities or scores.
        x: a batch of images, channels-first.
        classes: the class c of each image, (N,); None: the class the model predicts.
    """
    def score(y):
        picked = y.argmax(axis=-1) if classes is None else backend.to_device(np.asarray(classes).reshape(-1))
        one_hot = (backend.get_array_module(y).arange(y.shape[-1]) == picked[:, None]).astype(y.dtype)
        return (y * one_hot).sum(), one_hot

    _, dx = value_and_input_gradient(model, x, score)
    return backend.to_numpy(abs(dx).max(axis=1))
