"""Images of any size: Input(shape=(C, None, None)), and the course's convolutional implementation of sliding windows."""

import numpy as np
import pytest

import gpunn
from gpunn import Input, Model, Sequential, load_model
from gpunn.layers import (AvgPool2D, BatchNormalization, Conv2D, Dense, Flatten, GlobalAveragePooling2D, MaxPool2D,
                          ZeroPadding2D)
from gpunn.utils import set_seed

rng = np.random.default_rng(21)


def test_a_net_for_28x28_windows_slides_over_a_larger_image_in_one_pass():
    """Trained on 28x28 crops, the same layers on a 36x40 image give, at (i, j), the output for the crop at (4i, 4j)."""
    layers = [Conv2D(4, 5, activation="relu"), MaxPool2D(2), Conv2D(6, 5, activation="relu"), MaxPool2D(2),
              Conv2D(10, 4)]  # the last one sees the whole 4x4 map: a dense layer written as a convolution
    small = x = Input((1, 28, 28))
    for layer in layers:
        x = layer(x)
    windows = Model(small, x)
    assert windows.output_shape == (10, 1, 1)
    anywhere = x = Input((1, None, None))
    for layer in layers:  # the same layers, the same weights
        x = layer(x)
    sliding = Model(anywhere, x)
    assert sliding.output_shape == (10, None, None)
    image = rng.random((2, 1, 36, 40), dtype=np.float32)
    out = sliding.predict(image)
    assert out.shape == (2, 10, 3, 4)  # (36 - 28) / 4 + 1 by (40 - 28) / 4 + 1 windows, 4 = the two poolings' stride
    for i in range(3):
        for j in range(4):
            crop = image[:, :, 4 * i:4 * i + 28, 4 * j:4 * j + 28]
            np.testing.assert_allclose(out[:, :, i, j], windows.predict(crop)[:, :, 0, 0], rtol=1e-4, atol=1e-5)


def any_size_model(**conv_args):
    return Sequential([Conv2D(4, 3, padding="same", activation="relu", input_shape=(1, None, None), **conv_args),
                       ZeroPadding2D(1), MaxPool2D(2, padding="same"), AvgPool2D(2, padding="same"),
                       BatchNormalization(), Conv2D(3, 1), GlobalAveragePooling2D(), Dense(2, activation="softmax")])


def test_shapes_with_none_flow_through_every_image_layer_and_the_summary():
    model = any_size_model()
    assert [layer.compute_output_shape(layer.input_shape) for layer in model.layers[:3]] == [
        (4, None, None), (4, None, None), (4, None, None)]
    lines = []
    model.summary(print_fn=lines.append)
    assert any("(None, 4, None, None)" in line for line in lines)
    for size in ((12, 12), (17, 9)):
        assert model.predict(rng.random((3, 1) + size, dtype=np.float32)).shape == (3, 2)
    x = Input((1, 20, None))
    assert Conv2D(2, (5, 3), strides=2)(x).shape == (None, 2, 8, None)


def test_a_model_on_any_size_trains_saves_and_loads(tmp_path):
    set_seed(0)
    model = any_size_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = rng.random((16, 1, 10, 14), dtype=np.float32), rng.integers(0, 2, 16)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "any.npz")
    loaded = load_model(tmp_path / "any.npz")
    assert loaded.input_shape == (1, None, None)
    other = rng.random((4, 1, 21, 8), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict(other), model.predict(other))


def test_outputs_of_any_size_train_on_targets_of_their_size():
    """A per-pixel output (1, None, None) learns from targets whose size only the data tells."""
    x_in = Input((1, None, None))
    model = Model(x_in, Conv2D(1, 3, padding="same", activation="sigmoid")(x_in))
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    x = rng.random((8, 1, 6, 9), dtype=np.float32)
    history = model.fit(x, (x > 0.5).astype(np.float32), epochs=2, verbose=0)
    assert len(history.history["accuracy"]) == 2


def test_channels_last_any_size():
    x_in = Input((None, None, 1))
    y = MaxPool2D(2, data_format="channels_last")(Conv2D(3, 3, data_format="channels_last")(x_in))
    assert y.shape == (None, None, None, 3)
    assert Model(x_in, y).predict(rng.random((2, 11, 7, 1), dtype=np.float32)).shape == (2, 4, 2, 3)


def test_layers_that_need_a_fixed_size_say_so():
    with pytest.raises(ValueError, match=r"Layer 'flatten\S*' needs samples of a fixed shape; received \(4, None, "
                                         r"None\).*global pooling"):
        Flatten()(Conv2D(4, 3)(Input((1, None, None))))
    with pytest.raises(ValueError, match=r"Layer 'dense\S*' needs a known size on the last axis .*\(4, 5, None\)"):
        Dense(3)(Input((4, 5, None)))
    with pytest.raises(ValueError, match=r"input_shape=\(None, None, 1\) looks channels-last"):
        Conv2D(4, 3, input_shape=(None, None, 1))
    model = gpunn.Sequential([Conv2D(4, 5, input_shape=(1, None, None))])
    with pytest.raises(ValueError, match=r"kernel \(5, 5\).*larger than the padded input \(3, 3\)"):
        model.predict(np.zeros((1, 1, 3, 3), dtype=np.float32))
