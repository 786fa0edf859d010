"""The course notebooks: stored clean, public API only, and executed top to bottom (headless, nbclient).

Each notebook has one cell tagged ``parameters`` holding its size knobs. The
test runs a copy with a cell of smaller sizes inserted right after it (the
papermill convention), so the whole set runs in a few minutes on a CPU; the
``slow`` test runs them at their own sizes. The notebooks check their own
results with ``assert`` (a hand-written gradient equals gpunn's, a model beats
chance...), so a notebook that runs is a notebook that is right.
"""

import os
import re
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"  # the repository's offline copies

# Sizes for the test run: small enough for CI, large enough for every notebook's own checks.
SMALL = {
    "01_logistic_regression": {"N_SAMPLES": 200, "ITERATIONS": 600},
    "02_deep_networks": {"N_SAMPLES": 200, "ITERATIONS": 300, "EPOCHS": 60},
    "03_optimization_and_regularization": {"N_SAMPLES": 200, "N_DEV": 200, "N_FEW": 30, "EPOCHS": 8, "PATH_STEPS": 20},
    "04_convolutions_and_lenet": {"TRAIN_SAMPLES": 3000, "TEST_SAMPLES": 500, "EPOCHS": 2, "TIMING_BATCH": 8},
    "05_sequence_models": {"TEXT_CHARS": 8000, "UNITS": 32, "EPOCHS": 2, "SAMPLE_LENGTH": 40},
    "06_attention_and_transformers": {"TRAIN_SAMPLES": 2000, "TEST_SAMPLES": 500, "EPOCHS": 2, "DEPTH": 32},
    "07_backends_and_kernels": {"BATCH": 8, "REPEAT": 3, "LARGEST": 10 ** 5},
    "08_classic_networks": {"TRAIN_SAMPLES": 1500, "TEST_SAMPLES": 500, "EPOCHS": 2, "FEW_LABELS": 200},
    "09_seq2seq_and_attention": {"TRAIN_PAIRS": 1500, "TEST_PAIRS": 50, "EPOCHS": 1, "UNITS": 32, "DEPTH": 32},
    "10_word_embeddings": {"N_SENTENCES": 1000, "EPOCHS": 3},
    "11_detection": {"TRAIN_IMAGES": 300, "TEST_IMAGES": 50, "EPOCHS": 1, "WINDOW_DIGITS": 3000, "MAP_BAR": 0.0},
    "12_faces_and_style": {"TRAIN_SAMPLES": 1000, "EPOCHS": 1, "PAIRS": 200, "ACCURACY_BAR": 0.52, "STYLE_STEPS": 30},
}


def notebook_names():
    return sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))


def read(name):
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def parameters_index(nb):
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"expected one cell tagged 'parameters', found {len(tagged)}"
    return tagged[0]


def execute(name, overrides, workdir, timeout=600):
    """Run notebook ``name`` in ``workdir`` with ``overrides`` injected after its parameters cell."""
    nb = read(name)
    index = parameters_index(nb)
    if overrides:
        source = "# injected by tests/test_notebooks.py\n" + "\n".join(f"{k} = {v!r}" for k, v in overrides.items())
        nb.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return nb


def test_the_twelve_notebooks_are_there():
    assert notebook_names() == sorted(SMALL), "every notebook needs test sizes in SMALL (and nothing else)"
    assert len(SMALL) == 12


@pytest.mark.parametrize("name", notebook_names())
def test_stored_clean_with_one_parameters_cell(name):
    nb = read(name)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "strip the outputs before committing"
    params = nb.cells[parameters_index(nb)]
    names = set(re.findall(r"^([A-Z_][A-Z0-9_]*)\s*=", params.source, re.M))
    assert set(SMALL[name]) <= names, f"test sizes {sorted(set(SMALL[name]) - names)} are not knobs of {name}"


@pytest.mark.parametrize("name", notebook_names())
def test_uses_only_public_api(name):
    source = "\n".join(c.source for c in read(name).cells if c.cell_type == "code")
    private = re.findall(r"\bgpunn(?:\.\w+)*\.(?!__)_\w+|from gpunn[\w.]* import[^\n]*\b(?!__)_\w+", source)
    assert not private, f"{name} reaches into gpunn's internals: {private}"
    assert "sys.path" not in source


@pytest.fixture
def data_dir(monkeypatch):
    """The kernel inherits the environment: point the dataset loaders at the offline copies when there are some."""
    if "GPUNN_DATA_DIR" not in os.environ and SHARED.is_dir():
        monkeypatch.setenv("GPUNN_DATA_DIR", str(SHARED))


@pytest.mark.parametrize("name", notebook_names())
def test_runs_top_to_bottom(name, tmp_path, data_dir):
    nb = execute(name, SMALL[name], tmp_path)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert any(o.output_type == "display_data" and "image/png" in o.data
               for c in nb.cells if c.cell_type == "code" for o in c.outputs), "no figure was drawn"


@pytest.mark.slow
@pytest.mark.parametrize("name", notebook_names())
def test_runs_at_full_size(name, tmp_path, data_dir):
    start = time.perf_counter()
    execute(name, {}, tmp_path, timeout=3600)
    print(f"{name}: {time.perf_counter() - start:.0f} s at its own sizes")
