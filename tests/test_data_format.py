"""data_format: channels-last layers are channels-first ones transposed; the global default; Conv1D, 1-D pooling."""

import numpy as np
import pytest

from gpunn import Sequential, config, load_model
from gpunn.layers import (AveragePooling1D, AvgPool2D, BatchNormalization, Conv1D, Conv2D, Dense, Flatten,
                          GlobalAveragePooling2D, MaxPool2D, MaxPooling1D, ZeroPadding2D)
from gpunn.utils import set_seed
from tests.conftest import assert_gradcheck, dev, host

rng = np.random.default_rng(11)

IMAGE_LAYERS = {
    "conv": lambda fmt: Conv2D(3, (3, 2), strides=2, padding="same", activation="relu", data_format=fmt),
    "conv_dilated": lambda fmt: Conv2D(2, 3, padding=((1, 0), (2, 1)), dilation_rate=2, data_format=fmt),
    "maxpool": lambda fmt: MaxPool2D(2, padding="same", data_format=fmt),
    "avgpool": lambda fmt: AvgPool2D(3, strides=1, data_format=fmt),
    "gap": lambda fmt: GlobalAveragePooling2D(data_format=fmt),
    "zeropad": lambda fmt: ZeroPadding2D((1, 2), data_format=fmt),
}


@pytest.fixture
def default_format():
    """Restore gpunn's global image data format after a test changes it."""
    yield
    config._image_data_format = None


def to_last(a):
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


@pytest.mark.parametrize("name", sorted(IMAGE_LAYERS))
def test_channels_last_is_channels_first_transposed(name):
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    first, last = IMAGE_LAYERS[name]("channels_first"), IMAGE_LAYERS[name]("channels_last")
    first.build((3, 7, 6))
    last.build((7, 6, 3))
    last.set_weights(first.get_weights())
    y = host(first.forward(dev(x), training=True))
    np.testing.assert_allclose(host(last.forward(dev(to_last(x)), training=True)), to_last(y), rtol=1e-6)
    assert last.compute_output_shape((7, 6, 3)) == to_last(y).shape[1:]
    dy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_allclose(host(last.backward(dev(to_last(dy)))), to_last(host(first.backward(dev(dy)))),
                               rtol=1e-5, atol=1e-6)
    for key in first.grads:
        np.testing.assert_allclose(host(last.grads[key]), host(first.grads[key]), rtol=1e-5, atol=1e-6)
    assert_gradcheck(IMAGE_LAYERS[name]("channels_last"), to_last(x))


def naive_conv1d(x, w, b, stride, dilation, pad_left, pad_right):
    """The course's formula, loop by loop: Z[n, f, t] = sum_c,k W[f, c, k] X[n, c, t*s + k*d] + b[f] on (N, C, L)."""
    x = np.pad(x, ((0, 0), (0, 0), (pad_left, pad_right)))
    n, c, length = x.shape
    f, _, k = w.shape
    out = (length - dilation * (k - 1) - 1) // stride + 1
    z = np.zeros((n, f, out))
    for t in range(out):
        for j in range(k):
            z[:, :, t] += x[:, :, t * stride + j * dilation] @ w[:, :, j].T
    return z + b[None, :, None]


@pytest.mark.parametrize("padding, strides, dilation, pads", [("valid", 1, 1, (0, 0)), ("same", 2, 1, (1, 1)),
                                                              ("causal", 1, 2, (4, 0))])
def test_conv1d_is_the_course_formula(padding, strides, dilation, pads):
    x = rng.standard_normal((2, 9, 4))  # (N, L, C): steps, then features, as gpunn's sequences
    layer = Conv1D(5, 3, strides=strides, padding=padding, dilation_rate=dilation, bias_initializer="random_normal")
    y = host(layer(x))
    assert layer.kernel.shape == (5, 4, 3) and layer.data_format == "channels_last"
    kernel, bias = layer.get_weights()
    expected = naive_conv1d(x.transpose(0, 2, 1), kernel, bias, strides, dilation, *pads)
    np.testing.assert_allclose(y, expected.transpose(0, 2, 1), rtol=1e-5, atol=1e-6)
    assert layer.compute_output_shape((9, 4)) == y.shape[1:]
    assert_gradcheck(Conv1D(2, 3, strides=strides, padding=padding, dilation_rate=dilation), x)
    assert_gradcheck(Conv1D(2, 3, padding=padding, data_format="channels_first"), x.transpose(0, 2, 1))


@pytest.mark.parametrize("layer", [lambda: MaxPooling1D(2), lambda: AveragePooling1D(3, strides=1, padding="same")])
def test_pooling1d(layer):
    x = rng.standard_normal((2, 7, 3))
    y = host(layer()(x))
    if isinstance(layer(), MaxPooling1D):
        np.testing.assert_array_equal(y, np.maximum(x[:, 0:6:2], x[:, 1:7:2]))
    else:
        padded = np.pad(x, ((0, 0), (1, 1), (0, 0)))
        counts = np.convolve(np.ones(7), np.ones(3), "same")[None, :, None]
        np.testing.assert_allclose(y, (padded[:, :-2] + padded[:, 1:-1] + padded[:, 2:]) / counts, rtol=1e-6)
    assert_gradcheck(layer(), x)


def test_a_keras_channels_last_model_is_refused_or_trains(default_format):
    """Keras's CIFAR slide: refused at once under gpunn's channels-first default, with both fixes; trains with either."""
    with pytest.raises(ValueError, match=r"input_shape=\(32, 32, 3\) looks channels-last \(H, W, C\), but the layer is "
                                         r"channels-first \(C, H, W\), gpunn's default. Either give it "
                                         r"data_format='channels_last' \(or call gpunn.config.set_image_data_format"
                                         r"\('channels_last'\) before building the model\), or declare "
                                         r"input_shape=\(3, 32, 32\) and feed x.transpose\(0, 3, 1, 2\)"):
        Conv2D(32, 3, padding="same", input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match=r"input_shape=\(28, 28, 1\) looks channels-last"):
        Conv2D(6, 5, input_shape=(28, 28, 1))
    x, y = rng.random((8, 12, 12, 3), dtype=np.float32), rng.integers(0, 2, 8)

    def keras_model(**data_format):
        set_seed(0)
        model = Sequential([Conv2D(4, 3, padding="same", activation="relu", input_shape=(12, 12, 3), **data_format),
                            BatchNormalization(), MaxPool2D(2, **data_format), Flatten(),
                            Dense(2, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        return model

    by_layer = keras_model(data_format="channels_last")
    assert by_layer.layers[1].get_config()["axis"] == 1  # the global default is still channels-first...
    config.set_image_data_format("channels_last")
    assert config.image_data_format() == "channels_last"
    by_default = keras_model()
    assert by_default.layers[1].get_config()["axis"] == 3  # ...here BatchNormalization follows the channels
    by_default.fit(x, y, epochs=2, verbose=0)
    assert by_default.output_shape == (2,) and by_default.layers[0].kernel.shape == (4, 3, 3, 3)


def test_the_default_comes_from_the_environment_or_set_image_data_format(monkeypatch, default_format):
    assert config.image_data_format() == "channels_first" and Conv2D(2, 3).data_format == "channels_first"
    monkeypatch.setenv("GPUNN_IMAGE_DATA_FORMAT", "channels_last")
    assert Conv2D(2, 3).data_format == "channels_last"
    config.set_image_data_format("channels_first")  # overrides the environment
    assert MaxPool2D().data_format == "channels_first" and Conv1D(2, 3).data_format == "channels_last"
    monkeypatch.setenv("GPUNN_IMAGE_DATA_FORMAT", "NHWC")
    config._image_data_format = None
    with pytest.raises(ValueError, match="GPUNN_IMAGE_DATA_FORMAT: data_format must be 'channels_first' or "
                                         "'channels_last'; received 'NHWC'"):
        Conv2D(2, 3)
    with pytest.raises(ValueError, match="set_image_data_format: data_format must be"):
        config.set_image_data_format("last")


def test_wrong_layout_batches_name_the_fix():
    layer = Conv2D(2, 3, data_format="channels_last")
    layer.build((8, 8, 3))
    with pytest.raises(ValueError, match=r"expects 3 input channels on axis 3 of \(N, H, W, C\); received an array of "
                                         r"shape \(2, 3, 8, 8\). This looks channels-first \(N, C, H, W\): give the "
                                         r"layer data_format='channels_first'"):
        layer(np.zeros((2, 3, 8, 8)))
    with pytest.raises(ValueError, match=r"expects 4-D input \(N, H, W, C\)"):
        layer(np.zeros((2, 8, 8)))


def test_data_format_round_trips_and_old_files_are_channels_first(tmp_path, default_format):
    model = Sequential([Conv1D(3, 2, input_shape=(6, 4)), MaxPooling1D(), Flatten(), Dense(2)])
    model.save(tmp_path / "m.npz")
    x = rng.random((2, 6, 4), dtype=np.float32)
    np.testing.assert_array_equal(load_model(tmp_path / "m.npz").predict(x), model.predict(x))
    config.set_image_data_format("channels_last")
    old = Conv2D.from_config({"filters": 2, "kernel_size": [3, 3], "name": "old_conv"})  # no data_format: an old file
    assert old.data_format == "channels_first"
