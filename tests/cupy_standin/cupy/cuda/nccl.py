"""The stand-in's ``cupy.cuda.nccl``: NCCL's communicator, for the stand-in's device arrays.

Real NCCL joins the GPUs of the processes of a job and reads and writes their memory through raw
pointers. Here each process's "GPU memory" is the stand-in's buffers in its own host memory, so
the communicator finds the buffer behind each pointer and passes it between the processes
through MPI (mpi4py's COMM_WORLD, which ``gpunn.distributed.init`` has started). With one rank it
needs no MPI at all -- the communicator a single GPU can run.

Strict where NCCL is: the signatures are CuPy 14's (``allReduce(sendbuf, recvbuf, count, datatype,
op, stream)`` with integer pointers, ``get_unique_id()`` returning 128 bytes); a pointer must lie in
a live device buffer with ``count`` elements after it (a host array's pointer, a freed buffer or a
count too large are refused, as they crash a GPU); datatypes and ops are NCCL's codes; every rank must
make its communicator with the same id, the job's size and its own rank (NCCL would hang otherwise).

Not checked, because the stand-in runs each call to its end at once: the ordering of NCCL's work on
CUDA streams, and anything about speed or the links between GPUs.
"""

import os

import numpy as np

from cupy._core import counts, device_memory

available = True

NCCL_INT8 = NCCL_CHAR = 0
NCCL_UINT8 = 1
NCCL_INT32 = NCCL_INT = 2
NCCL_UINT32 = 3
NCCL_INT64 = 4
NCCL_UINT64 = 5
NCCL_FLOAT16 = NCCL_HALF = 6
NCCL_FLOAT32 = NCCL_FLOAT = 7
NCCL_FLOAT64 = NCCL_DOUBLE = 8
NCCL_SUM, NCCL_PROD, NCCL_MAX, NCCL_MIN, NCCL_AVG = 0, 1, 2, 3, 4

_DTYPES = {NCCL_INT8: np.int8, NCCL_UINT8: np.uint8, NCCL_INT32: np.int32, NCCL_UINT32: np.uint32,
           NCCL_INT64: np.int64, NCCL_UINT64: np.uint64, NCCL_FLOAT16: np.float16, NCCL_FLOAT32: np.float32,
           NCCL_FLOAT64: np.float64}


class NcclError(RuntimeError):
    pass


def get_unique_id():
    """A fresh id for a communicator: 128 bytes (CuPy 14 returns bytes)."""
    return os.urandom(128)


def _int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"an integer is required for {name} (CuPy passes pointers and codes as intptr_t/int); "
                        f"received {type(value).__name__}")
    return int(value)


class NcclCommunicator:
    """``NcclCommunicator(ndev, commId, rank)``: this process's GPU as rank ``rank`` of ``ndev``."""

    def __init__(self, ndev, commId, rank, config=None):
        ndev, rank = _int("ndev", ndev), _int("rank", rank)
        if not isinstance(commId, bytes) or len(commId) != 128:
            raise TypeError(f"commId must be the 128 bytes of get_unique_id(); received {type(commId).__name__}")
        if not 0 <= rank < ndev:
            raise NcclError(f"NCCL_ERROR_INVALID_ARGUMENT: rank {rank} of {ndev}")
        self._ndev, self._rank, self._mpi = ndev, rank, None
        if ndev > 1:
            from mpi4py import MPI

            world = MPI.COMM_WORLD
            if (world.Get_size(), world.Get_rank()) != (ndev, rank):
                raise NcclError(f"the stand-in's NCCL runs over MPI's world: ndev={ndev}, rank={rank}, but this is "
                                f"rank {world.Get_rank()} of {world.Get_size()}")
            if len(set(world.allgather(commId))) != 1:
                raise NcclError("the ranks made their communicators with different ids (real NCCL would hang)")
            self._mpi, self._world = MPI, world

    def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):
        send, recv = self._buffers("allReduce", sendbuf, recvbuf, count, datatype, stream)
        if _int("op", op) != NCCL_SUM:
            raise NotImplementedError("the stand-in's NCCL reduces with NCCL_SUM only (all gpunn uses)")
        if self._mpi is None:
            recv[...] = send
        else:
            self._world.Allreduce(self._mpi.IN_PLACE if sendbuf == recvbuf else send.copy(), recv)
        counts.ops += 1  # a launch on a GPU (NCCL runs a kernel of its own)

    def bcast(self, buff, count, datatype, root, stream):
        (data,) = self._buffers("bcast", buff, None, count, datatype, stream)
        root = _int("root", root)
        if not 0 <= root < self._ndev:
            raise NcclError(f"NCCL_ERROR_INVALID_ARGUMENT: root {root} of {self._ndev} ranks")
        if self._mpi is not None:
            self._world.Bcast(data, root=root)
        counts.ops += 1  # a launch on a GPU (NCCL runs a kernel of its own)

    def _buffers(self, what, first, second, count, datatype, stream):
        count, datatype = _int("count", count), _int("datatype", datatype)
        _int("stream", stream)
        if datatype not in _DTYPES:
            raise NcclError(f"NCCL_ERROR_INVALID_ARGUMENT: datatype {datatype}")
        dtype = np.dtype(_DTYPES[datatype])
        pointers = [first] if second is None else [first, second]
        return [device_memory(_int("buffer", p), count * dtype.itemsize, f"NcclCommunicator.{what}").view(dtype)
                for p in pointers]

    def rank_id(self):
        return self._rank

    def size(self):
        return self._ndev

    def destroy(self):
        pass

    def abort(self):
        pass
