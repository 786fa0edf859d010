"""gpunn.distributed: data-parallel training, checked against one process training on the same batches.

The tests that need two processes start ``mpirun -n 2`` (through ``python -m gpunn.distributed``)
on tests/mpi_program.py, once for all its scenarios, and compare what rank 0 wrote with the same
program run here on one process. They are skipped, saying why, where mpirun or mpi4py is missing.
On ``--cupy-standin`` the ranks run on the stand-in, whose NCCL passes the buffers between the
processes through MPI: gpunn's NCCL code runs at two ranks there, as it would on two GPUs.

The rest runs in this process, without MPI: a process group of one rank, made from a one-rank
communicator object (the seam the stand-in's NCCL also plugs into).
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import gpunn
import gpunn.backend as backend
import gpunn.distributed as dist
from gpunn.distributed import group as group_module
from gpunn.distributed.data_parallel import Shards
from gpunn.distributed.launch import mpirun_command
from tests import conftest, mpi_program, test_cupy_standin
from tests.conftest import host
from tests.test_course_programs import SHARED, needs_mnist
from tests.test_cupy_standin import LAUNCH_BUDGET, lenet_step

MPI_MISSING = [what for what, missing in (("mpirun (apt-get install openmpi-bin libopenmpi-dev)", not shutil.which(
    "mpirun")), ("mpi4py (pip install 'gpunn[mpi]')", importlib.util.find_spec("mpi4py") is None)) if missing]
needs_mpi = pytest.mark.skipif(bool(MPI_MISSING), reason=f"needs {' and '.join(MPI_MISSING)} to start 2 ranks")
cupy = test_cupy_standin.cupy  # the stand-in's fixture, for the tests of the NCCL code
F32 = dict(rtol=1e-5, atol=1e-6)  # two ranks add their shares' gradients in another order than one process


def mpirun(args, timeout=240):
    if backend.is_gpu() and conftest.standin() is None and backend.device_count() < 2:
        pytest.skip("two ranks on NCCL need two GPUs (one process per GPU); this machine shows "
                    f"{backend.device_count()}")
    argv, env = mpirun_command(2, args)
    env["PYTHONPATH"] = os.pathsep.join([str(conftest.ROOT), env.get("PYTHONPATH", "")])
    if "GPUNN_DATA_DIR" not in env and SHARED.is_dir():
        env["GPUNN_DATA_DIR"] = str(SHARED)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, cwd=conftest.ROOT)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Every scenario of tests/mpi_program.py at two ranks (one launch): the folder rank 0 wrote to."""
    out = tmp_path_factory.mktemp("two_ranks")
    done = mpirun(["tests/mpi_program.py", str(out)])
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def ranks_and_epochs(out, scenario):
    """{(rank, epoch): [weights]} as the two ranks held them after each epoch."""
    saved = np.load(out / f"{scenario}.npz")
    found = {}
    for key in saved.files:
        match = re.fullmatch(r"epoch(\d+)/rank(\d+)/(\d+)", key)
        if match:
            epoch, rank, i = map(int, match.groups())
            found.setdefault((rank, epoch), {})[i] = saved[key]
    return {k: [v[i] for i in sorted(v)] for k, v in found.items()}, saved


def assert_weights_close(a, b, **tolerance):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, **(tolerance or F32))


@needs_mpi
@pytest.mark.parametrize("scenario", ["dense", "generator", "sync_bn"])
def test_two_ranks_take_the_steps_of_one_process_on_the_whole_batches(two_ranks, scenario):
    """Uneven shares (batches of 10 and 5 shared 5/5 and 3/2), sample weights, Adam; batches from a generator;
    batch normalization synchronized over the ranks against plain batch normalization on one process."""
    weights, saved = ranks_and_epochs(two_ranks, scenario)
    assert str(saved["backend"]) == backend.name
    _, history, reference = mpi_program.train(scenario, distributed=False)
    for epoch in range(mpi_program.EPOCHS):
        assert_weights_close(weights[0, epoch], reference[epoch])
    for key, values in history.history.items():  # every rank's samples together, the validation's too
        np.testing.assert_allclose(saved[f"history/{key}"], values, rtol=1e-5)
    assert saved["iterations"].tolist() == [10 if scenario != "generator" else 8] * 2


@needs_mpi
@pytest.mark.parametrize("scenario", ["dense", "sync_bn", "per_rank_bn", "stop"])
def test_every_rank_holds_the_same_weights_after_every_epoch(two_ranks, scenario):
    """Per-rank batch normalization and dropout included: the moving averages are averaged at each epoch's end."""
    weights, _ = ranks_and_epochs(two_ranks, scenario)
    epochs = {epoch for _, epoch in weights}
    assert epochs == ({0} if scenario == "stop" else set(range(mpi_program.EPOCHS)))
    for epoch in epochs:
        for a, b in zip(weights[0, epoch], weights[1, epoch]):
            np.testing.assert_array_equal(a, b)


@needs_mpi
def test_a_rank_that_asks_to_stop_stops_every_rank_at_the_same_step(two_ranks):
    _, saved = ranks_and_epochs(two_ranks, "stop")
    assert saved["iterations"].tolist() == [3, 3]  # rank 1 alone asked, after its third step


@needs_mpi
def test_only_rank_0_writes_and_its_checkpoint_resumes_on_one_process(two_ranks):
    assert (two_ranks / "saved-by-rank0.npz").is_file() and not (two_ranks / "saved-by-rank1.npz").exists()
    weights, _ = ranks_and_epochs(two_ranks, "dense")
    model = gpunn.load_model(two_ranks / "ckpt-1.npz")  # written by rank 0 after epoch 1 of 2
    assert model.epoch == 1 and model.optimizer.iterations == 5 and type(model.optimizer) is gpunn.optimizers.Adam
    assert_weights_close(model.get_weights(), weights[0, 0], rtol=0, atol=0)
    x, y, w = mpi_program.data(45)
    model.fit(x, y, batch_size=10, epochs=2, initial_epoch=model.epoch, sample_weight=w, verbose=0)
    assert_weights_close(model.get_weights(), weights[0, 1])  # as the two ranks went on


@needs_mpi
def test_a_rank_that_raises_stops_every_rank_with_its_error(tmp_path):
    done = mpirun(["tests/mpi_program.py", str(tmp_path), "raise"], timeout=120)  # 50 epochs unless stopped
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "ZeroDivisionError: rank 1 fails on purpose" in out and "rank 1 of 2 raised ZeroDivisionError" in out


@needs_mpi
@needs_mnist
def test_the_lenet_example_at_two_ranks_matches_one_process(capsys, monkeypatch):
    from gpunn.examples import lenet

    if not os.environ.get("GPUNN_DATA_DIR"):
        monkeypatch.setenv("GPUNN_DATA_DIR", str(SHARED))
    args = ["--epochs", "1", "--limit", "1000", "--batch-size", "100"]
    one = lenet.main(args)
    capsys.readouterr()
    done = mpirun(["-m", "gpunn.examples.lenet", "--distributed", *args])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("test accuracy") == 1 and done.stdout.count("Epoch 1/1 - ") == 1  # rank 0 prints
    accuracy = float(re.search(r"test accuracy: ([\d.]+)", done.stdout).group(1))
    assert accuracy == pytest.approx(one, abs=2e-3), done.stdout  # 1000 test images: 2 images at most


# --- one process: a group of one rank ---------------------------------------------------------------------


class OneRank:
    """An MPI communicator of one rank (the part of mpi4py's interface the process group uses)."""

    def Get_rank(self):  # noqa: N802 -- mpi4py's names
        return 0

    def Get_size(self):  # noqa: N802
        return 1

    def Allreduce(self, inplace, buffer):  # noqa: N802
        pass

    def Bcast(self, buffer, root=0):  # noqa: N802
        pass

    def allgather(self, value):
        return [value]

    def bcast(self, value, root=0):
        return value

    def Barrier(self):  # noqa: N802
        pass


@pytest.fixture
def one_rank(monkeypatch):
    """gpunn.distributed started with a group of one rank; on the CuPy path with a one-rank NCCL communicator."""
    device_comm = None
    if backend.is_gpu():
        from gpunn.backend import nccl

        device_comm = nccl.Communicator(1, nccl.unique_id(), 0)
    group = group_module.ProcessGroup(OneRank(), type("MPI", (), {"IN_PLACE": None}), 0, device_comm)
    monkeypatch.setattr(group_module, "_group", group)
    return group


@pytest.mark.parametrize("scenario", ["dense", "sync_bn"])
def test_one_rank_trains_bit_for_bit_as_one_process(one_rank, scenario):
    _, history, reference = mpi_program.train(scenario, distributed=False)
    model, distributed_history, weights = mpi_program.train(scenario, distributed=True)
    assert model.optimizer.data_parallel.group is one_rank
    for epoch in reference:
        assert_weights_close(weights[epoch], reference[epoch], rtol=0, atol=0)
    assert distributed_history.history == history.history


def test_shares_cover_every_row_once_and_small_batches_are_refused(one_rank):
    class Batches:  # an adapter of arrays: 23 samples in batches of 10, 10, 3
        unit, steps, size, n, ran_out = "sample", 3, 23, 23, False
        slices = [slice(0, 10), slice(10, 20), slice(20, 23)]

    parallel = dist.DistributedOptimizer("sgd").data_parallel
    for ranks in (1, 2, 3, 4):
        cuts = []
        for rank in range(ranks):
            parallel.group.rank, parallel.group.size = rank, ranks
            if ranks == 4:
                with pytest.raises(ValueError, match="needs at least 4 samples; the last batch of 23 samples in "
                                                     "batches of 10 holds 3"):
                    Shards(Batches(), parallel, training=True)
                continue
            shards = Shards(Batches(), parallel, training=True)
            cuts.append([shards.bounds(m) for m in (10, 10, 3)])
        if ranks < 4:
            for batch, m in enumerate((10, 10, 3)):
                rows = [r for cut in cuts for r in range(*cut[batch])]
                assert rows == list(range(m))  # every row once, in order: the ranks' shares differ by one at most
                assert max(len(range(*cut[batch])) for cut in cuts) - min(len(range(*cut[batch])) for cut in cuts) <= 1


def test_ranks_that_disagree_are_told_what_differs(one_rank, monkeypatch):
    from gpunn.distributed.data_parallel import check_alike, describe

    model = mpi_program.build("dense")
    model.compile(dist.DistributedOptimizer("adam"), "sparse_categorical_crossentropy")
    mine = describe(model)
    other = {**mine, "weights": mine["weights"][:-1] + [mine["weights"][-1].replace("(3,)", "(4,)")]}
    monkeypatch.setattr(one_rank, "gather", lambda value: [value, other])
    with pytest.raises(ValueError, match=r"rank 1's weights differs from rank 0's: expected '.*bias \(3,\) float32' "
                                         r"\(rank 0\), received '.*bias \(4,\) float32' \(rank 1\)"):
        check_alike(one_rank, mine)
    monkeypatch.setattr(one_rank, "gather", lambda value: [value, {**mine, "seed": 7}])
    with pytest.raises(ValueError, match=r"seed .* gpunn.utils.set_seed\(s\) with the same s"):
        check_alike(one_rank, mine)


def test_a_data_parallel_step_adds_one_all_reduce_and_never_syncs(cupy, one_rank):
    plain_step = lenet_step(cupy, batch=8)  # the launches do not depend on the batch
    with cupy._standin.counting() as plain:
        plain_step()
    distributed = lenet_step(cupy, batch=8, optimizer=dist.DistributedOptimizer("adam"))
    with cupy._standin.counting() as counted:
        distributed()
    assert counted.syncs == 0 and counted.uploads == 0, counted
    # the gradients are one buffer already (gpunn.utils.flat): scaled by this rank's share, then one all-reduce
    assert counted.launches == plain.launches + 2 <= LAUNCH_BUDGET + 2, (counted, plain)


# --- without MPI --------------------------------------------------------------------------------------------


def test_without_mpi4py_gpunn_works_and_init_names_the_fix():
    program = ("import sys; sys.modules['mpi4py'] = None\n"  # as if mpi4py were not installed
               "import gpunn, gpunn.distributed as dist\n"
               "m = gpunn.Sequential([gpunn.layers.Dense(2, input_shape=(3,))]); m.compile('sgd', 'mse')\n"
               "try:\n    dist.init()\nexcept ImportError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "GPUNN_BACKEND": "numpy"})
    assert done.returncode == 0, done.stderr
    assert "gpunn.distributed needs MPI and mpi4py" in done.stdout and "pip install 'gpunn[mpi]'" in done.stdout


def test_asking_for_the_rank_before_init_says_to_call_init():
    assert not dist.is_initialized() and dist.is_main_process()
    for call in (dist.rank, dist.size, dist.barrier, lambda: dist.DistributedOptimizer("adam")):
        with pytest.raises(RuntimeError, match=r"call gpunn.distributed.init\(\) first"):
            call()


def test_the_launcher_adds_what_root_and_containers_need(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/mpirun")
    argv, env = mpirun_command(2, ["-m", "gpunn.examples.lenet", "--distributed"])
    assert argv == ["/usr/bin/mpirun", "-n", "2", "--oversubscribe", "--bind-to", "none", sys.executable, "-m",
                    "gpunn.examples.lenet", "--distributed"]
    assert env["OMPI_ALLOW_RUN_AS_ROOT"] == env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] == "1"
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="apt-get install openmpi-bin"):
        mpirun_command(2, ["x.py"])


def test_the_stand_in_nccl_refuses_pointers_outside_device_memory(cupy):
    from gpunn.backend import nccl

    comm = nccl.Communicator(1, nccl.unique_id(), 0)
    a = cupy.arange(6, dtype=np.float32)
    comm.allreduce(a[2:])  # a view: its pointer is inside a's buffer
    np.testing.assert_array_equal(host(a), np.arange(6))
    host_array = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="in no live device buffer"):
        comm.comm.allReduce(host_array.ctypes.data, host_array.ctypes.data, 4, comm.nccl.NCCL_FLOAT32,
                            comm.nccl.NCCL_SUM, 0)
    with pytest.raises(ValueError, match="past the end"):
        comm.comm.allReduce(a.data.ptr, a.data.ptr, 7, comm.nccl.NCCL_FLOAT32, comm.nccl.NCCL_SUM, 0)
    with pytest.raises(ValueError, match="contiguous"):
        comm.allreduce(cupy.ones((3, 4), dtype=np.float32)[:, :2])
