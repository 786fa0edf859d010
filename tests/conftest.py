"""Shared fixtures: run a test on each backend; skip GPU tests cleanly without a GPU.

``python -m pytest --cupy-standin`` runs the whole suite on gpunn's CuPy path with
``tests/cupy_standin`` as CuPy (NumPy behind a device wall, the kernels on the host runner):
every test then starts on the 'cupy' backend, the ``gpu`` tests run, and subprocesses
(examples, notebooks) inherit the stand-in through PYTHONPATH and GPUNN_BACKEND=cupy.
``GPUNN_BACKEND=cupy python -m pytest`` on a machine with a GPU does the same on the real one.
"""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

import gpunn.backend as backend

ROOT = Path(__file__).resolve().parent.parent
STANDIN = Path(__file__).resolve().parent / "cupy_standin"
DEFAULT_BACKEND = "numpy"  # where every test starts; 'cupy' with --cupy-standin or GPUNN_BACKEND=cupy


def pytest_addoption(parser):
    parser.addoption("--cupy-standin", action="store_true",
                     help="run the whole suite on gpunn's CuPy path, with tests/cupy_standin standing in for CuPy")


def pytest_configure(config):
    global DEFAULT_BACKEND
    if config.getoption("--cupy-standin"):
        install_standin()
        DEFAULT_BACKEND = "cupy"
    elif os.environ.get("GPUNN_BACKEND", "").strip().lower() == "cupy":
        DEFAULT_BACKEND = "cupy"


def install_standin():
    """Make ``import cupy`` find the stand-in, here and in every subprocess, and switch gpunn to it."""
    for name in [m for m in sys.modules if m.split(".")[0] in ("cupy", "cupyx", "cupy_backends")]:
        del sys.modules[name]  # a real CuPy imported by the backend's auto-detection
    sys.path.insert(0, str(STANDIN))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(STANDIN), str(ROOT)] + [p for p in os.environ.get(
        "PYTHONPATH", "").split(os.pathsep) if p])
    os.environ["GPUNN_BACKEND"] = "cupy"
    backend.set_backend("cupy")


def standin():
    """The stand-in module when the suite runs on it, else None."""
    cupy = backend._cupy
    return cupy if cupy is not None and hasattr(cupy, "_standin") else None


def gpu_available():
    return backend._find_cupy(0)[0] is not None


def pytest_report_header(config):
    if config.getoption("--cupy-standin"):
        from cupy._core import real_cupy_api

        api = real_cupy_api()
        checked = f"names checked against real CuPy {api['version']}" if api else \
            "real CuPy is not installed: names are NOT checked against it"
        return f"gpunn: CuPy path on the stand-in (tests/cupy_standin), {checked}"
    return None


def same_in_both_passes(item):
    """A test that does the same thing on the NumPy pass and on the stand-in pass: the kernels on the host runner
    (kernel_device's 'host' case, tests/test_host_cuda.py), or on the stand-in fixture ``cupy``."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return (item.path.name == "test_host_cuda.py" or params.get("kernel_device") == "host"
            or "cupy" in getattr(item, "fixturenames", ()))


def pytest_collection_modifyitems(config, items):
    if config.getoption("--cupy-standin"):  # CI runs both passes: a test the NumPy pass ran as it is runs once
        left_out = [item for item in items if same_in_both_passes(item) or "learns" in item.keywords]
        if left_out:
            config.hook.pytest_deselected(items=left_out)
            items[:] = [item for item in items if not (same_in_both_passes(item) or "learns" in item.keywords)]
            print(f"\ngpunn: {len(left_out)} tests deselected: they run the same way without --cupy-standin (the "
                  f"kernels on the host runner, or the stand-in fixture), or train for minutes on it (marked learns)")
    if gpu_available():
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
    backend.set_backend(DEFAULT_BACKEND)


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
    Either way, arrays the ops allocate with empty/empty_like start as NaN (integers: their minimum)."""
    if request.param == "host":
        from tests import host_cuda

        if host_cuda.COMPILER is None:
            pytest.skip("no C++ compiler (g++ or clang++) to run the kernels on the host")
        backend.set_backend("numpy")  # NumPy arrays, which the host runner treats as on the GPU
        host_cuda.install(monkeypatch)
        yield KernelDevice(np)
        return
    backend.set_backend("cupy")
    cupy = backend._cupy
    real_empty = cupy.empty

    def poisoned_empty(*args, **kwargs):
        from tests.host_cuda import poison

        out = real_empty(*args, **kwargs)
        out.fill(poison(out.dtype))
        return out

    monkeypatch.setattr(cupy, "empty", poisoned_empty)
    monkeypatch.setattr(cupy, "empty_like", lambda a, dtype=None: poisoned_empty(a.shape, dtype=dtype or a.dtype))
    yield KernelDevice(cupy)
    backend.set_backend(DEFAULT_BACKEND)


@pytest.fixture(autouse=True)
def _default_backend_and_seed():
    """Every test starts on the default backend (NumPy, or the CuPy path) with a fixed seed."""
    if backend.name != DEFAULT_BACKEND:
        backend.set_backend(DEFAULT_BACKEND)
    backend.seed(0)
    np.random.seed(0)
    yield


def dev(a):
    """A test's host data on the backend the test runs on (the device, on the CuPy path)."""
    return backend.to_device(a)


def host(a):
    """A NumPy copy for assertions, whatever the backend (a copy: later training leaves it as it was)."""
    return np.array(backend.to_numpy(a))


def assert_gradcheck(target, x, y=None, tol=1e-6, **kwargs):
    from gpunn.utils import gradcheck

    diffs = gradcheck(target, x, y, **kwargs)
    assert diffs, "gradcheck compared nothing"
    bad = {k: v for k, v in diffs.items() if not v < tol}
    assert not bad, f"backprop disagrees with centered differences: {bad}"
    return diffs


def assert_trained_round_trip(model, x, y, path):
    """Train ``model`` two epochs on (x, y), save it to ``path``, load it: same predictions, same config."""
    from gpunn.models import load_model

    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    model.save(path)
    loaded = load_model(path)
    np.testing.assert_array_equal(host(loaded.predict(x)), host(model.predict(x)))
    assert loaded.get_config() == model.get_config()
