"""Scaled dot-product attention forward and forward+backward, gpunn beside torch's scaled_dot_product_attention.

    PYTHONPATH=. python benchmarks/bench_attention.py
    GPUNN_BACKEND=numpy PYTHONPATH=. python benchmarks/bench_attention.py --shapes 8,8,512,64

Shapes are B,H,L,d (float32). Outputs and gradients are checked against PyTorch before
timing. Then the peak memory one forward+backward adds, gpunn beside PyTorch, for B=2 H=8
d=64 at each of ``--memory-lengths``: on a GPU the device memory (CuPy's pool, torch's
allocator), on the CPU the process's resident memory, each measured in a fresh process.
Neither gpunn's kernels nor its NumPy twin hold the L x L scores, so theirs grows linearly in L.
"""

import argparse

import numpy as np

import gpunn.backend as backend
from benchmarks.common import header, load_torch, peak_host_mib, table, torch_time_fn
from gpunn.ops import attention as ops
from gpunn.utils import time_fn


def peak_bytes(fn):
    """Device memory held by CuPy's pool after running fn from an empty pool (the pool keeps its peak)."""
    pool = backend.xp.get_default_memory_pool()
    pool.free_all_blocks()
    fn()
    backend.synchronize()
    return pool.total_bytes()


def inputs(b, h, length, d, device=None):
    """q, k, v and dout, float32, the same for gpunn and torch; torch tensors when device is given."""
    host = [np.random.default_rng(0).standard_normal((b, h, length, d)).astype(np.float32) for _ in range(4)]
    if device is None:
        return [backend.to_device(a) for a in host]
    import torch

    return [torch.tensor(a, device=device, requires_grad=i < 3) for i, a in enumerate(host)]


def gpunn_work(b, h, length, d):
    q, k, v, dout = inputs(b, h, length, d)
    return lambda: ops.attention_backward(q, k, v, *ops.attention_forward(q, k, v), dout)


def torch_work(b, h, length, d, device="cpu"):
    import torch

    q, k, v, dout = inputs(b, h, length, d, device)
    return lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v).backward(dout)


def torch_peak_device_mib(torch, work):
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    work()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def memory_rows(torch, device, lengths, b=2, h=8, d=64):
    """(shape, gpunn peak MiB, torch peak MiB) per length."""
    rows = []
    for length in lengths:
        if backend.is_gpu():
            work = gpunn_work(b, h, length, d)
            mine = peak_bytes(work) / 2**20
            theirs = torch_peak_device_mib(torch, torch_work(b, h, length, d, device)) if torch else None
        else:
            shape, small = (b, h, length, d), (b, h, 16, d)
            mine = peak_host_mib(gpunn_work, shape, small)
            theirs = peak_host_mib(torch_work, shape, small) if torch else None
        rows.append((f"B={b} H={h} L={length} d={d}", f"{mine:.0f}", f"{theirs:.0f}" if theirs is not None else "-"))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["8,8,512,64", "4,16,1024,64", "2,8,4096,64"])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--memory-lengths", default="256,512,1024,2048,4096")
    args = parser.parse_args()
    torch, device = load_torch()
    rng = np.random.default_rng(0)
    rows = []
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
    if torch is not None:
        print("check: gpunn attention output, dQ, dK and dV equal PyTorch's")
    print(header())
    print(table(rows, ["work", "gpunn ms", "torch ms", "gpunn/torch"]))
    lengths = [int(v) for v in args.memory_lengths.split(",") if v]
    if lengths:
        where = "device" if backend.is_gpu() else "host (resident)"
        print()
        print(table(memory_rows(torch, device, lengths), ["shape", f"gpunn fwd+bwd peak {where} MiB",
                                                           f"torch fwd+bwd peak {where} MiB"]))


if __name__ == "__main__":
    main()
