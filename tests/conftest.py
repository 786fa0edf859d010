"""Shared fixtures: run a test on each backend; skip GPU tests cleanly without a GPU."""

import numpy as np
import pytest

import gpunn.backend as backend

GPU_AVAILABLE = backend._find_cupy(0)[0] is not None


def pytest_collection_modifyitems(config, items):
    if GPU_AVAILABLE:
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU with CuPy (none usable here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module of each backend in turn; the test runs once per backend."""
    backend.set_backend(request.param)
    backend.seed(0)
    yield backend.xp
    backend.set_backend("numpy")


@pytest.fixture(autouse=True)
def _numpy_backend_and_seed():
    """Every test starts on NumPy with a fixed seed, whatever the environment says."""
    if backend.name != "numpy":
        backend.set_backend("numpy")
    backend.seed(0)
    np.random.seed(0)
    yield


def assert_gradcheck(target, x, y=None, tol=1e-6, **kwargs):
    from gpunn.utils import gradcheck

    diffs = gradcheck(target, x, y, **kwargs)
    assert diffs, "gradcheck compared nothing"
    bad = {k: v for k, v in diffs.items() if not v < tol}
    assert not bad, f"backprop disagrees with centered differences: {bad}"
    return diffs
