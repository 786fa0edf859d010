import numpy as np
import pytest

from gpunn import Sequential, activations, losses
from gpunn.layers import Dense
from tests.conftest import assert_gradcheck, dev, host

rng = np.random.default_rng(2)


TARGETS = {
    "mean_squared_error": lambda m: rng.standard_normal((m, 3)),
    "binary_crossentropy": lambda m: rng.integers(0, 2, (m, 3)).astype(float),
    "categorical_crossentropy": lambda m: np.eye(3)[rng.integers(0, 3, m)],
    "sparse_categorical_crossentropy": lambda m: rng.integers(0, 3, m),
}


@pytest.mark.parametrize("loss", sorted(TARGETS))
def test_loss_through_model_gradcheck(loss):
    """A model ending in the loss's activation: fused (dZ = (A - Y)/m) where the pair allows it."""
    activation = losses.get(loss).fuses_with
    model = Sequential([Dense(4, activation="tanh", input_shape=(5,)), Dense(3, activation=activation)])
    model.compile("sgd", loss)
    assert (model.heads[0].fused is not None) == (activation is not None)
    assert_gradcheck(model, rng.standard_normal((6, 5)), TARGETS[loss](6))


def numerical_gradient(cost, p, eps=1e-6):
    approx = np.zeros_like(p)
    for i in np.ndindex(p.shape):
        q = p.copy()
        q[i] += eps
        plus = cost(q)
        q[i] -= 2 * eps
        approx[i] = (plus - cost(q)) / (2 * eps)
    return approx


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("loss", sorted(TARGETS))
def test_plain_loss_gradient_matches_differences(loss, weighted):
    """forward/backward on probabilities, as used when the model does not end in the matching activation."""
    fn = losses.get(loss)
    p = rng.uniform(0.05, 0.95, (4, 3))
    y = TARGETS[loss](4)
    w = rng.uniform(0, 2, 4) if weighted else None
    fn.forward(p, y, w)
    grad = fn.backward()
    np.testing.assert_allclose(grad, numerical_gradient(lambda q: fn.forward(q, y, w), p), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("loss", sorted(loss for loss in TARGETS if losses.get(loss).fuses_with))
def test_weighted_fused_gradient_matches_differences(loss):
    """dZ = w (A - Y) / m: each example's share of the fused gradient scaled by its weight."""
    fn = losses.get(loss)
    activation = activations.get(fn.fuses_with)
    z, y, w = rng.standard_normal((4, 3)), TARGETS[loss](4), rng.uniform(0, 2, 4)
    fn.forward_fused(z, activation.forward(z), y, w)
    grad = fn.backward_fused()
    cost = lambda q: fn.forward_fused(q, activation.forward(q), y, w)  # noqa: E731
    np.testing.assert_allclose(grad, numerical_gradient(cost, z), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("loss", sorted(TARGETS))
def test_sample_weights_scale_each_example_as_keras_does(loss):
    """Keras's 'sum_over_batch_size': J = 1/m sum_i w_i J_i (not divided by the sum of the weights)."""
    fn = losses.get(loss)
    p, y, w = rng.uniform(0.05, 0.95, (5, 3)), TARGETS[loss](5), rng.uniform(0, 3, 5)
    each = [fn.forward(p[i:i + 1], y[i:i + 1]) for i in range(5)]
    assert fn.forward(p, y, w) == pytest.approx(np.mean(w * np.array(each)))
    assert fn.forward(p, y, np.ones(5)) == pytest.approx(fn.forward(p, y))


def test_values_match_textbook_formulas():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    y = np.array([[1, 0, 0], [0, 0, 1.0]])
    assert losses.get("categorical_crossentropy")(y, p) == pytest.approx(-(np.log(0.7) + np.log(0.1)) / 2)
    assert losses.get("sparse_categorical_crossentropy")(np.array([0, 2]), p) == pytest.approx(
        -(np.log(0.7) + np.log(0.1)) / 2)
    assert losses.get("mse")(y, p) == pytest.approx(np.mean((y - p) ** 2))
    b = np.array([[0.9], [0.2]])
    t = np.array([[1.0], [0.0]])
    assert losses.get("binary_crossentropy")(t, b) == pytest.approx(-(np.log(0.9) + np.log(0.8)) / 2)


def test_fused_cross_entropy_is_stable_for_huge_logits():
    model = Sequential([Dense(2, activation="softmax", input_shape=(1,), kernel_initializer="ones")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.build()
    model.layers[0].set_weights([np.array([[1e4, -1e4]]), np.zeros(2)])
    loss = model.compute_loss(model.forward(dev(np.array([[1.0]])), training=True), dev(np.array([1])))
    assert np.isfinite(float(loss)) and float(loss) == pytest.approx(2e4)
    assert np.isfinite(host(model.loss_gradient())).all()


def test_unknown_loss_lists_valid_ones():
    with pytest.raises(ValueError, match="valid losses are: mean_squared_error, binary_crossentropy"):
        losses.get("hinge_loss")
