"""Data-parallel training (gpunn.distributed): samples per second at 1, 2, ... ranks, and the all-reduce's time.

    GPUNN_BACKEND=numpy GPUNN_DATA_DIR=../shared/datasets PYTHONPATH=. python benchmarks/bench_distributed.py
    GPUNN_BACKEND=numpy PYTHONPATH=. python benchmarks/bench_distributed.py --ranks 1,2 --batch-sizes 128,512

For every number of ranks N it starts ``mpirun -n N`` (through ``python -m gpunn.distributed``, which adds
what root and containers need) on this script with ``--worker``. Each worker trains LeNet-5 (61,706
parameters) with ``DistributedOptimizer("adam")`` on the first ``--samples`` MNIST training images, one
epoch in global batches of B (B/N samples per rank), and reports:

- samples/s: the global samples of the timed epoch over its wall time (rank 0's clock);
- all-reduce ms/step: the time spent in the gradients' all-reduce during that epoch, per step. A blocking
  all-reduce also waits for the slowest rank, so this is communication *plus* imbalance;
- isolated all-reduce: the median time of one all-reduce of the 61,706 float32 gradients alone (246 KB).

Before timing, each worker checks the result: after a warm-up epoch every rank holds the same weights,
bit for bit, and the loss has fallen. Threads: each rank's BLAS takes ``OMP_NUM_THREADS`` (the launcher
shares the cores out) unless ``OPENBLAS_NUM_THREADS`` is set.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import gpunn
import gpunn.backend as backend
from benchmarks.common import header, table
from gpunn.utils.timing import elapsed, time_fn

ROOT = Path(__file__).resolve().parent.parent


class AllReduceClock:
    """Wraps ``group.allreduce`` to add up the seconds spent in it (``elapsed`` waits for the GPU)."""

    def __init__(self, group):
        self.seconds, self.calls, self.allreduce = 0.0, 0, group.allreduce
        group.allreduce = self

    def __call__(self, a):
        self.seconds += elapsed(lambda: self.allreduce(a))[1]
        self.calls += 1


def worker(args):
    import gpunn.distributed as dist
    from gpunn.examples.lenet import lenet5, load

    group = dist.init()
    gpunn.utils.set_seed(0)
    (x, y), _ = load("mnist", args.samples)
    x, y = backend.to_device(x), backend.to_device(y)
    model = lenet5()
    model.compile(dist.DistributedOptimizer("adam"), "sparse_categorical_crossentropy")
    before = model.evaluate(x, y, batch_size=1000)[0]
    model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0)  # warm-up, then the check
    after = model.evaluate(x, y, batch_size=1000)[0]
    sums = group.gather([float(backend.to_numpy(w).astype(np.float64).sum()) for w in model.get_weights()])
    assert all(s == sums[0] for s in sums), f"the ranks' weights differ after the warm-up epoch: {sums}"
    assert after < before, f"LeNet did not learn in the warm-up epoch: loss {before:.3f} -> {after:.3f}"

    clock = AllReduceClock(group)
    group.barrier()
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0)
    backend.synchronize()
    seconds = time.perf_counter() - t0
    group.allreduce = clock.allreduce
    grads = backend.xp.zeros(sum(int(np.prod(w.shape)) for w in model.get_weights()), dtype=np.float32)
    isolated = time_fn(lambda: group.allreduce(grads), warmup=3, repeat=50)
    if group.rank == 0:
        steps = math.ceil(len(x) / args.batch)
        print("RESULT " + json.dumps({"ranks": group.size, "samples": len(x), "batch": args.batch, "steps": steps,
                                      "seconds": seconds, "allreduce": clock.seconds / clock.calls,
                                      "allreduce_calls": clock.calls, "isolated": isolated,
                                      "floats": int(grads.size), "loss": after}))


def run(ranks, args):
    """The dictionary rank 0's worker printed, from ``mpirun -n ranks``."""
    from gpunn.distributed.launch import mpirun_command

    argv, env = mpirun_command(ranks, [str(Path(__file__).resolve()), "--worker", "--batch", str(args.batch),
                                       "--samples", str(args.samples)])
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"mpirun -n {ranks} failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return json.loads(lines[-1][len("RESULT "):])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", default="1,2", help="numbers of ranks to compare, e.g. 1,2,4")
    parser.add_argument("--batch-sizes", default="128", help="global batch sizes, e.g. 128,512")
    parser.add_argument("--samples", type=int, default=12800, help="MNIST training images per epoch")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    rows = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        base = None
        for ranks in (int(n) for n in args.ranks.split(",")):
            args.batch = batch
            r = run(ranks, args)
            step = r["seconds"] / r["steps"]
            rate = r["samples"] / r["seconds"]
            base = base or rate
            rows.append((ranks, batch, batch // ranks, r["steps"], f"{rate:.0f}", f"{rate / base:.2f}x",
                         f"{1e3 * step:.1f}", f"{1e3 * r['allreduce']:.2f}", f"{100 * r['allreduce'] / step:.1f}%",
                         f"{1e3 * r['isolated']:.3f}"))
    print(header())
    threads = os.environ.get("OPENBLAS_NUM_THREADS") or f"OMP_NUM_THREADS per rank = {os.cpu_count()} // ranks"
    print(f"LeNet-5, {r['floats']:,} float32 gradients; MNIST, {r['samples']:,} images an epoch; "
          f"BLAS threads per rank: {threads}")
    print(table(rows, ["ranks", "global batch", "per rank", "steps", "samples/s", "speed-up", "ms/step",
                       "all-reduce ms/step", "all-reduce share", "isolated all-reduce ms"]))


if __name__ == "__main__":
    sys.exit(main())
