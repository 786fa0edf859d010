"""Small data helpers: one-hot labels and mini-batches."""

import numpy as np


def to_categorical(y, num_classes=None, dtype="float32"):
    """Integer labels (n,) -> one-hot rows (n, num_classes), as in Keras.

    >>> to_categorical([0, 2], 3)
    array([[1., 0., 0.],
           [0., 0., 1.]], dtype=float32)
    """
    y = np.asarray(y)
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y[..., 0]
    if y.size and (y.dtype.kind not in "iu" and not np.all(y == np.round(y))):
        raise ValueError(f"to_categorical expects integer labels; received dtype {y.dtype}")
    y = y.astype(np.int64)
    num_classes = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"to_categorical: labels must be in [0, {num_classes}); received {y.min()}..{y.max()}")
    return np.eye(num_classes, dtype=dtype)[y]


def batch_slices(n, batch_size):
    """Slices that cut range(n) into mini-batches; the last one may be smaller."""
    return [slice(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


def random_mini_batches(x, y, mini_batch_size=64, seed=0):
    """The course's helper: shuffle (x, y) together and cut them into mini-batches.

    Rows are examples (x: (m, ...), y: (m, ...)). Returns a list of (x_batch, y_batch).
    """
    if len(x) != len(y):
        raise ValueError(f"random_mini_batches: x has {len(x)} examples but y has {len(y)}")
    order = np.random.default_rng(seed).permutation(len(x))
    return [(x[order[s]], y[order[s]]) for s in batch_slices(len(x), mini_batch_size)]
