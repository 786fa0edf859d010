"""What the benchmark scripts share: PyTorch timing beside gpunn's, the header and the table.

gpunn is timed with :func:`gpunn.utils.time_fn` (CUDA events on the GPU, perf_counter
on the CPU, the median of the repeats); PyTorch the same way with its own events.
"""

import multiprocessing
import statistics
import subprocess
import time
from datetime import date
from pathlib import Path

import gpunn.backend as backend


def torch_time_fn(torch, device, fn, warmup=3, repeat=20):
    """Median seconds of a PyTorch function, like gpunn.utils.time_fn, with torch's CUDA events on a GPU."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if device == "cuda":
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            stop.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(stop) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def load_torch():
    """(torch, device) where PyTorch is installed, else (None, None); the device matches gpunn's backend.

    TF32 is turned off: cuDNN's convolutions and RNNs use it by default on Ampere and later GPUs, rounding
    their inputs to 10-bit mantissas, which fails the float32 checks (1e-3) and times a different precision.
    """
    try:
        import torch
    except ImportError:
        return None, None
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    device = "cuda" if backend.is_gpu() and torch.cuda.is_available() else "cpu"
    return torch, device


def header():
    """The lines that say where and when a table was measured."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=root).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    return f"device: {backend.current()} | date: {date.today()} | commit: {commit}"


def table(rows, columns):
    """A Markdown table (to paste into RESULTS.md)."""
    widths = [max(len(str(c)), *(len(str(r[i])) for r in rows)) for i, c in enumerate(columns)]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(columns, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(str(v).ljust(w) for v, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join(lines)


def rss_mib(field="VmRSS"):
    """This process's resident memory (VmRSS) or its peak so far (VmHWM), in MiB, from /proc (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise OSError("no /proc/self/status: peak memory is measured on Linux only")


def _measure(conn, prepare, args, warm_args):
    if warm_args is not None:
        prepare(*warm_args)()  # a small run first: what a library loads lazily does not count
    work = prepare(*args)  # inputs made here count in the baseline, not in the peak
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current resident memory (Linux 4.0+)
    base = rss_mib()
    work()
    conn.send(rss_mib("VmHWM") - base)


def peak_host_mib(prepare, args, warm_args=None):
    """Peak host memory (MiB) that ``prepare(*args)()`` adds, measured in a fresh process of its own.

    ``prepare`` (a module-level function) builds the inputs and returns the work to measure; the
    answer is the peak resident memory during the work minus the resident memory before it.
    ``warm_args``: a small problem run first, so that libraries' lazy set-up is not counted.
    """
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_measure, args=(child, prepare, args, warm_args), daemon=True)
    process.start()
    peak = parent.recv()
    process.join()
    return peak
