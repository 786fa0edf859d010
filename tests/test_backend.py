import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import gpunn.backend as backend
from gpunn.backend import kernels

ROOT = Path(__file__).resolve().parent.parent


def run_python(code, env_extra, tmp_path=None, fake_cupy=None):
    """Run ``code`` in a fresh interpreter (GPUNN_BACKEND is read at import)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUNN_")}
    env.update(env_extra)
    paths = [str(ROOT)]
    if fake_cupy is not None:
        pkg = tmp_path / "cupy"
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text(textwrap.dedent(fake_cupy))
        paths.insert(0, str(tmp_path))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


NO_DEVICE_CUPY = """
    class _Runtime:
        @staticmethod
        def getDeviceCount():
            raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")
    class cuda:
        runtime = _Runtime
"""


def fake_cupy_missing(library):
    """A CuPy that sees one GPU but lacks ``library`` ('curand', 'cublas' or 'nvrtc'), as a CuPy wheel
    installed without its [ctk] extra does on a machine with only the NVIDIA driver."""
    return f"""
    import numpy
    MISSING = {library!r}

    def _fail(lib):
        if lib == MISSING:
            raise RuntimeError(f"CuPy failed to load lib{{lib}}.so: cannot open shared object file")

    class _Runtime:
        getDeviceCount = staticmethod(lambda: 1)
        runtimeGetVersion = staticmethod(lambda: 13000)
        driverGetVersion = staticmethod(lambda: 13000)
        getDeviceProperties = staticmethod(lambda i: {{"name": b"Fake GPU", "totalGlobalMem": 2**34, "major": 9,
                                                      "minor": 0}})

    class _Device:
        def __init__(self, i=0): pass
        def __enter__(self): return self
        def __exit__(self, *a): pass
        def use(self): pass

    class cuda:
        runtime = _Runtime
        Device = _Device

    class _RandomState:
        def __init__(self, seed=None):
            _fail("curand")
            self.rng = numpy.random.default_rng(seed)
        def random_sample(self, shape, dtype):
            return self.rng.random(shape, dtype=dtype)

    class random:
        RandomState = _RandomState

    class _Matrix(numpy.ndarray):
        def __matmul__(self, other):
            _fail("cublas")
            return numpy.asarray(self) @ numpy.asarray(other)

    def asarray(a, dtype=None):
        return numpy.asarray(a, dtype=dtype).view(_Matrix)

    zeros = numpy.zeros
    __version__ = "14.2.0"

    class RawKernel:
        def __init__(self, code, name):
            _fail("nvrtc")
        def __call__(self, grid, block, args):
            args[0][:] = 2.0 * numpy.arange(len(args[0]))
    """


@pytest.mark.parametrize("library, what", [("curand", "cuRAND"), ("cublas", "cuBLAS"), ("nvrtc", "NVRTC")])
def test_a_missing_cuda_library_makes_auto_fall_back_and_cupy_name_it(library, what, tmp_path):
    """CuPy sees the GPU, but one of the libraries gpunn needs is missing (a driver-only machine)."""
    fake = fake_cupy_missing(library)
    auto = run_python("import gpunn; print(gpunn.backend.name)", {}, tmp_path / "auto", fake_cupy=fake)
    assert auto.returncode == 0, auto.stderr
    assert auto.stdout.strip() == "numpy"
    (line,) = auto.stderr.strip().splitlines()
    assert what in line and f"lib{library}.so" in line
    asked = run_python("import gpunn", {"GPUNN_BACKEND": "cupy"}, tmp_path / "cupy", fake_cupy=fake)
    assert asked.returncode != 0 and "BackendError" in asked.stderr
    assert what in asked.stderr and "gpunn[cuda13]" in asked.stderr and "[ctk]" in asked.stderr
    info = run_python("from gpunn.__main__ import main; main(['info'])", {"GPUNN_BACKEND": "numpy"},
                      tmp_path / "info", fake_cupy=fake)
    assert info.returncode == 0, info.stderr
    checks = [line for line in info.stdout.splitlines() if line.startswith("check")]
    assert len(checks) == 3 and sum(line.endswith(": ok") for line in checks) == 2
    assert any(what in line and f"lib{library}.so" in line for line in checks)


def test_the_cuda_extras_bring_the_cuda_libraries():
    """pip install 'gpunn[cuda13]' must pull CuPy's [ctk] extra: the CUDA libraries from the package index."""
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    extras = config["options.extras_require"]
    assert extras["cuda13"].strip().startswith("cupy-cuda13x[ctk]")
    assert extras["cuda12"].strip().startswith("cupy-cuda12x[ctk]")


def test_numpy_backend_by_env():
    out = run_python("import gpunn; print(gpunn.backend.name, gpunn.backend.xp.__name__)", {"GPUNN_BACKEND": "numpy"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["numpy", "numpy"]
    assert out.stderr == ""  # an explicit choice is not announced


def test_auto_without_cupy_falls_back_and_says_why_once(tmp_path):
    code = "import sys; sys.modules['cupy'] = None\nimport gpunn; print(gpunn.backend.name)"
    out = run_python(code, {"GPUNN_BACKEND": "auto"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "numpy"
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "CuPy is not installed" in lines[0]


def test_auto_with_cupy_but_no_device_falls_back(tmp_path):
    out = run_python("import gpunn; print(gpunn.backend.name)", {}, tmp_path, fake_cupy=NO_DEVICE_CUPY)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "numpy"
    assert "driver" in out.stderr


def test_cupy_requested_but_unusable_names_reason_and_fix(tmp_path):
    out = run_python("import gpunn", {"GPUNN_BACKEND": "cupy"}, tmp_path, fake_cupy=NO_DEVICE_CUPY)
    assert out.returncode != 0
    assert "BackendError" in out.stderr and "insufficient" in out.stderr and "gpunn[cuda13]" in out.stderr


def test_unknown_backend_lists_valid_ones():
    out = run_python("import gpunn", {"GPUNN_BACKEND": "tpu"})
    assert out.returncode != 0
    assert "ValueError" in out.stderr and "auto, numpy, cupy" in out.stderr


def test_set_backend_at_run_time(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(backend.BackendError, match="CuPy is not installed"):
        backend.set_backend("cupy")
    with pytest.raises(ValueError, match="valid backends"):
        backend.set_backend("torch")
    assert backend.set_backend("NumPy").name == "numpy"
    assert str(backend.current()) == "numpy (CPU)"


def test_available_backends(tmp_path, monkeypatch):
    out = run_python("import gpunn; print(gpunn.backend.available())", {"GPUNN_BACKEND": "numpy"}, tmp_path,
                     fake_cupy=NO_DEVICE_CUPY)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['numpy']"
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert backend.available() == ["numpy"]


def test_bad_device_index():
    with pytest.raises(ValueError, match="GPUNN_DEVICE"):
        backend.set_backend("numpy", device="first")


def test_array_helpers_on_numpy():
    backend.set_backend("numpy")
    a = backend.to_device([[1, 2]], dtype=np.float32)
    assert backend.get_array_module(a) is np
    assert isinstance(backend.to_numpy(a), np.ndarray)
    backend.synchronize()
    backend.seed(3)
    r1, p1 = backend.random((4,)), backend.permutation(5)
    backend.seed(3)
    np.testing.assert_array_equal(r1, backend.random((4,)))
    np.testing.assert_array_equal(p1, backend.permutation(5))
    assert r1.dtype == np.float32 and sorted(p1) == list(range(5))


def test_info_command():
    out = subprocess.run([sys.executable, "-m", "gpunn", "info"], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "GPUNN_BACKEND": "numpy", "GPUNN_DATA_DIR": "/data/here"}, timeout=120)
    assert out.returncode == 0, out.stderr
    for word in ("backend      numpy (CPU)", "numpy", "cupy", "kernels", "/data/here/<name>"):
        assert word in out.stdout


def test_kernel_sources_found_and_named():
    backend.set_backend("numpy")
    families = sorted(p.stem for p in kernels.kernel_dir().glob("*.cu"))
    assert families, "cuda_kernels/ holds no .cu file"
    assert "extern \"C\"" in kernels.source(families[0])
    with pytest.raises(FileNotFoundError, match="known families"):
        kernels.source("no_such_family")
    with pytest.raises(RuntimeError, match="backend is numpy"):
        kernels.get_kernel(families[0], "anything")


def test_wheel_ships_the_cuda_sources(tmp_path):
    pytest.importorskip("build")
    out = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    import zipfile

    (wheel,) = tmp_path.glob("gpunn-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"gpunn/cuda_kernels/{p.name}" for p in (ROOT / "cuda_kernels").glob("*.cu*")}  # and the headers
    assert expected and expected <= names, f"missing from the wheel: {expected - names}"


@pytest.mark.gpu
def test_available_lists_cupy_on_a_gpu():
    assert backend.available() == ["numpy", "cupy"]
