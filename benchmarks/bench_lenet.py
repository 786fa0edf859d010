"""One LeNet-5 training epoch on Fashion-MNIST (data already on the device), gpunn beside PyTorch.

    PYTHONPATH=. GPUNN_DATA_DIR=../shared/datasets python benchmarks/bench_lenet.py
    GPUNN_BACKEND=numpy PYTHONPATH=. python benchmarks/bench_lenet.py --batch-sizes 128 --repeat 2
    GPUNN_BACKEND=numpy PYTHONPATH=. python benchmarks/bench_lenet.py --batch-sizes 64 --repeat 1 --limit 12000

Both frameworks train the same model (61,706 parameters) with Adam(1e-3), shuffled
mini-batches, softmax + cross-entropy. Before timing, gpunn is checked to learn (test
accuracy above 0.70 after its warm-up epoch; PyTorch's is shown beside it). Without
the dataset it stops, saying where to put the files.
"""

import argparse

import gpunn
import gpunn.backend as backend
from benchmarks.common import header, load_torch, table, torch_time_fn
from gpunn.examples.lenet import lenet5, load
from gpunn.utils import time_fn


def torch_lenet(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def torch_epoch_fn(torch, device, x, y, batch_size):
    model = torch_lenet(torch).to(device)
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
    parser.add_argument("--batch-sizes", default="64,128,512")
    parser.add_argument("--repeat", type=int, default=3, help="timed epochs per batch size (after one warm-up)")
    parser.add_argument("--limit", type=int, help="only the first N training and test images (a quick try)")
    args = parser.parse_args()
    (x, y), (xt, yt) = load("fashion_mnist", args.limit)  # exits with the loader's message when files are missing
    xd, yd, xtd, ytd = (backend.to_device(a) for a in (x, y, xt, yt))
    torch, device = load_torch()
    if torch is not None:
        tx, ty = torch.tensor(x, device=device), torch.tensor(y, device=device)
        txt, tyt = torch.tensor(xt, device=device), torch.tensor(yt, device=device)
    rows = []
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        gpunn.utils.set_seed(0)
        model = lenet5()
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])

        def epoch():
            model.fit(xd, yd, batch_size=batch_size, epochs=1, verbose=0)

        epoch()  # warm-up, and the check: it learns (chance is 0.10; one epoch at batch 512 is only 118 steps)
        accuracy = model.evaluate(xtd, ytd, batch_size=1000)[1]
        assert accuracy > 0.70, f"gpunn LeNet did not learn: test accuracy {accuracy:.3f} after one epoch"
        seconds = time_fn(epoch, warmup=0, repeat=args.repeat)
        torch_s = torch_acc = None
        if torch is not None:
            torch.manual_seed(0)
            torch_epoch, torch_accuracy = torch_epoch_fn(torch, device, tx, ty, batch_size)
            torch_epoch()
            torch_acc = torch_accuracy(txt, tyt)
            torch_s = torch_time_fn(torch, device, torch_epoch, warmup=0, repeat=args.repeat)
        rows.append((batch_size, f"{seconds:.3f}", f"{accuracy:.3f}", f"{torch_s:.3f}" if torch_s else "-",
                     f"{torch_acc:.3f}" if torch_acc else "-", f"{seconds / torch_s:.2f}x" if torch_s else "-"))
    print(header())
    print(f"data: Fashion-MNIST, {len(x):,} training images per epoch; PyTorch on {device or '-'}")
    print(table(rows, ["batch", "gpunn s/epoch", "gpunn acc (1 epoch)", "torch s/epoch", "torch acc (1 epoch)",
                       "gpunn/torch"]))


if __name__ == "__main__":
    main()
