"""The host runner of tests/host_cuda.py: it runs every kernel, and refuses launches a GPU would get wrong."""

from pathlib import Path

import numpy as np
import pytest

from gpunn.backend import kernels
from tests import host_cuda

pytestmark = pytest.mark.skipif(host_cuda.COMPILER is None, reason="no C++ compiler for the host runner")

FAMILIES = sorted(p.stem for p in Path(kernels.kernel_dir()).glob("*.cu"))


@pytest.mark.parametrize("family", FAMILIES)
def test_every_kernel_compiles_for_the_host(family):
    module = host_cuda.HostModule(family)
    assert module.names == host_cuda.kernel_names(kernels.source(family)) and module.names
    for name in module.names:
        assert module.get_function(name).params


def test_launches_that_cupy_would_pass_wrongly_are_refused():
    sgd = host_cuda.HostModule("optimizers").get_function("sgd_update")  # (float* w, const float* g, long long n, float lr)
    w, g = np.ones(300, np.float32), np.ones(300, np.float32)
    with pytest.raises(TypeError, match="NumPy scalar"):
        sgd((2,), (256,), (w, g, 300, np.float32(0.5)))  # a bare int: CuPy would have to guess its width
    with pytest.raises(TypeError, match="8-byte integer, got int32"):
        sgd((2,), (256,), (w, g, np.int32(300), np.float32(0.5)))
    with pytest.raises(TypeError, match="4-byte floats, the array is float64"):
        sgd((2,), (256,), (w, g.astype(np.float64), np.int64(300), np.float32(0.5)))
    with pytest.raises(TypeError, match="C-contiguous"):
        sgd((2,), (256,), (w, np.ones(600, np.float32)[::2], np.int64(300), np.float32(0.5)))
    with pytest.raises(ValueError, match="CUDA's limits"):
        sgd((2,), (2048,), (w, g, np.int64(300), np.float32(0.5)))
    with pytest.raises(TypeError, match="takes 4 arguments"):
        sgd((2,), (256,), (w, g, np.int64(300)))
    sgd((2,), (256,), (w, g, np.int64(300), np.float32(0.5)))
    np.testing.assert_array_equal(w, 0.5)  # and a right launch runs
