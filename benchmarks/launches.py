"""Launches per LeNet-5 training step on gpunn's GPU path, counted on the CuPy stand-in (tests/cupy_standin):

    PYTHONPATH=. python -m benchmarks.launches --batch-sizes 64,128,512

No GPU is needed: the stand-in runs the step on NumPy and the kernels on the host runner (a C++ compiler),
and counts what a GPU would be given -- CuPy operations, gpunn's kernels, graph replays. For each batch size:
one eager ``train_step``, and with ``jit_compile=True`` an epoch of 4 full batches after the capture (a
whole epoch's launches divided by its batches: the replays and the epoch's few setup launches).
``bench_lenet.py`` prints these beside its times.
"""

import argparse
import sys
from pathlib import Path

STANDIN = Path(__file__).resolve().parent.parent / "tests" / "cupy_standin"


def count(batch_size):
    """(launches of one eager step, launches per full batch with jit_compile) at ``batch_size``."""
    import numpy as np

    import gpunn
    import gpunn.backend as backend
    from gpunn.examples.lenet import lenet5

    cupy = backend._cupy
    rng = np.random.default_rng(0)
    x = backend.to_device(rng.random((4 * batch_size, 1, 28, 28), dtype=np.float32))
    y = backend.to_device(rng.integers(0, 10, 4 * batch_size))
    launches = []
    for jit in (False, True):
        gpunn.utils.set_seed(0)
        model = lenet5()
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=jit)
        if jit:
            model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)  # the capture
            with cupy._standin.counting() as counted:
                model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
            launches.append(counted.launches / 4)
        else:
            model.train_step(x[:batch_size], y[:batch_size])  # builds the slots, loads the kernels
            with cupy._standin.counting() as counted:
                model.train_step(x[:batch_size], y[:batch_size])
            launches.append(counted.launches)
    return tuple(launches)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", default="64,128,512")
    args = parser.parse_args()
    sys.path.insert(0, str(STANDIN))  # `import cupy` is the stand-in from here on
    import gpunn.backend as backend

    backend.set_backend("cupy")
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        eager, jit = count(batch_size)
        print(f"batch {batch_size}: {eager} launches eager, {jit:g} per batch with jit_compile")


if __name__ == "__main__":
    main()
