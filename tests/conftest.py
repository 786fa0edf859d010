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


class KernelDevice:
    """Where a kernel test runs gpunn's CUDA kernels, and how arrays get there and back."""

    def __init__(self, xp):
        self.xp = xp  # the array module the ops allocate with

    def asarray(self, a):
        return self.xp.asarray(a)

    def to_numpy(self, a):
        return backend.to_numpy(a)


@pytest.fixture(params=["host", pytest.param("cupy", marks=pytest.mark.gpu)])
def kernel_device(request, monkeypatch):
    """Each CUDA kernel test runs twice: on the GPU through CuPy, and on the CPU through
    tests/host_cuda.py (the same .cu sources and launch code, compiled for the host).
    Either way, arrays the ops allocate with empty/empty_like start as NaN."""
    if request.param == "host":
        from tests import host_cuda

        if host_cuda.COMPILER is None:
            pytest.skip("no C++ compiler (g++ or clang++) to run the kernels on the host")
        host_cuda.install(monkeypatch)
        yield KernelDevice(np)
        return
    import cupy

    backend.set_backend("cupy")
    real_empty = cupy.empty

    def poisoned_empty(*args, **kwargs):
        out = real_empty(*args, **kwargs)
        out.fill(np.nan)
        return out

    monkeypatch.setattr(cupy, "empty", poisoned_empty)
    monkeypatch.setattr(cupy, "empty_like", lambda a, dtype=None: poisoned_empty(a.shape, dtype=dtype or a.dtype))
    yield KernelDevice(cupy)
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
