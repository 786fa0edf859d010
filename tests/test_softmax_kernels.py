"""Softmax over rows, forward and backward (gpunn/ops/losses.py, cuda_kernels/losses.cu): the twins against the
course's formula, the kernels against the twins, and the Softmax activation through them."""

import numpy as np
import pytest

from gpunn import activations
from gpunn.backend import kernels
from gpunn.ops import losses as loss_ops
from tests.test_softmax_cross_entropy import extreme_logits

rng = np.random.default_rng(17)


def course_formula(z, da):
    """a = softmax(z) and dz = J^T da, row by row in float64, the Jacobian J_ij = a_i (delta_ij - a_j) written out."""
    rows, classes = z.shape
    a, dz = np.zeros((rows, classes)), np.zeros((rows, classes))
    for r in range(rows):
        e = np.exp(z[r] - z[r].max())
        a[r] = e / e.sum()
        jacobian = np.diag(a[r]) - np.outer(a[r], a[r])
        dz[r] = jacobian.T @ da[r]
    return a, dz


@pytest.mark.parametrize("rows, classes", [(1, 1), (1, 2), (7, 10), (40, 33)])
def test_twins_are_the_course_formula(rows, classes):
    z, da = rng.standard_normal((rows, classes)) * 3, rng.standard_normal((rows, classes))
    a, dz = np.empty((rows, classes)), np.empty((rows, classes))
    loss_ops.softmax_forward_cpu(z, a)
    loss_ops.softmax_backward_cpu(a, da, dz)
    expected_a, expected_dz = course_formula(z, da)
    np.testing.assert_allclose(a, expected_a, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dz, expected_dz, rtol=1e-10, atol=1e-15)


def run_both(dev, z, da):
    """The kernels' (a, dz) through the dispatchers -- outputs start as NaN -- and the twins', in float32;
    the inputs on the device are checked unchanged."""
    z_dev, da_dev = dev.asarray(z), dev.asarray(da)
    a = loss_ops.softmax(z_dev)
    a_in = dev.to_numpy(a).copy()
    dz = loss_ops.softmax_backward(a, da_dev)
    np.testing.assert_array_equal(dev.to_numpy(z_dev), z)
    np.testing.assert_array_equal(dev.to_numpy(da_dev), da)
    np.testing.assert_array_equal(dev.to_numpy(a), a_in)
    flat_z, flat_da = z.reshape(-1, z.shape[-1]), da.reshape(-1, z.shape[-1])  # the twins take (rows, k)
    ref_a, ref_dz = np.empty_like(flat_z), np.empty_like(flat_z)
    loss_ops.softmax_forward_cpu(flat_z, ref_a)
    loss_ops.softmax_backward_cpu(ref_a, flat_da, ref_dz)
    return (dev.to_numpy(a), dev.to_numpy(dz)), (ref_a.reshape(z.shape), ref_dz.reshape(z.shape))


@pytest.mark.parametrize("rows", [1, 37, 1031])
@pytest.mark.parametrize("classes", [1, 2, 10, 33, 1000])
def test_kernels_match_twins(rows, classes, kernel_device):
    z = (rng.standard_normal((rows, classes)) * 4).astype(np.float32)
    da = rng.standard_normal((rows, classes)).astype(np.float32)
    (a, dz), (ref_a, ref_dz) = run_both(kernel_device, z, da)
    np.testing.assert_allclose(a, ref_a, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(a.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(dz, ref_dz, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("shape", [(5,), (3, 4, 33), (2, 3, 2, 10)])
def test_kernels_work_over_the_last_axis_of_any_rank(shape, kernel_device):
    z = (rng.standard_normal(shape) * 4).astype(np.float32)
    da = rng.standard_normal(shape).astype(np.float32)
    (a, dz), _ = run_both(kernel_device, z, da)
    assert a.shape == dz.shape == shape
    expected_a, expected_dz = course_formula(z.reshape(-1, shape[-1]).astype(np.float64),
                                             da.reshape(-1, shape[-1]).astype(np.float64))
    np.testing.assert_allclose(a, expected_a.reshape(shape), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dz, expected_dz.reshape(shape), rtol=1e-4, atol=1e-6)


def test_kernels_keep_extreme_logits_finite(kernel_device):
    """Logits of +-80 (e^80 overflows float32) and a spread of 10^4 within a row: no inf, no NaN."""
    z = extreme_logits()
    da = rng.standard_normal(z.shape).astype(np.float32)
    (a, dz), _ = run_both(kernel_device, z, da)
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(dz))
    expected_a, expected_dz = course_formula(z.astype(np.float64), da.astype(np.float64))
    np.testing.assert_allclose(a, expected_a, rtol=1e-4, atol=1e-6)  # ulp(80) = 8e-6 in float32
    np.testing.assert_allclose(dz, expected_dz, rtol=1e-4, atol=1e-5)


def test_float64_and_strided_arrays_take_the_twins(kernel_device):
    """What the kernels cannot take (float64 for gradchecks, a view with strides) goes to the twins."""
    z = rng.standard_normal((6, 10))
    da = rng.standard_normal((6, 10))
    a = loss_ops.softmax(kernel_device.asarray(z))
    dz = loss_ops.softmax_backward(a, kernel_device.asarray(da))
    expected_a, expected_dz = course_formula(z, da)
    np.testing.assert_allclose(kernel_device.to_numpy(a), expected_a, rtol=1e-12)
    np.testing.assert_allclose(kernel_device.to_numpy(dz), expected_dz, rtol=1e-10, atol=1e-15)
    strided = kernel_device.asarray(z.astype(np.float32).T)  # (10, 6), not C-contiguous
    np.testing.assert_allclose(kernel_device.to_numpy(loss_ops.softmax(strided)), course_formula(z.T, da.T)[0],
                               rtol=1e-5, atol=1e-7)


def test_the_softmax_activation_runs_the_kernels(kernel_device, monkeypatch):
    """Softmax.forward / backward (not fused with a loss) on float32 device arrays: one kernel each way,
    what the float64 NumPy activation gives, and the logits kept for the fused cross-entropy."""
    launched = []
    get_kernel = kernels.get_kernel
    monkeypatch.setattr(kernels, "get_kernel", lambda family, name: launched.append(name) or get_kernel(family, name))
    z = (rng.standard_normal((9, 4, 7)) * 3).astype(np.float32)
    da = rng.standard_normal(z.shape).astype(np.float32)
    reference = activations.Softmax()
    expected_a, expected_dz = reference.forward(z.astype(np.float64)), reference.backward(da.astype(np.float64))
    softmax = activations.get("softmax")
    z_dev = kernel_device.asarray(z)
    a = softmax.forward(z_dev)
    assert softmax.z is z_dev and softmax.a is a
    dz = softmax.backward(kernel_device.asarray(da))
    assert launched == ["softmax_forward", "softmax_backward"]
    np.testing.assert_allclose(kernel_device.to_numpy(a), expected_a, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(kernel_device.to_numpy(dz), expected_dz, rtol=1e-4, atol=1e-6)


def test_backward_wants_matching_shapes():
    with pytest.raises(ValueError, match=r"received \(2, 3\) and \(2, 4\)"):
        loss_ops.softmax_backward(np.ones((2, 3)), np.ones((2, 4)))
