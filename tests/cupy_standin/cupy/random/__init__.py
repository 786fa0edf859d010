"""The stand-in's ``cupy.random``: NumPy's legacy generator behind CuPy's RandomState interface.

(The numbers differ from cuRAND's; gpunn's tests never compare random draws across backends.)
"""

import numpy as np

from cupy._core import check_name, wrap


class RandomState:
    """``cupy.random.RandomState(seed)``: every draw is made on the device (a new buffer, no sync)."""

    def __init__(self, seed=None):
        self._rng = np.random.RandomState(seed)

    def seed(self, seed=None):
        self._rng.seed(seed)

    def random_sample(self, size=None, dtype=float):
        return wrap(self._rng.random_sample(size).astype(dtype, copy=False))

    def rand(self, *size, dtype=float):
        return self.random_sample(size, dtype)

    def standard_normal(self, size=None, dtype=float):
        return wrap(self._rng.standard_normal(size).astype(dtype, copy=False))

    def normal(self, loc=0.0, scale=1.0, size=None, dtype=float):
        return wrap(self._rng.normal(loc, scale, size).astype(dtype, copy=False))

    def uniform(self, low=0.0, high=1.0, size=None, dtype=float):
        return wrap(self._rng.uniform(low, high, size).astype(dtype, copy=False))

    def randint(self, low, high=None, size=None, dtype=int):
        return wrap(np.asarray(self._rng.randint(low, high, size)).astype(dtype, copy=False))  # size None: 0-d, as CuPy

    def permutation(self, num):
        if not isinstance(num, (int, np.integer)):
            raise TypeError("the stand-in's RandomState.permutation takes an int")
        return wrap(self._rng.permutation(num))

    def __getattr__(self, name):
        check_name("cupy.random.RandomState", name)
        raise AttributeError(f"the stand-in's RandomState has no '{name}' (real CuPy's does: add it to the stand-in)")


_state = RandomState()


def seed(seed=None):
    _state.seed(seed)


def get_random_state():
    return _state


def __getattr__(name):
    check_name("cupy.random", name)
    if hasattr(RandomState, name):  # cupy.random.rand(...) draws from the global state
        return getattr(_state, name)
    raise AttributeError(f"module 'cupy.random' of the stand-in has no '{name}' (real CuPy does: add it)")
