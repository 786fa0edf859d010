"""Datasets as NumPy arrays, like ``keras.datasets``: ``mnist.load_data()``, ``fashion_mnist.load_data()``."""

from gpunn.datasets import fashion_mnist, mnist
from gpunn.datasets.core import DatasetError

__all__ = ["DatasetError", "fashion_mnist", "mnist"]
