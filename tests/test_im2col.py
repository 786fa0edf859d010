"""im2col/col2im: the NumPy twin against plain loops, the adjoint identity, and the CUDA kernels against the twin."""

import numpy as np
import pytest

from gpunn.backend import kernels
from gpunn.ops.im2col import (Geometry, col2im_cpu, col2im_gpu, conv_output_size, im2col_cpu, im2col_gpu,
                               resolve_padding)

rng = np.random.default_rng(4)

# (x shape, kernel, stride, ((top, bottom), (left, right)), dilation): odd sizes, asymmetric padding, 1x1, dilation.
CASES = [
    ((2, 3, 7, 6), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ((1, 2, 9, 8), (3, 2), (2, 3), ((0, 2), (1, 0)), (1, 1)),
    ((3, 1, 5, 5), (1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1)),
    ((2, 2, 11, 10), (3, 3), (2, 2), ((2, 2), (1, 3)), (2, 2)),
    ((1, 4, 4, 4), (4, 4), (1, 1), ((0, 0), (0, 0)), (1, 1)),
]


def im2col_loops(x, g, fill=0.0):
    """The definition, one element at a time."""
    col = np.full(g.col_shape, np.nan)
    for n, c, ki, kj, oh, ow in np.ndindex(g.N, g.C, g.KH, g.KW, g.OH, g.OW):
        h, w = oh * g.SH - g.PT + ki * g.DH, ow * g.SW - g.PL + kj * g.DW
        value = x[n, c, h, w] if 0 <= h < g.H and 0 <= w < g.W else fill
        col[(c * g.KH + ki) * g.KW + kj, (n * g.OH + oh) * g.OW + ow] = value
    return col


@pytest.mark.parametrize("case", CASES)
def test_twin_matches_loops_and_is_adjoint(case):
    shape, k, s, pads, d = case
    g = Geometry(shape, k, s, pads, d)
    x = rng.standard_normal(shape)
    col = im2col_cpu(x, g)
    np.testing.assert_array_equal(col, im2col_loops(x, g))
    np.testing.assert_array_equal(im2col_cpu(x, g, fill=-np.inf), im2col_loops(x, g, fill=-np.inf))
    y = rng.standard_normal(g.col_shape)
    assert np.vdot(col2im_cpu(y, g), x) == pytest.approx(np.vdot(y, col), rel=1e-12)  # <col2im(y), x> = <y, im2col(x)>


def test_output_size_and_same_padding():
    assert conv_output_size(28, 5, 1, 4) == 28 and conv_output_size(14, 5, 1, 0) == 10
    assert resolve_padding("same", 28, 5, 1) == (2, 2)
    assert resolve_padding("same", 7, 2, 2) == (0, 1)  # the odd pixel goes at the end, as in Keras
    assert resolve_padding("valid", 7, 3, 1) == (0, 0) and resolve_padding(2, 7, 3, 1) == (2, 2)


@pytest.mark.parametrize("case", CASES + [((5, 7, 33, 31), (5, 5), (1, 1), ((2, 2), (2, 2)), (1, 1)),
                                          ((3, 16, 65, 17), (3, 3), (2, 1), ((1, 1), (0, 0)), (1, 1))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_match_twin_with_poisoned_outputs(case, dtype, kernel_device):
    """The CUDA kernels equal the NumPy twin; outputs start as NaN, so an unwritten element fails."""
    shape, k, s, pads, d = case
    g = Geometry(shape, k, s, pads, d)
    x = rng.standard_normal(shape).astype(dtype)
    y = rng.standard_normal(g.col_shape).astype(dtype)
    dev = kernel_device
    for fill in (0.0, -np.inf):
        np.testing.assert_array_equal(dev.to_numpy(im2col_gpu(dev.asarray(x), g, fill)), im2col_cpu(x, g, fill))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    dx = dev.to_numpy(col2im_gpu(dev.asarray(y), g))
    np.testing.assert_allclose(dx, col2im_cpu(y, g), rtol=tol, atol=tol)
    np.testing.assert_array_equal(dx, dev.to_numpy(col2im_gpu(dev.asarray(y), g)))  # deterministic: same bits


def test_grid_stride_loops_cover_more_work_than_threads(kernel_device, monkeypatch):
    """With the grid capped at 2 blocks, every thread loops over many elements, and all are written."""
    launch = kernels.launch
    monkeypatch.setattr(kernels, "launch", lambda *a, **kw: launch(*a, **{**kw, "max_blocks": 2}))
    g = Geometry((2, 3, 9, 7), (3, 2), (2, 1), ((1, 1), (0, 1)), (1, 1))
    x = rng.standard_normal((2, 3, 9, 7)).astype(np.float32)
    y = rng.standard_normal(g.col_shape).astype(np.float32)
    dev = kernel_device
    np.testing.assert_array_equal(dev.to_numpy(im2col_gpu(dev.asarray(x), g)), im2col_cpu(x, g))
    np.testing.assert_allclose(dev.to_numpy(col2im_gpu(dev.asarray(y), g)), col2im_cpu(y, g), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape, k, pads, d", [((2, 3, 9, 8), (3, 3), ((1, 1), (1, 1)), (1, 1)),
                                               ((3, 2, 7, 7), (5, 5), ((2, 2), (2, 2)), (1, 1)),
                                               ((2, 3, 8, 9), (3, 2), ((0, 2), (1, 0)), (2, 1)),
                                               ((1, 4, 6, 6), (3, 3), ((0, 0), (0, 0)), (1, 1))])
def test_input_gradient_as_a_convolution_equals_col2im(shape, k, pads, d):
    """dX of a stride-1 convolution: W^T dZ + col2im, or a convolution of dZ with the flipped kernel -- the same."""
    from gpunn.ops.im2col import input_gradient_as_convolution

    g = Geometry(shape, k, (1, 1), pads, d)
    kernel = rng.standard_normal((5, shape[1]) + k)
    dz = rng.standard_normal((5, g.N * g.OH * g.OW))
    np.testing.assert_allclose(input_gradient_as_convolution(dz, kernel, g), col2im_cpu(kernel.reshape(5, -1).T @ dz, g),
                               rtol=1e-10, atol=1e-10)
