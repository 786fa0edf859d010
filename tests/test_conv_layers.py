from pathlib import Path

import numpy as np
import pytest

import gpunn.backend as backend
from gpunn import Sequential
from gpunn.layers import (AvgPool2D, BatchNormalization, Conv2D, Dense, Flatten, GlobalAveragePooling2D, MaxPool2D,
                          MaxPooling2D, ZeroPadding2D)
from gpunn.utils import set_seed
from tests.conftest import assert_gradcheck, dev, host

rng = np.random.default_rng(5)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.mark.parametrize("layer", [
    lambda: Conv2D(4, 3),
    lambda: Conv2D(3, (3, 2), strides=2, padding="same", activation="relu", bias_initializer="random_normal"),
    lambda: Conv2D(2, 1),
    lambda: Conv2D(2, 3, strides=(1, 2), padding=((1, 0), (2, 1)), dilation_rate=2, activation="tanh"),
    lambda: Conv2D(2, 3, padding="same", activation="relu", dilation_rate=(2, 1)),  # dX as a convolution (CPU)
    lambda: MaxPool2D(),
    lambda: MaxPooling2D(3, strides=2, padding="same"),
    lambda: AvgPool2D(2, padding="same"),
    lambda: AvgPool2D(3, strides=1),
    lambda: GlobalAveragePooling2D(),
    lambda: ZeroPadding2D((1, 2)),
], ids=["conv3x3", "conv_same_stride2", "conv1x1", "conv_dilated", "conv_dx_as_convolution", "maxpool", "maxpool_same", "avgpool_same",
        "avgpool_overlap", "gap", "zeropad"])
def test_gradcheck_image_layers(layer):
    assert_gradcheck(layer(), rng.standard_normal((2, 3, 7, 6)))


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (6, 5)])
def test_batchnorm_training_gradcheck_and_inference(shape):
    x = rng.standard_normal(shape) * 3 + 1
    assert_gradcheck(BatchNormalization(), x, tol=1e-5, training=True)
    assert_gradcheck(BatchNormalization(), x, training=False)
    layer = BatchNormalization(momentum=0.0)
    y = host(layer(x, training=True))
    axes = (0, 2, 3) if len(shape) == 4 else (0,)
    np.testing.assert_allclose(y.mean(axis=axes), 0, atol=1e-6)
    np.testing.assert_allclose(y.var(axis=axes), 1, atol=2e-3)  # var / (var + eps)
    np.testing.assert_allclose(host(layer(x, training=False)), y, atol=1e-5)  # momentum 0: moving stats = batch stats
    assert layer.trainable_names == ["gamma", "beta"]


def test_maxpool_ties_go_to_the_first_index():
    x = np.ones((1, 1, 2, 2))
    layer = MaxPool2D()
    layer(x)
    np.testing.assert_array_equal(host(layer.backward(dev(np.array([[[[5.0]]]])))), [[[[5.0, 0.0], [0.0, 0.0]]]])


def test_conv_output_shapes_and_lenet_parameter_count():
    from gpunn.examples.lenet import lenet5

    assert Conv2D(6, 5, padding="same").compute_output_shape((1, 28, 28)) == (6, 28, 28)
    assert Conv2D(8, 3, strides=2).compute_output_shape((3, 9, 9)) == (8, 4, 4)
    model = lenet5()
    model.build()
    assert model.count_params() == 61706 and model.output_shape == (10,)


def test_bad_input_names_the_layer_and_shapes():
    with pytest.raises(ValueError, match=r"Layer 'c': kernel \(5, 5\).*larger than the padded input \(3, 3\)"):
        Conv2D(2, 5, name="c").build((1, 3, 3))
    with pytest.raises(ValueError, match="strides must be a positive integer"):
        Conv2D(2, 3, strides=0)
    with pytest.raises(ValueError, match="padding must be"):
        Conv2D(2, 3, padding="full")
    layer = Conv2D(2, 3, name="c2")
    layer.build((3, 8, 8))
    with pytest.raises(ValueError, match=r"Layer 'c2' expects 4-D input \(N, C, H, W\); received an array of shape \(8, 8\)"):
        layer(np.zeros((8, 8)))
    with pytest.raises(ValueError, match=r"expects 3 input channels.*shape \(2, 8, 8, 3\).*transpose\(0, 3, 1, 2\)"):
        layer(np.zeros((2, 8, 8, 3)))
    with pytest.raises(ValueError, match=r"expects 3 input channels.*shape \(2, 4, 8, 8\)"):
        layer(np.zeros((2, 4, 8, 8)))


def small_cnn():
    return Sequential([
        Conv2D(4, 3, padding="same", activation="relu", input_shape=(1, 28, 28)),
        BatchNormalization(),
        MaxPool2D(),
        Conv2D(8, 3, activation="relu"),
        MaxPool2D(),
        Flatten(),
        Dense(10, activation="softmax"),
    ])


@pytest.mark.learns
@pytest.mark.skipif(not (SHARED / "fashion-mnist").is_dir(), reason="Fashion-MNIST files not present")
def test_lenet_learns_real_fashion_mnist(monkeypatch):
    from gpunn.examples.lenet import main

    monkeypatch.setenv("GPUNN_DATA_DIR", str(SHARED))
    accuracy = main(["--dataset", "fashion_mnist", "--epochs", "1", "--limit", "3000", "--batch-size", "64"])
    assert accuracy > 0.6


@pytest.mark.gpu
def test_gpu_training_is_deterministic_and_matches_numpy():
    x = rng.random((256, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 256)
    runs = []
    for name in ("cupy", "cupy", "numpy"):
        backend.set_backend(name)
        set_seed(11)
        model = small_cnn()
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
        runs.append(model.get_weights())
    for a, b in zip(runs[0], runs[1]):
        np.testing.assert_array_equal(a, b)  # same seed, same bits on the GPU
    for a, b in zip(runs[0], runs[2]):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("factory", [lambda: Conv2D(5, 3, strides=2, padding="same"), lambda: MaxPool2D(3, 2, "same"),
                                     lambda: AvgPool2D(2), lambda: BatchNormalization()])
def test_image_layers_agree_across_backends(factory):
    from tests.test_layers import check_forward_backward_agree_with_numpy

    check_forward_backward_agree_with_numpy(factory, rng.standard_normal((3, 4, 9, 10)))


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "fashion-mnist").is_dir(), reason="Fashion-MNIST files not present")
def test_lenet_fashion_mnist_full_recipe(monkeypatch):
    """The issue's bar: >= 89.5% after 10 epochs of Adam 1e-3, batch 128 (about 2.5 minutes on 2 CPU cores)."""
    from gpunn.examples.lenet import main

    monkeypatch.setenv("GPUNN_DATA_DIR", str(SHARED))
    assert main(["--dataset", "fashion_mnist"]) >= 0.895


@pytest.mark.learns
@pytest.mark.skipif(not (SHARED / "mnist-t10k").is_dir(), reason="MNIST test files not present")
def test_lenet_learns_real_digits():
    """Only the MNIST test set is available offline: train on its first 8,000 digits, test on the other 2,000."""
    from gpunn.datasets.core import read_idx
    from gpunn.examples.lenet import lenet5

    x = (read_idx(SHARED / "mnist-t10k" / "t10k-images-idx3-ubyte.gz").reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    y = read_idx(SHARED / "mnist-t10k" / "t10k-labels-idx1-ubyte.gz")
    set_seed(0)
    model = lenet5()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:8000], y[:8000], batch_size=128, epochs=3, verbose=0)
    assert model.evaluate(x[8000:], y[8000:])[1] > 0.95


def test_lenet_plot_without_matplotlib_fails_before_training(monkeypatch, capsys):
    import importlib.util

    from gpunn.examples.lenet import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    with pytest.raises(SystemExit):
        main(["--plot", "history.png"])  # stops before loading any data
    assert "--plot needs matplotlib: pip install 'gpunn[plot]'" in capsys.readouterr().err


@pytest.mark.parametrize("layer, shape", [(lambda: MaxPool2D(2), (3, 4, 8, 6)), (lambda: MaxPool2D(2), (2, 3, 7, 5)),
                                          (lambda: MaxPool2D(2, padding="same"), (2, 3, 8, 8)),
                                          (lambda: MaxPool2D((3, 2)), (2, 2, 9, 7)), (lambda: AvgPool2D(2), (3, 4, 9, 6)),
                                          (lambda: AvgPool2D(2, padding="same"), (2, 3, 6, 6))])
def test_pooling_over_tiles_equals_the_im2col_path(layer, shape, monkeypatch):
    """On NumPy, windows that tile the image are pooled on a reshaped view; ties still go to the first arg-max."""
    x = rng.integers(0, 3, shape).astype(np.float32)  # few values: many ties
    dy = rng.standard_normal(layer().compute_output_shape(shape[1:]))[None].repeat(shape[0], 0).astype(np.float32)
    tiled = layer()
    y_tiled, dx_tiled = host(tiled(x)), host(tiled.backward(dev(dy)))
    monkeypatch.setattr(type(tiled), "tiles", lambda self, x: None)
    general = layer()
    np.testing.assert_array_equal(host(general(x)), y_tiled)
    np.testing.assert_allclose(host(general.backward(dev(dy))), dx_tiled, rtol=1e-6)
