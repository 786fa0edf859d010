"""gpunn: a deep-learning framework to learn deep learning from.

Keras-like models whose layers read like the course's equations, running on
NumPy (CPU) or CuPy (NVIDIA GPU) -- choose with GPUNN_BACKEND=auto|numpy|cupy.

    >>> import gpunn
    >>> from gpunn.layers import Dense
    >>> model = gpunn.Sequential([Dense(32, activation="relu", input_shape=(4,)), Dense(3, activation="softmax")])
    >>> x = gpunn.Input(shape=(4,)); model = gpunn.Model(x, Dense(3, activation="softmax")(x))   # or a graph
"""

__version__ = "0.1.0"

from gpunn import activations, backend, callbacks, config, datasets, initializers, layers, losses, metrics, optimizers
from gpunn import plotting, regularizers, saving, schedules, text, utils, vision
from gpunn.models import Input, Model, Sequential, load_model

__all__ = ["Input", "Model", "Sequential", "load_model", "activations", "backend", "callbacks", "config", "datasets",
           "initializers", "layers", "losses", "metrics", "optimizers", "plotting", "regularizers", "saving",
           "schedules", "text", "utils", "vision"]
