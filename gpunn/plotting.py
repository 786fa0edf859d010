"""The course's pictures, drawn with matplotlib (an optional dependency: ``pip install 'gpunn[plot]'``).

Each function draws into ``ax`` when given one, else into a new figure, and
returns the figure, so a notebook shows it and a script can ``savefig`` it.

    >>> fig = plot_history(model.fit(x, y, validation_data=(x_val, y_val), epochs=5))
    >>> fig = plot_decision_boundary(model.predict, x, y)
"""

import numpy as np

from gpunn import backend


def _axes(ax, figsize):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def plot_history(history, metrics=("loss", "accuracy"), figsize=None):
    """Training curves from ``fit``'s History (or its ``.history`` dict): one panel per metric, train and validation."""
    import matplotlib.pyplot as plt

    logs = getattr(history, "history", history)
    metrics = [m for m in metrics if m in logs]
    fig, axes = plt.subplots(1, len(metrics), figsize=figsize or (5 * len(metrics), 3.6), squeeze=False)
    for key, ax in zip(metrics, axes[0]):
        epochs = np.arange(1, len(logs[key]) + 1)
        ax.plot(epochs, logs[key], "o-", label="train")
        if f"val_{key}" in logs:
            ax.plot(epochs, logs[f"val_{key}"], "o-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    return fig


def plot_decision_boundary(predict, x, y, ax=None, resolution=200, title=None):
    """Colour the plane by ``predict`` (points (n, 2) -> probabilities) and scatter the labelled points on it.

    ``predict`` returns one probability per point (sigmoid output, class 1 above
    0.5) or one row of class probabilities per point (softmax: the arg-max wins).
    """
    fig, ax = _axes(ax, (5, 4))
    x = np.asarray(x)
    margin = 0.1 * (x.max(axis=0) - x.min(axis=0)) + 0.1
    lo, hi = x.min(axis=0) - margin, x.max(axis=0) + margin
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    p = np.asarray(predict(np.stack([g0.ravel(), g1.ravel()], 1).astype(np.float32)))
    labels = (p.reshape(len(p), -1)[:, 0] > 0.5) if p.ndim == 1 or p.shape[-1] == 1 else p.argmax(axis=-1)
    ax.contourf(g0, g1, labels.reshape(g0.shape).astype(float), alpha=0.3, cmap="coolwarm")
    ax.scatter(x[:, 0], x[:, 1], c=np.asarray(y).ravel(), cmap="coolwarm", edgecolors="k", s=18)
    if title:
        ax.set_title(title)
    return fig


def plot_confusion_matrix(cm, class_names=None, ax=None, normalize=False):
    """Show :func:`gpunn.metrics.confusion_matrix` (rows: true class, columns: predicted), counts written in."""
    cm = np.asarray(cm)
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    fig, ax = _axes(ax, (6, 5))
    image = ax.imshow(shown, cmap="Blues")
    fig.colorbar(image, ax=ax)
    names = class_names or [str(i) for i in range(len(cm))]
    ax.set_xticks(range(len(cm)), names, rotation=60, ha="right")
    ax.set_yticks(range(len(cm)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i, j in np.ndindex(cm.shape):
        ax.text(j, i, f"{shown[i, j]:.2f}" if normalize else str(cm[i, j]), ha="center", va="center", fontsize=7,
                color="white" if shown[i, j] > shown.max() / 2 else "black")
    fig.tight_layout()
    return fig


def plot_images(images, titles=None, cols=8, cmap="gray", size=1.4):
    """A grid of 2-D arrays -- digits, or a convolution's filters (each scaled to its own range)."""
    import matplotlib.pyplot as plt

    images = [np.asarray(im) for im in images]
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows + 0.3 * (titles is not None)),
                             squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < len(images):
            ax.imshow(images[k], cmap=cmap)
            if titles is not None:
                ax.set_title(str(titles[k]), fontsize=8)
    fig.tight_layout()
    return fig


def plot_attention(weights, image=None, xlabel="key position", ylabel="query position", xticklabels=None,
                   yticklabels=None):
    """One heatmap per head of attention weights (heads, L_q, L_k), each row summing to 1; ``image`` drawn first;
    the keys and queries named by ``xticklabels`` and ``yticklabels`` (characters, words) when given."""
    import matplotlib.pyplot as plt

    weights = np.asarray(weights)
    weights = weights[None] if weights.ndim == 2 else weights
    panels = len(weights) + (image is not None)
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 3.4), squeeze=False)
    axes = list(axes[0])
    if image is not None:
        axes.pop(0).imshow(image, cmap="gray")
        fig.axes[0].set_title("input")
    for h, ax in enumerate(axes):
        ax.imshow(weights[h], cmap="viridis", vmin=0)
        ax.set_title(f"head {h + 1}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if xticklabels is not None:
            ax.set_xticks(range(len(xticklabels)), xticklabels)
        if yticklabels is not None:
            ax.set_yticks(range(len(yticklabels)), yticklabels)
    fig.tight_layout()
    return fig


def plot_embeddings(embeddings, vocabulary, words=None, ax=None, title="word vectors, 2-D PCA"):
    """Word vectors projected on their two directions of largest variance (:func:`gpunn.text.pca`), labelled.

    ``embeddings`` has one row per word of ``vocabulary`` (ids in order); ``words`` picks the ones to show
    (default: all but the padding). The projection is computed from the shown words only.
    """
    from gpunn.text import pca

    index = {w: i for i, w in enumerate(vocabulary)}
    words = [w for w in index if w] if words is None else list(words)
    missing = [w for w in words if w not in index]
    if missing:
        raise KeyError(f"plot_embeddings: {missing} not in the vocabulary ({len(index)} words)")
    points = pca(backend.to_numpy(embeddings)[[index[w] for w in words]])
    fig, ax = _axes(ax, (6, 5))
    ax.scatter(points[:, 0], points[:, 1], s=12)
    for (x, y), word in zip(points, words):
        ax.annotate(word, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=8)
    ax.set_xlabel("first principal component")
    ax.set_ylabel("second principal component")
    ax.set_title(title)
    return fig
