"""benchmarks/gpu_check.py, the one command that verifies a GPU: its dry run, its report, how it runs and reads steps.

The GPU steps themselves need a GPU; these tests check the plumbing around them on any machine.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check, gpu_check_tasks
from benchmarks.gpu_check_report import MARKER, Result, as_markdown, pytest_summary, render, sanitizer_summary
from benchmarks.gpu_check_runner import Step, run_group, summarize

ROOT = Path(__file__).resolve().parent.parent


def gpu_check_cli(*args):
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "GPUNN_BACKEND": "numpy"}, timeout=120)
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def fake_data(tmp_path):
    """A data folder with every file the loaders look for (empty: the dry run only looks)."""
    from gpunn.datasets import fashion_mnist, mnist

    for name, files in (("mnist", mnist.FILES), ("fashion-mnist", fashion_mnist.FILES)):
        (tmp_path / name).mkdir()
        for f in files:
            (tmp_path / name / f).touch()
    return tmp_path


def test_dry_run_lists_the_steps_and_finds_everything(fake_data):
    code, out = gpu_check_cli("--dry-run", "--data", str(fake_data), "--steps",
                              "tests,sanitizers,lenet,determinism,notebooks")  # benchmarks need PyTorch (see below)
    assert code == 0, out
    for title in ["1. pytest -m gpu", "1. memcheck", "1. racecheck", "1. synccheck", "3. LeNet-5", "4. determinism",
                  "6. 01_logistic_regression", "6. 07_backends_and_kernels"]:
        assert title in out
    assert out.count(" tests ") >= 4 and ", 0 tests" not in out, "each pytest step's selection collects tests"
    assert "everything a GPU run needs is here" in out


def test_dry_run_with_benchmarks_needs_pytorch(fake_data):
    pytest.importorskip("torch")
    code, out = gpu_check_cli("--dry-run", "--data", str(fake_data), "--steps", "benchmarks")
    assert code == 0, out
    assert all(f"2. {p.name}" in out for p in (ROOT / "benchmarks").glob("bench_*.py"))


def test_dry_run_names_what_is_missing_and_how_to_get_it(tmp_path):
    code, out = gpu_check_cli("--dry-run", "--data", str(tmp_path), "--steps", "lenet")
    assert code == 1
    assert "MISSING  mnist" in out and "cp -r ../shared/datasets/mnist data/" in out
    assert "missing for a GPU run: mnist" in out


def test_unknown_steps_are_refused():
    code, out = gpu_check_cli("--steps", "lenet,gpu")
    assert code == 2 and "unknown gpu" in out


def test_the_plan_runs_every_benchmark_and_notebook():
    titles = [s.title for group in gpu_check.plan(quick=False, sanitizer=None) for s in group]
    assert {f"2. {p.name}" for p in (ROOT / "benchmarks").glob("bench_*.py")} <= set(titles)
    assert {f"6. {p.stem}" for p in (ROOT / "notebooks").glob("*.ipynb")} <= set(titles)
    assert set(gpu_check.BENCH_ARGS) <= {p.name for p in (ROOT / "benchmarks").glob("bench_*.py")}


WHERE = [("date", "2026-11-24 12:00 UTC"), ("commit", "abc1234")]
RESULTS = [Result("1. pytest -m gpu", "pass", 51.25, "120 passed, 4 skipped", "python -m pytest -m gpu"),
           Result("2. bench_conv.py", "fail", 3.0, "AssertionError", "python benchmarks/bench_conv.py",
                  "The end of its output:\n\n```text\nAssertionError\n```"),
           Result("1. memcheck: kernel tests", "skipped", summary="no GPU")]
EXPECTED = """# gpunn GPU check

|  |  |
|---|---|
| date | 2026-11-24 12:00 UTC |
| commit | abc1234 |

```text
gpunn info
```

- a note

## Summary

**FAIL**: 3 steps, 1 passed, 1 failed, 1 skipped, 2 not run yet (the run is still going, or was stopped).

| step | result | seconds | key figures |
|---|---|---|---|
| 1. pytest -m gpu | pass | 51.2 | 120 passed, 4 skipped |
| 2. bench_conv.py | fail | 3.0 | AssertionError |
| 1. memcheck: kernel tests | skipped | 0.0 | no GPU |

## 1. pytest -m gpu

**pass** in 51.2 s: 120 passed, 4 skipped

`python -m pytest -m gpu`

## 2. bench_conv.py

**fail** in 3.0 s: AssertionError

`python benchmarks/bench_conv.py`

The end of its output:

```text
AssertionError
```

## 1. memcheck: kernel tests

**skipped** in 0.0 s: no GPU
"""


def test_report_is_the_expected_markdown():
    assert render(RESULTS, WHERE, "gpunn info", pending=2, notes=["a note"]) == EXPECTED


def test_a_result_refuses_an_unknown_status():
    with pytest.raises(ValueError, match="received 'ok'"):
        Result("x", "ok")


def test_pytest_and_sanitizer_lines_are_read():
    out = "t.py::a PASSED\n===== 2 passed, 1 skipped in 3.10s =====\n========= ERROR SUMMARY: 0 errors\n"
    assert pytest_summary(out) == "2 passed, 1 skipped"
    assert sanitizer_summary(out) == "ERROR SUMMARY: 0 errors"
    assert pytest_summary("t.py::a PASSED\nt.py::b FAILED\n") == "stopped after 1 passed, 1 failed, 0 errors"


def test_a_benchmark_is_summarized_by_its_ratios():
    out = "check: ok\ndevice: cupy\n| work | gpunn/torch |\n|---|---|\n| a | 1.50x |\n| b | 0.75x |\nnoise\n"
    result = summarize(Step("benchmarks", "2. b", ["b"], 1, kind="bench"), "pass", 2.0, out)
    assert result.summary == "gpunn/torch: 1.50x, 0.75x"
    assert result.details == "check: ok\ndevice: cupy\n\n| work | gpunn/torch |\n|---|---|\n| a | 1.50x |\n| b | 0.75x |"


def test_printed_tables_get_one_blank_line_around_them():
    assert as_markdown("text\n| a |\n\n\n| b |\nmore\n") == "text\n\n| a |\n\n| b |\n\nmore"


def test_steps_run_together_each_within_its_limit(tmp_path):
    found = {"gpu": (False, "no GPU"), "mnist": (True, "")}
    py = sys.executable
    result_line = MARKER + json.dumps({"summary": "fine", "details": "| a |"})
    steps = [Step("x", "passes", [py, "-c", f"print({result_line!r})"], 10),
             Step("x", "fails", [py, "-c", "raise SystemExit('broken')"], 10),
             Step("x", "hangs", [py, "-c", "import time; time.sleep(60)"], 1),
             Step("x", "needs a GPU", [py, "-c", "pass"], 10, needs=("gpu",))]
    with open(tmp_path / "log", "w") as log:
        results = run_group(steps, found, dict(os.environ), deadline=float("inf"), log=log)
    assert [(r.title, r.status) for r in results] == [("passes", "pass"), ("fails", "fail"), ("hangs", "timeout"),
                                                      ("needs a GPU", "skipped")]
    assert results[0].summary == "fine" and results[0].details == "| a |"
    assert "broken" in results[1].summary and "broken" in results[1].details
    assert results[2].seconds < 10
    assert "==== fails: fail" in (tmp_path / "log").read_text()


def test_a_step_the_budget_cannot_fit_is_skipped(tmp_path):
    import time

    with open(tmp_path / "log", "w") as log:
        [result] = run_group([Step("x", "late", [sys.executable, "-c", "pass"], 60)], {}, {}, time.monotonic() + 5, log)
    assert result.status == "skipped" and "budget" in result.summary


def test_notebook_cells_run_in_order_and_a_failure_names_its_cell(tmp_path):
    cells = [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": ["N = 2\n"]},
             {"cell_type": "markdown", "metadata": {}, "source": "text"},
             {"cell_type": "code", "metadata": {}, "source": "import matplotlib.pyplot as plt\nplt.plot([N])\n"},
             {"cell_type": "code", "metadata": {}, "source": "1 / (N - 2)"}]
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": cells}))
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check_tasks", "notebook", str(path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "GPUNN_BACKEND": "numpy"})
    assert done.returncode == 1
    result = json.loads(done.stdout.splitlines()[-1][len(MARKER):])
    assert result["summary"] == "code cell 3 raised ZeroDivisionError: division by zero"
    assert "1 / (N - 2)" in done.stderr  # the traceback shows the cell's source


def test_small_sizes_come_from_the_notebook_tests():
    assert gpu_check_tasks.small_sizes("07_backends_and_kernels")["LARGEST"] == 10 ** 5
