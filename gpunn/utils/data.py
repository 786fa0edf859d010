"""Small data helpers: one-hot labels, mini-batches, and Keras's PyDataset (Sequence) of batches."""

import numpy as np


CLASS_NAMES_HINT = "turn class names into indices first: classes, y = np.unique(y, return_inverse=True)"


def non_numeric(a):
    """Words for the values of a non-numeric array, for an error: "text (dtype <U3, e.g. 'cat')"."""
    kind = "text" if a.dtype.kind in "US" else "Python objects"
    example = f", e.g. {str(a.flat[0])!r}" if a.size else ""
    return f"{kind} (dtype {a.dtype}{example})"


def to_categorical(y, num_classes=None, dtype="float32"):
    """Integer labels (n,) -> one-hot rows (n, num_classes), as in Keras.

    >>> to_categorical([0, 2], 3)
    array([[1., 0., 0.],
           [0., 0., 1.]], dtype=float32)
    """
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise ValueError(f"to_categorical expects integer class labels; received {non_numeric(y)}; {CLASS_NAMES_HINT}")
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


class PyDataset:
    """A dataset that hands out whole mini-batches, as in Keras: subclass it for data that does not fit in memory
    or is made on the fly (augmentation).

    Define ``__len__`` (the number of batches) and ``__getitem__(i)`` (batch i: ``(x, y)`` or
    ``(x, y, sample_weight)``), then ``model.fit(dataset, epochs=...)``. Each epoch asks for every batch once,
    in a new random order when ``fit(shuffle=True)``, and then calls :meth:`on_epoch_end`.

    ``workers``, ``use_multiprocessing`` and ``max_queue_size`` are accepted as in Keras; gpunn reads
    the batches one after the other, in the training loop.

    Example:
        >>> class Batches(PyDataset):
        ...     def __init__(self, x, y, batch_size):
        ...         super().__init__()
        ...         self.x, self.y, self.batch_size = x, y, batch_size
        ...     def __len__(self):
        ...         return -(-len(self.x) // self.batch_size)
        ...     def __getitem__(self, i):
        ...         s = slice(i * self.batch_size, (i + 1) * self.batch_size)
        ...         return self.x[s], self.y[s]
    """

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        self.workers, self.use_multiprocessing, self.max_queue_size = workers, use_multiprocessing, max_queue_size

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__: the number of batches")

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__: batch number index, as (x, y)")

    def on_epoch_end(self):
        """Called after every epoch (reshuffle or regenerate the data here)."""


Sequence = PyDataset  # Keras 2's name; in Keras 3 keras.utils.Sequence is PyDataset too
