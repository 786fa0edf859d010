"""The fused softmax cross-entropy (gpunn/ops/losses.py, cuda_kernels/losses.cu): twin against the course's
formula, kernel against twin, and the loss through it against the loss without it."""

import numpy as np
import pytest

from gpunn import losses
from gpunn.ops import losses as loss_ops

rng = np.random.default_rng(5)


def course_formula(z, labels, weights):
    """Loss rows and dJ/dZ written out in float64, row by row: -w log softmax(z)_y and w (softmax(z) - onehot) / m."""
    rows, classes = z.shape
    loss, dz = np.zeros(rows), np.zeros((rows, classes))
    for r in range(rows):
        e = np.exp(z[r] - z[r].max())
        a = e / e.sum()
        loss[r] = -weights[r] * np.log(a[labels[r]])
        dz[r] = weights[r] * (a - np.eye(classes)[labels[r]]) / rows
    return loss, dz


@pytest.mark.parametrize("rows, classes", [(1, 2), (7, 10), (40, 33)])
def test_twin_is_the_course_formula(rows, classes):
    z = rng.standard_normal((rows, classes)) * 3
    labels, weights = rng.integers(0, classes, rows), rng.random(rows)
    loss, dz, mean = np.empty(rows), np.empty((rows, classes)), np.empty(1)
    loss_ops.softmax_cross_entropy_cpu(z, labels, weights, loss, dz, mean, None, None)
    expected_loss, expected_dz = course_formula(z, labels, weights)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dz, expected_dz, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(mean, expected_loss.mean(), rtol=1e-12)
    loss_ops.softmax_cross_entropy_cpu(z, labels, None, loss, dz, mean, None, None)  # no weights: all ones
    np.testing.assert_allclose(loss, course_formula(z, labels, np.ones(rows))[0], rtol=1e-12)


def run_both(dev, z, labels, weights):
    """The kernel's (loss_rows, J, dz) through the dispatcher -- outputs start as NaN -- and the twin's, in float32."""
    loss, mean, dz = loss_ops.softmax_cross_entropy(dev.asarray(z), dev.asarray(labels),
                                                    None if weights is None else dev.asarray(weights))
    ref_loss, ref_dz, ref_mean = np.empty(len(z), np.float32), np.empty_like(z), np.empty(1, np.float32)
    loss_ops.softmax_cross_entropy_cpu(z, labels, weights, ref_loss, ref_dz, ref_mean, None, None)
    return (dev.to_numpy(loss), dev.to_numpy(mean), dev.to_numpy(dz)), (ref_loss, ref_mean.reshape(()), ref_dz)


@pytest.mark.parametrize("rows, classes", [(1, 2), (37, 10), (1031, 10), (1000, 2), (37, 33), (1, 1000), (70, 1000)])
@pytest.mark.parametrize("weighted", [False, True])
def test_kernel_matches_twin(rows, classes, weighted, kernel_device):
    z = (rng.standard_normal((rows, classes)) * 4).astype(np.float32)
    labels = rng.integers(0, classes, rows)
    weights = rng.random(rows).astype(np.float32) if weighted else None
    if weighted:
        weights[::3] = 0  # masked rows: no share of the loss, no gradient
    (loss, mean, dz), (ref_loss, ref_mean, ref_dz) = run_both(kernel_device, z, labels, weights)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-5)
    np.testing.assert_allclose(dz, ref_dz, rtol=1e-4, atol=1e-6 / rows)
    if weighted:
        assert np.all(loss[::3] == 0) and np.all(dz[::3] == 0)


def extreme_logits(classes=37):
    """Rows of +-80 (e^80 overflows float32), alternating +-80, a spread of 10^4, one 10^4, and a ramp."""
    z = np.zeros((6, classes), np.float32)
    z[0] = 80
    z[1] = -80
    z[2, ::2], z[2, 1::2] = 80, -80
    z[3] = rng.uniform(-1e4, 1e4, classes)
    z[4, 5] = 1e4
    z[5] = np.linspace(-80, 80, classes)
    return z


def test_kernel_keeps_extreme_logits_finite(kernel_device):
    """Logits of +-80 (e^80 overflows float32) and a spread of 10^4 within a row: no inf, no NaN."""
    z = extreme_logits()
    labels = np.array([3, 0, 1, 7, 5, 36])
    (loss, _, dz), _ = run_both(kernel_device, z, labels, None)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(dz))
    z64 = z.astype(np.float64)  # log softmax = z - logsumexp(z): a softmax of 0 (e^-10^4) has a finite log
    lse = z64.max(1) + np.log(np.exp(z64 - z64.max(1, keepdims=True)).sum(1))
    np.testing.assert_allclose(loss, lse - z64[np.arange(6), labels], rtol=1e-5, atol=1e-3)
    with np.errstate(divide="ignore"):
        expected_dz = course_formula(z64, labels, np.ones(6))[1]
    np.testing.assert_allclose(dz, expected_dz, rtol=1e-4, atol=1e-6)  # ulp(80) = 8e-6 in float32


def test_kernel_gives_nan_loss_for_a_label_out_of_range(kernel_device):
    z = rng.standard_normal((3, 4)).astype(np.float32)
    loss, mean, _ = loss_ops.softmax_cross_entropy(kernel_device.asarray(z),
                                                   kernel_device.asarray(np.array([0, 4, -1])))
    loss = kernel_device.to_numpy(loss)
    assert np.isfinite(loss[0]) and np.isnan(loss[1]) and np.isnan(loss[2]) and np.isnan(kernel_device.to_numpy(mean))


@pytest.mark.parametrize("blocks", [1, 3, 1024])
def test_the_mean_is_summed_the_same_way_every_time(blocks, kernel_device, monkeypatch):
    """1031 rows on `blocks` blocks at most (grid-stride rows, then the blocks' sums added by the last block):
    the same bits on every run, and the counter back at 0."""
    from gpunn.backend import kernels

    monkeypatch.setattr(loss_ops, "BLOCKS", blocks)
    dev = kernel_device
    z = (rng.standard_normal((1031, 10)) * 4).astype(np.float32)
    labels = rng.integers(0, 10, 1031)
    runs = [run_both(dev, z, labels, None) for _ in range(3)]
    (loss, mean, _), (ref_loss, ref_mean, _) = runs[0]
    np.testing.assert_allclose(mean, ref_loss.astype(np.float64).mean(), rtol=1e-5)
    assert all(run[0][1] == mean for run in runs)
    assert not dev.to_numpy(kernels.block_counters(1)).any()


CASES = {  # (logits shape, labels shape, sample_weight shape or None, mask, ignore_class)
    "plain": ((9, 5), (9,), None, False, None),
    "sample weights": ((9, 5), (9, 1), (9,), False, None),
    "sequences, masked": ((4, 6, 7), (4, 6), None, True, None),
    "sequences, masked and weighted": ((4, 6, 7), (4, 6), (4,), True, None),
    "weights per step": ((4, 6, 7), (4, 6), (4, 6), False, None),
    "ignore_class": ((4, 6, 7), (4, 6), (4,), True, 0),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_loss_through_the_kernel_is_the_loss_without_it(case, kernel_device):
    """SparseCategoricalCrossentropy takes the kernel for float32 device logits: same J and dJ/dZ as its
    element-wise float64 path, with sample weights, masks and ignore_class."""
    z_shape, y_shape, w_shape, masked, ignore = CASES[case]
    z = (rng.standard_normal(z_shape) * 3).astype(np.float32)
    y = rng.integers(0, z_shape[-1], y_shape)
    w = None if w_shape is None else rng.random(w_shape).astype(np.float32)
    mask = rng.random(z_shape[:-1]) < 0.7 if masked else None
    a = np.exp(z - z.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    reference = losses.SparseCategoricalCrossentropy(ignore_class=ignore)
    expected = reference.forward_fused(z.astype(np.float64), a.astype(np.float64), y, w, mask)
    expected_dz = reference.backward_fused()
    assert reference.dz is None  # float64: the element-wise path

    dev = kernel_device
    fused = losses.SparseCategoricalCrossentropy(ignore_class=ignore)
    loss = fused.forward_fused(dev.asarray(z), dev.asarray(a), dev.asarray(y), None if w is None else dev.asarray(w),
                               None if mask is None else dev.asarray(mask))
    assert fused.dz is not None  # the kernel ran
    np.testing.assert_allclose(float(dev.to_numpy(loss)), expected, rtol=1e-5)
    np.testing.assert_allclose(dev.to_numpy(fused.backward_fused()), expected_dz, rtol=1e-4, atol=1e-7)
