"""Datasets as NumPy arrays, like ``keras.datasets``: ``mnist.load_data()``, ``fashion_mnist.load_data()``;
small 2-D ones made on the spot in :mod:`gpunn.datasets.toy`."""

from gpunn.datasets import fashion_mnist, mnist, toy
from gpunn.datasets.core import DatasetError

__all__ = ["DatasetError", "fashion_mnist", "mnist", "toy"]
