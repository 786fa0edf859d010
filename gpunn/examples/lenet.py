"""Train LeNet-5 on MNIST (or Fashion-MNIST) with the current backend.

    python -m gpunn.examples.lenet                       # MNIST, 10 epochs, Adam 1e-3, batch 128
    python -m gpunn.examples.lenet --dataset fashion_mnist --plot history.png
    GPUNN_BACKEND=numpy python -m gpunn.examples.lenet --epochs 1
    mpirun -n 2 python -m gpunn.examples.lenet --distributed --epochs 1   # data-parallel on 2 processes

The model is the course's Keras program, layer for layer. With ``--distributed`` every process
(one per CPU slot, or per GPU) trains on its share of each batch of ``--batch-size`` and the
gradients are averaged (see :mod:`gpunn.distributed`): the same steps as one process, and rank 0
prints.
"""

import argparse
import time

import numpy as np

import gpunn
import gpunn.distributed as dist
from gpunn import backend
from gpunn.callbacks import Callback
from gpunn.examples.common import load_dataset, require_matplotlib, save_figure
from gpunn.layers import Conv2D, Dense, Flatten, MaxPool2D
from gpunn.plotting import plot_history


def lenet5():
    """LeNet-5: 61,706 parameters."""
    model = gpunn.Sequential(name="lenet5")
    model.add(Conv2D(6, kernel_size=5, padding="same", activation="relu", input_shape=(1, 28, 28)))
    model.add(MaxPool2D(pool_size=2))
    model.add(Conv2D(16, kernel_size=5, activation="relu"))
    model.add(MaxPool2D(pool_size=2))
    model.add(Flatten())
    model.add(Dense(120, activation="relu"))
    model.add(Dense(84, activation="relu"))
    model.add(Dense(10, activation="softmax"))
    return model


def load(dataset, limit=None):
    """Images as float32 (N, 1, 28, 28) in [0, 1], labels as integers."""
    (x_train, y_train), (x_test, y_test) = load_dataset(dataset)
    if limit:
        x_train, y_train, x_test, y_test = x_train[:limit], y_train[:limit], x_test[:limit], y_test[:limit]

    def prepare(x):
        return (x.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)

    return (prepare(x_train), y_train.astype(np.int64)), (prepare(x_test), y_test.astype(np.int64))


class EpochTimer(Callback):
    """Records the wall time of each epoch (the GPU is synchronized before reading the clock)."""

    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        backend.synchronize()
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        backend.synchronize()
        self.times.append(time.perf_counter() - self.start)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m gpunn.examples.lenet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["mnist", "fashion_mnist"], default="mnist")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--optimizer", default="adam", help="sgd, adam, rmsprop or adagrad (default learning rates)")
    parser.add_argument("--backend", choices=backend.BACKENDS, help="overrides GPUNN_BACKEND")
    parser.add_argument("--limit", type=int, help="use only the first N training and test images (a quick try)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="PNG", help="save the loss/accuracy curves to this file")
    parser.add_argument("--distributed", action="store_true",
                        help="data-parallel over the processes of mpirun -n N (--batch-size is the global batch)")
    args = parser.parse_args(argv)
    if args.plot:
        require_matplotlib(parser, "--plot")

    if args.backend:
        backend.set_backend(args.backend)
    if args.distributed:
        dist.init()  # before building the model: on GPUs it picks this process's device
    say = print if dist.is_main_process() else lambda *args, **kwargs: None  # rank 0 speaks for all
    gpunn.utils.set_seed(args.seed)
    say(f"gpunn {gpunn.__version__} on {backend.current()}" +
        (f", rank 0 of {dist.size()} data-parallel" if args.distributed else ""))
    (x_train, y_train), (x_test, y_test) = load(args.dataset, args.limit)
    say(f"{args.dataset}: {len(x_train)} training and {len(x_test)} test images")

    model = lenet5()
    model.summary(print_fn=say)
    optimizer = dist.DistributedOptimizer(args.optimizer) if args.distributed else args.optimizer
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    timer = EpochTimer()
    history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
                        validation_data=(x_test, y_test), callbacks=[timer])
    for epoch, seconds in enumerate(timer.times, start=1):
        say(f"epoch {epoch}: {seconds:.2f} s")
    loss, accuracy = model.evaluate(x_test, y_test, batch_size=1000)
    say(f"test accuracy: {accuracy:.4f} (loss {loss:.4f})")
    if args.plot and dist.is_main_process():
        save_figure(plot_history(history), args.plot)
        say(f"curves saved to {args.plot}")
    return accuracy


if __name__ == "__main__":
    main()
