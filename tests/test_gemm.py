"""The matrix product kernel (cuda_kernels/gemm.cu): the twin against NumPy in float64, then the kernel against
the twin on sizes that are not multiples of its 64 x 64 x 16 tiles, for every layout of A and B (C-contiguous,
transposed, sliced), writing into NaN-poisoned outputs (beta 0) and adding to them (beta 1)."""

import numpy as np
import pytest

import gpunn.ops.gemm as gemm
from gpunn.backend import kernels
from gpunn.ops.gemm import matmul, sgemm_cpu, sgemm_gpu

rng = np.random.default_rng(17)

# (M, N, K): single elements, one tile plus one row/column, K just past 16 and 256 slices, a wide thin product
# (18 column tiles), and the shape of LeNet-5's 120 -> 84 Dense layer on a batch of 200.
SHAPES = [(1, 1, 1), (1, 7, 3), (65, 63, 17), (130, 10, 257), (6, 576 * 2 + 5, 25), (200, 84, 120)]


def operand(shape, transposed, dtype=np.float32):
    """A random (rows, cols) matrix: C-contiguous, or the transpose ``x.T`` of a C-contiguous (cols, rows) one."""
    if transposed:
        return rng.standard_normal(shape[::-1]).astype(dtype).T
    return rng.standard_normal(shape).astype(dtype)


def assert_product(got, want, k):
    """fp32 sums of k products of standard normals: about sqrt(k) ulps of the terms apart, whatever the order."""
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * max(k, 1))


@pytest.mark.parametrize("beta", [0.0, 1.0])
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_twin_is_the_float64_product(beta, ta, tb):
    m, n, k = 13, 9, 11
    a, b = operand((m, k), ta, np.float64), operand((k, n), tb, np.float64)
    c0 = rng.standard_normal((m, n))
    c = c0.copy()
    sgemm_cpu(a, b, c, beta)
    loops = np.array([[sum(a[i, p] * b[p, j] for p in range(k)) for j in range(n)] for i in range(m)])
    np.testing.assert_allclose(c, loops + beta * c0, rtol=1e-12, atol=1e-12)


def test_twin_with_beta_zero_never_reads_c():
    a, b, c = operand((4, 3), False), operand((3, 5), False), np.full((4, 5), np.nan, np.float32)
    sgemm_cpu(a, b, c, 0.0)
    assert np.isfinite(c).all()
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES, ids=["x".join(map(str, s)) for s in SHAPES])
@pytest.mark.parametrize("ta", [False, True], ids=["a", "aT"])
@pytest.mark.parametrize("tb", [False, True], ids=["b", "bT"])
def test_kernel_matches_twin(shape, ta, tb, kernel_device):
    """beta 0 into an output that starts as NaN (xp.empty: a NaN that leaks, or an element not written, fails),
    then beta 1 onto known values; a and b are left as they were."""
    dev = kernel_device
    m, n, k = shape
    a, b, c0 = operand((m, k), ta), operand((k, n), tb), rng.standard_normal((m, n)).astype(np.float32)
    a_before, b_before = a.copy(), b.copy()  # (on the host runner, dev.asarray(a) is a itself)
    da, db = (dev.asarray(x.T).T if t else dev.asarray(x) for x, t in ((a, ta), (b, tb)))  # the same layouts
    assert da.strides == a.strides and db.strides == b.strides

    out = matmul(da, db)  # beta 0: out = xp.empty(...), NaN
    want = np.empty((m, n), np.float32)
    sgemm_cpu(a, b, want, 0.0)
    assert np.isfinite(dev.to_numpy(out)).all()
    assert_product(dev.to_numpy(out), want, k)

    dc = dev.asarray(c0.copy())
    assert matmul(da, db, out=dc, accumulate=True) is dc  # beta 1: dc += a . b
    want = c0.copy()
    sgemm_cpu(a, b, want, 1.0)
    assert_product(dev.to_numpy(dc), want, k)
    np.testing.assert_array_equal(dev.to_numpy(da), a_before)
    np.testing.assert_array_equal(dev.to_numpy(db), b_before)


def test_kernel_reads_slices_and_reversed_views(kernel_device):
    """Any strides: every other column of A, rows 3.. of B reversed, a column slice of a wider B."""
    dev = kernel_device
    a, b = rng.standard_normal((70, 2 * 37)).astype(np.float32), rng.standard_normal((40, 90)).astype(np.float32)
    da, db = dev.asarray(a)[:, ::2], dev.asarray(b)[3:][::-1, 5:71]
    out = dev.to_numpy(matmul(da, db))
    assert_product(out, a[:, ::2].astype(np.float64) @ b[3:][::-1, 5:71], 37)
    np.testing.assert_array_equal(dev.to_numpy(db), b[3:][::-1, 5:71])


@pytest.mark.parametrize("shape", [(0, 4, 3), (3, 0, 2), (3, 4, 0)])
def test_empty_products(shape, kernel_device):
    """No rows or columns: nothing to launch; K = 0: C = 0 (beta 0), C unchanged (beta 1)."""
    dev = kernel_device
    m, n, k = shape
    a, b = dev.asarray(np.ones((m, k), np.float32)), dev.asarray(np.ones((k, n), np.float32))
    np.testing.assert_array_equal(dev.to_numpy(matmul(a, b)), np.zeros((m, n)))
    c = dev.asarray(np.full((m, n), 2.0, np.float32))
    np.testing.assert_array_equal(dev.to_numpy(matmul(a, b, out=c, accumulate=True)), np.full((m, n), 2.0))


@pytest.mark.parametrize("row_blocks", [1, 2])
def test_row_tiles_past_the_grid_are_looped_over(row_blocks, kernel_device, monkeypatch):
    """With gridDim.y capped (65535 on a GPU; here 1 or 2), each block walks down several of the 4 row tiles."""
    monkeypatch.setattr(gemm, "MAX_ROW_BLOCKS", row_blocks)
    grids = []
    get_kernel = kernels.get_kernel
    monkeypatch.setattr(kernels, "get_kernel", lambda family, name: (
        lambda grid, block, args: grids.append(grid) or get_kernel(family, name)(grid, block, args)))
    dev = kernel_device
    a, b = operand((200, 20), False), operand((20, 70), True)
    out = dev.to_numpy(matmul(dev.asarray(a), dev.asarray(b.T).T))
    assert grids == [(2, row_blocks)]
    assert_product(out, a.astype(np.float64) @ b, 20)


def test_kernel_only_for_float32_with_a_contiguous_output(kernel_device, monkeypatch):
    """float64 (gradchecks) and outputs that are views go to the twin; sgemm_gpu itself refuses such an output."""
    dev = kernel_device
    launched = []
    get_kernel = kernels.get_kernel
    monkeypatch.setattr(kernels, "get_kernel", lambda family, name: launched.append(name) or get_kernel(family, name))
    a, b = rng.standard_normal((5, 4)), rng.standard_normal((4, 3))
    np.testing.assert_allclose(dev.to_numpy(matmul(dev.asarray(a), dev.asarray(b))), a @ b, rtol=1e-14)
    a32, b32 = dev.asarray(a.astype(np.float32)), dev.asarray(b.astype(np.float32))
    out_t = dev.asarray(np.zeros((3, 5), np.float32)).T
    matmul(a32, b32, out=out_t)
    assert launched == []
    assert_product(dev.to_numpy(out_t), a @ b, 4)
    with pytest.raises(ValueError, match="must be C-contiguous"):
        sgemm_gpu(a32, b32, out_t, 0.0)
    matmul(a32, b32)
    assert launched == ["sgemm"]


def test_shape_errors_say_what_was_expected_and_received():
    a, b = np.ones((3, 4), np.float32), np.ones((5, 2), np.float32)
    with pytest.raises(ValueError, match=r"a \(M, K\) and b \(K, N\) with the same K, received a of shape \(3, 4\) "
                                         r"and b of shape \(5, 2\)"):
        matmul(a, b)
    with pytest.raises(ValueError, match=r"received a of shape \(4,\)"):
        matmul(np.ones(4, np.float32), b)
    with pytest.raises(ValueError, match=r"out of shape \(3, 2\) .* received out of shape \(2, 3\)"):
        matmul(a, b[:4], out=np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="pass out, an array of shape \\(3, 2\\); received out=None"):
        matmul(a, b[:4], accumulate=True)
