"""Data-parallel training over several processes: CPUs through MPI, GPUs through NCCL.

Every process (a *rank*, 0 to N-1) holds the whole model and trains on its own share of each
batch; the gradients are averaged over the ranks before every update, so every rank makes the
same update and the weights stay identical::

    mpirun -n 4 python train.py          # 4 processes: one per CPU slot, or one per GPU

    import gpunn.distributed as dist
    dist.init()                                        # MPI (+ NCCL on the CuPy backend)
    model.compile(optimizer=dist.DistributedOptimizer("adam"), loss=..., metrics=[...])
    model.fit(x, y, batch_size=128, epochs=10)         # the same call as on one process

What ``fit`` then does (Horovod's and Keras's choices):

- ``batch_size`` is the *global* batch: every rank draws the same shuffled batches (one seed,
  agreed by ``init``) and trains on its share, M/N samples of a batch of M; the gradients are
  averaged weighted by the shares, so one step is the step of one process on the whole batch,
  up to the order in which floating-point sums are taken;
- one all-reduce per step, of every gradient at once (a flat buffer);
- rank 0's weights and optimizer state are given to every rank when ``fit`` starts;
- the logs (progress bar, History, callbacks) are the losses and metrics of every rank's
  samples together, printed by rank 0 only; ``model.save`` and ``ModelCheckpoint`` write from
  rank 0 only, and such a file resumes on any number of ranks (or on one process);
- ``BatchNormalization`` normalizes each rank's share with its own statistics (Keras's and
  Horovod's default; the moving averages are averaged over the ranks at the end of each epoch),
  or with the statistics of the whole batch: ``BatchNormalization(synchronized=True)``;
- dropout masks are drawn by each rank for its own samples;
- a rank that raises stops every rank (``MPI_Abort``), instead of leaving them waiting.

Without mpi4py installed, everything else in gpunn works; :func:`init` says how to install it.
"""

from gpunn.distributed import group as _group
from gpunn.distributed.group import ProcessGroup, init
from gpunn.distributed.optimizer import DistributedOptimizer


def rank():
    """This process's number, 0 to size() - 1."""
    return _group.require("gpunn.distributed.rank()").rank


def size():
    """How many processes train together."""
    return _group.require("gpunn.distributed.size()").size


def local_rank():
    """This process's number among the processes of its machine (the GPU it uses)."""
    return _group.require("gpunn.distributed.local_rank()").local_rank


def is_initialized():
    return _group.current() is not None


def is_main_process():
    """True on rank 0, and in a program that never called init(): where files are written and lines printed."""
    group = _group.current()
    return group is None or group.rank == 0


def barrier():
    """Wait until every rank gets here (e.g. before the other ranks read a file rank 0 has just saved)."""
    _group.require("gpunn.distributed.barrier()").barrier()


def load_model(path):
    """:func:`gpunn.load_model`, with the saved optimizer wrapped in a :func:`DistributedOptimizer` (Horovod's
    ``hvd.load_model``): a checkpoint written at any number of ranks goes on at this one."""
    from gpunn.saving import load_model as load

    model = load(path)
    if model.optimizer is not None:
        model.optimizer = DistributedOptimizer(model.optimizer)
    return model


__all__ = ["DistributedOptimizer", "ProcessGroup", "barrier", "init", "is_initialized", "is_main_process",
           "load_model", "local_rank", "rank", "size"]
