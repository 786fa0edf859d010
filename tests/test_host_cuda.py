"""The host runner of tests/host_cuda.py: it runs every kernel, and refuses launches a GPU would get wrong."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gpunn.backend as backend
from gpunn.backend import kernels
from tests import host_cuda

pytestmark = pytest.mark.skipif(host_cuda.COMPILER is None, reason="no C++ compiler for the host runner")

FAMILIES = sorted(p.stem for p in Path(kernels.kernel_dir()).glob("*.cu"))


@pytest.mark.parametrize("family", FAMILIES)
def test_every_kernel_compiles_for_the_host(family):
    module = host_cuda.HostModule(kernels.source(family))
    assert module.names == host_cuda.kernel_names(kernels.source(family)) and module.names
    for name in module.names:
        assert module.get_function(name).params


def test_launches_that_cupy_would_pass_wrongly_are_refused():
    sgd = host_cuda.HostModule(kernels.source("optimizers")).get_function("sgd_update")  # (float* w, const float* g, long long n, float lr)
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


def test_strided_views_only_for_the_arguments_a_kernel_reads_through_strides():
    """sgemm reads A and B through the strides it is given: views of any layout are taken, and the guards sit
    past the memory each view spans. Its output C, like every other kernel's arrays, must be C-contiguous."""
    sgemm = host_cuda.HostModule(kernels.source("gemm")).get_function("sgemm")
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    a, b = x[::-1, 1::2], x[1:3, ::-2].T  # (4, 3) and (3, 2), neither contiguous
    c = np.full((4, 2), np.nan, np.float32)
    sizes = [np.int64(v) for v in (4, 2, 3, *(s // 4 for s in a.strides + b.strides))]
    sgemm((1, 1), (256,), (a, b, c, *sizes, np.float32(0)))
    np.testing.assert_array_equal(c, a @ b)
    with pytest.raises(TypeError, match="argument 2: the array must be C-contiguous"):
        sgemm((1, 1), (256,), (a, b, np.zeros((2, 4), np.float32).T, *sizes, np.float32(0)))


OUT_OF_BOUNDS = r"""
extern "C" __global__ void shift(const float* x, float* y, long long n, int offset) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i < n) y[i + offset] = x[i] + 1.0f;
}
"""


@pytest.mark.parametrize("offset", [-1, 1, 700])  # within the guard band (GUARD elements)
def test_writes_outside_an_array_are_caught(offset):
    shift = host_cuda.HostModule(OUT_OF_BOUNDS).get_function("shift")
    x, y = np.zeros(300, np.float32), np.zeros(300, np.float32)
    with pytest.raises(IndexError, match="wrote outside argument 1"):
        shift((2,), (256,), (x, y, np.int64(300), np.int32(offset)))
    shift((2,), (256,), (x, y, np.int64(299), np.int32(1)))  # in bounds: y[1:300] = 1
    np.testing.assert_array_equal(y, np.r_[0, np.ones(299)])


def test_reads_outside_an_array_bring_nan():
    shift = host_cuda.HostModule(OUT_OF_BOUNDS.replace("x[i]", "x[i + 1]")).get_function("shift")
    x, y = np.zeros(300, np.float32), np.zeros(300, np.float32)
    shift((2,), (256,), (x, y, np.int64(300), np.int32(0)))
    assert np.isnan(y[-1]) and not np.isnan(y[:-1]).any()


def sequence_model():
    from gpunn.layers import LSTM, Dense, Embedding, GlobalAveragePooling1D, TransformerEncoder

    layers = [Embedding(20, 16), LSTM(24, return_sequences=True),
              TransformerEncoder(num_heads=2, key_dim=12, ff_dim=32, dropout=0.0, use_causal_mask=True),
              GlobalAveragePooling1D(), Dense(3, activation="softmax")]
    rng = np.random.default_rng(1)
    return layers, (11,), rng.integers(0, 20, (37, 11)), rng.integers(0, 3, 37)


def image_model():
    from gpunn.layers import AvgPool2D, BatchNormalization, Conv2D, Dense, Flatten, MaxPool2D

    layers = [Conv2D(4, 3, padding="same", activation="relu"), MaxPool2D(2), Conv2D(5, 3, strides=2),
              BatchNormalization(), AvgPool2D(2, padding="same"), Flatten(), Dense(3, activation="softmax")]
    rng = np.random.default_rng(1)
    return layers, (2, 13, 11), rng.random((29, 2, 13, 11)).astype(np.float32), rng.integers(0, 3, 29)


# model, optimizer, the kernels it must launch. (Adam turns float32 rounding in a gradient that is
# nearly 0 into a step of about lr either way, so the image model, whose col2im sums in another
# order than the twin, compares with plain gradient descent.)
MODELS = {
    "sequence": (sequence_model, "adam", {"embedding_backward", "lstm_step_forward", "lstm_step_backward",
                                          "attention_forward_32", "attention_backward_dq_32", "attention_backward_dkv_32",
                                          "softmax_forward", "adam_update"}),
    "image": (image_model, "sgd", {"im2col_forward_float", "col2im_backward_float", "sgemm_bias_act",
                                   "conv_bias_act_backward", "max_pool_forward_float", "max_pool_backward_float",
                                   "avg_pool_forward_float", "avg_pool_backward_float", "softmax_forward",
                                   "sgd_update"}),
}


def train_two_steps(make, optimizer):
    from gpunn import Sequential
    from gpunn.utils import set_seed

    backend.set_backend("numpy")  # the twins, or (after host_cuda.install) the kernels on NumPy arrays
    set_seed(0)
    layers, input_shape, x, y = make()
    model = Sequential(layers)
    model.build(input_shape)
    model.compile(optimizer, "sparse_categorical_crossentropy")
    losses = [float(model.train_step(x, y)[0])]
    grads = [g.copy() for g in model.trainable_grads]
    losses.append(float(model.train_step(x, y)[0]))
    return losses, grads, model.get_weights()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_layers_launch_their_kernels_and_train_like_the_twins(name, monkeypatch):
    """The layers' own glue (buffers, slices, dispatch) around the kernels: with the kernels on the host,
    each model trains exactly as on the twins, and launches the kernels it should."""
    make, optimizer, expected = MODELS[name]
    losses, grads, weights = train_two_steps(make, optimizer)
    host_cuda.install(monkeypatch)
    launched = set()
    get_kernel = kernels.get_kernel
    monkeypatch.setattr(kernels, "get_kernel", lambda family, kernel: launched.add(kernel) or get_kernel(family, kernel))
    host_losses, host_grads, host_weights = train_two_steps(make, optimizer)
    assert expected <= launched
    np.testing.assert_allclose(host_losses, losses, rtol=1e-5)
    assert len(host_grads) == len(grads) > 0
    for a, b in zip(host_grads, grads):  # the first step's gradients
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for a, b in zip(host_weights, weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def libasan():
    """The AddressSanitizer runtime of the host compiler, or None."""
    if host_cuda.COMPILER is None or "clang" in host_cuda.COMPILER:
        return None
    found = subprocess.run([host_cuda.COMPILER, "-print-file-name=libasan.so"], capture_output=True, text=True)
    path = found.stdout.strip()
    if not (os.path.isabs(path) and os.path.exists(path)):
        return None
    works = subprocess.run([sys.executable, "-c", "pass"], env={**os.environ, **asan_env(path)}, capture_output=True)
    return path if works.returncode == 0 else None  # some machines cannot start Python under ASan


def asan_env(path):
    return {"LD_PRELOAD": path, "ASAN_OPTIONS": "detect_leaks=0"}


LIBASAN = libasan()


@pytest.mark.skipif(LIBASAN is None, reason="no AddressSanitizer runtime that Python starts with")
def test_kernels_read_and_write_only_their_arrays_under_address_sanitizer():
    """The kernel tests again, with the kernels built with AddressSanitizer: an access past any array's
    end, read or write, aborts with a report (on a GPU, compute-sanitizer's memcheck does this)."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, **asan_env(LIBASAN), "GPUNN_HOST_CUDA_ASAN": "1"}
    # Every host case but attention's longest (300 x 260: 24 of its 120, the slowest under ASan; 130 x 130
    # already crosses the 128-row tiles), which the guard bands of the plain run check.
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-k",
                          "host and not 300-260", "tests/test_im2col.py", "tests/test_pooling_kernels.py",
                          "tests/test_recurrent.py", "tests/test_attention.py", "tests/test_optimizers.py",
                          "tests/test_softmax_cross_entropy.py", "tests/test_softmax_kernels.py", "tests/test_epilogue.py",
                          "tests/test_gemm.py", "tests/test_gemm_epilogue.py",
                          "tests/test_host_cuda.py::test_layers_launch_their_kernels_and_train_like_the_twins"],
                         cwd=root, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    assert " passed" in run.stdout and "AddressSanitizer" not in run.stderr
