"""The convolution's epilogue (bias + activation + layout): the twins against the activations, the kernels
against the twins, and Conv2D on the fused path against Conv2D on the unfused one."""

import numpy as np
import pytest

import gpunn.backend as backend
from gpunn import activations
from gpunn.backend import kernels
from gpunn.ops import epilogue
from gpunn.ops.epilogue import (activation_code, bias_act_backward, bias_act_forward, conv_bias_act_backward_cpu,
                                conv_bias_act_forward_cpu, conv_bias_act_forward_gpu)

rng = np.random.default_rng(17)
NAMES = ["linear", "relu", "sigmoid", "tanh"]


@pytest.mark.parametrize("name", NAMES)
def test_twins_are_the_activation_with_a_transpose(name):
    """out = g(Z + b) in (N, F, P), dZ = dA g'(Z) in (F, N*P): as the activation objects compute them."""
    F, N, P = 5, 3, 7
    zf, bias, dy = rng.standard_normal((F, N * P)), rng.standard_normal(F), rng.standard_normal((N, F, P))
    activation = activations.get(name)
    a = activation.forward(zf.reshape(F, N, P).transpose(1, 0, 2) + bias[:, None])
    out, dzf, db = np.full((N, F, P), np.nan), np.full((F, N * P), np.nan), np.full(F, np.nan)
    conv_bias_act_forward_cpu(zf, bias, 1, out, F, N, P, activation_code(activation))
    np.testing.assert_allclose(out, a, rtol=1e-15)
    conv_bias_act_backward_cpu(dy, out, dzf, db, 1, None, None, F, N, P, activation_code(activation), 1)
    dz = activation.backward(dy)
    np.testing.assert_allclose(dzf, dz.transpose(1, 0, 2).reshape(F, -1), rtol=1e-14)
    np.testing.assert_allclose(db, dz.sum(axis=(0, 2)), rtol=1e-13)


def test_only_known_unfused_activations_have_a_code():
    assert [activation_code(activations.get(n)) for n in NAMES] == [0, 1, 2, 3]
    assert activation_code(activations.get("softmax")) is None and activation_code(activations.get("elu")) is None
    fused = activations.get("sigmoid")
    fused.fused = True  # compile's sigmoid + binary cross-entropy: the loss reads the sigmoid's logits
    assert activation_code(fused) is None

    class Doubled(activations.ReLU):
        def forward(self, z):
            return 2 * super().forward(z)

    assert activation_code(Doubled()) is None


@pytest.mark.parametrize("F", [1, 6, 17])
@pytest.mark.parametrize("N", [1, 7, 129])
@pytest.mark.parametrize("P", [1, 25, 100])
def test_kernels_match_twins_with_poisoned_outputs(F, N, P, kernel_device):
    """Every activation, with and without bias; outputs start as NaN (xp.empty), so an unwritten element fails.
    NaNs and zeros in Z take the same branch as in NumPy."""
    dev = kernel_device
    zf = rng.standard_normal((F, N * P)).astype(np.float32)
    zf.flat[::11] = 0.0
    zf.flat[5::97] = np.nan
    bias = rng.standard_normal(F).astype(np.float32)
    dy = rng.standard_normal((N, F, P)).astype(np.float32)
    for code in range(4):
        for b in (bias, None):
            out = dev.to_numpy(bias_act_forward(dev.asarray(zf), None if b is None else dev.asarray(b), N, code))
            expected = np.empty((N, F, P), np.float32)
            conv_bias_act_forward_cpu(zf, bias if b is None else b, int(b is not None), expected, F, N, P, code)
            np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)  # tanh: a few ulps apart
            dzf, db = bias_act_backward(dev.asarray(dy), dev.asarray(expected), code, b is not None)
            expected_dzf = np.empty((F, N * P), np.float32)
            conv_bias_act_backward_cpu(dy, expected, expected_dzf, None, 0, None, None, F, N, P, code, 1)
            np.testing.assert_array_equal(dev.to_numpy(dzf), expected_dzf)
            if b is None:
                assert db is None
            else:  # summed in another order than NumPy's
                np.testing.assert_allclose(dev.to_numpy(db), expected_dzf.sum(axis=1, dtype=np.float64), rtol=1e-5,
                                           atol=1e-5)


@pytest.mark.parametrize("chunks", [1, 2, 7, 64])
def test_the_bias_gradient_is_summed_the_same_way_every_time_and_leaves_the_counters_at_zero(chunks, kernel_device,
                                                                                             monkeypatch):
    """Rows cut into `chunks` blocks (of unequal lengths: 3 * 257 = 771 elements a row), each adding its part, the
    last to finish adding theirs: the same bits on every run, and the counters back at 0 for the next launch."""
    monkeypatch.setattr(epilogue, "row_chunks", lambda F, L: chunks)
    dev = kernel_device
    F, N, P = 5, 3, 257
    dy = rng.standard_normal((N, F, P)).astype(np.float32)
    out = rng.standard_normal((N, F, P)).astype(np.float32)
    runs = [dev.to_numpy(bias_act_backward(dev.asarray(dy), dev.asarray(out), epilogue.RELU, True)[1])
            for _ in range(3)]
    expected = (dy * (out > 0)).sum(axis=(0, 2), dtype=np.float64)
    np.testing.assert_allclose(runs[0], expected, rtol=1e-5, atol=1e-5)
    for run in runs[1:]:
        np.testing.assert_array_equal(run, runs[0])
    assert not dev.to_numpy(kernels.block_counters(F)).any()
    target = dev.asarray(np.full(F, np.nan, np.float32))  # the trainer's buffer: written in place
    dzf, db = bias_act_backward(dev.asarray(dy), dev.asarray(out), epilogue.RELU, True, target)
    assert db is target
    np.testing.assert_array_equal(dev.to_numpy(target), runs[0])


def test_the_forward_grid_stride_loop_covers_more_work_than_threads(kernel_device, monkeypatch):
    """With the grid capped at 2 blocks, every thread loops over many elements, and all are written."""
    launch = kernels.launch
    monkeypatch.setattr(kernels, "launch", lambda *a, **kw: launch(*a, **{**kw, "max_blocks": 2}))
    dev = kernel_device
    F, N, P = 6, 13, 25
    zf, bias = rng.standard_normal((F, N * P)).astype(np.float32), rng.standard_normal(F).astype(np.float32)
    out, expected = backend.xp.empty((N, F, P), dtype=np.float32), np.empty((N, F, P), np.float32)
    conv_bias_act_forward_gpu(dev.asarray(zf), dev.asarray(bias), 1, out, F, N, P, 1)
    conv_bias_act_forward_cpu(zf, bias, 1, expected, F, N, P, 1)
    np.testing.assert_array_equal(dev.to_numpy(out), expected)


def test_backward_takes_a_strided_gradient_and_leaves_it_alone(kernel_device):
    dev = kernel_device
    out = dev.asarray(rng.standard_normal((3, 4, 5)).astype(np.float32))
    dy = dev.asarray(rng.standard_normal((3, 4, 10)).astype(np.float32))[:, :, ::2]  # not contiguous
    before = dev.to_numpy(dy).copy()
    dzf = dev.to_numpy(bias_act_backward(dy, out, 1)[0])
    np.testing.assert_array_equal(dev.to_numpy(dy), before)
    np.testing.assert_array_equal(dzf, (before * (dev.to_numpy(out) > 0)).transpose(1, 0, 2).reshape(4, -1))


def with_and_without_the_epilogue(module, make, x, dy, dev, epilogue):
    """A layer made by ``make()`` run forward and backward on the unfused path (``module.activation_code`` patched
    to None: the activation objects) and the fused one: [y, dx, *grads] of each, checked to be the same. dy is
    left as it was; ``epilogue``: whether the fused run is expected to take the epilogue kernels."""
    results = []
    for fused in (False, True):
        with pytest.MonkeyPatch.context() as patch:
            if not fused:
                patch.setattr(module, "activation_code", lambda activation: None)
            layer = make()
            dys = dev.asarray(dy)
            y = layer.forward(dev.asarray(x), training=True)
            dx = layer.backward(dys)
        np.testing.assert_array_equal(dev.to_numpy(dys), dy)  # backward never modifies its input
        assert (layer.epilogue is not None) == (fused and epilogue)
        assert y.shape == dy.shape and dx.shape == x.shape
        results.append([dev.to_numpy(a) for a in (y, dx, *layer.grads.values())])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", NAMES + ["elu"])
@pytest.mark.parametrize("use_bias", [True, False])
def test_conv2d_on_the_epilogue_kernel_equals_conv2d_without_it(activation, use_bias, kernel_device):
    """Forward, dX and every gradient, with the epilogue kernels and with today's activation objects (the other
    kernels the same). (NumPy against the host runner: tests/test_host_cuda.py.)"""
    from gpunn.layers import Conv2D, convolutional

    weights = [rng.standard_normal((4, 3, 3, 2)).astype(np.float32), rng.standard_normal(4).astype(np.float32)]

    def make():
        layer = Conv2D(4, (3, 2), strides=(1, 2), padding="same", activation=activation, use_bias=use_bias,
                       data_format="channels_first")
        layer.build((3, 9, 8))
        layer.set_weights(weights[:1 + use_bias])
        return layer

    x, dy = rng.standard_normal((5, 3, 9, 8)).astype(np.float32), rng.standard_normal((5, 4, 9, 4)).astype(np.float32)
    with_and_without_the_epilogue(convolutional, make, x, dy, kernel_device, activation != "elu")


@pytest.mark.parametrize("activation", NAMES + ["elu"])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 5)])
def test_dense_on_the_epilogue_kernel_equals_dense_without_it(activation, use_bias, shape, kernel_device):
    """Dense as Conv2D's epilogue with one pixel: Z^T = W^T X^T, then b and g in one kernel; backward the same."""
    from gpunn.layers import Dense, core

    weights = [rng.standard_normal((5, 6)).astype(np.float32), rng.standard_normal(6).astype(np.float32)]

    def make():
        layer = Dense(6, activation=activation, use_bias=use_bias)
        layer.build(shape[1:])
        layer.set_weights(weights[:1 + use_bias])
        return layer

    x, dy = rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape[:-1] + (6,)).astype(np.float32)
    with_and_without_the_epilogue(core, make, x, dy, kernel_device, activation != "elu")
