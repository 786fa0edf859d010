import numpy as np
import pytest

import gpunn.backend as backend
from gpunn import activations
from gpunn.layers import Activation, Dense, Dropout, Flatten, Maxout, PReLU, Reshape
from gpunn.regularizers import l1_l2
from tests.conftest import assert_gradcheck, dev, host

rng = np.random.default_rng(1)


@pytest.mark.parametrize("activation", sorted(activations.ACTIVATIONS))
def test_dense_gradcheck_each_activation(activation):
    x = rng.standard_normal((4, 5))
    assert_gradcheck(Dense(3, activation=activation, kernel_initializer="he_normal", bias_initializer="random_normal"), x)


def test_dense_on_sequences_and_without_bias():
    assert_gradcheck(Dense(3, use_bias=False), rng.standard_normal((2, 4, 5)))
    layer = Dense(3, input_shape=(5,))
    assert layer.compute_output_shape((7, 5)) == (7, 3)


@pytest.mark.parametrize("config", [{"name": "leaky_relu", "alpha": 0.1}, {"name": "elu", "alpha": 0.5}])
def test_activation_layer_with_parameters(config):
    x = rng.standard_normal((3, 6))
    assert_gradcheck(Activation(config), x)


def test_activation_values_match_definitions():
    z = np.array([[-2.0, 0.5, 3.0]])
    np.testing.assert_allclose(activations.get("sigmoid").forward(z), 1 / (1 + np.exp(-z)))
    np.testing.assert_allclose(activations.get("elu").forward(z), np.where(z > 0, z, np.exp(z) - 1))
    s = activations.get("softmax").forward(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(s, [[0.5, 0.5, 0.0]])
    with pytest.raises(ValueError, match="valid activations are: linear, sigmoid"):
        activations.get("swishy")


def test_dropout_is_inverted_and_off_at_inference():
    layer = Dropout(0.25)
    x = np.ones((2000, 50), dtype=np.float32)
    y = host(layer(x, training=True))
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    np.testing.assert_array_equal(host(layer.backward(dev(x))), y)  # dX = dA * D
    np.testing.assert_array_equal(host(layer(x, training=False)), x)
    assert_gradcheck(Dropout(0.5), rng.standard_normal((4, 6)), training=True)
    with pytest.raises(ValueError, match="rate must be in"):
        Dropout(1.0)


def test_flatten_and_reshape():
    x = rng.standard_normal((2, 3, 4))
    assert_gradcheck(Flatten(), x)
    assert_gradcheck(Reshape((4, -1)), x)
    assert Reshape((-1, 2)).compute_output_shape((3, 4)) == (6, 2)
    with pytest.raises(ValueError, match="cannot reshape"):
        Reshape((5, -1)).build((3, 4))


def test_prelu_learns_slope_per_channel():
    x = rng.standard_normal((3, 2, 4, 4))
    assert_gradcheck(PReLU(alpha_initializer={"name": "constant", "value": 0.2}), x)
    layer = PReLU(shared_axes=[2, 3])
    layer.build((2, 4, 4))
    assert layer.alpha.shape == (2, 1, 1)
    assert_gradcheck(PReLU(alpha_initializer="random_uniform", shared_axes=[2, 3]), x)


def test_maxout_routes_to_first_argmax():
    x = np.array([[1.0, 3.0, 3.0, -1.0, 0.0, -2.0]])
    layer = Maxout(2)
    np.testing.assert_array_equal(host(layer(x)), [[3.0, 0.0]])
    np.testing.assert_array_equal(host(layer.backward(dev(np.array([[1.0, 2.0]])))), [[0, 1, 0, 0, 2, 0]])
    assert_gradcheck(Maxout(3), rng.standard_normal((4, 12)))
    with pytest.raises(ValueError, match="cannot be cut"):
        Maxout(5).build((12,))


def test_regularizer_penalty_and_gradient_in_a_model():
    from gpunn import Sequential

    model = Sequential([Dense(4, activation="tanh", kernel_regularizer=l1_l2(0.01, 0.02), input_shape=(3,)),
                        Dense(2, activation="softmax")])
    model.compile("sgd", "categorical_crossentropy")
    x = rng.standard_normal((5, 3))
    y = np.eye(2)[rng.integers(0, 2, 5)]
    assert_gradcheck(model, x, y)


def test_bad_arguments_name_the_layer():
    with pytest.raises(ValueError, match=r"Layer 'hidden': units must be a positive integer; received units=0"):
        Dense(0, name="hidden")
    layer = Dense(2, input_shape=(3,), name="d")
    layer.build((3,))
    with pytest.raises(ValueError, match="Layer 'd' expects inputs with 3 features"):
        layer.forward(dev(np.zeros((2, 4))))


def check_forward_backward_agree_with_numpy(layer_factory, x):
    """The same layer on CuPy and on NumPy gives the same outputs and gradients."""
    x = x.astype(np.float32)
    backend.set_backend("cupy")
    backend.seed(0)
    layer = layer_factory()
    y = layer(backend.to_device(x), training=False)
    dx = layer.backward(backend.xp.ones_like(y))
    weights = layer.get_weights()
    backend.set_backend("numpy")
    ref = layer_factory()
    ref.build(x.shape[1:])
    ref.set_weights(weights)
    np.testing.assert_allclose(backend.to_numpy(y), ref(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(backend.to_numpy(dx), ref.backward(np.ones_like(ref(x))), rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("factory", [lambda: Dense(7, activation="relu"), lambda: Maxout(2), lambda: PReLU(),
                                     lambda: Activation("softmax"), lambda: Dense(3, activation="elu")])
def test_backends_agree(factory):
    check_forward_backward_agree_with_numpy(factory, rng.standard_normal((9, 10)))
