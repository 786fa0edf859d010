"""The pooling kernels (cuda_kernels/pooling.cu): the NumPy twins against plain loops and against the layers'
NumPy paths, then the kernels against the twins, on awkward sizes with NaN-poisoned outputs."""

import numpy as np
import pytest

import gpunn.backend as backend
import gpunn.layers.pooling as pooling_layers
from gpunn.backend import kernels
from gpunn.layers import AvgPool2D, MaxPool2D
from gpunn.ops.pooling import (avg_pool_backward_cpu, avg_pool_backward_gpu, avg_pool_forward_cpu, avg_pool_forward_gpu,
                               max_pool_backward_cpu, max_pool_backward_gpu, max_pool_forward_cpu, max_pool_forward_gpu)

rng = np.random.default_rng(17)

# (x shape, pool size, strides, padding): odd sizes, pools 2 and 3, strides 1/2/3, overlapping windows
# (stride < pool), strides larger than the pool (pixels no window reads), 'same' with asymmetric padding.
CASES = [
    ((2, 3, 7, 9), (2, 2), (2, 2), "valid"),
    ((2, 3, 7, 9), (2, 2), (2, 2), "same"),
    ((1, 2, 9, 8), (3, 3), (1, 1), "valid"),
    ((2, 2, 9, 8), (3, 3), (1, 1), "same"),
    ((3, 1, 11, 10), (3, 3), (2, 2), "same"),
    ((2, 2, 10, 11), (3, 2), (2, 3), "valid"),
    ((1, 3, 8, 7), (2, 3), (3, 1), "same"),
    ((2, 1, 10, 10), (2, 2), (3, 3), "valid"),
    ((1, 1, 1, 9), (1, 3), (1, 2), "same"),
]
BIG = ((9, 64, 13, 15), (3, 3), (2, 2), "same")  # N*C*OH*OW = 32,256 windows: many blocks of 256 threads


def layer_for(cls, case):
    return cls(pool_size=case[1], strides=case[2], padding=case[3])


def geometry(cls, case):
    return layer_for(cls, case).geometry(case[0])


def tied(shape, dtype=np.float64):
    """Small integers: many windows hold their max twice, so the tie rule matters."""
    return rng.integers(-3, 4, shape).astype(dtype)


def pool_loops(x, g, kind):
    """The definition, one window at a time: (y, arg) over the real pixels of each window."""
    n, c = x.shape[:2]
    y = np.full((n, c, g.OH, g.OW), np.nan)
    arg = np.full(y.shape, -1)
    for i, j, oh, ow in np.ndindex(n, c, g.OH, g.OW):
        seen = [(ki * g.KW + kj, x[i, j, oh * g.SH - g.PT + ki, ow * g.SW - g.PL + kj])
                for ki in range(g.KH) for kj in range(g.KW)
                if 0 <= oh * g.SH - g.PT + ki < g.H and 0 <= ow * g.SW - g.PL + kj < g.W]
        values = [v for _, v in seen]
        if kind == "max":
            y[i, j, oh, ow] = max(values)
            arg[i, j, oh, ow] = next(k for k, v in seen if v == max(values))  # the first one
        else:
            y[i, j, oh, ow] = sum(values) / len(values)
    return y, arg


@pytest.mark.parametrize("case", CASES)
def test_twins_match_loops(case):
    x = tied(case[0])
    g = geometry(MaxPool2D, case)
    y, arg = max_pool_forward_cpu(x, g)
    y_loops, arg_loops = pool_loops(x, g, "max")
    np.testing.assert_array_equal(y, y_loops)
    np.testing.assert_array_equal(arg, arg_loops)
    np.testing.assert_allclose(avg_pool_forward_cpu(x, g), pool_loops(x, g, "avg")[0], rtol=1e-14)


@pytest.mark.parametrize("case", CASES)
def test_twin_backwards_are_the_adjoints_of_the_forwards(case):
    """<dx, x'> = <dy, y'> for the linear maps the backwards transpose (max: with its winners fixed)."""
    x = tied(case[0])
    g = geometry(MaxPool2D, case)
    _, arg = max_pool_forward_cpu(x, g)
    dy = rng.standard_normal((x.shape[0], x.shape[1], g.OH, g.OW))
    probe = rng.standard_normal(x.shape)
    picked = np.take_along_axis(  # y' = probe at each window's arg-max
        np.stack([np.pad(probe, ((0, 0), (0, 0), (g.PT, g.PB), (g.PL, g.PR)))[
            :, :, ki:ki + g.SH * (g.OH - 1) + 1:g.SH, kj:kj + g.SW * (g.OW - 1) + 1:g.SW]
            for ki in range(g.KH) for kj in range(g.KW)]), arg[None], axis=0)[0]
    assert np.vdot(max_pool_backward_cpu(dy, arg, g), probe) == pytest.approx(np.vdot(dy, picked), rel=1e-12)
    assert np.vdot(avg_pool_backward_cpu(dy, g), probe) == pytest.approx(np.vdot(dy, avg_pool_forward_cpu(probe, g)),
                                                                         rel=1e-12)


@pytest.mark.parametrize("case", CASES + [BIG])
@pytest.mark.parametrize("cls", [MaxPool2D, AvgPool2D])
def test_twins_match_the_layers_numpy_paths(cls, case):
    """What the kernels compute is what the layers compute on NumPy (tiles or im2col), forward and backward."""
    x = tied(case[0], np.float32)
    layer = layer_for(cls, case)
    y = layer.forward_channels_first(x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward_channels_first(dy)
    g = layer.geometry(x.shape)
    if cls is MaxPool2D:
        y_twin, arg = max_pool_forward_cpu(x, g)
        dx_twin = max_pool_backward_cpu(dy, arg, g)
    else:
        y_twin, dx_twin = avg_pool_forward_cpu(x, g), avg_pool_backward_cpu(dy, g)
    np.testing.assert_allclose(y_twin, y, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx_twin, dx, rtol=1e-5, atol=1e-6)
    assert y_twin.dtype == dx_twin.dtype == np.float32


@pytest.mark.parametrize("case", CASES + [BIG])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_match_twins_with_poisoned_outputs(case, dtype, kernel_device):
    """The CUDA kernels equal the NumPy twins; outputs start as NaN, so an unwritten element fails."""
    dev = kernel_device
    g = geometry(MaxPool2D, case)
    x = tied(case[0], dtype)
    y, arg = max_pool_forward_gpu(dev.asarray(x), g)
    y_twin, arg_twin = max_pool_forward_cpu(x, g)
    np.testing.assert_array_equal(dev.to_numpy(y), y_twin)
    np.testing.assert_array_equal(dev.to_numpy(arg), arg_twin)
    dy = rng.standard_normal(y_twin.shape).astype(dtype)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    dx = dev.to_numpy(max_pool_backward_gpu(dev.asarray(dy), arg, g))
    np.testing.assert_allclose(dx, max_pool_backward_cpu(dy, arg_twin, g), rtol=tol, atol=tol)
    np.testing.assert_array_equal(dx, dev.to_numpy(max_pool_backward_gpu(dev.asarray(dy), arg, g)))  # same bits
    np.testing.assert_allclose(dev.to_numpy(avg_pool_forward_gpu(dev.asarray(x), g)), avg_pool_forward_cpu(x, g),
                               rtol=tol, atol=tol)
    dx = dev.to_numpy(avg_pool_backward_gpu(dev.asarray(dy), g))
    np.testing.assert_allclose(dx, avg_pool_backward_cpu(dy, g), rtol=tol, atol=tol)
    np.testing.assert_array_equal(dx, dev.to_numpy(avg_pool_backward_gpu(dev.asarray(dy), g)))


def test_max_pool_kernel_lets_nan_and_infinities_through(kernel_device):
    """A NaN wins its window (as NumPy's max), -inf is a real value (padding never wins), like the twin."""
    dev = kernel_device
    case = ((1, 2, 6, 7), (3, 3), (2, 2), "same")
    g = geometry(MaxPool2D, case)
    x = tied(case[0], np.float32)
    x[0, 0, :3, :3] = -np.inf  # a whole window of -inf: its max is -inf, at a real pixel
    x[0, 1, 2, 3] = np.nan
    x[0, 1, 4, 4] = np.inf
    y, arg = max_pool_forward_gpu(dev.asarray(x), g)
    y_twin, arg_twin = max_pool_forward_cpu(x, g)
    np.testing.assert_array_equal(dev.to_numpy(y), y_twin)
    np.testing.assert_array_equal(dev.to_numpy(arg), arg_twin)
    assert np.isnan(y_twin).any() and np.isneginf(y_twin).any() and (arg_twin >= 0).all()


def test_grid_stride_loops_cover_more_work_than_threads(kernel_device, monkeypatch):
    """With the grid capped at 2 blocks, every thread loops over many elements, and all are written."""
    launch = kernels.launch
    monkeypatch.setattr(kernels, "launch", lambda *a, **kw: launch(*a, **{**kw, "max_blocks": 2}))
    dev = kernel_device
    case = ((3, 5, 9, 11), (3, 2), (2, 1), "same")
    g = geometry(MaxPool2D, case)
    x = tied(case[0], np.float32)
    dy = rng.standard_normal((3, 5, g.OH, g.OW)).astype(np.float32)
    y, arg = max_pool_forward_gpu(dev.asarray(x), g)
    y_twin, arg_twin = max_pool_forward_cpu(x, g)
    np.testing.assert_array_equal(dev.to_numpy(y), y_twin)
    np.testing.assert_allclose(dev.to_numpy(max_pool_backward_gpu(dev.asarray(dy), arg, g)),
                               max_pool_backward_cpu(dy, arg_twin, g), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dev.to_numpy(avg_pool_forward_gpu(dev.asarray(x), g)), avg_pool_forward_cpu(x, g),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dev.to_numpy(avg_pool_backward_gpu(dev.asarray(dy), g)), avg_pool_backward_cpu(dy, g),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", [CASES[0], CASES[3], CASES[6]])
@pytest.mark.parametrize("cls", [MaxPool2D, AvgPool2D])
def test_layers_on_the_kernels_match_numpy_and_leave_their_inputs_alone(cls, case, kernel_device, monkeypatch):
    """A layer on the kernels gives the layer's y and dx off them; neither pass modifies x or dy."""
    x = tied(case[0], np.float32)
    with monkeypatch.context() as off:  # the same layer, kept off the pooling kernels
        off.setattr(pooling_layers, "kernels_take", lambda a: False)
        reference = layer_for(cls, case)
        y_ref = reference.forward_channels_first(x.copy())
        dy = rng.standard_normal(y_ref.shape).astype(np.float32)
        dx_ref = backend.to_numpy(reference.backward_channels_first(dy.copy()))
        assert not reference.direct
    dev = kernel_device
    layer = layer_for(cls, case)
    x_dev, dy_dev = dev.asarray(x), dev.asarray(dy)
    y = layer.forward_channels_first(x_dev)
    dx = layer.backward_channels_first(dy_dev)
    assert layer.direct
    np.testing.assert_allclose(dev.to_numpy(y), backend.to_numpy(y_ref), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dev.to_numpy(dx), dx_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(dev.to_numpy(x_dev), x)
    np.testing.assert_array_equal(dev.to_numpy(dy_dev), dy)
