"""gpunn's CUDA kernels, run on the CPU: the real ``.cu`` sources and gpunn's own launch code.

Without a GPU the ``*_gpu`` functions never run, so an indexing slip in a kernel, or a
Python scalar of the wrong width in a launch, would wait for the first student with a
GPU. Here each ``cuda_kernels/<family>.cu`` is compiled by the host C++ compiler with
``tests/host_cuda.h`` in front, and :class:`HostModule` stands in for ``cupy.RawModule(code=...)``:
its kernels take the same ``(grid, block, args)`` call, with NumPy arrays for CuPy ones.

On top of running the kernel, every launch checks what CuPy does not:

- each argument matches its parameter: an array for a pointer, of the element type the
  kernel reads (float32 for ``float*``, int8 for ``signed char*``...) and C-contiguous (except
  the arguments in ``STRIDED``, which the kernel reads through strides it is given);
  a scalar of the kernel's exact width (``np.int64`` for ``long long``...), never a bare
  Python number, whose width CuPy would have to guess;
- the launch fits CUDA's limits (1024 threads per block, 65535 blocks in y and z);
- no element outside an array is touched: each array is copied into the middle of a larger
  buffer whose guard bands are NaN (floats) or a byte pattern (integers). A write past either
  end changes a guard and raises; a float read past either end brings a NaN into the result,
  which then fails its comparison with the twin. A read whose value is never used shows only
  with AddressSanitizer (``ASAN`` below) -- together, what compute-sanitizer's memcheck does on a GPU.
"""

import atexit
import ctypes
import functools
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

import gpunn.backend as backend
from gpunn.backend import kernels

HEADER = Path(__file__).with_name("host_cuda.h")
COMPILER = shutil.which("g++") or shutil.which("clang++")
# GPUNN_HOST_CUDA_ASAN=1 (with libasan preloaded, see test_host_cuda.py) builds the kernels with
# AddressSanitizer, which also catches reads past an array whose values are never used; the
# arrays are then copied into buffers of their exact size, without guard bands.
ASAN = os.environ.get("GPUNN_HOST_CUDA_ASAN") == "1"
GUARD = 0 if ASAN else 1024  # elements of guard band on each side of every array
# Kernels that read some arrays through element strides they are given (sgemm's A[i * a_row + k * a_col]):
# these arguments may be views of any layout, as a GPU takes them (the pointer to their element [0, 0]).
# The runner copies the memory such a view spans, so the guards sit past its lowest and highest element.
STRIDED = {"sgemm": (0, 1), "sgemm_bias_act": (0, 1)}
_BUILD = Path(tempfile.mkdtemp(prefix="gpunn-host-cuda-"))
atexit.register(shutil.rmtree, _BUILD, True)


def kernel_names(code):
    return re.findall(r"__global__\s+void\s+(\w+)\s*\(", code)


@functools.lru_cache(maxsize=None)
def _library(code):
    names = kernel_names(code)
    cooperative = "__syncthreads" in code or "__shfl" in code
    stem = f"kernels{len(list(_BUILD.glob('*.cu')))}"
    (_BUILD / f"{stem}.cu").write_text(code)
    wrappers = [f'#include "{HEADER}"', f'#include "{stem}.cu"']
    for name in names:
        wrappers.append(
            f'extern "C" void launch_{name}(const unsigned* g, const unsigned* b, void** args) '
            f"{{ host_cuda::launch({name}, g, b, {str(cooperative).lower()}, args); }}\n"
            f'extern "C" int signature_{name}(char* k, std::size_t* s, char* c) '
            f"{{ return host_cuda::signature({name}, k, s, c); }}")
    cpp = _BUILD / f"{stem}.cpp"
    cpp.write_text("\n".join(wrappers) + "\n")
    lib = _BUILD / f"lib{stem}.so"
    sanitize = ["-fsanitize=address", "-fno-omit-frame-pointer"] if ASAN else []
    built = subprocess.run([COMPILER, "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", *sanitize, str(cpp),
                            "-o", str(lib)], capture_output=True, text=True)
    if built.returncode:
        raise RuntimeError(f"CUDA source does not compile for the host:\n{built.stderr}")
    return ctypes.CDLL(str(lib)), names


class HostModule:
    """Stands in for ``cupy.RawModule(code=...)``."""

    def __init__(self, code):
        self.lib, self.names = _library(code)

    def get_function(self, name):
        if name not in self.names:
            raise AttributeError(f"no kernel {name!r} in this module (it has {self.names})")
        return HostKernel(self.lib, name)


class HostKernel:
    """Stands in for ``cupy.RawKernel``: ``kernel(grid, block, args)``."""

    def __init__(self, lib, name):
        self.label = name
        self._launch = getattr(lib, f"launch_{name}")
        kinds, sizes, consts = ctypes.create_string_buffer(64), (ctypes.c_size_t * 64)(), ctypes.create_string_buffer(64)
        n = getattr(lib, f"signature_{name}")(kinds, sizes, consts)
        self.params = [(kinds.raw[i:i + 1].decode(), sizes[i], bool(consts.raw[i])) for i in range(n)]

    def check(self, grid, block, args):
        """What a launch checks before it runs: the grid, the number of arguments and each one's type."""
        grid, block = _dims(grid), _dims(block)
        if not 1 <= block[0] * block[1] * block[2] <= 1024 or max(grid[1:]) > 65535 or min(grid) < 1:
            raise ValueError(f"{self.label}: launch of grid {grid} x block {block} is outside CUDA's limits")
        if len(args) != len(self.params):
            raise TypeError(f"{self.label} takes {len(self.params)} arguments, was given {len(args)}")
        for i, (a, p) in enumerate(zip(args, self.params)):
            (self._checked if p[0] in "FI" else self._scalar)(i, a, *p)
        return grid, block

    def __call__(self, grid, block, args, shared_mem=0):
        grid, block = self.check(grid, block, args)
        guarded = {i: self._guarded(i, a, *p) for i, (a, p) in enumerate(zip(args, self.params)) if p[0] in "FI"}
        keep = [ctypes.c_void_p(guarded[i][0][GUARD + guarded[i][1]:].ctypes.data) if i in guarded
                else self._scalar(i, a, *p) for i, (a, p) in enumerate(zip(args, self.params))]
        argv = (ctypes.c_void_p * len(keep))(*[ctypes.addressof(k) for k in keep])
        self._launch((ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block), argv)
        for i, (buffer, _) in guarded.items():
            a, is_const = args[i], self.params[i][2]
            band = _band(a.dtype).tobytes()
            if buffer[:GUARD].tobytes() != band or buffer[len(buffer) - GUARD:].tobytes() != band:
                raise IndexError(f"{self.label} wrote outside argument {i} (an array of shape {a.shape})")
            if not is_const:
                a.reshape(-1)[...] = buffer[GUARD:GUARD + a.size]

    def _guarded(self, i, a, kind, size, is_const):
        """A copy of ``a`` (or of the memory a strided view spans) between two guard bands, and where in
        that copy the element [0, ...] is."""
        strided = self._checked(i, a, kind, size, is_const)
        band = _band(a.dtype)
        span, first = _span(a) if strided else (a.reshape(-1), 0)
        return np.concatenate((band, span, band)), first

    def _checked(self, i, a, kind, size, is_const):
        """Refuse an array argument the kernel would misread; True when it is a strided view the kernel may take."""
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{self.label} argument {i}: expected an array, got {type(a).__name__}")
        if a.dtype.kind != ("f" if kind == "F" else "i") or a.dtype.itemsize != size:
            raise TypeError(f"{self.label} argument {i}: the kernel reads {size}-byte "
                            f"{'floats' if kind == 'F' else 'integers'}, the array is {a.dtype}")
        strided = is_const and i in STRIDED.get(self.label, ()) and not a.flags.c_contiguous
        if (not a.flags.c_contiguous and not strided) or (not is_const and not a.flags.writeable):
            raise TypeError(f"{self.label} argument {i}: the array must be C-contiguous"
                            + ("" if is_const else " and writeable"))
        return strided

    def _scalar(self, i, a, kind, size, is_const):
        if not isinstance(a, np.generic):
            raise TypeError(f"{self.label} argument {i}: pass a NumPy scalar of the kernel's width "
                            f"({size} bytes), not {type(a).__name__} {a!r}")
        if a.dtype.kind not in ("f" if kind == "f" else "iu") or a.dtype.itemsize != size:
            raise TypeError(f"{self.label} argument {i}: the kernel takes a {size}-byte "
                            f"{'float' if kind == 'f' else 'integer'}, got {a.dtype}")
        return ctypes.create_string_buffer(a.tobytes(), size)


@functools.lru_cache(maxsize=None)
def _band(dtype):
    """A guard band: NaN for floats (a read of it spoils a result), the byte 0x5A for integers."""
    if dtype.kind == "f":
        return np.full(GUARD, np.nan, dtype=dtype)
    return np.full(GUARD * dtype.itemsize, 0x5A, dtype=np.uint8).view(dtype)


def _span(a):
    """The elements from the lowest address a view reaches to the highest, and the index of its element [0, ...]."""
    if a.size == 0 or any(s % a.itemsize for s in a.strides):
        raise TypeError(f"a strided argument must be a non-empty view with whole-element strides, got {a.strides}")
    low = sum((n - 1) * s for n, s in zip(a.shape, a.strides) if s < 0)
    high = sum((n - 1) * s for n, s in zip(a.shape, a.strides) if s > 0)
    memory = (ctypes.c_char * (high - low + a.itemsize)).from_address(a.ctypes.data + low)
    return np.frombuffer(memory, dtype=a.dtype).copy(), -low // a.itemsize


def _dims(d):
    d = tuple(int(v) for v in (d if isinstance(d, tuple) else (d,)))
    return d + (1,) * (3 - len(d))


def poison(dtype):
    """What a fresh output holds: NaN for floats, the most negative value for integers."""
    dtype = np.dtype(dtype)
    return np.nan if dtype.kind in "fc" else np.iinfo(dtype).min if dtype.kind in "iu" else 0


class PoisonedNumpy:
    """NumPy, except that ``empty`` and ``empty_like`` arrays start as NaN (integers: their minimum):
    an element a kernel forgets to write then fails the comparison instead of passing by luck."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def empty(shape, dtype=np.float64):
        return np.full(shape, poison(dtype), dtype=dtype)

    @staticmethod
    def empty_like(a, dtype=None):
        return np.full_like(a, poison(dtype or a.dtype), dtype=dtype)


def on_gpu(*arrays):
    """Every NumPy array counts as on the GPU: the ops then dispatch to their (host-run) kernels."""
    return all(isinstance(a, np.ndarray) for a in arrays)


def install(monkeypatch):
    """Route gpunn's kernel launches to the host: ``*_gpu`` ops then run the ``.cu`` sources on NumPy arrays."""
    monkeypatch.setattr(kernels, "get_kernel", lambda family, name: HostModule(kernels.source(family)).get_function(name))
    monkeypatch.setattr(kernels, "on_gpu", on_gpu)
    monkeypatch.setattr(backend, "xp", PoisonedNumpy())
