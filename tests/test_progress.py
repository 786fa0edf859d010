import importlib.util
import sys
import types
import warnings

import tqdm

from gpunn.utils import progress


def pretend_notebook(monkeypatch, ipywidgets):
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: types.SimpleNamespace(config={"IPKernelApp": {}})
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: (object() if ipywidgets else None) if name == "ipywidgets"
                        else find_spec(name, *args))


def test_a_notebook_without_ipywidgets_gets_the_text_bar_and_no_warning(monkeypatch, capsys):
    pretend_notebook(monkeypatch, ipywidgets=False)
    assert progress.bar_class() is tqdm.std.tqdm
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tqdm.auto would warn "IProgress not found"
        bar = progress.Progress(1, 10, "Epoch 1/1")
    assert bar.bar is not None  # a notebook redraws, although its output is not a terminal
    bar.close({"loss": 1.0})


def test_a_notebook_with_ipywidgets_gets_the_widget(monkeypatch):
    pretend_notebook(monkeypatch, ipywidgets=True)
    from tqdm.notebook import tqdm as widget

    assert progress.bar_class() is widget


def test_a_pipe_gets_one_line_per_epoch(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))  # imported, but no kernel runs
    bar = progress.Progress("auto", None, "Epoch 3/5", unit="batch")
    assert bar.bar is None
    bar.update(1, None)
    bar.update(1, None)
    bar.close({"loss": 0.5})
    assert capsys.readouterr().out.startswith("Epoch 3/5 - 2 batches - ")
