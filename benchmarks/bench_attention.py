"""Scaled dot-product attention forward and forward+backward, gpunn beside torch's scaled_dot_product_attention.

    PYTHONPATH=. python benchmarks/bench_attention.py
    GPUNN_BACKEND=numpy PYTHONPATH=. python benchmarks/bench_attention.py --shapes 8,8,512,64

Shapes are B,H,L,d (float32). Outputs and gradients are checked against PyTorch before
timing. On a GPU it also reports the peak device memory of the fused kernels against
the unfused path (the NumPy twin's algorithm, which stores the L x L weights).
"""

import argparse

import numpy as np

import gpunn.backend as backend
from benchmarks.common import header, load_torch, table, torch_time_fn
from gpunn.ops import attention as ops
from gpunn.utils import time_fn


def peak_bytes(fn):
    """Device memory held by CuPy's pool after running fn from an empty pool (the pool keeps its peak)."""
    pool = backend.xp.get_default_memory_pool()
    pool.free_all_blocks()
    fn()
    backend.synchronize()
    return pool.total_bytes()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["8,8,512,64", "4,16,1024,64", "2,8,4096,64"])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    torch, device = load_torch()
    rng = np.random.default_rng(0)
    rows, memory = [], []
    for spec in args.shapes:
        b, h, length, d = (int(v) for v in spec.split(","))
        host = [rng.standard_normal((b, h, length, d)).astype(np.float32) for _ in range(4)]
        q, k, v, dout = (backend.to_device(a) for a in host)

        def forward():
            return ops.attention_forward(q, k, v)

        def forward_backward():
            out, lse = ops.attention_forward(q, k, v)
            return ops.attention_backward(q, k, v, out, lse, dout)

        out, lse = forward()
        grads = ops.attention_backward(q, k, v, out, lse, dout)
        torch_f = torch_fb = None
        if torch is not None:
            tq, tk, tv = (torch.tensor(a, device=device, requires_grad=True) for a in host[:3])
            tdout = torch.tensor(host[3], device=device)
            sdpa = torch.nn.functional.scaled_dot_product_attention
            ref = sdpa(tq, tk, tv)
            ref.backward(tdout)
            np.testing.assert_allclose(backend.to_numpy(out), ref.detach().cpu().numpy(), rtol=1e-3, atol=1e-4)
            for mine, theirs in zip(grads, (tq.grad, tk.grad, tv.grad)):
                np.testing.assert_allclose(backend.to_numpy(mine), theirs.cpu().numpy(), rtol=1e-3, atol=1e-3)

            def torch_forward():
                with torch.no_grad():
                    sdpa(tq, tk, tv)

            def torch_forward_backward():
                sdpa(tq, tk, tv).backward(tdout)

            torch_f = torch_time_fn(torch, device, torch_forward, repeat=args.repeat)
            torch_fb = torch_time_fn(torch, device, torch_forward_backward, repeat=args.repeat)
        mine_f = time_fn(forward, repeat=args.repeat)
        mine_fb = time_fn(forward_backward, repeat=args.repeat)
        for what, mine, theirs in (("forward", mine_f, torch_f), ("forward+backward", mine_fb, torch_fb)):
            rows.append((f"B={b} H={h} L={length} d={d} {what}", f"{mine * 1e3:.3f}",
                         f"{theirs * 1e3:.3f}" if theirs else "-", f"{mine / theirs:.2f}x" if theirs else "-"))
        if backend.is_gpu():
            fused = peak_bytes(forward_backward)
            unfused = peak_bytes(lambda: ops.attention_backward_cpu(q, k, v, *ops.attention_forward_cpu(q, k, v), dout))
            memory.append((f"B={b} H={h} L={length} d={d}", f"{fused / 2**20:.0f}", f"{unfused / 2**20:.0f}"))
    if torch is not None:
        print("check: gpunn attention output, dQ, dK and dV equal PyTorch's")
    print(header())
    print(table(rows, ["work", "gpunn ms", "torch ms", "gpunn/torch"]))
    if memory:
        print()
        print(table(memory, ["shape", "fused fwd+bwd peak MiB", "unfused peak MiB"]))


if __name__ == "__main__":
    main()
