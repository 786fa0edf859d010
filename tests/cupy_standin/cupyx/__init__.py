"""The stand-in's ``cupyx``: the scatter operations gpunn uses (repeated indices add up)."""

import numpy as np

from cupy._core import check_name, counts, unwrap, write


def _scatter(ufunc):
    def scatter(a, slices, value):
        a_host, where, values = (unwrap(v, "cupyx.scatter") for v in (a, slices, value))
        write(lambda: np.__dict__[ufunc].at(a_host, where, values))
        counts.ops += 1
    return scatter


scatter_add = _scatter("add")
scatter_max = _scatter("maximum")
scatter_min = _scatter("minimum")


def __getattr__(name):
    check_name("cupyx", name)
    raise AttributeError(f"module 'cupyx' of the stand-in has no '{name}' (real CuPy does: add it to the stand-in)")
