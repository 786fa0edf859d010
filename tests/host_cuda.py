"""gpunn's CUDA kernels, run on the CPU: the real ``.cu`` sources and gpunn's own launch code.

Without a GPU the ``*_gpu`` functions never run, so an indexing slip in a kernel, or a
Python scalar of the wrong width in a launch, would wait for the first student with a
GPU. Here each ``cuda_kernels/<family>.cu`` is compiled by the host C++ compiler with
``tests/host_cuda.h`` in front, and :class:`HostModule` stands in for ``cupy.RawModule``:
its kernels take the same ``(grid, block, args)`` call, with NumPy arrays for CuPy ones.

On top of running the kernel, every launch checks what CuPy does not:

- each argument matches its parameter: an array for a pointer, of the element type the
  kernel reads (float32 for ``float*``, int8 for ``signed char*``...) and C-contiguous;
  a scalar of the kernel's exact width (``np.int64`` for ``long long``...), never a bare
  Python number, whose width CuPy would have to guess;
- the launch fits CUDA's limits (1024 threads per block, 65535 blocks in y and z).
"""

import atexit
import ctypes
import functools
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
_BUILD = Path(tempfile.mkdtemp(prefix="gpunn-host-cuda-"))
atexit.register(shutil.rmtree, _BUILD, True)


def kernel_names(code):
    return re.findall(r"__global__\s+void\s+(\w+)\s*\(", code)


@functools.lru_cache(maxsize=None)
def _library(family):
    code = kernels.source(family)
    names = kernel_names(code)
    cooperative = "__syncthreads" in code
    wrappers = [f'#include "{HEADER}"', f'#include "{kernels.kernel_dir() / (family + ".cu")}"']
    for name in names:
        wrappers.append(
            f'extern "C" void launch_{name}(const unsigned* g, const unsigned* b, void** args) '
            f"{{ host_cuda::launch({name}, g, b, {str(cooperative).lower()}, args); }}\n"
            f'extern "C" int signature_{name}(char* k, std::size_t* s, char* c) '
            f"{{ return host_cuda::signature({name}, k, s, c); }}")
    cpp = _BUILD / f"{family}.cpp"
    cpp.write_text("\n".join(wrappers) + "\n")
    lib = _BUILD / f"lib{family}.so"
    built = subprocess.run([COMPILER, "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", str(cpp), "-o", str(lib)],
                           capture_output=True, text=True)
    if built.returncode:
        raise RuntimeError(f"{family}.cu does not compile for the host:\n{built.stderr}")
    return ctypes.CDLL(str(lib)), names


class HostModule:
    """Stands in for ``cupy.RawModule(code=kernels.source(family))``."""

    def __init__(self, family):
        self.family = family
        self.lib, self.names = _library(family)

    def get_function(self, name):
        if name not in self.names:
            raise AttributeError(f"{self.family}.cu has no kernel {name!r} (it has {self.names})")
        return HostKernel(self.lib, f"{self.family}.{name}", name)


class HostKernel:
    """Stands in for ``cupy.RawKernel``: ``kernel(grid, block, args)``."""

    def __init__(self, lib, label, name):
        self.label = label
        self._launch = getattr(lib, f"launch_{name}")
        kinds, sizes, consts = ctypes.create_string_buffer(64), (ctypes.c_size_t * 64)(), ctypes.create_string_buffer(64)
        n = getattr(lib, f"signature_{name}")(kinds, sizes, consts)
        self.params = [(kinds.raw[i:i + 1].decode(), sizes[i], bool(consts.raw[i])) for i in range(n)]

    def __call__(self, grid, block, args, shared_mem=0):
        grid, block = _dims(grid), _dims(block)
        if not 1 <= block[0] * block[1] * block[2] <= 1024 or max(grid[1:]) > 65535 or min(grid) < 1:
            raise ValueError(f"{self.label}: launch of grid {grid} x block {block} is outside CUDA's limits")
        if len(args) != len(self.params):
            raise TypeError(f"{self.label} takes {len(self.params)} arguments, was given {len(args)}")
        keep = [self._pointer(i, a, *p) if p[0] in "FI" else self._scalar(i, a, *p)
                for i, (a, p) in enumerate(zip(args, self.params))]
        argv = (ctypes.c_void_p * len(keep))(*[ctypes.addressof(k) for k in keep])
        self._launch((ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block), argv)

    def _pointer(self, i, a, kind, size, is_const):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{self.label} argument {i}: expected an array, got {type(a).__name__}")
        if a.dtype.kind != ("f" if kind == "F" else "i") or a.dtype.itemsize != size:
            raise TypeError(f"{self.label} argument {i}: the kernel reads {size}-byte "
                            f"{'floats' if kind == 'F' else 'integers'}, the array is {a.dtype}")
        if not a.flags.c_contiguous or (not is_const and not a.flags.writeable):
            raise TypeError(f"{self.label} argument {i}: the array must be C-contiguous"
                            + ("" if is_const else " and writeable"))
        return ctypes.c_void_p(a.ctypes.data)

    def _scalar(self, i, a, kind, size, is_const):
        if not isinstance(a, np.generic):
            raise TypeError(f"{self.label} argument {i}: pass a NumPy scalar of the kernel's width "
                            f"({size} bytes), not {type(a).__name__} {a!r}")
        if a.dtype.kind not in ("f" if kind == "f" else "iu") or a.dtype.itemsize != size:
            raise TypeError(f"{self.label} argument {i}: the kernel takes a {size}-byte "
                            f"{'float' if kind == 'f' else 'integer'}, got {a.dtype}")
        return ctypes.create_string_buffer(a.tobytes(), size)


def _dims(d):
    d = tuple(int(v) for v in (d if isinstance(d, tuple) else (d,)))
    return d + (1,) * (3 - len(d))


class PoisonedNumpy:
    """NumPy, except that ``empty`` and ``empty_like`` arrays start as NaN: an element a kernel
    forgets to write then fails the comparison instead of passing by luck."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def empty(shape, dtype=np.float64):
        return np.full(shape, np.nan, dtype=dtype)

    @staticmethod
    def empty_like(a, dtype=None):
        return np.full_like(a, np.nan, dtype=dtype)


def on_gpu(*arrays):
    """Every NumPy array counts as on the GPU: the ops then dispatch to their (host-run) kernels."""
    return all(isinstance(a, np.ndarray) for a in arrays)


def install(monkeypatch):
    """Route gpunn's kernel launches to the host: ``*_gpu`` ops then run the ``.cu`` sources on NumPy arrays."""
    monkeypatch.setattr(kernels, "get_kernel", lambda family, name: HostModule(family).get_function(name))
    monkeypatch.setattr(kernels, "on_gpu", on_gpu)
    monkeypatch.setattr(backend, "xp", PoisonedNumpy())
