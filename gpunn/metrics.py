"""Metrics: numbers to watch while training, not to differentiate.

A metric here returns the *count* of correct predictions in a batch as an
array on the device; the training loop adds counts up and divides once per
report, so nothing is copied to the host on every batch.

``'accuracy'`` (or ``'acc'``) is resolved like Keras does, from the loss:
binary cross-entropy -> binary accuracy (threshold 0.5); categorical ->
arg-max of prediction == arg-max of the target; sparse categorical ->
arg-max == the integer label. With another loss, one output means binary and
several mean categorical.
"""

import numpy as np

import gpunn.backend as backend


class Metric:
    name = None

    def count(self, y_pred, y_true, mask=None):
        """How many examples of the batch are right (a 0-d array); a sequence counts its fraction right
        (of its real steps when ``mask``, (batch, time), marks padding)."""
        raise NotImplementedError


def _per_example(right, mask=None):
    """Sum over the batch of each example's fraction right (sequences: over its time steps, its real ones)."""
    if mask is None:
        return right.reshape(len(right), -1).mean(axis=1).sum()
    xp = backend.get_array_module(right)
    real = xp.broadcast_to(mask.reshape(tuple(mask.shape) + (1,) * (right.ndim - mask.ndim)), right.shape)
    real, right = real.reshape(len(real), -1), right.reshape(len(right), -1)
    return ((right & real).sum(axis=1) / xp.maximum(real.sum(axis=1), 1)).sum()


class BinaryAccuracy(Metric):
    name = "binary_accuracy"

    def __init__(self, threshold=0.5):
        self.threshold = threshold

    def count(self, y_pred, y_true, mask=None):
        return _per_example((y_pred > self.threshold) == (y_true.reshape(y_pred.shape) > 0.5), mask)


class CategoricalAccuracy(Metric):
    name = "categorical_accuracy"

    def count(self, y_pred, y_true, mask=None):
        return _per_example(y_pred.argmax(axis=-1) == y_true.argmax(axis=-1), mask)


class SparseCategoricalAccuracy(Metric):
    name = "sparse_categorical_accuracy"

    def count(self, y_pred, y_true, mask=None):
        return _per_example(y_pred.argmax(axis=-1) == y_true.reshape(y_pred.shape[:-1]).astype(np.int64), mask)


METRICS = {cls.name: cls for cls in (BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy)}


def get(identifier, loss, output_shape):
    """The metric object for ``identifier``; 'accuracy' is chosen from the loss.

    Returns (display name, metric). The display name is the one the user wrote
    ('accuracy' stays 'accuracy' in the progress bar and History).
    """
    if isinstance(identifier, Metric):
        return identifier.name, identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in ("accuracy", "acc"):
            if loss.name == "binary_crossentropy" or (loss.name not in METRICS_FOR_LOSS and output_shape[-1] == 1):
                return key, BinaryAccuracy()
            return key, METRICS[METRICS_FOR_LOSS.get(loss.name, "categorical_accuracy")]()
        if key in METRICS:
            return key, METRICS[key]()
    raise ValueError(f"Unknown metric {identifier!r}; valid metrics are: accuracy, acc, {', '.join(METRICS)}")


METRICS_FOR_LOSS = {
    "binary_crossentropy": "binary_accuracy",
    "categorical_crossentropy": "categorical_accuracy",
    "sparse_categorical_crossentropy": "sparse_categorical_accuracy",
}


def confusion_matrix(y_true, y_pred, num_classes=None):
    """C[i, j] = how many examples of true class i were predicted as class j (a NumPy int64 array).

    ``y_true`` and ``y_pred`` are integer labels of the same length -- for a
    softmax model, ``model.predict(x).argmax(axis=-1)``. The diagonal holds the
    right answers; row i, off the diagonal, shows what class i is mistaken for.
    """
    y_true = backend.to_numpy(y_true).astype(np.int64).ravel()
    y_pred = backend.to_numpy(y_pred).astype(np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"confusion_matrix: y_true and y_pred must hold one label per example; received "
                         f"{y_true.size} and {y_pred.size} labels")
    if num_classes is None:
        num_classes = int(max(y_true.max(initial=-1), y_pred.max(initial=-1))) + 1
    if y_true.size and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= num_classes):
        raise ValueError(f"confusion_matrix: labels must be in [0, {num_classes}); received labels from "
                         f"{min(y_true.min(), y_pred.min())} to {max(y_true.max(), y_pred.max())}")
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes).reshape(num_classes,
                                                                                                   num_classes)


def roc_curve(y_true, y_score):
    """The ROC curve of scores for a yes/no question (as scikit-learn's): (fpr, tpr, thresholds), NumPy arrays.

    Answering "yes" for every score >= t gives, over the examples whose true answer is no (0) and yes (1),
    the false positive rate FPR(t) = FP / negatives and the true positive rate TPR(t) = TP / positives.
    The curve runs from (0, 0) (t above every score: always "no") to (1, 1) (always "yes"), one point per
    distinct score, highest first. For distances, where smaller means "yes", pass ``-distance``.
    """
    y_true = backend.to_numpy(y_true).astype(bool).ravel()
    y_score = backend.to_numpy(y_score).astype(np.float64).ravel()
    if y_true.shape != y_score.shape or y_true.all() or not y_true.any():
        raise ValueError(f"roc_curve: expected one score per example and both answers among y_true; received "
                         f"{y_true.size} labels ({int(y_true.sum())} positive) and {y_score.size} scores")
    order = np.argsort(-y_score, kind="stable")
    scores, hits = y_score[order], y_true[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # the last example of each distinct score
    tpr = np.r_[0.0, np.cumsum(hits)[last] / hits.sum()]
    fpr = np.r_[0.0, np.cumsum(~hits)[last] / (~hits).sum()]
    return fpr, tpr, np.r_[np.inf, scores[last]]


def auc(x, y):
    """The area under a curve given by points (x, y), x sorted (the trapezoidal rule): ``auc(fpr, tpr)``."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))
