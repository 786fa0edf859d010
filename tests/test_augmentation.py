"""Augmentation layers: Keras's transforms on fixed draws, off at inference, repeatable under a seed, on the device."""

import numpy as np
import pytest

import gpunn
from gpunn.layers import Conv2D, Dense, Flatten, RandomCrop, RandomFlip, RandomRotation, RandomTranslation
from gpunn.utils import set_seed
from tests.conftest import assert_gradcheck, dev, host
from tests.test_cupy_standin import cupy  # noqa: F401 -- the fixture

X = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)

# Keras 3.15's outputs on X (channels-last there) with the draw pinned by a (lower, upper) range of one value.
KERAS = {
    "one pixel right, constant": (lambda: RandomTranslation((0, 0), (0.25, 0.25), fill_mode="constant"),
                                  [[0, 0, 1, 2], [0, 4, 5, 6], [0, 8, 9, 10], [0, 12, 13, 14]]),
    "one pixel right, reflect": (lambda: RandomTranslation((0, 0), (0.25, 0.25)),
                                 [[0, 0, 1, 2], [4, 4, 5, 6], [8, 8, 9, 10], [12, 12, 13, 14]]),
    "half a pixel right, bilinear": (lambda: RandomTranslation((0, 0), (0.125, 0.125), fill_mode="constant"),
                                     [[0, .5, 1.5, 2.5], [2, 4.5, 5.5, 6.5], [4, 8.5, 9.5, 10.5], [6, 12.5, 13.5, 14.5]]),
    "a quarter turn counter-clockwise": (lambda: RandomRotation((0.25, 0.25), fill_mode="constant"),
                                         [[3, 7, 11, 15], [2, 6, 10, 14], [1, 5, 9, 13], [0, 4, 8, 12]]),
    "an eighth of a turn": (lambda: RandomRotation((0.125, 0.125), fill_mode="constant"),
                            [[0.5680196, 2.5502524, 6.085787, 3.4081178], [1.1360391, 4.6715727, 8.207107, 11.74264],
                             [3.2573595, 6.7928934, 10.328427, 13.86396], [2.2720785, 8.914213, 12.449749, 5.112177]]),
}


@pytest.mark.parametrize("name", sorted(KERAS))
def test_fixed_draws_give_what_keras_gives(name):
    make, expected = KERAS[name]
    np.testing.assert_allclose(host(make()(dev(X), training=True))[0, 0], expected, atol=1e-5)


def test_fill_modes_on_a_row():
    """a b c d shifted two pixels right: constant k k a b, nearest a a a b, reflect b a a b, wrap c d a b."""
    row = np.array([[[[1, 2, 3, 4]]]], dtype=np.float32)
    expected = {"constant": [9, 9, 1, 2], "nearest": [1, 1, 1, 2], "reflect": [2, 1, 1, 2], "wrap": [3, 4, 1, 2]}
    for mode, values in expected.items():
        layer = RandomTranslation(0, (0.5, 0.5), fill_mode=mode, fill_value=9, interpolation="nearest")
        np.testing.assert_array_equal(host(layer(dev(row), training=True))[0, 0, 0], values)


LAYERS = {
    "flip": lambda **kwargs: RandomFlip(**kwargs),
    "translation": lambda **kwargs: RandomTranslation(0.2, 0.3, fill_mode="constant", **kwargs),
    "rotation": lambda **kwargs: RandomRotation(0.1, interpolation="nearest", fill_mode="wrap", **kwargs),
    "crop": lambda **kwargs: RandomCrop(5, 4, **kwargs),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_off_at_inference_and_in_predict(name):
    x = np.random.default_rng(0).random((6, 2, 7, 8), dtype=np.float32)
    out = host(LAYERS[name]()(dev(x)))
    expected = x[:, :, 1:6, 2:6] if name == "crop" else x  # RandomCrop cuts the centre
    np.testing.assert_array_equal(out, expected)
    model = gpunn.Sequential([LAYERS[name](input_shape=(2, 7, 8)), Flatten(), Dense(3)])
    np.testing.assert_array_equal(model.predict(x), model.predict(x))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_each_image_its_own_draw_repeatable_under_a_seed(name):
    x = np.repeat(np.random.default_rng(1).random((1, 1, 7, 8), dtype=np.float32), 8, axis=0)
    layer = LAYERS[name]()
    set_seed(3)
    first = host(layer(dev(x), training=True))
    set_seed(3)
    np.testing.assert_array_equal(host(layer(dev(x), training=True)), first)
    assert len({a.tobytes() for a in first}) > 1, "every image was transformed the same way"
    set_seed(4)
    assert not np.array_equal(host(layer(dev(x), training=True)), first)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_backward_is_the_transpose_of_the_draw(name):
    assert_gradcheck(LAYERS[name](), np.random.default_rng(2).standard_normal((2, 1, 7, 8)))


def test_crops_are_windows_of_the_image():
    x = np.random.default_rng(3).random((5, 1, 9, 9), dtype=np.float32)
    out = host(RandomCrop(4, 6)(dev(x), training=True))
    for image, crop in zip(x[:, 0], out[:, 0]):
        assert any(np.array_equal(image[t:t + 4, l:l + 6], crop) for t in range(6) for l in range(4))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_channels_last_draws_the_same_transform(name):
    x = np.random.default_rng(4).random((3, 2, 7, 8), dtype=np.float32)
    set_seed(5)
    first = host(LAYERS[name]()(dev(x), training=True))
    set_seed(5)
    last = LAYERS[name](data_format="channels_last")
    np.testing.assert_array_equal(host(last(dev(x.transpose(0, 2, 3, 1)), training=True)), first.transpose(0, 2, 3, 1))


@pytest.mark.parametrize("make, message", [
    (lambda: RandomFlip("diagonal"), r"Layer 'random_flip\S*': mode must be one of"),
    (lambda: RandomTranslation(1.5, 0), r"height_factor must be a number in \[0, 1\].*received height_factor=1.5"),
    (lambda: RandomRotation((0.2, 0.1)), r"factor must be .*lower <= upper; received factor=\(0.2, 0.1\)"),
    (lambda: RandomRotation(0.1, fill_mode="mirror"), r"fill_mode must be one of .*received fill_mode='mirror'"),
    (lambda: RandomCrop(0, 3), r"height and width must be positive integers"),
    (lambda: RandomCrop(30, 3, input_shape=(1, 28, 28)), r"cuts 30x3 windows; received images of 28x28 pixels"),
])
def test_bad_arguments_are_refused_naming_the_layer(make, message):
    with pytest.raises(ValueError, match=message):
        gpunn.Sequential([make()]) if "input_shape" not in message else make()


def augmented_convnet():
    return gpunn.Sequential([RandomTranslation(0.1, 0.1, fill_mode="constant", input_shape=(1, 12, 12)),
                             RandomRotation(0.05), RandomFlip("horizontal"), RandomCrop(10, 10),
                             Conv2D(4, 3, activation="relu"), Flatten(), Dense(3, activation="softmax")])


def test_training_with_augmentation_is_repeatable_under_a_seed():
    x = np.random.default_rng(6).random((16, 1, 12, 12), dtype=np.float32)
    y = np.random.default_rng(6).integers(0, 3, 16)
    weights = []
    for _ in range(2):
        set_seed(7)
        model = augmented_convnet()
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_an_augmented_training_step_never_leaves_the_device(cupy):  # noqa: F811 -- the fixture
    set_seed(0)
    model = augmented_convnet()
    model.compile("adam", "sparse_categorical_crossentropy")
    x = gpunn.backend.to_device(np.random.default_rng(8).random((16, 1, 12, 12), dtype=np.float32))
    y = gpunn.backend.to_device(np.random.default_rng(8).integers(0, 3, 16))
    model.train_step(x, y)
    with cupy._standin.counting() as counted:
        model.train_step(x, y)
    assert counted.syncs == 0 and counted.uploads == 0, counted
