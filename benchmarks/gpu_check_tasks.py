"""The GPU check's steps that run inside one Python process: LeNet-5 (accuracy, speed, memory), determinism, a notebook.

    PYTHONPATH=. python -m benchmarks.gpu_check_tasks lenet --epochs 10 --bar 0.99
    PYTHONPATH=. python -m benchmarks.gpu_check_tasks determinism --limit 10000
    PYTHONPATH=. python -m benchmarks.gpu_check_tasks notebook notebooks/04_convolutions_and_lenet.ipynb --small

benchmarks/gpu_check.py runs each in a process of its own (a crash or a hang stops one step, not the
check) on the backend of ``GPUNN_BACKEND``. Each prints its progress, then one last line
``GPU_CHECK_RESULT {"summary": ..., "details": ...}`` (JSON), and exits 0 when its check passed, 1 when not.
"""

import argparse
import ast
import json
import linecache
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import gpunn
from benchmarks.gpu_check_report import MARKER, ROOT
from gpunn import backend
from gpunn.callbacks import Callback
from gpunn.examples.lenet import EpochTimer, lenet5, load


def finish(passed, summary, details=""):
    print(MARKER + json.dumps({"summary": summary, "details": details}))
    sys.exit(0 if passed else 1)


class PoolProbe(Callback):
    """GPU memory in use (CuPy's default pool, bytes) at the end of every epoch; None on NumPy."""

    def on_train_begin(self, logs=None):
        self.used = []

    def on_epoch_end(self, epoch, logs=None):
        self.used.append(backend.xp.get_default_memory_pool().used_bytes() if backend.is_gpu() else None)


def lenet(args):
    """Train LeNet-5 on MNIST as ``python -m gpunn.examples.lenet`` does, probing time and memory every epoch."""
    gpunn.utils.set_seed(0)
    (x, y), (x_test, y_test) = load("mnist", args.limit)
    print(f"LeNet-5 on {backend.current()}: {len(x)} MNIST training images, {args.epochs} epochs, Adam, batch 128")
    model = lenet5()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    timer, probe = EpochTimer(), PoolProbe()
    history = model.fit(x, y, batch_size=128, epochs=args.epochs, validation_data=(x_test, y_test),
                        callbacks=[timer, probe], verbose=2).history
    accuracy = model.evaluate(x_test, y_test, batch_size=1000)[1]
    rows = [(e + 1, f"{seconds:.2f}", f"{history['loss'][e]:.4f}", f"{history['val_accuracy'][e]:.4f}",
             "-" if used is None else f"{used / 2**20:.3f}")
            for e, (seconds, used) in enumerate(zip(timer.times, probe.used))]
    details = "\n".join(["| epoch | seconds (training and the test-set pass) | loss | test accuracy "
                         "| GPU memory in use, MiB |", "|---|---|---|---|---|"]
                        + ["| " + " | ".join(str(v) for v in row) + " |" for row in rows])
    later = timer.times[1:] or timer.times
    speed = f"{statistics.median(later):.2f} s/epoch (median of epochs 2-{args.epochs}; epoch 1 {timer.times[0]:.2f} s)"
    grade = f"test accuracy {accuracy:.2%} (bar {args.bar:.1%})"
    if probe.used[0] is None:
        memory, grew = "memory: not measured (no GPU)", False
    elif args.epochs < 3:
        memory, grew = "memory: needs 3 epochs or more", False
    else:
        first, last = probe.used[1], probe.used[-1]
        grew = first != last
        memory = (f"GPU memory in use after epoch 2 and epoch {args.epochs}: {first:,} and {last:,} bytes "
                  f"({'GROWS' if grew else 'equal'})")
    finish(accuracy >= args.bar and not grew, f"{grade}; {speed}; {memory}", details)


def train_twice(make_model, x, y, batch_size):
    """The weights after one epoch, from two runs with the same seed."""
    runs = []
    for _ in range(2):
        gpunn.utils.set_seed(0)
        model = make_model()
        model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
        runs.append(model.get_weights())
    return runs


def sequence_model():
    """Embedding, LSTM (fused step kernels), a Transformer encoder (attention kernels, dropout) and a classifier."""
    from gpunn.layers import LSTM, Dense, Embedding, GlobalAveragePooling1D, TransformerEncoder

    model = gpunn.Sequential([Embedding(20, 16, input_shape=(11,)), LSTM(24, return_sequences=True),
                              TransformerEncoder(num_heads=2, key_dim=12, ff_dim=32, dropout=0.1),
                              GlobalAveragePooling1D(), Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def determinism(args):
    """Two runs with the same seed must give bit-identical weights, for an image model and a sequence model."""
    (x, y), _ = load("mnist", args.limit)
    rng = np.random.default_rng(0)
    tokens, labels = rng.integers(0, 20, (args.limit // 5, 11)), rng.integers(0, 3, args.limit // 5)

    def lenet_model():
        model = lenet5()
        model.compile("adam", "sparse_categorical_crossentropy")
        return model

    cases = {f"LeNet-5, {len(x)} MNIST images": (lenet_model, x, y, 128),
             f"Embedding-LSTM-Transformer, {len(tokens)} sequences": (sequence_model, tokens, labels, 64)}
    rows, same = [], True
    for name, (make, inputs, targets, batch_size) in cases.items():
        first, second = train_twice(make, inputs, targets, batch_size)
        differ = [i for i, (a, b) in enumerate(zip(first, second)) if not np.array_equal(a, b)]
        largest = max((float(np.max(np.abs(first[i] - second[i]))) for i in differ), default=0.0)
        same &= not differ
        rows.append((name, len(first), len(differ), f"{largest:.3g}"))
        print(f"{name}: {len(differ)} of {len(first)} weight arrays differ between the two runs")
    details = "\n".join(["| model (one epoch, seed 0, twice) | weight arrays | differing | largest difference |",
                         "|---|---|---|---|"] + ["| " + " | ".join(str(v) for v in row) + " |" for row in rows])
    verdicts = [f"{name}: {'bit-identical' if n == 0 else f'{n} of {total} arrays differ'}"
                for name, total, n, _ in rows]
    finish(same, f"on {backend.current().name}: " + "; ".join(verdicts), details)


def small_sizes(name):
    """The sizes tests/test_notebooks.py runs notebook ``name`` at (its SMALL), read without importing that
    module (it needs Jupyter); SMALL is a literal, so evaluating it runs no code of the test."""
    tree = ast.parse((ROOT / "tests" / "test_notebooks.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["SMALL"]:
            return eval(compile(ast.Expression(node.value), "SMALL", "eval"), {"__builtins__": {}})[name]
    raise LookupError("tests/test_notebooks.py has no SMALL = {...}: the --small sizes are read from there")


def display(*objects):
    """A stand-in for IPython's display(): prints each object (open figures are counted when a cell ends)."""
    for obj in objects:
        if not hasattr(obj, "savefig"):
            print(repr(obj))


def run_cell(source, namespace, filename):
    """Execute one code cell as Jupyter does: the statements, then show the value of a last bare expression."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # tracebacks show the cell
    tree = ast.parse(source, filename)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, filename, "exec"), namespace)
    if last is not None:
        value = eval(compile(ast.Expression(last.value), filename, "eval"), namespace)
        if value is not None:
            display(value)


def notebook(args):
    """Run a notebook's code cells top to bottom in this process, without Jupyter (matplotlib on Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(args.path)
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    sources = ["".join(c["source"]) for c in cells]
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        finish(False, f"{path.name}: expected one code cell tagged 'parameters', found {len(tagged)}")
    if args.small:  # injected after the parameters cell, as papermill and tests/test_notebooks.py do
        sources.insert(tagged[0] + 1, "\n".join(f"{k} = {v!r}" for k, v in small_sizes(path.stem).items()))
    namespace = {"__name__": "__main__", "display": display}
    times, figures = [], 0
    print(f"{path.name} on {backend.current()}, {'test' if args.small else 'its own'} sizes")
    for number, source in enumerate(sources, start=1):
        start = time.perf_counter()
        try:
            run_cell(source, namespace, f"<{path.stem} code cell {number}>")
        except Exception as e:
            import traceback

            traceback.print_exc()
            finish(False, f"code cell {number} raised {type(e).__name__}: {e}")
        backend.synchronize()
        times.append(time.perf_counter() - start)
        figures += len(plt.get_fignums())
        plt.close("all")
    slowest = int(np.argmax(times))
    finish(True, f"{sum(times):.1f} s, {len(cells)} code cells{' and the test sizes' * args.small}, figures drawn: "
                 f"{figures}; slowest: code cell {slowest + 1} ({times[slowest]:.1f} s)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tasks = parser.add_subparsers(dest="task", required=True)
    p = tasks.add_parser("lenet", help="LeNet-5 on MNIST: accuracy, seconds per epoch, GPU memory per epoch")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--limit", type=int, help="only the first N training and test images")
    p.add_argument("--bar", type=float, default=0.99, help="the test accuracy to reach")
    p = tasks.add_parser("determinism", help="two runs with one seed give the same weights")
    p.add_argument("--limit", type=int, default=10000, help="MNIST images (and a fifth as many token sequences)")
    p = tasks.add_parser("notebook", help="run a notebook's code cells without Jupyter")
    p.add_argument("path")
    p.add_argument("--small", action="store_true", help="the sizes of tests/test_notebooks.py")
    args = parser.parse_args(argv)
    {"lenet": lenet, "determinism": determinism, "notebook": notebook}[args.task](args)


if __name__ == "__main__":
    main()
