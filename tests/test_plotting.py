import numpy as np
import pytest

import gpunn
from gpunn import plotting
from gpunn.datasets import toy
from gpunn.layers import Dense

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
plt = pytest.importorskip("matplotlib.pyplot")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_decision_boundary_colours_the_plane_by_the_prediction():
    x, y = toy.make_moons(100, seed=1)
    fig = plotting.plot_decision_boundary(lambda p: (p[:, 0] > 0.5).astype(np.float32), x, y, title="x > 0.5")
    ax = fig.axes[0]
    assert ax.get_title() == "x > 0.5" and len(ax.collections) >= 2  # the filled regions and the points
    model = gpunn.Sequential([Dense(3, activation="softmax", input_shape=(2,))])
    fig2, ax2 = plt.subplots()
    assert plotting.plot_decision_boundary(model.predict, x, y, ax=ax2, resolution=20) is fig2


def test_history_confusion_images_and_attention_figures():
    history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8]}
    fig = plotting.plot_history(history)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[1].lines) == 1
    cm = np.array([[5, 1], [2, 7]])
    fig = plotting.plot_confusion_matrix(cm, class_names=["a", "b"], normalize=True)
    assert [t.get_text() for t in fig.axes[0].texts] == ["0.83", "0.17", "0.22", "0.78"]
    fig = plotting.plot_images(np.random.rand(10, 5, 5), titles=range(10), cols=4)
    assert len(fig.axes) == 12 and sum(bool(ax.images) for ax in fig.axes) == 10
    fig = plotting.plot_attention(np.full((2, 3, 3), 1 / 3), image=np.zeros((3, 3)))
    assert [ax.get_title() for ax in fig.axes] == ["input", "head 1", "head 2"]


def test_embeddings_are_drawn_at_their_pca_coordinates():
    from gpunn.text import pca

    words = ["", "[UNK]", "man", "woman", "king", "queen"]
    vectors = np.random.default_rng(0).standard_normal((6, 4))
    fig = plotting.plot_embeddings(gpunn.backend.to_device(vectors), words)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == words[1:]  # the padding is left out
    np.testing.assert_allclose(ax.collections[0].get_offsets(), pca(vectors[1:]))
    fig = plotting.plot_embeddings(vectors, words, ["king", "queen", "man"])
    np.testing.assert_allclose(fig.axes[0].collections[0].get_offsets(), pca(vectors[[4, 5, 2]]))
    with pytest.raises(KeyError, match=r"plot_embeddings: \['prince'\] not in the vocabulary"):
        plotting.plot_embeddings(vectors, words, ["king", "prince"])
