"""What the course's Keras slides write, accepted by gpunn (or refused with what to write instead)."""

import math

import numpy as np
import pytest

from gpunn import Sequential, activations, layers
from gpunn.callbacks import Callback
from gpunn.layers import Conv2D, Dense
from gpunn.optimizers import SGD, Adam

rng = np.random.default_rng(0)


def test_input_dim_and_a_model_built_at_once():
    model = Sequential([Dense(500, input_dim=784, activation="relu"), Dense(10, activation="softmax")])
    assert model.built and model.count_params() == 784 * 500 + 500 + 500 * 10 + 10
    model = Sequential()
    model.add(Dense(4, input_shape=(3,)))
    assert model.count_params() == 16
    model.add(Dense(2))
    assert model.count_params() == 26 and model.output_shape == (2,)
    with pytest.raises(ValueError, match="expects samples of shape \\(C, H, W\\)"):
        model.add(Conv2D(2, 3))
    assert len(model.layers) == 2  # a layer that cannot be built is not added
    assert not Sequential([Dense(3)]).built  # without an input shape, fit builds it from the data


def test_lr_is_the_old_spelling_of_learning_rate():
    with pytest.warns(DeprecationWarning, match="learning_rate"):
        assert SGD(lr=0.1, momentum=0.9).learning_rate == 0.1
    with pytest.warns(DeprecationWarning, match="learning_rate"):
        assert Adam(lr=0.002).learning_rate == 0.002


class Params(Callback):
    def on_train_begin(self, logs=None):
        self.seen = dict(self.params)


def test_batch_size_none_is_32_and_history_params():
    x, y = rng.standard_normal((70, 3)).astype(np.float32), rng.integers(0, 2, 70)
    model = Sequential([Dense(2, activation="softmax", input_shape=(3,))])
    model.compile("sgd", "sparse_categorical_crossentropy")
    params = Params()
    history = model.fit(x, y, batch_size=None, epochs=2, verbose=0, callbacks=[params])
    assert history.params == params.seen == {"verbose": 0, "epochs": 2, "steps": math.ceil(70 / 32)}
    assert len(model.evaluate(x, y, batch_size=None)) == 1
    assert model.predict(x, batch_size=None).shape == (70, 2)


def test_softplus_and_convolution2d():
    z = np.array([[-800.0, -1.0, 0.0, 2.0, 800.0]])
    softplus = activations.get("softplus")
    np.testing.assert_allclose(softplus.forward(z), [[0.0, np.log1p(np.exp(-1)), np.log(2), np.log1p(np.exp(2)), 800]])
    with np.errstate(over="ignore"):
        sigmoid = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(softplus.backward(np.ones_like(z)), sigmoid, atol=1e-15)
    assert layers.Convolution2D is Conv2D


@pytest.mark.parametrize("call, advice", [
    (lambda m: m.fit_generator(iter([]), steps_per_epoch=1), r"model.fit\(generator, steps_per_epoch=..., epochs=...\)"),
    (lambda m: m.predict_classes(np.zeros((1, 3))), r"model.predict\(x\).argmax\(axis=-1\)"),
])
def test_removed_keras_methods_say_what_to_write(call, advice):
    model = Sequential([Dense(2, activation="softmax", input_shape=(3,))])
    with pytest.raises(AttributeError, match=advice):
        call(model)
