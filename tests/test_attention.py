import numpy as np
import pytest

import gpunn.backend as backend
from gpunn import Sequential
from gpunn.layers import (AdditiveAttention, Dense, GlobalAveragePooling1D, LayerNormalization, MultiHeadAttention,
                          PositionalEncoding, Residual, TransformerEncoder)
from gpunn.layers.transformer import sinusoidal_encoding
from gpunn.ops import attention as ops
from tests.conftest import assert_gradcheck, host

rng = np.random.default_rng(10)


@pytest.mark.parametrize("layer", [
    lambda: MultiHeadAttention(2, 3),
    lambda: MultiHeadAttention(3, 2, value_dim=4, use_causal_mask=True, use_bias=False),
    lambda: MultiHeadAttention(2, 3, dropout=0.3),
    lambda: AdditiveAttention(),
    lambda: AdditiveAttention(use_scale=False),
    lambda: LayerNormalization(),
    lambda: PositionalEncoding(),
    lambda: Residual([Dense(8, activation="tanh"), Dense(8)]),
    lambda: TransformerEncoder(2, 4, 16, dropout=0.2),
    lambda: GlobalAveragePooling1D(),
], ids=["mha", "mha_causal_valuedim", "mha_dropout", "additive", "additive_noscale", "layernorm", "posenc",
        "residual", "encoder", "gap1d"])
def test_gradcheck(layer):
    assert_gradcheck(layer(), rng.standard_normal((2, 5, 8)))


def numeric_attention_grads(q, k, v, dout, mask, causal, eps=1e-6):
    grads = []
    for a in (q, k, v):
        g = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + eps
            plus = (ops.attention_forward_cpu(q, k, v, mask, causal)[0] * dout).sum()
            a[i] = old - eps
            minus = (ops.attention_forward_cpu(q, k, v, mask, causal)[0] * dout).sum()
            a[i] = old
            g[i] = (plus - minus) / (2 * eps)
        grads.append(g)
    return grads


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_twin_backward_with_masks_and_lq_ne_lk(causal, masked):
    q, k, v = rng.standard_normal((2, 2, 3, 4)), rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((2, 2, 5, 3))
    mask = np.array([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0]], bool) if masked else None  # example 2: nothing to see
    out, lse = ops.attention_forward_cpu(q, k, v, mask, causal)
    dout = rng.standard_normal(out.shape)
    analytic = ops.attention_backward_cpu(q, k, v, out, lse, dout, mask, causal)
    for a, n in zip(analytic, numeric_attention_grads(q, k, v, dout, mask, causal)):
        np.testing.assert_allclose(a, n, rtol=1e-6, atol=1e-8)


def test_masked_keys_get_exactly_zero_weight_and_empty_rows_stay_finite():
    q, k = rng.standard_normal((2, 1, 4, 3)) * 30, rng.standard_normal((2, 1, 6, 3)) * 30
    mask = np.array([[1, 0, 1, 0, 0, 1], [0] * 6], bool)
    p, lse = ops.probabilities(q, k, mask, causal=True)
    assert (p[0][..., ~mask[0]] == 0).all()  # exactly zero, not tiny
    assert (np.triu(np.ones((4, 6), bool), 1)[None] <= (p[0] == 0)).all()  # causal: j > i never seen
    np.testing.assert_allclose(p[0].sum(axis=-1), 1)  # every query of example 1 sees at least key 0
    assert np.isfinite(p).all() and (p[1] == 0).all() and np.isinf(lse[1]).all()
    out, _ = ops.attention_forward_cpu(q, k, rng.standard_normal((2, 1, 6, 2)), mask, causal=True)
    assert np.isfinite(out).all() and (out[1] == 0).all()


def test_multi_head_attention_called_directly():
    layer = MultiHeadAttention(num_heads=2, key_dim=4)
    query, value = rng.standard_normal((3, 5, 6)), rng.standard_normal((3, 7, 8))
    out, scores = layer(query, value, return_attention_scores=True)
    assert out.shape == (3, 5, 6) and scores.shape == (3, 2, 5, 7)
    np.testing.assert_allclose(host(scores).sum(axis=-1), 1)
    padding = np.ones((3, 7), bool)
    padding[:, 5:] = False
    out_masked, scores = layer(query, value, attention_mask=padding, return_attention_scores=True)
    assert (host(scores)[..., 5:] == 0).all()
    out_fused = layer(query, value, attention_mask=padding[:, None, :].repeat(5, axis=1))  # Keras's (B, Lq, Lk) form
    np.testing.assert_allclose(host(out_fused), host(out_masked))
    with pytest.raises(ValueError, match=r"attention_mask must have shape \(batch, key_len\) = \(3, 7\).*received \(3, 4\)"):
        layer(query, value, attention_mask=np.ones((3, 4), bool))
    with pytest.raises(ValueError, match=r"Layer 'multi_head_attention\S*' expects query with 6 features .*"
                                         r"received an array of shape \(3, 5, 9\)"):
        layer(rng.standard_normal((3, 5, 9)), value)


def test_positional_encoding_formula():
    pe = sinusoidal_encoding(50, 16)
    pos, i = 7, 3
    assert pe[pos, 2 * i] == pytest.approx(np.sin(pos / 10000 ** (2 * i / 16)))
    assert pe[pos, 2 * i + 1] == pytest.approx(np.cos(pos / 10000 ** (2 * i / 16)))
    x = np.zeros((2, 50, 16))
    np.testing.assert_allclose(host(PositionalEncoding()(x))[1], pe)


@pytest.mark.learns
def test_transformer_classifier_learns_a_sequence_task():
    """Is the first token repeated later in the sequence? Needs attention across positions."""
    from gpunn.utils import set_seed

    tokens = np.random.default_rng(10).integers(0, 8, (3000, 6))
    y = (tokens[:, 1:] == tokens[:, :1]).any(axis=1).astype(int)
    x = np.eye(8, dtype=np.float32)[tokens]
    set_seed(0)
    model = Sequential([Dense(16, input_shape=(6, 8)), PositionalEncoding(), TransformerEncoder(2, 8, 32, dropout=0.0),
                        GlobalAveragePooling1D(), Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:2500], y[:2500], batch_size=32, epochs=40, verbose=0)
    assert model.evaluate(x[2500:], y[2500:])[1] > 0.9  # about half the sequences repeat their first token


@pytest.mark.parametrize("d, dv", [(16, 16), (32, 32), (64, 64), (128, 128), (24, 40), (100, 8)])
@pytest.mark.parametrize("lq, lk", [(1, 1), (37, 53), (100, 31), (130, 130), (300, 260)])
@pytest.mark.parametrize("causal, masked", [(False, False), (True, False), (False, True), (True, True)])
def test_kernels_match_twin(d, dv, lq, lk, causal, masked, kernel_device):
    """Every padded width (32, 64, 128; d and dv may differ and need not be one), odd lengths, every mask."""
    q, k, v = (rng.standard_normal(s).astype(np.float32) for s in ((2, 3, lq, d), (2, 3, lk, d), (2, 3, lk, dv)))
    mask = rng.random((2, lk)) < 0.7 if masked else None
    if masked:
        mask[1] = False  # a fully masked example
    dout = rng.standard_normal((2, 3, lq, dv)).astype(np.float32)
    dev = kernel_device
    on = [dev.asarray(a) for a in (q, k, v)]
    on_mask = None if mask is None else dev.asarray(mask)
    assert ops.kernel_fits(*on, on_mask)
    out, lse = ops.attention_forward_gpu(*on, on_mask, causal)
    ref_out, ref_lse = ops.attention_forward_cpu(q, k, v, mask, causal)
    np.testing.assert_allclose(dev.to_numpy(out), ref_out, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dev.to_numpy(lse), ref_lse, rtol=1e-4, atol=1e-5)
    grads = ops.attention_backward_gpu(*on, out, lse, dev.asarray(dout), on_mask, causal)
    ref = ops.attention_backward_cpu(q, k, v, ref_out, ref_lse, dout, mask, causal)
    for a, b in zip(grads, ref):
        assert np.isfinite(dev.to_numpy(a)).all()
        np.testing.assert_allclose(dev.to_numpy(a), b, rtol=1e-3, atol=1e-4)


@pytest.mark.gpu
def test_head_dim_above_the_kernel_limit_falls_back_and_says_so(capsys):
    backend.set_backend("cupy")
    q = backend.to_device(rng.standard_normal((1, 1, 8, 160)).astype(np.float32))
    assert not ops.kernel_fits(q, q, q, None)
    out, _ = ops.attention_forward(q, q, q)
    assert "above the fused kernel's limit" in capsys.readouterr().out
    np.testing.assert_allclose(backend.to_numpy(out), ops.attention_forward_cpu(*(backend.to_numpy(q),) * 3)[0],
                               rtol=1e-4, atol=1e-5)


def test_transformer_example_runs_and_saves_a_heatmap(tmp_path, monkeypatch):
    from pathlib import Path

    shared = Path(__file__).resolve().parents[2] / "shared" / "datasets"
    if not (shared / "fashion-mnist").is_dir():
        pytest.skip("Fashion-MNIST files not present")
    from gpunn.examples.transformer import main

    monkeypatch.setenv("GPUNN_DATA_DIR", str(shared))
    heatmap = tmp_path / "attention.png"
    accuracy = main(["--epochs", "2", "--limit", "4000", "--depth", "32", "--heads", "2", "--ff-dim", "64",
                     "--heatmap", str(heatmap)])
    assert accuracy > 0.5 and heatmap.stat().st_size > 10_000


def test_kernels_take_more_heads_than_a_grid_dimension_of_65535(kernel_device, monkeypatch):
    """evaluate(batch_size=20000) with 4 heads: B*H = 80,000 (b, h) pairs, past CUDA's 65,535 blocks in y."""
    dev = kernel_device
    q, k, v = (rng.standard_normal((20000, 4, 1, 1)).astype(np.float32) for _ in range(3))
    out, lse = ops.attention_forward_gpu(*(dev.asarray(a) for a in (q, k, v)))
    np.testing.assert_allclose(dev.to_numpy(out), v, rtol=1e-6)  # one key: all the weight on it
    np.testing.assert_allclose(dev.to_numpy(lse), (q * k)[..., 0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lq, lk", [(0, 5), (4, 0), (0, 0)])
def test_kernels_launch_nothing_for_empty_sequences(lq, lk, kernel_device, monkeypatch):
    monkeypatch.setattr("gpunn.backend.kernels.get_kernel", lambda *a: pytest.fail("launched a kernel"))
    dev = kernel_device
    q, k, v = (dev.asarray(np.ones(s, np.float32)) for s in ((2, 3, lq, 4), (2, 3, lk, 4), (2, 3, lk, 5)))
    out, lse = ops.attention_forward_gpu(q, k, v)
    assert out.shape == (2, 3, lq, 5) and (dev.to_numpy(out) == 0).all() and np.isinf(dev.to_numpy(lse)).all()
    grads = ops.attention_backward_gpu(q, k, v, out, lse, out)
    assert [g.shape for g in grads] == [q.shape, k.shape, v.shape] and all((dev.to_numpy(g) == 0).all() for g in grads)


@pytest.mark.parametrize("causal, masked", [(False, False), (True, False), (False, True), (True, True)])
def test_twin_streams_key_blocks_with_an_online_softmax(causal, masked, monkeypatch):
    """Queries and keys in tiles of 5 (the running max and sum rescaled many times, causal tiles skipped) give the dense softmax's
    output, lse and gradients -- masked blocks, fully masked rows and Lq != Lk included."""
    q, k, v = rng.standard_normal((2, 1, 9, 3)) * 3, rng.standard_normal((2, 1, 16, 3)) * 3, rng.standard_normal((2, 1, 16, 2))
    mask = rng.random((2, 16)) < 0.6 if masked else None
    if masked:
        mask[1, :] = False  # an example with no key at all
        mask[0, :5] = False  # the first block fully masked for every query of example 0
    p, lse = ops.probabilities(q, k, mask, causal)
    dout = rng.standard_normal((2, 1, 9, 2))
    monkeypatch.setattr(ops, "BLOCK", 5)
    out, lse_blocks = ops.attention_forward_cpu(q, k, v, mask, causal)
    np.testing.assert_allclose(out, p @ v, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lse_blocks, lse, rtol=1e-12)
    grads = ops.attention_backward_cpu(q, k, v, out, lse_blocks, dout, mask, causal)
    for a, n in zip(grads, numeric_attention_grads(q, k, v, dout, mask, causal)):
        np.testing.assert_allclose(a, n, rtol=1e-6, atol=1e-8)
