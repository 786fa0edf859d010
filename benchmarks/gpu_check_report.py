"""The GPU check's report: where it ran (device, driver, versions, commit, date) and each step's result, as Markdown.

:func:`write_report` is called after every step, so a run stopped half-way still leaves a report
of what it finished.
"""

import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COUNTED = {"pass": "passed", "fail": "failed", "timeout": "timed out", "skipped": "skipped"}
STATUSES = tuple(COUNTED)
MARKER = "GPU_CHECK_RESULT "  # starts the last line a task of gpu_check_tasks prints: its result, as JSON


@dataclass
class Result:
    """What one step of the check gave: its status, its wall time, a one-line summary and Markdown details."""

    title: str
    status: str  # one of STATUSES
    seconds: float = 0.0
    summary: str = ""
    command: str = ""
    details: str = ""

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"Result {self.title!r}: status must be one of {STATUSES}; received {self.status!r}")

    @property
    def failed(self):
        return self.status in ("fail", "timeout")


def _run(argv, **kwargs):
    """The stripped stdout of a short command, or '' when it is missing or fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, **kwargs)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def commit():
    """The checkout's short commit, marked when the working tree has uncommitted changes."""
    head = _run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT)
    if not head:
        return "unknown (no git checkout here: pass --commit)"
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT)
    return head + (" + uncommitted changes" if dirty else "")


def version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment(env, commit_id=None):
    """(rows of the 'where' table, the output of ``python -m gpunn info``) for the report's head."""
    smi = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]) \
        if shutil.which("nvidia-smi") else ""
    info = _run([sys.executable, "-m", "gpunn", "info"], env={**env, "GPUNN_BACKEND": "auto"}, cwd=ROOT)
    rows = [("date", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
            ("commit", commit_id or commit()),
            ("command", " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])),
            ("GPU (nvidia-smi: name, driver, memory)", smi or "nvidia-smi not found"),
            ("machine", f"{platform.node()}, {platform.machine()}, Python {platform.python_version()}"),
            ("NumPy / CuPy / PyTorch", f"{version('numpy')} / {cupy_version()} / {version('torch')}")]
    return rows, info or "python -m gpunn info failed"


def cupy_version():
    """The version of whichever CuPy wheel is installed (they are named after the CUDA they are built for)."""
    for package in ("cupy-cuda13x", "cupy-cuda12x", "cupy"):
        if version(package) != "not installed":
            return f"{version(package)} ({package})"
    return "not installed"


def table(rows, columns):
    """A Markdown table; '|' inside a cell is escaped."""
    def cell(value):
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


def as_markdown(text):
    """A step's printed output made safe to paste into Markdown: one blank line around each table, no runs of them."""
    out, in_table = [], False
    for line in text.strip().splitlines():
        is_row = line.lstrip().startswith("|")
        if (is_row != in_table or not line.strip()) and out and out[-1]:
            out.append("")
        if line.strip():
            out.append(line)
        in_table = is_row
    return "\n".join(out)


def verdict(results, pending=0):
    """One sentence: how many steps passed, failed, timed out, were skipped, and how many did not run yet."""
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    parts = [f"{counts[s]} {COUNTED[s]}" for s in STATUSES if counts[s]]
    if pending:
        parts.append(f"{pending} not run yet (the run is still going, or was stopped)")
    ok = not any(r.failed for r in results) and not pending
    return f"**{'PASS' if ok else 'FAIL'}**: {len(results)} steps, " + ", ".join(parts or ["none run"]) + "."


def render(results, where, info, pending=0, notes=()):
    """The whole report as Markdown text."""
    lines = ["# gpunn GPU check", "", table(where, ["", ""]), "", "```text", info.strip(), "```", ""]
    lines += [f"- {note}" for note in notes] + ([""] if notes else [])
    lines += ["## Summary", "", verdict(results, pending), "",
              table([(r.title, r.status, f"{r.seconds:.1f}", r.summary) for r in results],
                    ["step", "result", "seconds", "key figures"]), ""]
    for r in results:
        lines += [f"## {r.title}", "", f"**{r.status}** in {r.seconds:.1f} s: {r.summary}", ""]
        if r.command:
            lines += [f"`{r.command}`", ""]
        if r.details:
            lines += [r.details, ""]
    return "\n".join(lines)


def write_report(path, results, where, info, pending=0, notes=()):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(results, where, info, pending, notes))


def pytest_summary(output):
    """The counts of pytest's last line ('120 passed, 4 skipped'), or of its -v lines when it was stopped."""
    found = re.findall(r"^=+ (.*?(?:\d+ (?:passed|failed|errors?|skipped|deselected)|no tests ran).*?) in [\d.]+s",
                       output, re.M)
    if found:
        return found[-1]
    counts = {w: len(re.findall(rf" {mark}\b", output)) for w, mark in (("passed", "PASSED"), ("failed", "FAILED"),
                                                                          ("errors", "ERROR"))}
    return "stopped after " + ", ".join(f"{n} {w}" for w, n in counts.items())


def sanitizer_summary(output):
    """compute-sanitizer's own summary line ('ERROR SUMMARY: 0 errors'), or '' when it printed none."""
    found = re.findall(r"=+ ((?:ERROR|RACECHECK) SUMMARY: .*)", output)
    return found[-1].strip() if found else ""
