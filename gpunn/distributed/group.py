"""The process group: this process's rank among the ``size`` processes of a job, and the collectives between them.

``init()`` joins the job that ``mpirun -n N`` started, through MPI (mpi4py): one process per CPU
slot on the NumPy backend, one per GPU on the CuPy backend, where it also sets up NCCL -- rank 0
asks NCCL for a unique id and MPI hands it to the others, as ChainerMN does. Then:

- ``allreduce(a)``: a <- a_0 + a_1 + ... + a_{N-1} (the a of every rank), in place, on every rank;
- ``broadcast(a, root=0)``: a <- a_root, in place, on every rank;

on NumPy arrays through MPI, on CuPy arrays through NCCL (:mod:`gpunn.backend.nccl`). Small Python
values (seeds, flags, the sums behind the logs) travel through MPI alone.

A collective waits for every rank. A rank that raises would leave the others waiting forever, so
``init`` makes an uncaught exception print its traceback and then call ``MPI_Abort``, which stops
every rank of the job (``python -m mpi4py`` and Horovod do the same).
"""

import sys

import numpy as np

import gpunn.backend as backend

MPI_FIX = ("install OpenMPI and mpi4py: apt-get install openmpi-bin libopenmpi-dev (Debian/Ubuntu), then "
           "pip install 'gpunn[mpi]'")

_group = None  # the ProcessGroup once init() has run


class ProcessGroup:
    """The ranks of one job and their collectives (what :func:`init` returns).

    Args:
        comm: an MPI communicator (mpi4py's ``MPI.COMM_WORLD``).
        mpi: the ``mpi4py.MPI`` module.
        local_rank: this process's rank among the processes of its machine (which GPU it takes).
        device_comm: for CuPy arrays, a :class:`gpunn.backend.nccl.Communicator`; None on NumPy.
    """

    def __init__(self, comm, mpi, local_rank, device_comm=None):
        self.comm, self.mpi, self.local_rank, self.device_comm = comm, mpi, local_rank, device_comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()

    def allreduce(self, a):
        """a <- the sum of every rank's ``a``, in place (a contiguous array of the same shape on every rank)."""
        if self._on_device(a):
            self.device_comm.allreduce(a)
        else:
            self.comm.Allreduce(self.mpi.IN_PLACE, _contiguous(a))

    def broadcast(self, a, root=0):
        """a <- rank ``root``'s ``a``, in place, on every rank."""
        if self._on_device(a):
            self.device_comm.broadcast(a, root)
        else:
            self.comm.Bcast(_contiguous(a), root=root)

    def _on_device(self, a):
        if backend.get_array_module(a) is np:
            return False
        if self.device_comm is None:
            raise RuntimeError("gpunn.distributed: a GPU array reached a collective, but init() ran on the NumPy "
                               "backend; choose the backend (GPUNN_BACKEND=cupy) before calling init()")
        return True

    def gather(self, value):
        """[every rank's ``value``] (small Python values), on every rank."""
        return self.comm.allgather(value)

    def any(self, flag):
        """True on every rank when ``flag`` is true on at least one."""
        return any(self.comm.allgather(bool(flag)))

    def sum(self, values):
        """Element-wise sum over the ranks of a small float64 NumPy vector (sums behind the logs)."""
        values = np.ascontiguousarray(values, dtype=np.float64)
        self.comm.Allreduce(self.mpi.IN_PLACE, values)
        return values

    def barrier(self):
        self.comm.Barrier()

    def __repr__(self):
        where = "NCCL + MPI" if self.device_comm is not None else "MPI"
        return f"<ProcessGroup rank {self.rank} of {self.size} ({where})>"


def _contiguous(a):
    if not a.flags.c_contiguous:
        raise ValueError(f"gpunn.distributed: collectives work on contiguous arrays; received one of shape "
                         f"{a.shape} with strides {a.strides}")
    return a


def import_mpi():
    """The ``mpi4py.MPI`` module (which starts MPI), or an ImportError naming the fix."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(f"gpunn.distributed needs MPI and mpi4py ({e}); to fix it, {MPI_FIX}") from None
    return MPI


def init():
    """Join the job started by ``mpirun``: MPI, plus NCCL on the CuPy backend. Returns the :class:`ProcessGroup`.

    Call it first, before building models (on a GPU it picks this process's device). Calling it
    again returns the same group. Run alone (``python script.py``), it makes a group of one.
    """
    global _group
    if _group is not None:
        return _group
    seed = backend.current_seed()  # before choosing a GPU, which starts the generators afresh
    mpi = import_mpi()
    comm = mpi.COMM_WORLD
    node = comm.Split_type(mpi.COMM_TYPE_SHARED)  # the processes of this machine
    local_rank = node.Get_rank()
    node.Free()
    _abort_on_uncaught_exception(comm)
    device_comm = None
    if backend.is_gpu():
        device_comm = _start_nccl(comm, local_rank)
    _group = ProcessGroup(comm, mpi, local_rank, device_comm)
    _agree_on_seed(_group, seed)
    return _group


def current():
    """The process group, or None before :func:`init` (a single process)."""
    return _group


def require(what):
    """The process group, or a RuntimeError saying that ``what`` needs :func:`init` first."""
    if _group is None:
        raise RuntimeError(f"{what} needs the process group: call gpunn.distributed.init() first (and start the "
                           f"program with mpirun -n N)")
    return _group


def _start_nccl(comm, local_rank):
    """This process's GPU (its local rank, where a machine shows it several) and its NCCL communicator."""
    from gpunn.backend import nccl

    count = backend.device_count()
    if count > 1:  # one process per GPU; a machine whose launcher shows each process one GPU needs no choice
        if local_rank >= count:
            raise RuntimeError(f"gpunn.distributed: {local_rank + 1} or more processes on this machine, but it has "
                               f"{count} GPUs; start at most {count} processes per machine (one per GPU)")
        backend.set_backend("cupy", device=local_rank)
    uid = comm.bcast(nccl.unique_id() if comm.Get_rank() == 0 else None, root=0)
    return nccl.Communicator(comm.Get_size(), uid, comm.Get_rank())


def _agree_on_seed(group, seed):
    """Every rank takes rank 0's seed (drawn now if it has none): they must draw the same shuffles."""
    if group.rank == 0 and seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    seed = group.comm.bcast(seed, root=0)
    if backend.current_seed() != seed:
        backend.seed(seed)


def _abort_on_uncaught_exception(comm):
    """An uncaught exception prints its traceback as usual, then stops every rank (MPI_Abort), not only this one."""
    previous = sys.excepthook

    def excepthook(kind, value, traceback):
        previous(kind, value, traceback)
        print(f"gpunn.distributed: rank {comm.Get_rank()} of {comm.Get_size()} raised {kind.__name__}; stopping "
              f"every rank (MPI_Abort)", file=sys.stderr, flush=True)
        sys.stdout.flush()
        comm.Abort(1)

    sys.excepthook = excepthook

