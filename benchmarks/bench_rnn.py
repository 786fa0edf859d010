"""An LSTM layer's forward+backward over a whole sequence, gpunn beside PyTorch (cuDNN on a GPU).

    PYTHONPATH=. python benchmarks/bench_rnn.py
    GPUNN_BACKEND=numpy PYTHONPATH=. python benchmarks/bench_rnn.py --shapes 50,64,128,256

Shapes are T,B,I,H (time steps, batch, input features, units). gpunn's outputs and
gradients are checked against PyTorch's with the same weights before timing.
"""

import argparse

import numpy as np

import gpunn.backend as backend
from benchmarks.common import header, load_torch, table, torch_time_fn
from gpunn.layers import LSTM
from gpunn.utils import time_fn


def check_against_torch(torch, device, layer, x_host, dy_host, out, dx):
    """Copy gpunn's weights into torch.nn.LSTM (gates i, f, g, o in both) and compare."""
    units = layer.units
    ref = torch.nn.LSTM(x_host.shape[-1], units, batch_first=True).to(device)
    with torch.no_grad():
        ref.weight_ih_l0.copy_(torch.tensor(backend.to_numpy(layer.kernel).T))
        ref.weight_hh_l0.copy_(torch.tensor(backend.to_numpy(layer.recurrent_kernel).T))
        ref.bias_ih_l0.copy_(torch.tensor(backend.to_numpy(layer.bias)))
        ref.bias_hh_l0.zero_()
    tx = torch.tensor(x_host, device=device, requires_grad=True)
    ty, _ = ref(tx)
    ty.backward(torch.tensor(dy_host, device=device))
    np.testing.assert_allclose(backend.to_numpy(out), ty.detach().cpu().numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(backend.to_numpy(dx), tx.grad.cpu().numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(backend.to_numpy(layer.grads["recurrent_kernel"]).T,
                               ref.weight_hh_l0.grad.cpu().numpy(), rtol=1e-3, atol=1e-3)
    return ref, tx


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["50,64,128,256", "100,64,256,512"])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    torch, device = load_torch()
    rng = np.random.default_rng(0)
    rows = []
    for spec in args.shapes:
        steps, batch, features, units = (int(v) for v in spec.split(","))
        x_host = rng.standard_normal((batch, steps, features)).astype(np.float32)
        dy_host = rng.standard_normal((batch, steps, units)).astype(np.float32)
        x, dy = backend.to_device(x_host), backend.to_device(dy_host)
        layer = LSTM(units, return_sequences=True)
        layer.build((steps, features))

        def gpunn_step():
            layer.forward(x, training=True)
            return layer.backward(dy)

        out = layer.forward(x, training=True)
        dx = layer.backward(dy)
        torch_s = None
        if torch is not None:
            ref, tx = check_against_torch(torch, device, layer, x_host, dy_host, out, dx)
            tdy = torch.tensor(dy_host, device=device)

            def torch_step():
                y, _ = ref(tx)
                y.backward(tdy)

            torch_s = torch_time_fn(torch, device, torch_step, repeat=args.repeat)
        seconds = time_fn(gpunn_step, repeat=args.repeat)
        rows.append((f"LSTM fwd+bwd T={steps} B={batch} I={features} H={units}", f"{seconds * 1e3:.2f}",
                     f"{torch_s * 1e3:.2f}" if torch_s else "-", f"{seconds / torch_s:.2f}x" if torch_s else "-"))
    if torch is not None:
        print("check: gpunn LSTM outputs, dX and dU equal PyTorch's")
    print(header())
    print(table(rows, ["work", "gpunn ms", "torch ms", "gpunn/torch"]))


if __name__ == "__main__":
    main()
