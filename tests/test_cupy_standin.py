"""The CuPy stand-in fails where a GPU fails, and counts what a training step costs on one.

Each check plants a mistake that NumPy forgives and a GPU does not, and shows the stand-in
catching it. The budgets hold a LeNet-5 training step (batch 128, Adam) to the launches it
makes today and to zero reads back to the host; a change that adds launches or a sync
inside the step fails here, on any machine.
"""

import sys

import numpy as np
import pytest

import gpunn
import gpunn.backend as backend
from gpunn.backend import kernels
from gpunn.layers import Dense, Layer
from tests import conftest, host_cuda

pytestmark = pytest.mark.skipif(host_cuda.COMPILER is None, reason="the stand-in runs kernels with a C++ compiler")


@pytest.fixture
def cupy(monkeypatch):
    """The stand-in as CuPy, in this process (the suite may run on NumPy or already on the stand-in)."""
    if conftest.standin() is not None:
        yield backend._cupy
        return
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] in ("cupy", "cupyx", "cupy_backends")}
    monkeypatch.syspath_prepend(str(conftest.STANDIN))
    kernels._module.cache_clear()
    kernels._kernels.clear()
    backend.set_backend("cupy")
    yield backend._cupy
    backend.set_backend("numpy")
    for k in [k for k in sys.modules if k.split(".")[0] in ("cupy", "cupyx")]:
        del sys.modules[k]
    sys.modules.update(saved)
    kernels._module.cache_clear()
    kernels._kernels.clear()


class PlantedBug(Layer):
    """A layer whose forward pass makes one of the mistakes below."""

    def __init__(self, mistake, **kwargs):
        super().__init__(**kwargs)
        self.mistake = mistake

    def forward(self, x, training=False):
        return self.mistake(x)


MISTAKES = {
    "implicit conversion": (lambda x: np.asarray(x) * 2, TypeError, "Implicit conversion to a NumPy array"),
    "NumPy ufunc on a device array": (lambda x: np.maximum(x, 0), TypeError, "does not support ufuncs"),
    "NumPy-only function": (lambda x: np.linalg.norm(x) * x, TypeError, "Implicit conversion"),
    "mixed with a host array": (lambda x: x + np.ones(x.shape[-1], dtype=x.dtype), TypeError,
                                "Unsupported type <class 'numpy.ndarray'>"),
    "a name CuPy lacks": (lambda x: backend.xp.geomspace(1, 2, 3) * x, AttributeError, "no attribute 'geomspace'"),
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_mistakes_numpy_forgives_fail_on_the_standin(name, cupy):
    mistake, error, message = MISTAKES[name]
    x = np.ones((2, 3), dtype=np.float32)
    backend.set_backend("numpy")
    assert PlantedBug(mistake)(x).shape == (2, 3)  # NumPy forgives it
    backend.set_backend("cupy")
    if name == "a name CuPy lacks" and cupy._core.real_cupy_api() is None:
        pytest.skip("real CuPy is not installed here: the stand-in cannot know which names it has")
    with pytest.raises(error, match=message):
        PlantedBug(mistake)(x)


def test_a_kernel_argument_of_the_wrong_width_is_refused(cupy):
    w, g = (cupy.ones(300, dtype=np.float32) for _ in range(2))
    with pytest.raises(TypeError, match="8-byte integer, got int32"):
        kernels.launch("optimizers", "sgd_update", 300, (w, g, np.int32(300), np.float32(0.5)))
    with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
        kernels.launch("optimizers", "sgd_update", 300, (w, np.ones(300, np.float32), np.int64(300), np.float32(0.5)))
    kernels.launch("optimizers", "sgd_update", 300, (w, g, np.int64(300), np.float32(0.5)))
    np.testing.assert_array_equal(cupy.asnumpy(w), 0.5)


def test_reads_back_to_the_host_work_and_are_counted(cupy):
    a = cupy.asarray(np.arange(6, dtype=np.float32))
    with cupy._standin.counting() as counted:
        total = float(a.sum())
        assert bool(a.max() > 4) and int(a[2]) == 2 and a.get().tolist() == list(range(6))
        assert f"{a.mean():.1f}" == "2.5" and total == 15.0
    assert counted.syncs == 5 and counted.uploads == 0


def lenet_step(cupy, batch=128, optimizer="adam"):
    """A compiled LeNet-5 on the stand-in, one batch on the device, and its train step."""
    from gpunn.examples.lenet import lenet5

    gpunn.utils.set_seed(0)
    model = lenet5()
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = backend.to_device(rng.random((batch, 1, 28, 28), dtype=np.float32))
    y = backend.to_device(rng.integers(0, 10, batch))
    model.train_step(x, y)  # builds everything: slots, kernel modules
    return lambda: model.train_step(x, y)


# What a LeNet-5 step (batch 128, Adam) launches on the GPU path, counted on the stand-in: CuPy
# operations (14 of them matrix products; every array computed counts as one) and gpunn's kernels. 93 at
# first; each max pooling became one kernel forward (with its 2 outputs) and one backward (with dx),
# pooling.cu: 5 counted, where im2col, max, argmax and arange, ==, *, col2im were 9; the softmax
# cross-entropy and its gradient became one kernel, losses.cu: 4 counted where there were 14; each
# Conv2D's bias + ReLU + layout became one epilogue kernel each way, epilogue.cu (2 fewer per layer): 71.
# Then 56 once ``empty`` stopped counting as a launch (it takes memory from the pool and launches
# nothing; it still counts as an allocation); 47 with the weights and gradients each one buffer, so
# that Adam is one launch for all ten weights (gpunn/utils/flat.py); 43 with the softmax activation's
# forward one kernel, losses.cu, where max, -, exp, sum, / were 5 (its backward is one kernel too, but
# the fused loss skips it); 39 with Dense on the same epilogue kernels (2 fewer per ReLU layer); 35 with each
# bias gradient summed by the epilogue's backward kernel (reduce.cuh), 34 with the loss's mean by the loss kernel;
# 29 with each small forward product and its epilogue one kernel (gemm.cu's sgemm_bias_act: 4 epilogues and the
# softmax layer's bias add). Left: 9 cuBLAS products, 19 kernels, 1 column sum (the softmax layer's db).
# Lower it when a change saves launches; a change that needs more must say why here.
LAUNCH_BUDGET = 29


def test_a_lenet_step_stays_within_its_launch_budget_and_never_syncs(cupy):
    step = lenet_step(cupy)
    with cupy._standin.counting() as counted:
        step()
    assert counted.syncs == 0 and counted.uploads == 0, counted
    assert counted.launches <= LAUNCH_BUDGET, counted
    assert counted.kernels >= 6  # im2col/col2im, the poolings and the optimizer updates run as gpunn's kernels


def test_training_keeps_memory_flat_and_fit_syncs_only_to_report(cupy):
    x = np.random.default_rng(0).random((512, 20), dtype=np.float32)
    y = (x.sum(axis=1) > 10).astype(np.int64)
    model = gpunn.Sequential([Dense(16, activation="relu", input_shape=(20,)), Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    used = cupy.get_default_memory_pool().used_bytes()
    with cupy._standin.counting() as counted:
        model.fit(x, y, batch_size=64, epochs=3, verbose=0)
    assert cupy.get_default_memory_pool().used_bytes() <= used  # nothing kept from epoch to epoch
    assert counted.uploads <= 3 and counted.syncs <= 3 * 2 + 2, counted  # data in once; logs once per epoch


def test_a_masked_step_never_syncs(cupy):
    """Padded sequences: the masks stay on the device through the LSTM's loop, attention and the loss."""
    from gpunn.layers import LSTM, Embedding, MultiHeadAttention

    gpunn.utils.set_seed(0)
    ids = gpunn.Input((None,))
    h = LSTM(8, return_sequences=True)(Embedding(20, 8, mask_zero=True)(ids))
    model = gpunn.Model(ids, Dense(5, activation="softmax")(MultiHeadAttention(2, 4)(h, h)))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).integers(1, 20, (16, 12))
    x[:, 7:] = 0
    x, y = backend.to_device(x.astype(np.float32)), backend.to_device(np.zeros((16, 12), np.int64))
    model.train_step([x], [y])
    with cupy._standin.counting() as counted:
        model.train_step([x], [y])
    assert counted.syncs == 0 and counted.uploads == 0, counted
