"""Loading gpunn's hand-written CUDA kernels.

The CUDA C sources live in ``cuda_kernels/<family>.cu`` (one file per op
family: ``im2col.cu``, ``lstm.cu``, ``attention.cu``...). They are plain
files, not strings inside Python, so they can be read, compiled with ``nvcc``
by CI, and shown next to their NumPy twins.

:func:`get_kernel` compiles a file with ``cupy.RawModule`` the first time one
of its kernels is asked for, once per process and device, and hands back the
``RawKernel``; later calls, one per launch, are a dictionary lookup. Nothing is
compiled at import.
"""

import functools
import re
from pathlib import Path

import numpy as np

import gpunn.backend as backend

NVRTC_OPTIONS = ("--std=c++17",)


def kernel_dir():
    """Where the ``.cu`` files are: the source checkout's ``cuda_kernels/``,
    or ``gpunn/cuda_kernels/`` inside an installed wheel."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package.parent / "cuda_kernels", package / "cuda_kernels"):
        if any(candidate.glob("*.cu")):
            return candidate
    raise FileNotFoundError(
        f"gpunn's CUDA sources were not found in {package.parent / 'cuda_kernels'} "
        f"nor in {package / 'cuda_kernels'}; reinstall gpunn"
    )


def source(family):
    """The CUDA C source of ``cuda_kernels/<family>.cu``, with the headers it includes from ``cuda_kernels/``
    (``#include "reduce.cuh"``) pasted in: NVRTC is given one string."""
    path = kernel_dir() / f"{family}.cu"
    if not path.is_file():
        known = sorted(p.stem for p in kernel_dir().glob("*.cu"))
        raise FileNotFoundError(f"No CUDA kernel family {family!r}; known families: {', '.join(known)}")
    return re.sub(r'^#include "(\w+\.cuh)"$', lambda m: (kernel_dir() / m.group(1)).read_text(), path.read_text(),
                  flags=re.MULTILINE)


@functools.lru_cache(maxsize=None)
def _module(family, device_id):
    return backend._cupy.RawModule(code=source(family), options=NVRTC_OPTIONS)


_kernels = {}  # (family, name, device) -> RawKernel


def get_kernel(family, name):
    """The ``extern "C"`` kernel ``name`` from ``cuda_kernels/<family>.cu``, compiled for the active GPU."""
    if not backend.is_gpu():
        raise RuntimeError(f"CUDA kernel {family}.{name} asked for, but the backend is {backend.name}")
    key = (family, name, backend.device_id)
    kernel = _kernels.get(key)
    if kernel is None:
        kernel = _kernels[key] = _module(family, backend.device_id).get_function(name)
    return kernel


def grid(n, block):
    """How many blocks of ``block`` threads cover ``n`` work items (ceil division)."""
    return (n + block - 1) // block


def launch(family, name, n, args, block=256, max_blocks=1 << 20):
    """Run kernel ``name`` over ``n`` work items (the kernels use grid-stride loops, so the grid may be capped)."""
    if n:
        get_kernel(family, name)((min(grid(n, block), max_blocks),), (block,), tuple(args))


_counters = {}  # (backend, device) -> int32 zeros: the tickets of last-block reductions
_outgrown = []  # counters replaced by larger ones: kept, since a captured graph may still use them


def block_counters(n):
    """At least ``n`` int32 zeros on the device, for a kernel whose last block to finish a piece of work
    finishes it (reduce.cuh), counting the blocks done with atomicAdd. One array per device, shared: gpunn
    launches on one stream at a time (a graph's warm-up and capture wait for the work before them, and the
    work after them waits for them), so the kernels run one after another, and each sets its counters back
    to 0. Allocated by an eager step or a graph's warm-up, never during a capture, which runs nothing."""
    from gpunn.backend import graphs

    key = (backend.name, backend.device_id)
    counters = _counters.get(key)
    if counters is not None and not isinstance(counters, backend.xp.ndarray):
        counters = None  # another array module's (the tests install their CuPy stand-in afresh)
    if counters is None or counters.size < n:
        if graphs.capturing():
            raise RuntimeError(f"gpunn needs {n} block counters, first asked for during a CUDA graph capture, where "
                               f"they cannot be zeroed; the warm-up before a capture asks for them (a bug in gpunn)")
        if counters is not None:
            _outgrown.append(counters)
        if backend.is_gpu():  # from the default pool, not a graph's (the array outlives any graph)
            cupy = backend._cupy
            with cupy.cuda.using_allocator(cupy.get_default_memory_pool().malloc):
                counters = cupy.zeros(max(n, 4096), dtype=np.int32)
        else:  # tests/host_cuda.py runs the kernels on NumPy arrays
            counters = np.zeros(max(n, 4096), dtype=np.int32)
        _counters[key] = counters
    return counters


def on_gpu(*arrays):
    """True when every array lives on the GPU (a CuPy array): the kernels can take them."""
    return backend.is_gpu() and all(isinstance(a, backend._cupy.ndarray) for a in arrays)


def takes(*arrays):
    """True when every array is a C-contiguous float32 GPU array -- what the float kernels accept."""
    return on_gpu(*arrays) and all(a.dtype == "float32" and a.flags.c_contiguous for a in arrays)
