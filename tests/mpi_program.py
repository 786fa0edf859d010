"""The programs tests/test_distributed.py runs under ``mpirun -n 2`` -- and, for the reference, in one process.

    python -m gpunn.distributed -n 2 tests/mpi_program.py OUT_DIR            # every scenario, one launch
    python -m gpunn.distributed -n 2 tests/mpi_program.py OUT_DIR raise      # rank 1 raises at its third step

Each scenario trains a small model on fixed data with a DistributedOptimizer and writes, from
rank 0, ``OUT_DIR/<scenario>.npz``: every rank's weights after every epoch (``epoch<e>/rank<r>/<i>``),
the History and the optimizer's step count on each rank. :func:`train` with ``distributed=False``
is the single-process run the tests compare with.
"""

import sys
from pathlib import Path

import numpy as np

import gpunn
import gpunn.backend as backend
from gpunn.callbacks import Callback, ModelCheckpoint
from gpunn.layers import Activation, BatchNormalization, Dense, Dropout

EPOCHS = 2


def data(n, seed=1):
    """n samples of 6 features, 3 classes, and a sample weight each."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 0.5)
    return x, y, rng.uniform(0.5, 2.0, n).astype(np.float32)


def build(scenario):
    gpunn.utils.set_seed(0)
    if scenario in ("sync_bn", "per_rank_bn"):
        middle = [BatchNormalization(synchronized=scenario == "sync_bn"), Activation("relu")]
        middle += [Dropout(0.3)] if scenario == "per_rank_bn" else []
        model = gpunn.Sequential([Dense(8, input_shape=(6,)), *middle, Dense(3, activation="softmax")])
    else:
        model = gpunn.Sequential([Dense(16, activation="tanh", input_shape=(6,)), Dense(3, activation="softmax")])
    return model


def train(scenario, distributed, out_dir=None):
    """Train ``scenario``; returns (model, history, {epoch: weights})."""
    model = build(scenario)
    optimizer = gpunn.optimizers.Adam(0.01) if scenario != "sync_bn" else gpunn.optimizers.SGD(0.1, momentum=0.9)
    if distributed:
        import gpunn.distributed as dist

        optimizer = dist.DistributedOptimizer(optimizer)
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    snapshots = Snapshots()
    callbacks = [snapshots]
    if scenario == "dense" and out_dir is not None:
        callbacks.append(ModelCheckpoint(str(Path(out_dir) / "ckpt-{epoch}.npz")))
    if scenario == "stop":
        callbacks.append(StopOnOneRank())
    x, y, w = data(45)
    if scenario == "generator":
        history = model.fit(batches(x, y, 10), steps_per_epoch=4, epochs=EPOCHS, verbose=0, callbacks=callbacks)
    else:  # batches of 10: the last holds 5, shared 3 + 2 at 2 ranks
        history = model.fit(x, y, batch_size=10, epochs=EPOCHS, verbose=0, sample_weight=w, callbacks=callbacks,
                            validation_data=data(11, seed=2)[:2])  # the last validation batch holds 1 sample
    return model, history, snapshots.weights


def batches(x, y, size):
    """A generator of batches, looping over the data in order (every rank reads the same)."""
    while True:
        for start in range(0, len(x), size):
            yield x[start:start + size], y[start:start + size]


class Snapshots(Callback):
    """The weights after every epoch."""

    def on_train_begin(self, logs=None):
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch] = self.model.get_weights()


class StopOnOneRank(Callback):
    """Rank 1 alone asks to stop after its third step of the first epoch."""

    def on_batch_end(self, batch, logs=None):
        import gpunn.distributed as dist

        if dist.rank() == 1 and batch == 2:
            self.model.stop_training = True


class RaiseOnOneRank(Callback):
    def on_batch_end(self, batch, logs=None):
        import gpunn.distributed as dist

        if dist.rank() == 1 and batch == 2:
            raise ZeroDivisionError("rank 1 fails on purpose")


def main(out_dir, scenarios):
    import gpunn.distributed as dist

    dist.init()
    out_dir = Path(out_dir)
    if scenarios == ["raise"]:
        model = build("dense")
        model.compile(dist.DistributedOptimizer("adam"), "sparse_categorical_crossentropy")
        x, y, _ = data(45)
        model.fit(x, y, batch_size=10, epochs=50, verbose=0, callbacks=[RaiseOnOneRank()])
        return
    for scenario in scenarios:
        model, history, weights = train(scenario, distributed=True, out_dir=out_dir)
        model.save(out_dir / f"saved-by-rank{dist.rank()}.npz")  # only rank 0 writes
        everyone = dist.init().gather((weights, model.optimizer.iterations))
        if dist.rank() == 0:
            arrays = {f"epoch{e}/rank{r}/{i}": w for r, (ws, _) in enumerate(everyone) for e, epoch in ws.items()
                      for i, w in enumerate(epoch)}
            arrays.update({f"history/{k}": np.array(v) for k, v in history.history.items()})
            arrays["iterations"] = np.array([it for _, it in everyone])
            np.savez(out_dir / f"{scenario}.npz", backend=np.array(backend.name), **arrays)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or ["dense", "sync_bn", "per_rank_bn", "stop", "generator"])
