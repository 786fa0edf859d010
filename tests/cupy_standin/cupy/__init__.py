"""A stand-in for CuPy, for tests: the CuPy path of gpunn run on NumPy, strictly.

Test-only (never shipped). With ``python -m pytest --cupy-standin`` this folder's parent is put
first on the path, so ``import cupy`` finds this package and gpunn runs its GPU path on it:
arrays are :class:`cupy.ndarray` (NumPy arrays behind a wall, see ``_ndarray.py``),
``RawModule``/``RawKernel`` compile the real ``cuda_kernels/*.cu`` with the host C++ compiler
through ``tests/host_cuda.py`` (with its argument-width and contiguity checks; gemm.cu's matrix
products, once checked so, are computed by their NumPy twins: the kernels themselves are run by
``tests/test_gemm*.py``), and every function is NumPy's, wrapped. It fails where a GPU fails:

- a NumPy array mixed with a device array, or converted implicitly, raises ``TypeError``;
- a name real CuPy does not have raises ``AttributeError`` (when real CuPy is installed
  beside it -- it imports without a GPU -- its names are read once and checked);
- kernels get the host runner's checks (types, widths, bounds).

It counts, in ``cupy._standin.counts``, the operations, kernel launches, matrix products,
allocations, host syncs and uploads (see ``_core.py``), so tests can hold a training step
to a budget: ``with cupy._standin.counting() as step: ...``, then ``step.launches``.
"""

import contextlib
import functools
import types

import numpy as np

from cupy import _core
from cupy._core import check_name, compute, counts, unwrap, wrap, write
from cupy._ndarray import ndarray

__version__ = "14 (gpunn's stand-in on NumPy)"

# Names CuPy shares with NumPy that hold no array: the very same objects.
dtype, newaxis, inf, nan, pi, e = np.dtype, np.newaxis, np.inf, np.nan, np.pi, np.e
for _t in ("bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
           "float64", "complex64", "complex128", "intp", "finfo", "iinfo", "result_type", "can_cast", "promote_types",
           "isscalar"):
    globals()[_t] = getattr(np, _t)

_UNWRITTEN = {"empty", "empty_like"}  # they take memory from the pool and launch nothing
_IN_PLACE = {"copyto", "put", "putmask", "place", "fill_diagonal"}  # they write into an array given (or ufunc.at)
_UPLOADS = {"asarray", "array", "asanyarray"}  # the functions that take host data to the device


def asarray(a, dtype=None, order=None, *, blocking=False):
    if isinstance(a, ndarray):
        return a if dtype is None or np.dtype(dtype) == a.dtype else compute(lambda: a._a.astype(dtype))
    counts.uploads += 1
    return wrap(np.array(unwrap_host(a), dtype=dtype, order=order or "K"))


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    if isinstance(obj, ndarray):
        return compute(lambda: np.array(obj._a, dtype=dtype, copy=copy, order=order, ndmin=ndmin),
                       (obj._a,) if not copy else ())
    counts.uploads += 1
    return wrap(np.array(unwrap_host(obj), dtype=dtype, order=order, ndmin=ndmin))


asanyarray = asarray


def unwrap_host(obj):
    """Host data (NumPy arrays, lists, scalars) as it is; device arrays inside lists are refused, as in CuPy."""
    if isinstance(obj, (list, tuple)) and any(isinstance(o, ndarray) for o in obj):
        raise TypeError("cupy.asarray of a list holding CuPy arrays: use cupy.stack")
    return obj


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    return np.asarray(a, order=order)


def get_array_module(*args):
    return _this if any(isinstance(a, ndarray) for a in args) else np


class _Function:
    """A NumPy function or ufunc as CuPy's: device arrays in and out, host arrays refused."""

    def __init__(self, name, fn, namespace="cupy"):
        self.name, self.fn, self.namespace = name, fn, namespace
        functools.update_wrapper(self, fn)

    def __call__(self, *args, **kwargs):
        args, kwargs = unwrap(args, f"{self.namespace}.{self.name}"), unwrap(kwargs, f"{self.namespace}.{self.name}")
        inputs = list(_core.arrays_in((args, kwargs)))
        if self.name in ("matmul", "dot", "tensordot", "einsum", "inner", "outer", "vdot"):
            counts.gemms += 1
        if self.name in ("nonzero", "argwhere", "unique", "flatnonzero") or (self.name == "where" and len(args) == 1):
            counts.syncs += 1  # the size of the result depends on the values: read back first
        out = kwargs.get("out")
        if out is not None or self.name in _IN_PLACE or self.name.endswith(".at"):
            counts.ops += 1
            write(lambda: self.fn(*args, **kwargs))
            return None if out is None else wrap(out, inputs)
        return compute(lambda: self.fn(*args, **kwargs), inputs, computed=self.name not in _UNWRITTEN)

    def __getattr__(self, name):  # a ufunc's .at, .reduce, .outer...
        return _Function(f"{self.name}.{name}", getattr(self.fn, name), self.namespace)


def _submodule(name):
    module = types.ModuleType(f"cupy.{name}")
    numpy_module = getattr(np, name)

    def lookup(attr):
        check_name(f"cupy.{name}", attr)
        return _Function(attr, getattr(numpy_module, attr), f"cupy.{name}")
    module.__getattr__ = lookup
    return module


def __getattr__(name):
    """Any other CuPy name: NumPy's function of that name, wrapped -- if real CuPy has the name too."""
    if name.startswith("__") or name in ("cuda", "random"):  # the submodules are imported below, not NumPy's
        raise AttributeError(name)
    check_name("cupy", name)
    if name == "linalg":
        value = _submodule("linalg")
    else:
        try:
            value = getattr(np, name)
        except AttributeError:
            raise AttributeError(f"module 'cupy' has no attribute '{name}' (the stand-in has no NumPy twin for it)") \
                from None
        if callable(value) and not isinstance(value, type):
            value = _Function(name, value)
    globals()[name] = value
    return value


# --- gpunn's kernels, through the host runner --------------------------------------------------


class RawKernel:
    """``cupy.RawKernel(code, name)``: the kernel compiled for the host by tests/host_cuda.py."""

    def __init__(self, code, name, options=(), backend="nvrtc", translate_cucomplex=False, *, enable_cooperative_groups=False,
                 jitify=False):
        self.name, self._kernel = name, _host_module(code).get_function(name)

    @classmethod
    def _from(cls, kernel, name):
        self = cls.__new__(cls)
        self.name, self._kernel = name, kernel
        return self

    def __call__(self, grid, block, args, *, shared_mem=0):
        host_args = []
        for i, a in enumerate(args):
            if isinstance(a, np.ndarray):
                raise TypeError(f"{self.name} argument {i}: Unsupported type <class 'numpy.ndarray'> (a kernel takes "
                                f"CuPy arrays)")
            host_args.append(a._a if isinstance(a, ndarray) else a)
        counts.kernels += 1
        kernel, host_args = self._kernel, tuple(host_args)
        product = _PRODUCTS.get(self.name)
        if product is not None:  # checked as the host runner checks a launch, then computed by NumPy
            kernel.check(grid, block, host_args)
            write(lambda: product(*host_args))
        else:
            write(lambda: kernel(grid, block, host_args, shared_mem))


def _sgemm(a, b, c, *sizes_strides_beta):
    from gpunn.ops.gemm import sgemm_cpu

    sgemm_cpu(a, b, c, float(sizes_strides_beta[-1]))


def _sgemm_bias_act(a, b, bias, has_bias, out, *sizes_strides_p_activation):
    from gpunn.ops.gemm import sgemm_bias_act_cpu

    *_, P, activation = sizes_strides_p_activation
    sgemm_bias_act_cpu(a, b, bias, int(has_bias), out, int(P), int(activation))


# gemm.cu's matrix products, computed by their NumPy twins once the launch is checked: on the host runner they take
# some 50 times NumPy's time, and a model's tests would train for minutes (tests/test_gemm*.py run the kernels).
_PRODUCTS = {"sgemm": _sgemm, "sgemm_bias_act": _sgemm_bias_act}


class RawModule:
    """``cupy.RawModule(code=...)``: every kernel of the source, compiled for the host."""

    def __init__(self, code=None, *, path=None, options=(), backend="nvrtc", translate_cucomplex=False,
                 enable_cooperative_groups=False, name_expressions=None, jitify=False):
        if code is None:
            with open(path) as f:
                code = f.read()
        self._module = _host_module(code)

    def get_function(self, name):
        return RawKernel._from(self._module.get_function(name), name)


def _host_module(code):
    from tests import host_cuda  # the repository root is on the path wherever the stand-in is

    if host_cuda.COMPILER is None:
        raise RuntimeError("the CuPy stand-in compiles kernels with g++ or clang++, and neither is installed")
    return host_cuda.HostModule(code)


# --- memory -------------------------------------------------------------------------------------


class _MemoryPool:
    def malloc(self, size):
        raise RuntimeError("the stand-in's arrays are NumPy's: malloc is only a token for using_allocator")

    def used_bytes(self):
        return _core.used_bytes()

    def total_bytes(self):
        return _core.used_bytes()

    def free_all_blocks(self, stream=None):
        pass


_pool = _MemoryPool()


def get_default_memory_pool():
    return _pool


# --- the counters, for tests ---------------------------------------------------------------------


class _StandIn:
    """What tests read: ``cupy._standin.counts``, and ``counting()`` around a piece of work."""

    Counts = _core.Counts
    counts = counts

    @staticmethod
    @contextlib.contextmanager
    def counting():
        """``with counting() as delta:`` -- afterwards ``delta`` holds what happened inside."""
        before = counts.copy()
        delta = _core.Counts()
        try:
            yield delta
        finally:
            for field, value in vars(counts - before).items():
                setattr(delta, field, value)

    @staticmethod
    def used_bytes():
        return _core.used_bytes()


_standin = _StandIn()
_this = __import__("sys").modules[__name__]

import cupy.cuda  # noqa: E402,F401  (the submodules use the names above)
import cupy.random  # noqa: E402,F401  (the submodule, as cupy.random)
