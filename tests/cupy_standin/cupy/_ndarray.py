"""The stand-in's ``cupy.ndarray``: a NumPy array kept behind a wall, as GPU memory is.

It holds a NumPy array (``_a``) and offers CuPy's ndarray interface on it, but it is not a
NumPy array: ``numpy.asarray(a)``, a NumPy ufunc or function on it, and mixing it with a
NumPy array in an operation all raise ``TypeError``, as they do (or would, without a copy
nobody asked for) with CuPy. Stricter than CuPy in one way: CuPy lets ``numpy.exp(a)``
through to ``cupy.exp``; here the code must say ``xp.exp`` -- the only way that runs on
both backends without surprises. Reads back to the host (``get()``, ``item()``, ``float()``,
``bool()``, printing) work and are counted as syncs.
"""

import operator

import numpy as np

from cupy import _core
from cupy._core import check_name, compute, counts, refuse_host_array, wrap, write


def _operand(other, op):
    if isinstance(other, ndarray):
        return other._a
    if isinstance(other, np.ndarray):
        refuse_host_array(f"the operator {op}")
    if isinstance(other, (list, tuple)):
        raise TypeError(f"Unsupported type {type(other)} in the operator {op}: use a CuPy array")
    return other  # Python and NumPy scalars are fine, as in CuPy


def _binary(op, name):
    def method(self, other):
        a, b = self._a, _operand(other, name)
        return compute(lambda: op(a, b), (a,))
    return method


def _reflected(op, name):
    def method(self, other):
        a, b = self._a, _operand(other, name)
        return compute(lambda: op(b, a), (a,))
    return method


def _inplace(op, name):
    def method(self, other):
        a, b = self._a, _operand(other, name)
        write(lambda: op(a, b))
        counts.ops += 1
        return self
    return method


def _sync(convert):
    def method(self, *args):
        counts.syncs += 1
        return convert(self._a, *args)
    return method


class ndarray:
    """A CuPy array of the stand-in (see the module docstring)."""

    __slots__ = ("_a", "__weakref__")
    __array_priority__ = 100
    __array_ufunc__ = None  # NumPy's operators and ufuncs step aside (and then refuse): see _operand
    __hash__ = None

    def __init__(self, a):
        if not isinstance(a, np.ndarray):
            raise TypeError("the stand-in's ndarray wraps a NumPy array: create arrays with cupy.asarray, zeros...")
        self._a = a

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a "
                        "NumPy array explicitly.")

    # --- what a GPU array tells without computing ------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T))

    @property
    def data(self):
        """The device memory's pointer (``a.data.ptr``), for code that hands raw pointers to a library (NCCL)."""
        from cupy.cuda import MemoryPointer

        return MemoryPointer(self._a.__array_interface__["data"][0])

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (ndarray(row) for row in self._a)

    def __getattr__(self, name):
        """Every other method: NumPy's, on the wrapped array, if real CuPy's ndarray has it too."""
        if name.startswith("_"):
            raise AttributeError(name)
        check_name("cupy.ndarray", name)
        method = getattr(self._a, name)
        if not callable(method):
            return wrap(method, (self._a,))

        def call(*args, **kwargs):
            args, kwargs = _core.unwrap(args, f"ndarray.{name}"), _core.unwrap(kwargs, f"ndarray.{name}")
            out = kwargs.get("out")
            if out is not None or name in ("fill", "sort", "partition"):  # in place
                counts.ops += 1
                write(lambda: method(*args, **kwargs))
                return None if out is None else wrap(out, tuple(_core.arrays_in(out)))
            return compute(lambda: method(*args, **kwargs), (self._a,))
        return call

    # --- reading back to the host: each one makes the host wait for the GPU -----------------
    def get(self, stream=None, order="C", out=None):
        counts.syncs += 1
        if out is not None:
            out[...] = self._a
            return out
        return np.array(self._a, order=order)

    def set(self, arr, stream=None):
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"ndarray.set takes a NumPy array; received {type(arr)}")
        counts.uploads += 1
        self._a[...] = arr

    item = _sync(lambda a, *args: a.item(*args))
    tolist = _sync(lambda a: a.tolist())
    __bool__ = _sync(lambda a: bool(a))
    __float__ = _sync(lambda a: float(a))
    __int__ = _sync(lambda a: int(a))
    __complex__ = _sync(lambda a: complex(a))
    __format__ = _sync(lambda a, spec: format(a.item() if a.ndim == 0 else a, spec))
    __repr__ = _sync(lambda a: repr(a))
    __str__ = _sync(lambda a: str(a))

    # --- indexing ----------------------------------------------------------------------------
    def _index(self, key):
        if isinstance(key, tuple):
            return tuple(self._index_one(k) for k in key)
        return self._index_one(key)

    @staticmethod
    def _index_one(k):
        if isinstance(k, ndarray):
            if k.dtype == bool:
                counts.syncs += 1  # the result's size depends on the mask: CuPy reads the count back
            return k._a
        if isinstance(k, (np.ndarray, list)):
            counts.uploads += 1  # CuPy copies host indices to the device
            return np.asarray(k)
        return k

    def __getitem__(self, key):
        a, index = self._a, self._index(key)
        return compute(lambda: a[index], (a,))

    def __setitem__(self, key, value):
        if isinstance(value, np.ndarray):
            refuse_host_array("an assignment a[...] = value")
        a, index, value = self._a, self._index(key), value._a if isinstance(value, ndarray) else value
        write(lambda: a.__setitem__(index, value))
        counts.ops += 1

    def __copy__(self):
        return compute(self._a.copy)

    def __deepcopy__(self, memo):
        return compute(self._a.copy)

    def __reduce__(self):
        raise TypeError("the stand-in's arrays are device arrays: bring them to the host with .get() to pickle them")

    # --- arithmetic ----------------------------------------------------------------------------
    def __neg__(self):
        return compute(self._a.__neg__)

    def __pos__(self):
        return compute(self._a.__pos__)

    def __abs__(self):
        return compute(self._a.__abs__)

    def __invert__(self):
        return compute(self._a.__invert__)

    def __matmul__(self, other):
        counts.gemms += 1
        a, b = self._a, _operand(other, "@")
        return compute(lambda: a @ b)

    def __rmatmul__(self, other):
        counts.gemms += 1
        a, b = self._a, _operand(other, "@")
        return compute(lambda: b @ a)


for _name, _op in [("add", operator.add), ("sub", operator.sub), ("mul", operator.mul),
                   ("truediv", operator.truediv), ("floordiv", operator.floordiv), ("mod", operator.mod),
                   ("pow", operator.pow), ("and", operator.and_), ("or", operator.or_), ("xor", operator.xor),
                   ("lshift", operator.lshift), ("rshift", operator.rshift), ("divmod", divmod)]:
    setattr(ndarray, f"__{_name}__", _binary(_op, _name))
    setattr(ndarray, f"__r{_name}__", _reflected(_op, _name))
for _name, _op in [("add", operator.iadd), ("sub", operator.isub), ("mul", operator.imul),
                   ("truediv", operator.itruediv), ("floordiv", operator.ifloordiv), ("mod", operator.imod),
                   ("pow", operator.ipow), ("and", operator.iand), ("or", operator.ior), ("xor", operator.ixor),
                   ("lshift", operator.ilshift), ("rshift", operator.irshift)]:
    setattr(ndarray, f"__i{_name}__", _inplace(_op, _name))
for _name, _op in [("eq", operator.eq), ("ne", operator.ne), ("lt", operator.lt), ("le", operator.le),
                   ("gt", operator.gt), ("ge", operator.ge)]:
    setattr(ndarray, f"__{_name}__", _binary(_op, _name))
