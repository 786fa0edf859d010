"""A layer's forward in one kernel (gemm.cu's sgemm_bias_act): the product with the epilogue -- bias, activation,
layout -- in it. The twin against the activation objects, the kernel against the twin on sizes that are not
multiples of its tiles, and product_bias_act's choice between the one kernel and cuBLAS + the epilogue kernel."""

import numpy as np
import pytest

import gpunn.ops.gemm as gemm
from gpunn import activations
from gpunn.backend import graphs, kernels
from gpunn.ops.epilogue import activation_code
from gpunn.ops.gemm import product_bias_act, sgemm_bias_act_cpu
from tests.test_gemm import operand

rng = np.random.default_rng(23)
NAMES = ["linear", "relu", "sigmoid", "tanh"]
# (F, images, P, K): one element; LeNet's convolutions (6 filters, 24 x 24 pixels, 25 = 5 x 5 taps; 16 filters, 8 x 8,
# 150); a tile of rows plus one; Dense on 200 rows (P = 1); an empty sum (K = 0: g(b)).
SHAPES = [(1, 1, 1, 1), (6, 3, 576, 25), (16, 5, 64, 150), (65, 2, 63, 5), (84, 200, 1, 120), (3, 4, 5, 0)]


@pytest.mark.parametrize("name", NAMES)
def test_twin_is_the_activation_of_the_product_plus_bias(name):
    F, images, P, K = 4, 3, 5, 7
    a, b, bias = rng.standard_normal((F, K)), rng.standard_normal((K, images * P)), rng.standard_normal(F)
    activation = activations.get(name)
    out = np.full((images, F, P), np.nan)
    sgemm_bias_act_cpu(a, b, bias, 1, out, P, activation_code(activation))
    z = (a @ b + bias[:, None]).reshape(F, images, P).transpose(1, 0, 2)
    np.testing.assert_allclose(out, activation.forward(z), rtol=1e-14)


@pytest.mark.parametrize("shape", SHAPES, ids=["x".join(map(str, s)) for s in SHAPES])
@pytest.mark.parametrize("transposed", [False, True], ids=["W.col", "WT.xT"])
def test_kernel_matches_twin(shape, transposed, kernel_device):
    """Every activation, with and without bias, into NaN-poisoned outputs; operands as they are or transposed
    views (Dense's W^T . x^T); the operands left as they were."""
    dev = kernel_device
    F, images, P, K = shape
    a, b = operand((F, K), transposed), operand((K, images * P), transposed)
    bias = rng.standard_normal(F).astype(np.float32)
    a_before, b_before = a.copy(), b.copy()
    da, db = dev.asarray(a), dev.asarray(b)
    for code in range(4):
        for bias_or_none in (bias, None):
            got = product_bias_act(da, db, None if bias_or_none is None else dev.asarray(bias), images, code)
            want = np.empty((images, F, P), np.float32)
            sgemm_bias_act_cpu(a.astype(np.float64), b.astype(np.float64), bias, int(bias_or_none is not None),
                               want, P, code)
            np.testing.assert_allclose(dev.to_numpy(got), want, rtol=1e-5, atol=1e-5 * max(K, 1) ** 0.5)
    np.testing.assert_array_equal(dev.to_numpy(da), a_before)
    np.testing.assert_array_equal(dev.to_numpy(db), b_before)


def launched(monkeypatch):
    """The names of the kernels launched from now on."""
    names = []
    get_kernel = kernels.get_kernel
    monkeypatch.setattr(kernels, "get_kernel", lambda family, name: names.append(name) or get_kernel(family, name))
    return names


@pytest.mark.parametrize("fused_max, in_graph, expected", [
    (gemm.FUSED_MAX, False, ["sgemm_bias_act"]),  # small: one kernel
    (0, False, ["conv_bias_act_forward"]),  # large: cuBLAS (here NumPy's product), then the epilogue
    (0, True, ["sgemm_bias_act"]),  # in a graph, where cuBLAS cannot go: one kernel whatever the size
])
def test_small_products_and_graphs_take_the_one_kernel(fused_max, in_graph, expected, kernel_device, monkeypatch):
    dev = kernel_device
    a, b, bias = operand((6, 25), False), operand((25, 3 * 40), False), rng.standard_normal(6).astype(np.float32)
    reference = np.empty((3, 6, 40), np.float32)
    sgemm_bias_act_cpu(a, b, bias, 1, reference, 40, 1)
    monkeypatch.setattr(gemm, "FUSED_MAX", fused_max)
    monkeypatch.setattr(graphs, "in_graph", lambda: in_graph)
    names = launched(monkeypatch)
    got = product_bias_act(dev.asarray(a), dev.asarray(b), dev.asarray(bias), 3, 1)
    if dev.xp is np and not in_graph and fused_max == 0:
        expected = ["conv_bias_act_forward"]  # NumPy's matmul is no launch on the host runner
    assert [n for n in names if n != "sgemm"] == expected
    np.testing.assert_allclose(dev.to_numpy(got), reference, rtol=1e-5, atol=1e-5)


def test_float64_takes_the_twins(kernel_device, monkeypatch):
    """A float64 gradcheck on the GPU path: no float32 kernel, the same result as the formula."""
    dev = kernel_device
    a, b, bias = rng.standard_normal((5, 4)), rng.standard_normal((4, 6)), rng.standard_normal(5)
    names = launched(monkeypatch)
    got = dev.to_numpy(product_bias_act(dev.asarray(a), dev.asarray(b), dev.asarray(bias), 2, 3))
    assert names == []
    np.testing.assert_allclose(got, np.tanh(a @ b + bias[:, None]).reshape(5, 2, 3).transpose(1, 0, 2), rtol=1e-14)


def test_mismatched_shapes_are_refused_before_any_launch(kernel_device):
    dev = kernel_device
    a, b = dev.asarray(np.ones((4, 3), np.float32)), dev.asarray(np.ones((3, 10), np.float32))
    with pytest.raises(ValueError, match=r"received a \(4, 3\), b \(3, 10\), bias None and images=3"):
        product_bias_act(a, b, None, 3, 1)  # 10 columns are not 3 images
    with pytest.raises(ValueError, match=r"bias \(3,\)"):
        product_bias_act(a, b, dev.asarray(np.ones(3, np.float32)), 2, 1)
