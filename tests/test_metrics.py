import numpy as np
import pytest

from gpunn.metrics import confusion_matrix


def test_confusion_matrix_against_a_loop(xp):
    rng = np.random.default_rng(1)
    y_true, y_pred = rng.integers(0, 7, 503), rng.integers(0, 7, 503)
    expected = np.zeros((7, 7), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        expected[t, p] += 1
    cm = confusion_matrix(xp.asarray(y_true), xp.asarray(y_pred))
    assert isinstance(cm, np.ndarray) and cm.dtype == np.int64
    np.testing.assert_array_equal(cm, expected)
    assert cm.trace() == (y_true == y_pred).sum()


def test_confusion_matrix_num_classes_and_errors():
    assert confusion_matrix([0, 1], [1, 1], num_classes=4).shape == (4, 4)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        confusion_matrix([0, 2], [0, 1], num_classes=2)
    with pytest.raises(ValueError, match="one label per example"):
        confusion_matrix([0, 1, 1], [0, 1])
