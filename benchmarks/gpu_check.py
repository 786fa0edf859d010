"""One command that verifies gpunn on a GPU, and writes one Markdown report of what it found.

How to run it
    Once, on the machine you start from (the datasets are git-ignored; the GPU machine cannot download):

        mkdir -p data && cp -r ../shared/datasets/mnist ../shared/datasets/fashion-mnist data/
        PYTHONPATH=. python3 benchmarks/gpu_check.py --dry-run        # lists the steps, checks everything is here

    On the GPU, from the repository root (through this workplace's device tool: the working tree travels,
    data/ only because it is carried; $OUT comes back):

        run(command="PYTHONPATH=. python3 benchmarks/gpu_check.py --report $OUT/gpu_check.md",
            carry=["data"], timeout_s=600)

    (The copy sent there may hold no .git: add --commit <hash>, written out here, for the report to name it.)

    It writes the report and, beside it, the full output of every step (gpu_check.log), and prints one
    line per step, then the summary. Exit status 0 when no step failed or ran out of time (a skipped
    step does not fail the run). Every step has its own time limit and the run a budget (--budget, 540 s),
    so it ends inside the device tool's 600 s; a step the budget cannot fit is reported as skipped.

    Elsewhere: --quick shrinks every size (GPUNN_BACKEND=numpy --quick tries the whole plumbing on a CPU
    in a few minutes; the GPU-only steps then say "skipped: no GPU"); --steps lenet,notebooks runs a subset.

The steps (numbered as in issue #12)
    1. ``pytest -m gpu``; the kernel tests' GPU cases under compute-sanitizer memcheck, racecheck and synccheck
       (these four run at the same time: none of them is timed);
    2. every ``benchmarks/bench_*.py``, gpunn beside PyTorch, each checked before it is timed;
    3. LeNet-5 on full MNIST, 10 epochs: test accuracy (bar 99.0%) and seconds per epoch; with it
    5. memory: the GPU memory in use (CuPy's pool) after epoch 2 and after epoch 10 must be equal;
    4. determinism: two runs with the same seed give bit-identical weights (LeNet-5, and a sequence model);
    6. every notebook, its code cells run in one process without Jupyter, timed.
"""

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from benchmarks import gpu_check_report as report
from benchmarks.gpu_check_report import ROOT
from benchmarks.gpu_check_runner import Step, count_tests, find_sanitizer, gpu_usable, requirements, run_group

KERNEL_TESTS = tuple(f"tests/test_{name}.py" for name in ("im2col", "epilogue", "gemm", "gemm_epilogue",
                                                          "pooling_kernels", "softmax_kernels", "softmax_cross_entropy",
                                                          "recurrent", "attention", "optimizers"))
# In these files only the GPU cases of the kernel_device fixture have 'cupy' in their ids. Racecheck and
# synccheck look at shared memory and barriers, which the attention and matrix product kernels use, and the
# block sums of reduce.cuh (the epilogue's bias gradient, the loss's mean): attention with the smallest and
# largest head size, every sequence-length pair and every mask/causal combination; sgemm and sgemm_bias_act on
# every shape and layout, and with blocks looping over row tiles; the two sums over 1 to 1024 blocks.
SHARED_MEMORY = (("tests/test_attention.py", "tests/test_gemm.py", "tests/test_gemm_epilogue.py",
                  "tests/test_epilogue.py", "tests/test_softmax_cross_entropy.py", "-k",
                  "cupy and ((kernels_match_twin and (-16] or -128])) or kernel_matches_twin or row_tiles "
                  "or summed_the_same_way)"), 300,
                 "Covers the kernels with shared memory and barriers: attention (head sizes 16 and 128, every "
                 "sequence-length pair, with and without a key mask and causality), sgemm and sgemm_bias_act (every "
                 "shape and layout of their tests, and the loop over row tiles), and the block sums of the "
                 "epilogue's bias gradient and the loss's mean.")
SANITIZED = {"memcheck": ((*KERNEL_TESTS, "-k", "cupy"), 200,
                          "Covers every kernel test's GPU case (im2col/col2im, the conv epilogue, the matrix products, "
                          "pooling, softmax and its cross-entropy, the LSTM step, attention, the optimizer "
                          "updates), with CuPy's memory pool off (benchmarks/no_memory_pool.py), so that memcheck "
                          "sees the bounds of each array."),
             "racecheck": SHARED_MEMORY, "synccheck": SHARED_MEMORY}
BENCH_ARGS = {  # (a GPU run, --quick); a script not named here runs with its defaults
    "bench_attention.py": ([], ["--shapes", "2,2,64,16", "--repeat", "2"]),
    "bench_conv.py": ([], ["--batch", "4", "--channels", "8", "--size", "16", "--filters", "8", "--repeat", "2"]),
    "bench_lenet.py": (["--repeat", "2"], ["--batch-sizes", "64", "--repeat", "1", "--limit", "12000"]),
    "bench_rnn.py": ([], ["--shapes", "5,4,8,16", "--repeat", "2"]),
}
BENCH_TIMEOUT = {"bench_lenet.py": 180}  # seconds (bench_lenet also counts launches on the stand-in); others 75
STEP_KEYS = ("tests", "sanitizers", "benchmarks", "lenet", "determinism", "notebooks")
PYTEST = ("-m", "pytest", "-v", "-p", "no:cacheprovider")


def plan(quick, sanitizer):
    """The steps in order, as groups: the steps of one group run at the same time."""
    py, task = sys.executable, [sys.executable, "-m", "benchmarks.gpu_check_tasks"]
    gpu_tests = ("-m", "gpu")
    groups = [[Step("tests", "1. pytest -m gpu", [py, *PYTEST, *gpu_tests, "--durations=5"], 180, ("gpu", "pytest"),
                    "pytest", gpu_tests)]]
    for tool, (tests, timeout, note) in SANITIZED.items():
        argv = [sanitizer or "compute-sanitizer", "--tool", tool, "--error-exitcode", "1", "--print-limit", "20",
                py, *PYTEST, "-p", "benchmarks.no_memory_pool", *tests]
        groups[0].append(Step("sanitizers", f"1. {tool}: kernel tests", argv, timeout,
                              ("gpu", "compute-sanitizer", "pytest"), "sanitizer", tests, note))
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        argv = [py, f"benchmarks/{script.name}", *BENCH_ARGS.get(script.name, ([], []))[quick]]
        groups.append([Step("benchmarks", f"2. {script.name}", argv, BENCH_TIMEOUT.get(script.name, 75),
                            ("torch", "fashion-mnist"), "bench")])
    lenet = ["--epochs", "3", "--limit", "3000", "--bar", "0.8"] if quick else ["--epochs", "10", "--bar", "0.99"]
    groups.append([Step("lenet", "3. LeNet-5 on MNIST (and 5. memory)", task + ["lenet", *lenet], 150, ("mnist",))])
    determinism = ["determinism", "--limit", "1000" if quick else "10000"]
    groups.append([Step("determinism", "4. determinism", task + determinism, 60, ("mnist",))])
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        argv = task + ["notebook", f"notebooks/{notebook.name}"] + (["--small"] if quick else [])
        groups.append([Step("notebooks", f"6. {notebook.stem}", argv, 90, ("matplotlib", "mnist", "fashion-mnist"))])
    return groups


def main(argv=None):
    parser = argparse.ArgumentParser(prog="benchmarks/gpu_check.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, default=ROOT / "reports" / "gpu_check.md",
                        help="the Markdown report (default reports/gpu_check.md); the log goes beside it, .log")
    parser.add_argument("--dry-run", action="store_true", help="list the steps and check that everything is here")
    parser.add_argument("--quick", action="store_true", help="small sizes everywhere: to try the check itself")
    parser.add_argument("--steps", help=f"a comma-separated subset of: {', '.join(STEP_KEYS)}")
    parser.add_argument("--budget", type=float, default=540, help="seconds for the whole run (default 540)")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("GPUNN_DATA_DIR") or ROOT / "data"),
                        help="the folder holding mnist/ and fashion-mnist/ (default $GPUNN_DATA_DIR, else data/)")
    parser.add_argument("--commit", help="the commit to name in the report, where this is no git checkout")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.budget
    selected = set(args.steps.split(",")) if args.steps else set(STEP_KEYS)
    if selected - set(STEP_KEYS):
        parser.error(f"--steps: unknown {', '.join(sorted(selected - set(STEP_KEYS)))}; valid: {', '.join(STEP_KEYS)}")
    backend = os.environ.get("GPUNN_BACKEND", "cupy").strip().lower()
    backend = "numpy" if backend == "numpy" else "cupy"  # the children's; this process imports gpunn on NumPy
    os.environ["GPUNN_BACKEND"] = "numpy"
    env = {**os.environ, "GPUNN_BACKEND": backend, "GPUNN_DATA_DIR": str(args.data.resolve()), "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1"}
    sanitizer = find_sanitizer()
    found = requirements(args.data, backend == "cupy" and gpu_usable(env), sanitizer)
    groups = [g for g in ([s for s in group if s.key in selected] for group in plan(args.quick, sanitizer)) if g]
    if args.dry_run:
        return dry_run(groups, found, env)
    if backend == "cupy" and not found["gpu"][0]:
        sys.exit("GPUNN_BACKEND=cupy (the default) but gpunn cannot use a GPU here: `python -m gpunn info` says why. "
                 "To try the check itself on a CPU: GPUNN_BACKEND=numpy PYTHONPATH=. python3 benchmarks/gpu_check.py "
                 "--quick")
    return run(groups, found, env, args, deadline)


def dry_run(groups, found, env):
    """Print what a run would do and what it needs; 0 when everything a GPU run needs is here."""
    steps = [s for group in groups for s in group]
    counts = count_tests(steps, env)
    print("The steps, in order ('+': runs at the same time as the step above):")
    for group in groups:
        for i, step in enumerate(group):
            tests = f", {counts[step.tests]} tests" if step.tests else ""
            print(f"  {'+' if i else ' '} {step.title:<38} limit {step.timeout:3.0f} s{tests:<11} "
                  f"{shlex.join(step.argv)}")
    needed = {n for s in steps for n in s.needs} - {"gpu", "compute-sanitizer"}
    print("\nWhat they need (a GPU and compute-sanitizer are only reported: this may be any machine):")
    for name, (ok, detail) in found.items():
        print(f"  {'ok' if ok else 'MISSING' if name in needed else 'absent':8} {name:18} {detail}")
    missing = sorted(n for n in needed if not found[n][0])
    missing += [f"tests for '{s.title}' (its selection collects none)"
                for s in steps if s.tests and not counts[s.tests]]
    if missing:
        print(f"\nmissing for a GPU run: {'; '.join(missing)}")
        return 1
    print("\neverything a GPU run needs is here")
    return 0


def run(groups, found, env, args, deadline):
    """Run the groups in order, writing the report after each; 1 when a step failed or ran out of time."""
    where, info = report.environment(env, args.commit)
    notes = [f"GPUNN_BACKEND={env['GPUNN_BACKEND']}, " + ("--quick sizes" if args.quick else "full sizes")]
    log_path = args.report.with_suffix(".log")
    args.report.parent.mkdir(parents=True, exist_ok=True)
    results = []
    report.write_report(args.report, results, where, info, sum(map(len, groups)), notes)
    with open(log_path, "w") as log:
        for i, group in enumerate(groups):
            results += run_group(group, found, env, deadline, log)
            report.write_report(args.report, results, where, info, sum(map(len, groups[i + 1:])), notes)
    print("\n" + report.verdict(results))
    print(report.table([(r.title, r.status, f"{r.seconds:.1f}", r.summary) for r in results],
                       ["step", "result", "seconds", "key figures"]))
    print(f"\nreport: {args.report}\nlog:    {log_path}")
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
