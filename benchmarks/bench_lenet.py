"""LeNet-5 training on Fashion-MNIST, gpunn beside PyTorch (and Keras on the CPU).

    GPUNN_BACKEND=cupy PYTHONPATH=. GPUNN_DATA_DIR=../shared/datasets python benchmarks/bench_lenet.py
    GPUNN_BACKEND=numpy PYTHONPATH=. GPUNN_DATA_DIR=../shared/datasets python benchmarks/bench_lenet.py
    GPUNN_BACKEND=numpy PYTHONPATH=. python benchmarks/bench_lenet.py --batch-sizes 128 --steps 40 --rounds 3

On a GPU: one epoch (data already on the device), the median of ``--repeat`` epochs with CUDA
events, at batch 64/128/512: gpunn eager and with ``compile(jit_compile=True)`` (the step replayed
as a CUDA graph), PyTorch eager in the same run, and with ``--torch-compile`` PyTorch's
``torch.compile`` too (off by default: it compiles for minutes). Before timing, gpunn is checked to
learn (test accuracy above 0.70 after its warm-up epoch; PyTorch's is shown beside it). Then the
launches per step at batch 128, counted on the CuPy stand-in (``benchmarks/launches.py``, a subprocess).

On the CPU: ``--steps`` training steps per round, gpunn, PyTorch and Keras (torch backend, when
installed) each in its own process, rounds interleaved, minimum and median of ``--rounds`` rounds
and each one's peak memory, at batch 32/128/512 (see benchmarks/side_by_side.py).

All train the same model (61,706 parameters) with Adam(1e-3) and softmax + cross-entropy.
Without the dataset it stops, saying where to put the files.
"""

import argparse
import os
import subprocess
import sys

import gpunn
import gpunn.backend as backend
from benchmarks.common import header, load_torch, table, torch_time_fn
from benchmarks.side_by_side import side_by_side
from gpunn.examples.lenet import lenet5, load
from gpunn.utils import time_fn


def torch_lenet(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def torch_epoch_fn(torch, device, x, y, batch_size, compiled=False):
    model = torch_lenet(torch).to(device)
    if compiled:
        model = torch.compile(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def epoch():
        order = torch.randperm(len(x), device=device)
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()

    def accuracy(xt, yt):
        with torch.no_grad():
            return float((model(xt).argmax(1) == yt).float().mean())

    return epoch, accuracy


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", help="default: 64,128,512 on a GPU, 32,128,512 on the CPU")
    parser.add_argument("--repeat", type=int, default=3, help="GPU: timed epochs per batch size (after a warm-up)")
    parser.add_argument("--limit", type=int, help="GPU: only the first N training and test images (a quick try)")
    parser.add_argument("--steps", type=int, default=80, help="CPU: training steps per round")
    parser.add_argument("--rounds", type=int, default=7, help="CPU: interleaved rounds per framework")
    parser.add_argument("--torch-compile", action="store_true", help="GPU: time torch.compile's LeNet too")
    args = parser.parse_args()
    (x, y), (xt, yt) = load("fashion_mnist", args.limit)  # exits with the loader's message when files are missing
    if not backend.is_gpu():
        return cpu_main(x, y, args)
    args.batch_sizes = args.batch_sizes or "64,128,512"
    xd, yd, xtd, ytd = (backend.to_device(a) for a in (x, y, xt, yt))
    torch, device = load_torch()
    if torch is not None:
        tx, ty = torch.tensor(x, device=device), torch.tensor(y, device=device)
        txt, tyt = torch.tensor(xt, device=device), torch.tensor(yt, device=device)
    rows = []
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        eager_s, eager_acc = gpunn_epoch(xd, yd, xtd, ytd, batch_size, args.repeat, jit_compile=False)
        jit_s, jit_acc = gpunn_epoch(xd, yd, xtd, ytd, batch_size, args.repeat, jit_compile=True)
        torch_s = torch_acc = None
        if torch is not None:
            torch.manual_seed(0)
            torch_epoch, torch_accuracy = torch_epoch_fn(torch, device, tx, ty, batch_size)
            torch_epoch()
            torch_acc = torch_accuracy(txt, tyt)
            torch_s = torch_time_fn(torch, device, torch_epoch, warmup=0, repeat=args.repeat)
        compiled_s = None
        if torch is not None and args.torch_compile:
            torch.manual_seed(0)
            compiled_epoch, _ = torch_epoch_fn(torch, device, tx, ty, batch_size, compiled=True)
            compiled_epoch()  # the compilation
            compiled_s = torch_time_fn(torch, device, compiled_epoch, warmup=0, repeat=args.repeat)
        ratio = (lambda s: f"{s / torch_s:.2f}x") if torch_s else (lambda s: "-")
        rows.append((batch_size, f"{eager_s:.3f}", f"{jit_s:.3f}", f"{eager_acc:.3f} / {jit_acc:.3f}",
                     f"{torch_s:.3f}" if torch_s else "-", f"{torch_acc:.3f}" if torch_acc else "-",
                     f"{compiled_s:.3f}" if compiled_s else "-", ratio(eager_s), ratio(jit_s)))
    print(header())
    print(f"data: Fashion-MNIST, {len(x):,} training images per epoch; PyTorch on {device or '-'}")
    print(table(rows, ["batch", "gpunn s/epoch", "jit_compile s/epoch", "gpunn acc eager / jit (1 epoch)",
                       "torch s/epoch", "torch acc (1 epoch)", "torch.compile s/epoch", "gpunn/torch", "jit/torch"]))
    print(launch_counts("128"))  # the same at every batch size


def launch_counts(batch_sizes):
    """benchmarks/launches.py's lines (launches per step on the CuPy stand-in), or why there are none."""
    env = {**os.environ, "GPUNN_BACKEND": "cupy"}
    try:
        run = subprocess.run([sys.executable, "-m", "benchmarks.launches", "--batch-sizes", batch_sizes], env=env,
                             capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return "launches per step (CuPy stand-in): not counted, it took over 300 s"
    lines = [line for line in run.stdout.splitlines() if line.startswith("batch")]
    if run.returncode or not lines:
        return f"launches per step (CuPy stand-in): not counted ({(run.stderr.strip().splitlines() or ['?'])[-1]})"
    return "launches per step (CuPy stand-in): " + "; ".join(lines)


def gpunn_epoch(x, y, xt, yt, batch_size, repeat, jit_compile):
    """(median seconds per epoch, test accuracy after the warm-up epoch) of LeNet-5 on device data."""
    gpunn.utils.set_seed(0)
    model = lenet5()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=jit_compile)

    def epoch():
        model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)

    epoch()  # warm-up (with jit_compile: the capture), and the check: it learns (chance is 0.10; one epoch at
    accuracy = model.evaluate(xt, yt, batch_size=1000)[1]  # batch 512 is only 118 steps)
    assert accuracy > 0.70, f"gpunn LeNet (jit_compile={jit_compile}) did not learn: test accuracy {accuracy:.3f}"
    return time_fn(epoch, warmup=0, repeat=repeat), accuracy


def cpu_main(x, y, args):
    rows = []
    for batch_size in (int(b) for b in (args.batch_sizes or "32,128,512").split(",")):
        results = side_by_side(x, y, batch_size, args.steps, args.rounds)
        timed = {name: r for name, r in results.items() if not isinstance(r, str)}
        for name, result in results.items():
            if isinstance(result, str):
                rows.append((batch_size, name, "-", "-", "-", result))
                continue
            least, median, peak = result
            ratio = f"{least / timed['torch'][0]:.2f}x" if "torch" in timed else "-"
            rows.append((batch_size, name, f"{least:.3f}", f"{median:.3f}", f"{peak:.0f}", ratio))
    print(header())
    print(f"data: Fashion-MNIST; {args.steps} steps per round, {args.rounds} interleaved rounds, one process each")
    print(table(rows, ["batch", "framework", "min s", "median s", "peak MiB", "min / torch min"]))


if __name__ == "__main__":
    main()
