"""The one door to the GPU.

Every array operation in gpunn goes through the array module ``xp``: NumPy on
the CPU, CuPy on an NVIDIA GPU. Both speak the same language (``xp.dot``,
``xp.exp``, ``xp.zeros``...), so a layer written once runs on either::

    from gpunn import backend
    a = backend.xp.zeros((2, 3), dtype="float32")   # numpy.ndarray or cupy.ndarray

The backend is chosen when gpunn is imported, from the environment variable
``GPUNN_BACKEND``:

- ``auto`` (the default): CuPy when it imports and sees a CUDA device, else
  NumPy -- and gpunn says once, in one line, why it fell back;
- ``numpy``: always the CPU;
- ``cupy``: the GPU, or a clear error saying what is missing and how to fix it.

``GPUNN_DEVICE=<int>`` picks the GPU. :func:`set_backend` switches at run time
(build models after switching: weights live on the backend they were made on).

This is the only module that imports CuPy, and it does so lazily, so gpunn
imports and runs everywhere NumPy does.
"""

import os
import sys
from dataclasses import dataclass

import numpy as np

BACKENDS = ("auto", "numpy", "cupy")

CUPY_FIX = (
    "install the CuPy build that matches your NVIDIA driver, with the CUDA libraries it needs: "
    "pip install 'gpunn[cuda13]' (CUDA 13 drivers) or 'gpunn[cuda12]' (CUDA 12), which pull "
    "cupy-cuda13x[ctk] or cupy-cuda12x[ctk]; `nvidia-smi` shows the driver's CUDA version. "
    "Or use the CPU: GPUNN_BACKEND=numpy"
)

# The active backend. Read these through the module (backend.xp), not with
# `from gpunn.backend import xp`, which would keep the value of import time.
xp = np
name = "numpy"
device_id = None
_cupy = None  # the cupy module when the backend is cupy
_rng = None  # the random generator of the active backend
_host_rng = np.random.default_rng()
_seed = None  # the last seed given to seed(), for reseed()


class BackendError(RuntimeError):
    """The requested backend cannot work on this machine."""


@dataclass(frozen=True)
class Backend:
    """What :func:`current` returns: which backend runs, and on which device."""

    name: str
    device: str

    def __str__(self):
        return f"{self.name} ({self.device})"


def _find_cupy(device):
    """Import CuPy and check that it works on ``device``; return (cupy, None) or (None, why not)."""
    cupy, why_not = _import_cupy(device)
    if cupy is None:
        return None, why_not
    key = (id(cupy), device)
    if key not in _smoke_tested:
        failed = [f"{what} does not work ({error})" for what, error in smoke_test(cupy, device) if error]
        _smoke_tested[key] = "; ".join(failed) or None
    return (None, _smoke_tested[key]) if _smoke_tested[key] else (cupy, None)


_smoke_tested = {}  # (cupy module, device) -> why the smoke test failed, or None: it runs once per process


def _import_cupy(device):
    """(cupy, None) when CuPy imports and sees ``device``, else (None, why not)."""
    try:
        import cupy
    except ImportError as e:
        return None, f"CuPy is not installed ({e})"
    except Exception as e:  # a broken install raises all sorts of things
        return None, f"CuPy failed to import ({type(e).__name__}: {e})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # no driver, or a driver too old for this CuPy's CUDA
        return None, f"CuPy cannot talk to the NVIDIA driver ({type(e).__name__}: {e})"
    if count == 0:
        return None, "CuPy found no CUDA device"
    if not 0 <= device < count:
        return None, f"GPUNN_DEVICE={device} but this machine has {count} CUDA device(s): 0..{count - 1}"
    return cupy, None


SMOKE_TEST_KERNEL = r'''extern "C" __global__ void gpunn_smoke_test(float* x) { x[threadIdx.x] = 2.0f * threadIdx.x; }'''


def smoke_test(cupy, device):
    """[(what, error or None)] for the three CUDA libraries gpunn needs beside the driver.

    Seeing a device is not enough: CuPy loads cuRAND, cuBLAS and NVRTC only when
    first used, and a machine with the driver alone has none of them. So draw
    random numbers, multiply two matrices and compile a one-line kernel, and read
    each result back.
    """
    def random():
        return float(cupy.random.RandomState(0).random_sample((2,), dtype="float32").sum()) >= 0

    def gemm():
        a = cupy.asarray([[1.0, 2.0], [3.0, 4.0]], dtype="float32")
        return float((a @ a)[1, 1]) == 22.0

    def nvrtc():
        x = cupy.zeros(4, dtype="float32")
        cupy.RawKernel(SMOKE_TEST_KERNEL, "gpunn_smoke_test")((1,), (4,), (x,))
        return float(x[3]) == 6.0

    results = []
    with cupy.cuda.Device(device):
        for what, check in (("cuRAND (random numbers)", random), ("cuBLAS (matrix products)", gemm),
                            ("NVRTC (compiling gpunn's kernels)", nvrtc)):
            try:
                results.append((what, None if check() else "wrong result"))
            except Exception as e:  # a missing library raises ImportError, RuntimeError, CUDA errors...
                results.append((what, f"{type(e).__name__}: {e}"))
    return results


def _parse_device(value):
    try:
        return int(str(value).strip() or "0")
    except ValueError:
        raise ValueError(f"GPUNN_DEVICE must be a GPU index such as 0 or 1; received: {value!r}") from None


def set_backend(backend, device=None):
    """Switch the array backend: 'auto', 'numpy' or 'cupy'.

    Args:
        backend: one of :data:`BACKENDS`.
        device: the GPU index for CuPy (default: ``$GPUNN_DEVICE`` or 0).

    Returns:
        The :class:`Backend` now active.

    Raises:
        ValueError: an unknown backend name.
        BackendError: 'cupy' was asked for and cannot work here (the message says why and how to fix it).
    """
    global xp, name, device_id, _cupy, _rng
    requested = str(backend).strip().lower()
    if requested not in BACKENDS:
        raise ValueError(f"Unknown gpunn backend {backend!r}; valid backends are: {', '.join(BACKENDS)}")
    device = _parse_device(os.environ.get("GPUNN_DEVICE", "0") if device is None else device)

    if requested == "numpy":
        cupy, why_not = None, "GPUNN_BACKEND=numpy"
    else:
        cupy, why_not = _find_cupy(device)
        if cupy is None and requested == "cupy":
            raise BackendError(f"GPUNN_BACKEND=cupy cannot be used: {why_not}. To fix it, {CUPY_FIX}")

    if cupy is None:
        if requested == "auto":
            print(f"gpunn: using NumPy on the CPU because {why_not}", file=sys.stderr)
        xp, name, device_id, _cupy = np, "numpy", None, None
    else:
        cupy.cuda.Device(device).use()
        xp, name, device_id, _cupy = cupy, "cupy", device, cupy
    seed(None)
    return current()


def current():
    """The active backend and device, e.g. ``cupy (GPU 0: NVIDIA H100 80GB HBM3)``."""
    if _cupy is None:
        return Backend("numpy", "CPU")
    props = _cupy.cuda.runtime.getDeviceProperties(device_id)
    gpu = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return Backend("cupy", f"GPU {device_id}: {gpu}")


def available():
    """The backends this machine can run: always 'numpy', then 'cupy' when CuPy imports and sees a GPU."""
    device = device_id if device_id is not None else _parse_device(os.environ.get("GPUNN_DEVICE", "0"))
    return ["numpy"] + (["cupy"] if _find_cupy(device)[0] is not None else [])


def is_gpu():
    """True when arrays live on a GPU."""
    return _cupy is not None


def device_count():
    """How many GPUs this process sees (0 on the NumPy backend)."""
    return _cupy.cuda.runtime.getDeviceCount() if _cupy is not None else 0


def get_array_module(x):
    """The array module (numpy or cupy) that owns ``x`` -- Chainer's classic helper."""
    if _cupy is not None and isinstance(x, _cupy.ndarray):
        return _cupy
    return np


def to_device(a, dtype=None):
    """Move a NumPy array (or anything array-like) onto the active backend."""
    return xp.asarray(a, dtype=dtype)


def to_numpy(a):
    """Bring an array back to the host as a NumPy array, whichever backend made it (even one no longer active)."""
    if isinstance(a, np.ndarray):
        return a
    if type(a).__module__.split(".")[0] == "cupy":  # a GPU array: copy it back explicitly
        return a.get()
    return np.asarray(a)


def same_memory(a, b):
    """Whether ``a`` and ``b`` are the very same numbers in memory: one address, shape, strides and dtype
    (two views of one piece of a buffer, say), on either backend."""
    if type(a) is not type(b) or a.shape != b.shape or a.strides != b.strides or a.dtype != b.dtype:
        return False
    return a.data.ptr == b.data.ptr if _cupy is not None and isinstance(a, _cupy.ndarray) else \
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]


def scatter_add(target, indices, values):
    """target[indices[k]] += values[k] for every k, repeated indices adding up (in place)."""
    if _cupy is not None and isinstance(target, _cupy.ndarray):
        import cupyx

        cupyx.scatter_add(target, indices, values)
    else:
        np.add.at(target, indices, values)


def synchronize():
    """Wait until the GPU has finished all queued work (a no-op on NumPy)."""
    if _cupy is not None:
        _cupy.cuda.Device(device_id).synchronize()


# --- random numbers ----------------------------------------------------------
# Weights are drawn on the host (host_rng) so that one seed gives the same
# initial model on both backends; masks and shuffles are drawn on the device
# (random, permutation) so that the training loop never copies to the GPU.


def seed(value):
    """Seed the host generator and the device generator of the active backend."""
    global _rng, _host_rng, _seed
    _seed = value
    _host_rng = np.random.default_rng(value)
    _seed_device(None if value is None else [value, 1])


def _seed_device(keys):
    global _rng
    state = None if keys is None else int(np.random.SeedSequence(keys).generate_state(1)[0])
    _rng = _cupy.random.RandomState(state) if _cupy is not None else np.random.default_rng(state)


def reseed(*keys):
    """Restart the device generator from (seed, *keys) -- a no-op when no seed was set.

    ``fit`` calls ``reseed(epoch)`` at the start of every epoch, so epoch e shuffles
    and drops out the same way whether the run started at epoch 0 or resumed at e.
    """
    if _seed is not None:
        _seed_device([_seed, 2, *keys])


def current_seed():
    """The seed last given to :func:`seed` (None: the generators were started from the OS's entropy)."""
    return _seed


def split(key):
    """Go on with the device generator on a stream of its own for ``key``, started from where it stands.

    Data-parallel training (:mod:`gpunn.distributed`) calls it with the rank once every rank has drawn
    the same shuffle, so that each rank then draws its own dropout masks.
    """
    start = int(_rng.randint(0, 2**31 - 1)) if _cupy is not None else int(_rng.integers(2**63))
    _seed_device([start, key])


def host_rng():
    """The NumPy generator that initializers draw from."""
    return _host_rng


def random(shape, dtype=np.float32):
    """Uniform numbers in [0, 1) on the active backend."""
    from gpunn.backend import graphs

    if graphs.in_graph():
        raise ValueError("random numbers drawn in a training step compiled with jit_compile=True: a CUDA graph would "
                         "replay the same numbers at every step (Dropout, the augmentation layers...). Compile with "
                         "jit_compile=False")
    if _cupy is not None:
        return _rng.random_sample(shape, dtype=dtype)
    return _rng.random(shape, dtype=dtype)


def permutation(n):
    """A random permutation of ``range(n)`` on the active backend."""
    return _rng.permutation(n)


def info():
    """The lines that ``python -m gpunn info`` prints."""
    from gpunn import __version__
    from gpunn.datasets.core import search_dirs

    lines = [
        f"gpunn        {__version__}",
        f"backend      {current()}",
        f"requested    GPUNN_BACKEND={os.environ.get('GPUNN_BACKEND', 'auto')}",
        f"python       {sys.version.split()[0]}",
        f"numpy        {np.__version__}",
    ]
    device = device_id or 0
    cupy, why_not = _import_cupy(device)
    if cupy is None:
        lines.append(f"cupy         not usable: {why_not}")
    else:
        runtime = cupy.cuda.runtime.runtimeGetVersion()
        driver = cupy.cuda.runtime.driverGetVersion()
        lines.append(f"cupy         {cupy.__version__}")
        lines.append(f"cuda         runtime {runtime // 1000}.{runtime % 1000 // 10}, driver {driver // 1000}.{driver % 1000 // 10}")
        for i in range(cupy.cuda.runtime.getDeviceCount()):
            props = cupy.cuda.runtime.getDeviceProperties(i)
            gpu = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
            lines.append(f"gpu {i}        {gpu}, {props['totalGlobalMem'] / 2**30:.0f} GiB, sm_{props['major']}{props['minor']}")
        lines.extend(f"check        {what}: {error or 'ok'}" for what, error in smoke_test(cupy, device))
    from gpunn.backend.kernels import kernel_dir

    lines.append(f"kernels      {kernel_dir()}")
    lines.append("datasets     looked for in, in order:")
    lines.extend(f"               {d}" for d in search_dirs("<name>"))
    return lines


set_backend(os.environ.get("GPUNN_BACKEND", "auto"))
