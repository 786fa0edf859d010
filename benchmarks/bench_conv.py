"""Conv2D forward+backward and the im2col kernel, side by side with PyTorch (cuDNN on a GPU).

    PYTHONPATH=. python benchmarks/bench_conv.py                 # the issue's shape: N=128, C=64, 32x32, 3x3, F=64
    GPUNN_BACKEND=numpy PYTHONPATH=. python benchmarks/bench_conv.py --batch 32

Checks gpunn against PyTorch before timing anything (without PyTorch it times gpunn alone, unchecked).
"""

import argparse

import numpy as np

import gpunn.backend as backend
from benchmarks.common import header, load_torch, table, torch_time_fn
from gpunn.layers import Conv2D
from gpunn.ops.im2col import im2col
from gpunn.utils import time_fn


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--kernel", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    xp = backend.xp
    rng = np.random.default_rng(0)
    shape = (args.batch, args.channels, args.size, args.size)
    x_host = rng.standard_normal(shape).astype(np.float32)
    x = backend.to_device(x_host)
    layer = Conv2D(args.filters, args.kernel, padding="same")
    layer.build(shape[1:])
    y = layer.forward(x)
    dy = backend.to_device(rng.standard_normal(y.shape).astype(np.float32))

    def gpunn_step():
        layer.forward(x, training=True)
        layer.backward(dy)

    torch, device = load_torch()
    rows = []
    if torch is not None:
        tx = torch.tensor(x_host, device=device, requires_grad=True)
        tw = torch.tensor(backend.to_numpy(layer.kernel), device=device, requires_grad=True)
        tb = torch.tensor(backend.to_numpy(layer.bias), device=device, requires_grad=True)
        tdy = torch.tensor(backend.to_numpy(dy), device=device)
        pad = args.kernel // 2

        def torch_step():
            out = torch.nn.functional.conv2d(tx, tw, tb, padding=pad)
            out.backward(tdy)

        out = torch.nn.functional.conv2d(tx, tw, tb, padding=pad)
        out.backward(tdy)
        dx = layer.backward(dy)
        np.testing.assert_allclose(backend.to_numpy(y), out.detach().cpu().numpy(), rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(backend.to_numpy(dx), tx.grad.cpu().numpy(), rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(backend.to_numpy(layer.grads["kernel"]), tw.grad.cpu().numpy(), rtol=1e-3, atol=1e-2)
        print("check: gpunn Conv2D forward, dX and dW equal PyTorch's")
        torch_s = torch_time_fn(torch, device, torch_step, repeat=args.repeat)
    else:
        torch_s = None
        print("PyTorch is not installed: gpunn is timed unchecked, with no side-by-side column")

    gpunn_s = time_fn(gpunn_step, repeat=args.repeat)
    ratio = f"{gpunn_s / torch_s:.2f}x" if torch_s else "-"
    rows.append((f"Conv2D fwd+bwd N={args.batch} C={args.channels} {args.size}x{args.size} k={args.kernel} "
                 f"F={args.filters}", f"{gpunn_s * 1e3:.3f}", f"{torch_s * 1e3:.3f}" if torch_s else "-", ratio))

    g = layer.geometry(shape)
    col = im2col(x, g)
    im2col_s = time_fn(lambda: im2col(x, g), repeat=args.repeat)
    big = xp.empty_like(col)
    copy_s = time_fn(lambda: xp.copyto(big, col), repeat=args.repeat)
    moved = col.nbytes + x.nbytes  # every column element written once; the input read (through the cache)
    im2col_bw, copy_bw = moved / im2col_s / 1e9, 2 * col.nbytes / copy_s / 1e9
    print(header())
    print(table(rows, ["work", "gpunn ms", "torch ms", "gpunn/torch"]))
    print()
    print(table([(f"im2col {tuple(x.shape)} -> {tuple(col.shape)}", f"{im2col_s * 1e3:.3f}", f"{im2col_bw:.1f}",
                  f"{copy_bw:.1f}", f"{im2col_bw / copy_bw:.0%}")],
                ["work", "ms", "GB/s", "copy GB/s", "of copy bandwidth"]))


if __name__ == "__main__":
    main()
