"""gpunn.vision's face verification and style transfer: the triplet loss, input gradients, Gram matrix and costs."""

import numpy as np
import pytest

from gpunn import Input, Model, Sequential, load_model
from gpunn.layers import Conv2D, Dense, GlobalAveragePooling2D, UnitNormalization
from gpunn.metrics import auc, roc_curve
from gpunn.utils import value_and_input_gradient
from gpunn.vision import TripletLoss, content_cost, gram_matrix, saliency_map, style_cost, style_transfer
from tests.conftest import assert_gradcheck, dev, host

rng = np.random.default_rng(12)


def triplet_by_hand(f, labels, margin):
    """Batch hard, written as loops: each anchor with its farthest positive and closest negative."""
    terms = []
    for a in range(len(f)):
        d = ((f - f[a]) ** 2).sum(axis=1)
        positives = [p for p in range(len(f)) if p != a and labels[p] == labels[a]]
        negatives = [n for n in range(len(f)) if labels[n] != labels[a]]
        if positives and negatives:
            terms.append(max(max(d[positives]) - min(d[negatives]) + margin, 0))
    return sum(terms) / len(terms)


def test_triplet_loss_is_batch_hard_by_hand():
    f = rng.standard_normal((7, 3))
    labels = np.array([0, 0, 1, 1, 1, 2, 3])  # classes 2 and 3 have no positive: no anchors
    loss = TripletLoss(margin=0.5)
    assert host(loss.forward(dev(f), dev(labels))) == pytest.approx(triplet_by_hand(f, labels, 0.5))
    far_apart = np.repeat(np.eye(3) * 10, 2, axis=0)  # every negative farther than every positive by far
    assert host(loss.forward(dev(far_apart), dev(np.repeat(np.arange(3), 2)))) == 0


def semi_hard_by_hand(f, labels, margin):
    """Semi-hard, written as loops: every positive pair with the closest negative farther than its positive
    (or, when there is none, the farthest negative)."""
    terms = []
    for a in range(len(f)):
        d = ((f - f[a]) ** 2).sum(axis=1)
        negatives = [d[n] for n in range(len(f)) if labels[n] != labels[a]]
        for p in range(len(f)):
            if p != a and labels[p] == labels[a] and negatives:
                farther = [dn for dn in negatives if dn > d[p]]
                terms.append(max(d[p] - (min(farther) if farther else max(negatives)) + margin, 0))
    return sum(terms) / len(terms)


def test_triplet_loss_semi_hard_by_hand():
    f = rng.standard_normal((9, 3))
    labels = np.array([0, 0, 1, 1, 1, 2, 3, 0, 2])
    loss = TripletLoss(margin=0.5, mining="semi_hard")
    assert host(loss.forward(dev(f), dev(labels))) == pytest.approx(semi_hard_by_hand(f, labels, 0.5))
    clumped = np.zeros((6, 2))  # every encoding at one point: d(a, n) > d(a, p) nowhere, each term alpha
    assert host(loss.forward(dev(clumped), dev(np.arange(6) % 3))) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="mining must be one of hard, semi_hard; received mining='easy'"):
        TripletLoss(mining="easy")


@pytest.mark.parametrize("mining", ["hard", "semi_hard"])
def test_triplet_loss_gradient_by_gradcheck(mining):
    model = Sequential([Dense(4, input_shape=(5,)), UnitNormalization()])
    model.compile("sgd", loss=TripletLoss(margin=0.3, mining=mining))
    assert_gradcheck(model, rng.standard_normal((8, 5)), np.array([0, 0, 1, 1, 2, 2, 0, 1]))


def test_triplet_loss_takes_labels_and_saves_its_margin(tmp_path):
    model = Sequential([Dense(3, input_shape=(4,)), UnitNormalization()])
    model.compile("adam", loss=TripletLoss(margin=0.4, mining="semi_hard"))
    x, labels = rng.standard_normal((12, 4)).astype(np.float32), np.arange(12) % 3
    history = model.fit(x, labels, batch_size=12, epochs=20, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    model.save(tmp_path / "encoder.npz")
    loaded = load_model(tmp_path / "encoder.npz")
    assert isinstance(loaded.loss, TripletLoss) and (loaded.loss.margin, loaded.loss.mining) == (0.4, "semi_hard")
    with pytest.raises(ValueError, match="loss 'triplet_loss' takes one class label per sample; received y of shape"):
        model.fit(x, np.zeros((12, 3)), verbose=0)
    with pytest.raises(ValueError, match="TripletLoss: margin must be >= 0; received margin=-1"):
        TripletLoss(-1)


def test_unit_normalization_gives_unit_vectors_and_its_gradient():
    x = rng.standard_normal((4, 3, 5))
    y = host(UnitNormalization(axis=(1, 2))(dev(x)))
    np.testing.assert_allclose(y, x / np.sqrt((x ** 2).sum(axis=(1, 2), keepdims=True)), rtol=1e-6)
    assert_gradcheck(UnitNormalization(), rng.standard_normal((4, 5)))
    assert_gradcheck(UnitNormalization(axis=(1, 2)), x)
    with pytest.raises(ValueError, match="Layer 'unit_normalization.*axis must pick axes of samples of shape"):
        UnitNormalization(axis=0)(dev(x))


def test_roc_curve_and_auc_by_hand():
    fpr, tpr, thresholds = roc_curve([1, 0, 1, 0], [0.9, 0.8, 0.4, 0.1])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(thresholds[1:], [0.9, 0.8, 0.4, 0.1])
    assert auc(fpr, tpr) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="roc_curve: expected one score per example and both answers"):
        roc_curve([1, 1], [0.2, 0.3])


def small_convnet():
    x_in = Input((2, 6, 6))
    h = Conv2D(3, 3, padding="same", activation="tanh", name="conv1")(x_in)
    h = Conv2D(4, 3, activation="tanh", name="conv2")(h)
    return Model(x_in, Dense(3, activation="softmax")(GlobalAveragePooling2D()(h)))


def numerical_input_gradient(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        grad[i] = (f(up) - f(down)) / (2 * eps)
    return grad


def test_input_gradient_against_centered_differences():
    model = small_convnet()
    x = rng.standard_normal((2, 2, 6, 6))
    model(dev(x))
    model.set_weights([w.astype(np.float64) for w in model.get_weights()])
    weights = rng.standard_normal((2, 3))

    def objective(y):
        return (y * dev(weights)).sum(), dev(weights)

    value, dx = value_and_input_gradient(model, dev(x), objective)
    expected = numerical_input_gradient(lambda z: float(host(objective(model.forward(dev(z)))[0])), x)
    assert float(host(value)) == pytest.approx(float((host(model.forward(dev(x))) * weights).sum()))
    np.testing.assert_allclose(host(dx), expected, rtol=1e-5, atol=1e-8)


def test_saliency_map_is_the_largest_input_gradient_over_the_channels():
    model = small_convnet()
    x = rng.standard_normal((2, 2, 6, 6))
    model(dev(x))
    model.set_weights([w.astype(np.float64) for w in model.get_weights()])

    def scores(z):  # y[0, class 2] + y[1, class 0]: the images do not interact
        y = host(model.forward(dev(z)))
        return y[0, 2] + y[1, 0]

    expected = np.abs(numerical_input_gradient(scores, x)).max(axis=1)
    np.testing.assert_allclose(saliency_map(model, dev(x), classes=[2, 0]), expected, rtol=1e-5, atol=1e-9)
    predicted = host(model.forward(dev(x))).argmax(axis=1)
    np.testing.assert_array_equal(saliency_map(model, dev(x)), saliency_map(model, dev(x), classes=predicted))


def test_gram_matrix_and_costs_against_the_course_formulas():
    a_c, a_g, a_s = (rng.standard_normal((1, 3, 4, 5)) for _ in range(3))
    n_c, n_h, n_w = 3, 4, 5
    matrix = a_g[0].reshape(n_c, -1)
    gram = np.array([[np.sum(a_g[0, k] * a_g[0, k2]) for k2 in range(n_c)] for k in range(n_c)])
    np.testing.assert_allclose(host(gram_matrix(dev(a_g)))[0], gram)
    np.testing.assert_allclose(gram, matrix @ matrix.T)
    j, _ = content_cost(dev(a_c), dev(a_g))
    assert float(host(j)) == pytest.approx(np.sum((a_c - a_g) ** 2) / (4 * n_h * n_w * n_c))
    g_s = a_s[0].reshape(n_c, -1) @ a_s[0].reshape(n_c, -1).T
    j, _ = style_cost(dev(a_s), dev(a_g))
    assert float(host(j)) == pytest.approx(np.sum((g_s - gram) ** 2) / (2 * n_h * n_w * n_c) ** 2)


@pytest.mark.parametrize("cost", [content_cost, style_cost])
def test_cost_gradients_against_centered_differences(cost):
    a_fixed, a_g = rng.standard_normal((1, 2, 3, 3)), rng.standard_normal((1, 2, 3, 3))
    _, grad = cost(dev(a_fixed), dev(a_g))
    expected = numerical_input_gradient(lambda z: float(host(cost(dev(a_fixed), dev(z))[0])), a_g)
    np.testing.assert_allclose(host(grad), expected, rtol=1e-6, atol=1e-9)


def test_style_transfer_lowers_the_cost_and_keeps_pixels_in_range():
    model = small_convnet()
    content, style = rng.random((2, 6, 6)).astype(np.float32), rng.random((2, 6, 6)).astype(np.float32)
    image, costs = style_transfer(model, content, style, "conv2", ["conv1", "conv2"], optimizer="adam", steps=30)
    assert image.shape == content.shape and 0 <= image.min() and image.max() <= 1
    assert len(costs) == 30 and costs[-1] < costs[0]


def test_the_shipped_small_vgg_loads_and_classifies_fashion_mnist():
    import gpunn
    from gpunn.vision import small_vgg

    vgg = small_vgg()
    assert vgg.count_params() == 33194 and vgg.get_layer("block3_conv1") is not None
    _, (x, y) = gpunn.datasets.fashion_mnist.load_data()
    _, accuracy = vgg.evaluate((x[:500, None] / 255).astype(np.float32), y[:500], batch_size=250)
    assert accuracy > 0.75  # 80.2% on the 10,000 test images when it was made


def test_losses_of_whole_examples_refuse_a_padding_mask():
    f = np.random.default_rng(0).standard_normal((4, 3))
    with pytest.raises(ValueError, match="triplet_loss.*cannot skip padded steps"):
        TripletLoss().forward(f, np.array([0, 0, 1, 1]), None, np.ones((4, 3), dtype=bool))
