"""Every CUDA source compiles with NVRTC -- the compiler cupy.RawModule uses -- and gpunn's options.

Needs only the NVRTC library (the `nvidia-cuda-nvrtc` wheel of the test extra), no GPU.
"""

import ctypes
import ctypes.util
import glob
import os
import re
from pathlib import Path

import pytest

from gpunn.backend import kernels


def find_nvrtc():
    candidates = []
    try:
        import nvidia

        for root in nvidia.__path__:
            candidates += glob.glob(os.path.join(root, "cu1*", "lib", "libnvrtc.so*"))
            candidates += glob.glob(os.path.join(root, "cuda_nvrtc", "lib", "libnvrtc.so*"))
    except ImportError:
        pass
    found = ctypes.util.find_library("nvrtc")
    if found:
        candidates.append(found)
    for path in candidates:
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


NVRTC = find_nvrtc()
SOURCES = sorted(Path(kernels.kernel_dir()).glob("*.cu"))


def compile_with_nvrtc(path, *options):
    """(status, log) of NVRTC compiling ``path`` with gpunn's options and ``options``."""
    program = ctypes.c_void_p()
    code = kernels.source(path.stem).encode()  # what gpunn gives NVRTC: its headers pasted in
    assert NVRTC.nvrtcCreateProgram(ctypes.byref(program), code, path.name.encode(), 0, None, None) == 0
    options = [o.encode() for o in (*kernels.NVRTC_OPTIONS, *options)]
    status = NVRTC.nvrtcCompileProgram(program, len(options), (ctypes.c_char_p * len(options))(*options))
    size = ctypes.c_size_t()
    NVRTC.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    NVRTC.nvrtcGetProgramLog(program, log)
    NVRTC.nvrtcDestroyProgram(ctypes.byref(program))
    return status, log.value.decode()


@pytest.mark.skipif(NVRTC is None, reason="no NVRTC library (pip install nvidia-cuda-nvrtc)")
@pytest.mark.parametrize("path", SOURCES, ids=[p.name for p in SOURCES])
@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
def test_compiles_with_nvrtc(path, arch):
    status, log = compile_with_nvrtc(path, f"-arch={arch}")
    assert status == 0, log


@pytest.mark.skipif(NVRTC is None, reason="no NVRTC library (pip install nvidia-cuda-nvrtc)")
@pytest.mark.parametrize("path", SOURCES, ids=[p.name for p in SOURCES])
def test_kernels_keep_their_arrays_in_registers(path):
    """ptxas for an H100 (sm_90) reports no stack frame and no spills for any kernel: a per-thread array
    indexed by a run-time value would live in (slow, local) memory, and this catches it coming back."""
    status, log = compile_with_nvrtc(path, "-arch=sm_90", "-Xptxas", "-v")
    assert status == 0, log
    usage = re.findall(r"Function properties for (\w+)\s*\n.*?(\d+) bytes stack frame, (\d+) bytes spill stores, "
                       r"(\d+) bytes spill loads", log)
    kernels = set(re.findall(r"__global__\s+void\s+(\w+)\s*\(", path.read_text()))
    assert kernels <= {u[0] for u in usage}, log  # every kernel is reported
    assert [u for u in usage if u[1:] != ("0", "0", "0")] == [], "functions with a stack frame or spills"  # and the
    # device functions ptxas keeps apart (CUDA's accurate pow, for one) as well
