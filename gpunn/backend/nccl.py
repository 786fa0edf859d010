"""NCCL through CuPy (``cupy.cuda.nccl``): the collectives of GPU arrays for :mod:`gpunn.distributed`.

One process per GPU. Rank 0 asks NCCL for a :func:`unique_id`, MPI hands it to the others, and
each process makes its :class:`Communicator` with it (NCCL's ``ncclCommInitRank``, as ChainerMN
does)::

    comm = Communicator(size, uid, rank)
    comm.allreduce(a)            # a <- the sum of every rank's a, in place
    comm.broadcast(a, root=0)    # a <- rank 0's a, in place

NCCL reads and writes the arrays' device memory directly (``a.data.ptr``), on the current CUDA
stream: the collective is queued after the kernels that computed ``a``, and the kernels queued after
it see its result, with no wait on the host. This is the part of :mod:`gpunn.backend` that speaks NCCL;
nothing else in gpunn touches CuPy.
"""

import numpy as np

import gpunn.backend as backend

NCCL_FIX = ("install NCCL for CuPy: pip install 'nvidia-nccl-cu13>=2.27.7,<3' (CUDA 13) or "
            "'nvidia-nccl-cu12>=2.27.7,<3' (CUDA 12)")


def _nccl():
    """CuPy's NCCL module, or a BackendError naming the fix."""
    if not backend.is_gpu():
        raise backend.BackendError("NCCL works on GPU arrays: choose the CuPy backend (GPUNN_BACKEND=cupy) first")
    from cupy.cuda import nccl

    if not nccl.available:
        raise backend.BackendError(f"CuPy cannot load the NCCL library, which multi-GPU training needs; to fix it, "
                                   f"{NCCL_FIX}")
    return nccl


def unique_id():
    """NCCL's id for a new communicator (bytes): made on one rank, handed to the others."""
    return _nccl().get_unique_id()


class Communicator:
    """This process's place among ``size`` GPUs (``rank``), joined through ``uid``."""

    def __init__(self, size, uid, rank):
        self.nccl = _nccl()
        self.comm = self.nccl.NcclCommunicator(size, uid, rank)
        self.types = {np.dtype(np.float32): self.nccl.NCCL_FLOAT32, np.dtype(np.float64): self.nccl.NCCL_FLOAT64,
                      np.dtype(np.int32): self.nccl.NCCL_INT32, np.dtype(np.int64): self.nccl.NCCL_INT64}

    def allreduce(self, a):
        """a <- the sum of every rank's ``a``, in place."""
        self.comm.allReduce(a.data.ptr, a.data.ptr, a.size, self._type(a), self.nccl.NCCL_SUM, _stream())

    def broadcast(self, a, root=0):
        """a <- rank ``root``'s ``a``, in place."""
        self.comm.bcast(a.data.ptr, a.size, self._type(a), root, _stream())

    def _type(self, a):
        if not a.flags.c_contiguous:
            raise ValueError(f"NCCL reads contiguous memory; received an array of shape {a.shape} with strides "
                             f"{a.strides}")
        if a.dtype not in self.types:
            raise TypeError(f"gpunn's NCCL collectives take {', '.join(map(str, self.types))}; received {a.dtype}")
        return self.types[a.dtype]


def _stream():
    """The current CUDA stream's handle: NCCL's work goes in line with the kernels."""
    return backend._cupy.cuda.get_current_stream().ptr
