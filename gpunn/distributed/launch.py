"""``python -m gpunn.distributed -n N <python arguments>``: mpirun, with what containers and root need.

    python -m gpunn.distributed -n 2 -m gpunn.examples.lenet --distributed --epochs 1

runs ``mpirun -n 2 --oversubscribe --bind-to none python -m gpunn.examples.lenet ...`` (with this
Python) and sets, unless they are set already:

- ``OMPI_ALLOW_RUN_AS_ROOT=1``, ``OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1``: OpenMPI refuses to run as root
  otherwise, and root is who runs in Docker and on Colab;
- ``OMPI_MCA_btl_vader_single_copy_mechanism=none``: OpenMPI's shared-memory transport first tries to
  read the other process's memory directly, which containers forbid;
- ``OMP_NUM_THREADS`` = the CPU cores shared out between the ranks, so that N ranks of NumPy do not
  start N x cores threads.

``--oversubscribe`` lets N exceed the cores (slower, but it runs); ``--bind-to none`` leaves the
ranks to the operating system's scheduler, as on a machine shared with other work.
"""

import os
import shutil
import sys

MPIRUN_FIX = "install OpenMPI: apt-get install openmpi-bin libopenmpi-dev (Debian/Ubuntu), then pip install 'gpunn[mpi]'"


def mpirun_command(ranks, python_args):
    """(argv, environment) that start ``ranks`` processes of ``python <python_args>``."""
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        raise FileNotFoundError(f"mpirun was not found; to fix it, {MPIRUN_FIX}")
    argv = [mpirun, "-n", str(ranks), "--oversubscribe", "--bind-to", "none", sys.executable, *python_args]
    defaults = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                "OMPI_MCA_btl_vader_single_copy_mechanism": "none",
                "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // ranks))}
    return argv, {**defaults, **os.environ}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 3 or argv[0] != "-n" or not argv[1].isdigit() or int(argv[1]) < 1:
        raise SystemExit(f"usage: python -m gpunn.distributed -n N <python arguments>, e.g. "
                         f"python -m gpunn.distributed -n 2 -m gpunn.examples.lenet --distributed; received: "
                         f"{' '.join(argv) or 'nothing'}")
    command, environment = mpirun_command(int(argv[1]), argv[2:])
    os.execvpe(command[0], command, environment)
