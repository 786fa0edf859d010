"""How benchmarks/gpu_check.py runs its steps: what they need, each in a process of its own with a time limit,
and what their output says.
"""

import contextlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import gpu_check_report as report
from benchmarks.gpu_check_report import ROOT, Result

MIN_STEP_SECONDS = 15  # a step the budget leaves less time than this (or its own limit) is skipped, not started


@dataclass
class Step:
    key: str  # what --steps selects
    title: str
    argv: list
    timeout: float  # seconds
    needs: tuple = ()  # "gpu", "compute-sanitizer", a Python package, or a dataset folder
    kind: str = "task"  # how its output is read: "pytest", "sanitizer", "bench" or "task" (gpu_check_tasks)
    tests: tuple = ()  # for pytest steps: the test files and -m/-k selection
    note: str = ""  # what it covers, for the report


def find_sanitizer():
    """compute-sanitizer's path: on PATH, else in the CUDA toolkit ($CUDA_HOME, /usr/local/cuda); None when absent."""
    toolkit = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / "compute-sanitizer"
    return shutil.which("compute-sanitizer") or (str(toolkit) if toolkit.is_file() else None)


def gpu_usable(env):
    """Whether gpunn can use a GPU here, asked of a child process: this one never touches the GPU."""
    probe = "import gpunn.backend as b; print('cupy' in b.available())"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                          env={**env, "GPUNN_BACKEND": "numpy"}, timeout=120)
    return done.stdout.strip().endswith("True")


def requirements(data, gpu, sanitizer):
    """{name: (found, what was found, or how to get it)} for everything a step may need."""
    from gpunn.datasets import fashion_mnist, mnist  # gpu_check.py imports gpunn on NumPy: it never uses the GPU

    found = {"gpu": (gpu, "CuPy sees a GPU" if gpu else "no usable GPU (python -m gpunn info says why)"),
             "compute-sanitizer": (bool(sanitizer), sanitizer or "not found (its steps are skipped)")}
    away = "" if data.resolve().is_relative_to(ROOT) else " (outside the repository: not carried to a device machine)"
    for name, files in (("mnist", mnist.FILES), ("fashion-mnist", fashion_mnist.FILES)):
        absent = [f for f in files if not any((data / name / n).is_file() for n in (f, f.removesuffix(".gz")))]
        found[name] = (True, f"{data / name}{away}") if not absent else (
            False, f"{', '.join(absent)} not in {data / name}: mkdir -p data && cp -r ../shared/datasets/{name} data/")
    for package in ("pytest", "torch", "matplotlib"):
        here = importlib.util.find_spec(package) is not None
        found[package] = (here, report.version(package) if here else f"not installed: pip install {package}")
    return found


def count_tests(steps, env):
    """{tests: how many tests pytest collects for that selection}, the collections run at the same time."""
    selections = {s.tests for s in steps if s.tests}
    procs = {tests: subprocess.Popen([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                                      *tests], cwd=ROOT, env={**env, "GPUNN_BACKEND": "numpy"},
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for tests in selections}
    counts = {}
    for tests, proc in procs.items():
        found = re.findall(r"^(\d+)(?:/\d+)? tests? collected", proc.communicate(timeout=120)[0], re.M)
        counts[tests] = int(found[-1]) if found else 0
    return counts


def blocked(step, found):
    """None when the step can run, else the Result that says why it cannot."""
    if "gpu" in step.needs and not found["gpu"][0]:
        return Result(step.title, "skipped", summary="no GPU")
    if "compute-sanitizer" in step.needs and not found["compute-sanitizer"][0]:
        return Result(step.title, "skipped", summary="compute-sanitizer not found")
    missing = [n for n in step.needs if not found[n][0]]
    return Result(step.title, "fail", summary="missing: " + "; ".join(f"{n}: {found[n][1]}" for n in missing)) \
        if missing else None


def summarize(step, status, seconds, output):
    """The step's Result, read from its output as its kind says."""
    summary = next((line for line in reversed(output.splitlines()) if line.strip()), "no output")
    details = step.note
    if step.kind == "task" and summary.startswith(report.MARKER):
        parsed = json.loads(summary[len(report.MARKER):])
        summary, details = parsed["summary"], parsed["details"]
    elif step.kind in ("pytest", "sanitizer"):
        summary = "; ".join(filter(None, [report.pytest_summary(output), report.sanitizer_summary(output)]))
        if step.kind == "sanitizer" and "Device not supported" in output:  # seen on a gVisor H200: not gpunn's fault
            status, summary = "skipped", "compute-sanitizer does not support this GPU here (Device not supported)"
    elif step.kind == "bench" and status == "pass":  # its checks, header and tables; the summary: the ratios
        kept = [line for line in output.splitlines() if not line.strip() or line.startswith(("|", "check:", "device:",
                                                                                              "data:"))]
        ratios = [row.split("|")[-2].strip() for row in kept if re.search(r"\|\s*[\d.]+x\s*\|$", row)]
        summary, details = f"gpunn/torch: {', '.join(ratios) or '-'}", report.as_markdown("\n".join(kept))
    if status == "timeout":
        summary = f"stopped at its limit, {seconds:.0f} s; {summary}"
    if status != "pass" and output.strip():
        tail = "\n".join(output.splitlines()[-40:])
        details = (details + "\n\n" if details else "") + f"The end of its output:\n\n```text\n{tail}\n```"
    return Result(step.title, status, seconds, summary, shlex.join(step.argv), details)


def run_group(steps, found, env, deadline, log):
    """Start the steps together; each ends by itself, at its own time limit, or at the run's deadline."""
    results, running = {}, []
    for step in steps:
        limit = min(step.timeout, deadline - time.monotonic())
        results[step.title] = blocked(step, found)
        if results[step.title] is None and limit < min(step.timeout, MIN_STEP_SECONDS):
            results[step.title] = Result(step.title, "skipped", summary="the run's --budget is spent")
        if results[step.title] is None:
            out = tempfile.TemporaryFile("w+")
            print(f"     ... {step.title} (limit {limit:.0f} s)", flush=True)
            proc = subprocess.Popen(step.argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # a process group of its own: a timeout stops its children
            running.append((step, proc, out, time.monotonic(), limit))
    while running:
        time.sleep(0.2)
        for entry in list(running):
            step, proc, out, start, limit = entry
            seconds = time.monotonic() - start
            if proc.poll() is None and seconds < limit:
                continue
            running.remove(entry)
            status = "pass" if proc.returncode == 0 else "fail"
            if proc.returncode is None:
                status = "timeout"
                with contextlib.suppress(ProcessLookupError):  # it may have ended since the poll
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            out.seek(0)
            output = out.read()
            out.close()
            results[step.title] = summarize(step, status, seconds, output)
            log.write(f"\n==== {step.title}: {status} in {seconds:.1f} s\n$ {shlex.join(step.argv)}\n{output}")
            log.flush()
    for result in results.values():
        print(f"{result.status.upper():>8} {result.seconds:6.1f} s  {result.title}: {result.summary}", flush=True)
    return list(results.values())
