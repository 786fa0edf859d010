"""Where ``fit``, ``evaluate`` and ``predict`` get their mini-batches: arrays, a generator, or a PyDataset.

Whatever the data, the training loop sees one object with

- ``batches()``: one epoch's batches, each ``(xs, ys, sample_weight)`` on the device and
  checked: ``xs`` one array per model input, ``ys`` one per output (or None), in the
  models' order whatever form the caller used (an array, a list, a dict by name);
- ``steps``: batches per epoch (None for a generator read to its end);
- ``size`` and ``unit``: what the progress bar counts (samples for arrays, batches otherwise);
- ``ran_out``: whether a generator ended before the epoch did;
- ``on_epoch_end()``.

Arrays are checked once and moved to the device before the first epoch; their
batches are slices of one shuffled order. A generator's or a PyDataset's batches
are checked and moved one by one, as they come; each is ``(x, y)`` or
``(x, y, sample_weight)`` (``predict`` also takes ``x`` alone).

Sample weights: ``sample_weight`` gives one per example (or, for sequences, one per
time step: (samples, time), a per-token loss); ``class_weight``
(``{class: weight}``) gives each example the weight of its class, Keras's rule:
labels or the arg-max of one-hot rows pick the class, unlisted classes weigh 1.
"""

import itertools
from collections.abc import Iterator

import numpy as np

import gpunn.backend as backend
from gpunn.utils.data import PyDataset, batch_slices

DEFAULT_BATCH_SIZE = 32
RAN_OUT = ("Your input ran out of data; interrupting training. Make sure that your generator can generate at least "
           "steps_per_epoch * epochs batches (loop forever: while True: ... yield x, y)")


def check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; received {name}={value!r}")


def is_dataset(x):
    """A PyDataset, or any object built like Keras's (``__len__``, ``__getitem__``, ``on_epoch_end``)."""
    return isinstance(x, PyDataset) or all(hasattr(x, a) for a in ("__len__", "__getitem__", "on_epoch_end"))


def is_batches(x):
    """Data that comes in whole batches: a PyDataset or a generator (any iterator)."""
    return is_dataset(x) or isinstance(x, Iterator)


def adapt(model, x, y=None, sample_weight=None, class_weight=None, batch_size=None, shuffle=False, steps=None,
          what="x", targets=True, steps_name="steps"):
    """The batches of ``x``: arrays (with ``y``), a generator or a PyDataset, every argument checked first.

    ``targets``: the batches need targets y (fit, evaluate) or not (predict). ``steps_name``: what
    the caller calls ``steps`` (``steps_per_epoch``), for the error messages.
    """
    if steps is not None:
        check_int(steps_name, steps, 1)
    if class_weight is not None:
        class_weight = check_class_weight(class_weight)
    if is_batches(x):
        kind = "PyDataset" if is_dataset(x) else "generator"
        for name, value in (("y", y), ("sample_weight", sample_weight), ("batch_size", batch_size)):
            if value is not None:
                raise ValueError(f"{what}: a {kind} hands out whole batches, (x, y) or (x, y, sample_weight); leave "
                                 f"{name} out of the call (received {name}={_describe(value)})")

        def prepare(i, batch):
            return _prepare(model, batch, class_weight, f"{what} (batch {i} of the {kind})", targets)

        if kind == "PyDataset":
            return DatasetBatches(x, steps, steps_name, shuffle, prepare)
        return GeneratorBatches(x, steps, prepare)
    if targets and y is None:
        raise ValueError(f"{what}: no targets y; fit and evaluate need (x, y): arrays, or batches (x, y)")
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    check_int("batch_size", batch_size, 1)
    return ArrayBatches(model, x, y, sample_weight, class_weight, batch_size, shuffle, steps, steps_name, what)


def split_validation(x, y, sample_weight, validation_split):
    """The last ``validation_split`` of the arrays kept apart, as Keras does: (train arrays, validation arrays)."""
    if not 0 <= validation_split < 1:
        raise ValueError(f"validation_split must be in [0, 1); received validation_split={validation_split!r}")
    if validation_split and is_batches(x):
        raise ValueError("validation_split cuts arrays; with a generator or a PyDataset give validation_data=... instead")
    if not validation_split or x is None or y is None:  # nothing to cut (missing data is reported later)
        return (x, y, sample_weight), None
    n = _length(x)
    split = int(n * (1 - validation_split))
    if split == 0 or split == n:
        raise ValueError(f"validation_split={validation_split} leaves no samples for training or validation out of "
                         f"{n}")
    train, val = slice(None, split), slice(split, None)
    return tuple(_cut(a, train) for a in (x, y, sample_weight)), tuple(_cut(a, val) for a in (x, y, sample_weight))


def _length(data):
    """The number of samples of an array, or of the first array of a list or dict of them."""
    if isinstance(data, dict):
        return _length(next(iter(data.values())))
    if isinstance(data, (list, tuple)) and data and hasattr(data[0], "shape"):
        return len(data[0])
    return len(data)


def _cut(data, rows):
    """The same rows of an array, or of every array of a list or dict of them (None stays None)."""
    if data is None:
        return None
    if isinstance(data, dict):
        return {k: _cut(v, rows) for k, v in data.items()}
    if isinstance(data, (list, tuple)) and data and all(v is None or hasattr(v, "shape") for v in data):
        return [_cut(v, rows) for v in data]
    return data[rows]


def unpack_validation(validation_data):
    """``(x, y, sample_weight)`` from validation_data given as (x, y), (x, y, w), a generator or a PyDataset."""
    if is_batches(validation_data):
        return validation_data, None, None
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise ValueError(f"validation_data must be (x_val, y_val) or (x_val, y_val, sample_weight_val), a generator or "
                         f"a PyDataset; received {_describe(validation_data)}")
    return tuple(validation_data) + (None,) * (3 - len(validation_data))


class ArrayBatches:
    """Arrays in memory: checked and moved to the device once, cut into mini-batches of one shuffled order per epoch."""

    unit = "sample"
    ran_out = False

    def __init__(self, model, x, y, sample_weight, class_weight, batch_size, shuffle, steps, steps_name, what):
        xs, ys = model._check_data(x, y, what)
        n = len(xs[0])
        w = sample_weights(sample_weight, class_weight, ys, n, what)
        self.slices = batch_slices(n, batch_size)
        if steps is not None:
            if steps > len(self.slices):
                raise ValueError(f"{steps_name}={steps}, but {what} makes {len(self.slices)} batches of {batch_size} "
                                 f"samples")
            self.slices = self.slices[:steps]
        self.steps, self.size, self.n, self.shuffle = len(self.slices), self.slices[-1].stop, n, shuffle
        self.xs, self.ys, self.w = _on_device(xs), _on_device(ys), None if w is None else backend.to_device(w)

    def batches(self):
        order = self.epoch_order()
        for s in self.slices:
            yield self.batch(order, s)

    def epoch_order(self):
        """The order of the samples this epoch: a permutation on the device, or None (as they are)."""
        return backend.permutation(self.n) if self.shuffle else None

    def batch(self, order, s):
        """(xs, ys, w) of the samples at positions ``s`` (a slice) of ``order``."""
        rows = s if order is None else order[s]
        return ([a[rows] for a in self.xs], None if self.ys is None else [None if a is None else a[rows] for a in
                                                                           self.ys],
                None if self.w is None else self.w[rows])

    def on_epoch_end(self):
        pass


class DatasetBatches:
    """A PyDataset (Keras's Sequence): every batch ``dataset[i]`` once per epoch, in a new order if ``shuffle``."""

    unit = "batch"
    ran_out = False

    def __init__(self, dataset, steps, steps_name, shuffle, prepare):
        count = len(dataset)
        if count < 1 or (steps is not None and steps > count):
            raise ValueError(f"{type(dataset).__name__} has {count} batches (its __len__); "
                             f"{'at least one is needed' if count < 1 else f'{steps_name}={steps} asks for more'}")
        self.dataset, self.count, self.shuffle, self.prepare = dataset, count, shuffle, prepare
        self.steps = self.size = count if steps is None else steps

    def batches(self):
        order = backend.to_numpy(backend.permutation(self.count)) if self.shuffle else range(self.count)
        for i in order[:self.steps]:
            yield self.prepare(int(i), self.dataset[int(i)])

    def on_epoch_end(self):
        self.dataset.on_epoch_end()


class GeneratorBatches:
    """A Python generator (any iterator) of batches, read on from where the last epoch stopped.

    With ``steps`` an epoch is that many batches; without, the first epoch reads the
    generator to its end (a generator for many epochs loops forever and needs steps).
    """

    unit = "batch"

    def __init__(self, iterator, steps, prepare):
        self.iterator, self.steps, self.size, self.prepare = iterator, steps, steps, prepare
        self.count, self.ran_out = 0, False

    def batches(self):
        self.ran_out = False
        for step in itertools.count() if self.steps is None else range(self.steps):
            try:
                batch = next(self.iterator)
            except StopIteration:
                self.ran_out = step == 0 or self.steps is not None  # the natural end of a steps=None epoch is not
                return
            self.count += 1
            yield self.prepare(self.count - 1, batch)

    def on_epoch_end(self):
        pass


def _prepare(model, batch, class_weight, what, targets):
    """One batch from a generator or a PyDataset, checked and on the device: (x, y, sample_weight)."""
    if isinstance(batch, tuple) and 1 <= len(batch) <= 3:
        x, y, w = batch + (None,) * (3 - len(batch))
    elif not targets:
        x, y, w = batch, None, None
    else:
        raise ValueError(f"{what}: expected a batch (x, y) or (x, y, sample_weight) as a tuple; received "
                         f"{_describe(batch)}")
    if targets and y is None:
        raise ValueError(f"{what}: the batch has no targets y; fit and evaluate need batches (x, y)")
    xs, ys = model._check_data(x, y if targets else None, what)
    w = sample_weights(w, class_weight, ys, len(xs[0]), what) if targets else None
    return _on_device(xs), _on_device(ys), None if w is None else backend.to_device(w)


def _on_device(arrays):
    return None if arrays is None else [None if a is None else backend.to_device(a) for a in arrays]


def sample_weights(sample_weight, class_weight, ys, n, what):
    """One weight per sample, from ``sample_weight`` or ``class_weight`` (None when neither is given)."""
    if sample_weight is not None and class_weight is not None:
        raise ValueError(f"{what}: give sample_weight or class_weight, not both (as in Keras); to combine them, "
                         f"multiply each sample's class weight into sample_weight")
    if class_weight is not None:
        if len(ys) != 1:
            raise ValueError(f"{what}: class_weight weighs the classes of one output; this model has {len(ys)} "
                             f"outputs (weigh their samples with sample_weight)")
        return class_weights(ys[0], class_weight, what)
    if sample_weight is None:
        return None
    xp = backend.get_array_module(sample_weight)
    w = xp.asarray(sample_weight)
    per_step = w.ndim > 1 and w.shape != (n, 1) and all(y is None or tuple(y.shape[:w.ndim]) == tuple(w.shape)
                                                        for y in ys or [])
    if w.dtype.kind not in "fiub" or not (w.shape in ((n,), (n, 1)) or per_step):
        raise ValueError(f"{what}: sample_weight must hold one number per sample, shape ({n},), or one per time "
                         f"step of each sample's targets (for sequences, ({n}, time)); received {_describe(w)}")
    w = (w if per_step else w.reshape(n)).astype(np.float32)
    if n and (not bool(xp.isfinite(w).all()) or float(w.min()) < 0):
        raise ValueError(f"{what}: sample_weight must be finite and >= 0; received values from {float(w.min())} to "
                         f"{float(w.max())}")
    return w


def check_class_weight(class_weight):
    ok = isinstance(class_weight, dict) and all(
        isinstance(k, (int, np.integer)) and not isinstance(k, bool) and isinstance(v, (int, float, np.number))
        and v >= 0 for k, v in class_weight.items())
    if not ok:
        raise ValueError(f"class_weight must be a dict {{class index: weight >= 0}}, e.g. {{0: 1.0, 1: 5.0}}; "
                         f"received class_weight={class_weight!r}")
    return {int(k): float(v) for k, v in class_weight.items()}


def class_weights(y, class_weight, what):
    """Each sample's class weight: its class is its label, or the arg-max of its one-hot row."""
    labels = backend.to_numpy(y)
    if labels.ndim == 2:
        labels = labels[:, 0] if labels.shape[1] == 1 else labels.argmax(axis=1)
    if labels.ndim != 1:
        raise ValueError(f"{what}: class_weight needs one class per sample, labels (n,) or one-hot rows (n, k); "
                         f"received y of shape {labels.shape} (weigh such samples with sample_weight)")
    classes, index = np.unique(np.round(labels).astype(np.int64), return_inverse=True)
    return np.array([class_weight.get(int(c), 1.0) for c in classes], dtype=np.float32)[index]


def _describe(value):
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__} of shape {tuple(shape)}" if shape is not None else f"{type(value).__name__}"
