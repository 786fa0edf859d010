"""What the stand-in's parts share: the counters, the check against real CuPy's names, and
the wrapping of NumPy results as device arrays.

Counters (``cupy._standin.counts``), per the work a GPU would do:

- ``ops``: CuPy operations that compute (an element-wise op, a reduction, a copy, a matrix
  product...); views (reshape, transpose, slicing) are free, as on a GPU;
- ``kernels``: launches of gpunn's own kernels (``RawKernel`` calls);
- ``gemms``: matrix products (cuBLAS calls on a GPU), also counted in ``ops``;
- ``allocations``: new device buffers (``empty`` allocates without launching anything: counted
  here, not in ``ops``);
- ``syncs``: reads back to the host (``.get()``, ``float(a)``, ``bool(a)``, ``asnumpy``...) and
  explicit waits (``synchronize``): each makes the host wait for the GPU;
- ``uploads``: copies from the host to the device (``cupy.asarray(numpy_array)``);
- ``replays``: launches of a captured CUDA graph (each one launch, however much work it holds).

Stream capture (CUDA graphs, ``cupy.cuda.Stream.begin_capture``) is emulated as a GPU does it:
while a stream captures, nothing runs. Each operation is recorded -- one that writes into arrays
that exist (``out=``, ``a[...] = v``, ``+=``, a kernel) only recorded, one that makes a new array
computed (for its shape) and recorded to fill that same buffer again -- and a replay runs the
records in order, on the same buffers, with the scalars as they were at capture. What a GPU
refuses during a capture is refused: reads back to the host, uploads, cuBLAS calls (CuPy refuses
them), and allocations from the default memory pool (the graph's buffers must come from a pool
of its own: ``cupy.cuda.using_allocator``). When the capture ends, every buffer it made is
poisoned (NaN), so a value read without a replay shows.
"""

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import weakref
from pathlib import Path

import numpy as np


class CaptureError(RuntimeError):
    """What a GPU refuses while a stream captures a graph."""


_REFUSED = {"syncs": "a read back to the host (or a wait)", "uploads": "a copy from the host",
            "gemms": "a cuBLAS call (CuPy refuses them during a capture)"}


@dataclasses.dataclass
class Counts:
    ops: int = 0
    kernels: int = 0
    gemms: int = 0
    allocations: int = 0
    syncs: int = 0
    uploads: int = 0
    replays: int = 0

    def __setattr__(self, name, value):
        if capture is not None and name in _REFUSED and self is counts and value > getattr(self, name):
            raise CaptureError(f"{_REFUSED[name]} during a stream capture: a CUDA graph cannot hold it "
                               f"(cudaErrorStreamCaptureUnsupported)")
        super().__setattr__(name, value)

    @property
    def launches(self):
        """Everything that launches work on the GPU: CuPy's operations, gpunn's kernels, graph replays."""
        return self.ops + self.kernels + self.replays

    def __sub__(self, other):
        return Counts(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in dataclasses.fields(self)})

    def copy(self):
        return dataclasses.replace(self)


capture = None  # while a stream captures: the Capture being recorded
allocator = None  # the allocator set by cupy.cuda.using_allocator (None: the default memory pool)
counts = Counts()
_live = {}  # id(buffer) -> bytes, for every live device buffer (the memory pool's used_bytes)
_buffers = {}  # id(buffer) -> a weak reference to it, to find a buffer from a pointer (``a.data.ptr``)


def allocated(a, computed=True):
    """Count a new device buffer and follow its lifetime (``cupy.get_default_memory_pool().used_bytes()``);
    ``computed``: an operation wrote it (one launch), as opposed to ``empty``, which only takes memory."""
    if capture is not None and allocator is None:
        raise CaptureError("an allocation from the default memory pool during a stream capture: the graph's buffers "
                           "must come from a pool of its own (cupy.cuda.using_allocator), or eager work would reuse them")
    counts.allocations += 1
    counts.ops += computed
    base = a
    while isinstance(base.base, np.ndarray):
        base = base.base
    if id(base) not in _live:
        _live[id(base)] = base.nbytes
        _buffers[id(base)] = weakref.ref(base)
        weakref.finalize(base, _live.pop, id(base), None)
        weakref.finalize(base, _buffers.pop, id(base), None)


def used_bytes():
    return sum(_live.values())


def device_memory(ptr, nbytes, where):
    """The ``nbytes`` bytes of device memory at address ``ptr``, as a uint8 NumPy view, for code that takes raw
    pointers (NCCL). A pointer outside every live device buffer -- a host array's, a freed buffer's, or a
    count that runs past the end -- is refused: on a GPU it would crash, or read another array's memory."""
    for ref in list(_buffers.values()):
        base = ref()
        if base is None:
            continue
        start = base.__array_interface__["data"][0]
        if start <= ptr < start + max(base.nbytes, 1):
            if ptr + nbytes > start + base.nbytes:
                raise ValueError(f"{where}: {nbytes} bytes from this pointer run {ptr + nbytes - start - base.nbytes} "
                                 f"bytes past the end of its device buffer ({base.nbytes} bytes)")
            flat = base.reshape(-1).view(np.uint8) if base.flags.c_contiguous else None
            if flat is None:
                raise ValueError(f"{where}: the device buffer at this pointer is not contiguous")
            return flat[ptr - start:ptr - start + nbytes]
    raise ValueError(f"{where}: the pointer {ptr:#x} is in no live device buffer (a host array's pointer, or a freed "
                     f"buffer's): on a GPU this is an illegal memory access")


# --- real CuPy's names -----------------------------------------------------------------------

NAMESPACES = {  # stand-in namespace -> the expression naming it in real CuPy
    "cupy": "cupy", "cupy.ndarray": "cupy.ndarray", "cupy.random": "cupy.random",
    "cupy.random.RandomState": "cupy.random.RandomState", "cupy.cuda": "cupy.cuda",
    "cupy.cuda.runtime": "cupy.cuda.runtime", "cupy.cuda.Device": "cupy.cuda.Device",
    "cupy.cuda.Event": "cupy.cuda.Event", "cupy.cuda.MemoryPool": "cupy.cuda.MemoryPool",
    "cupy.RawModule": "cupy.RawModule", "cupy.RawKernel": "cupy.RawKernel", "cupyx": "cupyx",
    "cupy.linalg": "cupy.linalg",
}

_DUMP = """
import json, sys
import cupy, cupyx
spaces = json.loads(sys.argv[1])
print(json.dumps({"version": cupy.__version__,
                  **{name: sorted(dir(eval(expr))) for name, expr in spaces.items()}}))
"""

_api = None


def real_cupy_api():
    """{namespace: names} of the real CuPy installed beside the stand-in, or None when there is none.

    Read in a separate interpreter (``python -I``: no stand-in on its path), since real CuPy
    and the stand-in cannot both be ``cupy`` here; cached per CuPy install in the temp folder.
    """
    global _api
    if _api is not None:
        return _api or None
    standin = str(Path(__file__).resolve().parents[1])
    paths = [p for p in sys.path if p and Path(p).resolve() != Path(standin)]
    real = None
    for path in paths:
        candidate = Path(path) / "cupy" / "__init__.py"
        if candidate.is_file() and "cupy_standin" not in str(candidate):
            real = candidate
            break
    if real is None:
        _api = {}
        return None
    key = hashlib.sha256(f"{real}:{real.stat().st_mtime}".encode()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"gpunn-cupy-api-{key}.json"
    if not cache.is_file():
        done = subprocess.run([sys.executable, "-I", "-c", _DUMP, json.dumps(NAMESPACES)], capture_output=True,
                              text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)}, cwd=tempfile.gettempdir())
        if done.returncode:
            _api = {}
            return None
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(done.stdout)
        os.replace(tmp, cache)
    _api = {name: (set(names) if isinstance(names, list) else names) for name, names in json.loads(cache.read_text()).items()}
    return _api


def check_name(namespace, name):
    """Refuse ``namespace.name`` when real CuPy has no such name: code that uses it would fail on a GPU."""
    api = real_cupy_api()
    if api and name not in api.get(namespace, {name}):
        raise AttributeError(f"'{namespace}' has no attribute '{name}' in real CuPy {api['version']}: code that uses "
                             f"it works on NumPy but fails on a GPU (the CuPy stand-in refuses it)")


# --- wrapping --------------------------------------------------------------------------------


def refuse_host_array(where):
    raise TypeError(f"Unsupported type <class 'numpy.ndarray'> in {where}: a NumPy array cannot be mixed with "
                    f"CuPy arrays (move it to the device with cupy.asarray, or bring the CuPy array back with .get())")


def unwrap(obj, where):
    """NumPy arrays inside the stand-in's arrays, through lists, tuples and dicts; host arrays refused."""
    from cupy._ndarray import ndarray

    if isinstance(obj, ndarray):
        return obj._a
    if isinstance(obj, np.ndarray):
        refuse_host_array(where)
    if isinstance(obj, (list, tuple)):
        return type(obj)(unwrap(o, where) for o in obj)
    if isinstance(obj, dict):
        return {k: unwrap(v, where) for k, v in obj.items()}
    return obj


def arrays_in(obj):
    """The NumPy arrays inside an unwrapped argument structure."""
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from arrays_in(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from arrays_in(o)


def wrap(result, inputs=(), computed=True):
    """Device arrays for NumPy results; a result that is not a view of an input is a new buffer (counted)."""
    from cupy._ndarray import ndarray

    if isinstance(result, np.generic):  # CuPy never hands back a host scalar: a 0-d device array
        result = np.asarray(result)
    if isinstance(result, np.ndarray):
        if not any(np.may_share_memory(result, a) for a in inputs):
            if capture is not None and not any(result is b for b in capture.buffers[-1:]):
                raise CaptureError("the stand-in cannot capture this operation (it makes a new array outside "
                                   "_core.compute); a random draw would repeat at every replay of a graph")
            allocated(result, computed)
        return ndarray(result)
    if isinstance(result, (list, tuple)):
        return type(result)(wrap(r, inputs, computed) for r in result)
    return result


# --- running operations, and recording them while a stream captures -------------------------------


class Capture:
    """What a capture recorded: ``steps`` (callables, in launch order) and the ``buffers`` it made."""

    def __init__(self):
        self.steps, self.buffers = [], []


def compute(thunk, inputs=(), computed=True):
    """The device array of ``thunk()``, an operation making a new array (or a view of one of ``inputs``).
    During a capture its buffer is recorded with ``thunk`` to fill it again at each replay (not for
    ``computed`` False: ``empty`` writes nothing)."""
    if capture is None:
        return wrap(thunk(), inputs, computed)
    with np.errstate(all="ignore"):  # the values now are meaningless (a GPU would compute nothing yet)
        result = thunk()
    if isinstance(result, np.generic):
        result = np.asarray(result)
    if isinstance(result, np.ndarray) and not any(np.may_share_memory(result, a) for a in inputs):
        buffer = result
        capture.buffers.append(buffer)
        if computed:
            capture.steps.append(lambda: np.copyto(buffer, thunk()))
    return wrap(result, inputs, computed)


def write(thunk):
    """Run an operation that writes into arrays that exist; during a capture, only record it: it runs at the
    replays (a capturing stream executes nothing)."""
    if capture is not None:
        capture.steps.append(thunk)
    else:
        thunk()


def poison(buffer):
    """Fill ``buffer`` with what uninitialised device memory may hold (NaN; integers: their minimum)."""
    from tests.host_cuda import poison as value  # the repository root is on the path wherever the stand-in is

    buffer[...] = value(buffer.dtype)
