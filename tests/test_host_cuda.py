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


def train_two_steps(causal):
    from gpunn import Sequential
    from gpunn.layers import LSTM, Dense, Embedding, GlobalAveragePooling1D, TransformerEncoder
    from gpunn.utils import set_seed

    set_seed(0)
    model = Sequential([Embedding(20, 16, input_shape=(11,)), LSTM(24, return_sequences=True),
                        TransformerEncoder(num_heads=2, key_dim=12, ff_dim=32, dropout=0.0, use_causal_mask=causal),
                        GlobalAveragePooling1D(), Dense(3, activation="softmax")])
    model.build((11,))
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 20, (37, 11)), rng.integers(0, 3, 37)
    losses = [float(model.train_step(x, y)[0]) for _ in range(2)]
    return losses, model.get_weights()


@pytest.mark.parametrize("causal", [False, True])
def test_layers_launch_their_kernels_and_train_like_the_twins(causal, monkeypatch):
    """The layers' own glue (buffers, slices, dispatch) around the kernels: with the kernels on the host,
    an LSTM + Transformer model trains exactly as on the twins, and every kernel family is launched."""
    losses, weights = train_two_steps(causal)
    host_cuda.install(monkeypatch)
    launched = set()
    get_kernel = kernels.get_kernel
    monkeypatch.setattr(kernels, "get_kernel", lambda family, name: launched.add(name) or get_kernel(family, name))
    host_losses, host_weights = train_two_steps(causal)
    assert {"lstm_step_forward", "lstm_step_backward", "attention_forward", "attention_backward_dq",
            "attention_backward_dkv", "adam_update"} <= launched
    np.testing.assert_allclose(host_losses, losses, rtol=1e-5)
    for a, b in zip(host_weights, weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
