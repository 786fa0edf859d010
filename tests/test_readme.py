"""The README's example must run as written."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"


@pytest.mark.skipif(not (SHARED / "fashion-mnist").is_dir(), reason="Fashion-MNIST files not present")
def test_readme_example_runs(monkeypatch, capsys):
    monkeypatch.setenv("GPUNN_DATA_DIR", str(SHARED))
    (code,) = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    exec(compile(code, "README.md", "exec"), {})
    loss, accuracy = eval(capsys.readouterr().out.strip().splitlines()[-1])
    assert accuracy > 0.83
