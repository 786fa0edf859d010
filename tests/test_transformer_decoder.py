"""TransformerDecoder: the block against the formulas written out in NumPy, causality, gradchecks (masks
included), save/load."""

import numpy as np
import pytest

from gpunn import Input, Model
from gpunn.layers import Dense, Embedding, TransformerDecoder
from gpunn.utils import set_seed
from tests.conftest import assert_gradcheck, assert_trained_round_trip, host

rng = np.random.default_rng(17)


def weights(layer):
    return {name: host(getattr(layer, name)).astype(np.float64) for name in layer.weight_names}


def attention(mha, query, value, causal):
    """concat_h softmax(Q_h K_h^T / sqrt(d_k)) V_h, then W^O: the course's multi-head attention, one head at a time."""
    w, h, dk = weights(mha), mha.num_heads, mha.key_dim
    q, k, v = (x @ w[f"{n}_kernel"] + w[f"{n}_bias"] for x, n in ((query, "query"), (value, "key"), (value, "value")))
    heads = []
    for i in range(h):
        part = slice(i * dk, (i + 1) * dk)
        s = q[..., part] @ k[..., part].swapaxes(-1, -2) / np.sqrt(dk)
        if causal:
            s = np.where(np.tril(np.ones(s.shape[-2:], bool)), s, -np.inf)
        a = np.exp(s - s.max(-1, keepdims=True))
        heads.append(a / a.sum(-1, keepdims=True) @ v[..., part])
    return np.concatenate(heads, -1) @ w["output_kernel"] + w["output_bias"]


def layer_norm(norm, x):
    w = weights(norm)
    return w["gamma"] * (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + norm.epsilon) + w["beta"]


def test_decoder_is_the_three_blocks_written_out():
    dec = TransformerDecoder(num_heads=2, key_dim=3, ff_dim=7, dropout=0.0)
    x, enc = rng.standard_normal((2, 4, 6)), rng.standard_normal((2, 5, 8))  # the source may be wider
    out = host(dec(x, enc))
    h = layer_norm(dec.norms[0], x + attention(dec.self_attention, x, x, causal=True))
    cross = attention(dec.cross_attention, h, enc, causal=False)  # every target step looks at the whole source
    np.testing.assert_allclose(host(dec.cross_attention(h, enc)), cross, rtol=1e-4, atol=1e-5)
    h = layer_norm(dec.norms[1], h + cross)
    ff_1, ff_2 = (weights(layer) for layer in dec.feed_forward.sublayers[:2])
    ff = np.maximum(h @ ff_1["kernel"] + ff_1["bias"], 0) @ ff_2["kernel"] + ff_2["bias"]
    np.testing.assert_allclose(out, layer_norm(dec.norms[2], h + ff), rtol=1e-4, atol=1e-5)


def test_position_i_never_sees_the_target_after_i():
    dec = TransformerDecoder(2, 4, 8, dropout=0.0)
    x, enc = rng.standard_normal((1, 5, 6)), rng.standard_normal((1, 3, 6))
    before = host(dec(x, enc))
    x[:, 3:] = rng.standard_normal((1, 2, 6))
    after = host(dec(x, enc))
    np.testing.assert_allclose(after[:, :3], before[:, :3], rtol=1e-6)
    assert not np.allclose(after[:, 3:], before[:, 3:])


def decoder_model(dropout=0.0, widths=(6, 6)):
    x, enc = Input((4, widths[0]), name="x"), Input((3, widths[1]), name="enc")
    return Model([x, enc], Dense(2, name="out")(TransformerDecoder(2, 3, 5, dropout=dropout)(x, enc)))


@pytest.mark.parametrize("dropout, widths", [(0.0, (6, 6)), (0.3, (6, 4))], ids=["plain", "dropout_narrow_source"])
def test_gradcheck(dropout, widths):
    diffs = assert_gradcheck(decoder_model(dropout, widths), [rng.standard_normal((2, 4, widths[0])),
                                                              rng.standard_normal((2, 3, widths[1]))])
    assert {"input_0", "input_1"} <= set(diffs) and len(diffs) == 2 + 2 * 8 + 4 + 3 * 2 + 2


def test_gradcheck_through_padding_masks_on_both_sides():
    """Padded source steps are never looked at, padded target steps weigh nothing in the loss."""
    set_seed(4)
    src, tgt = Input((None,), name="src"), Input((None,), name="tgt")
    enc = Embedding(9, 6, mask_zero=True)(src)
    out = Dense(3, activation="softmax")(TransformerDecoder(2, 3, 5, dropout=0.0)(Embedding(9, 6, mask_zero=True)(tgt),
                                                                                  enc))
    model = Model([src, tgt], out)
    model.compile("sgd", "sparse_categorical_crossentropy")
    source, target = np.array([[3, 4, 0, 0], [5, 1, 7, 2]]), np.array([[1, 2, 0], [4, 4, 6]])
    diffs = assert_gradcheck(model, [source, target], rng.integers(0, 3, (2, 3)), tol=1e-5)
    assert sum(key.endswith("/embeddings") for key in diffs) == 2
    np.testing.assert_allclose(host(model.predict([np.array([[3, 4, 0, 0]]), target[:1]])),
                               host(model.predict([np.array([[3, 4]]), target[:1]])), rtol=1e-5, atol=1e-6)


def test_bad_arguments_name_the_layer():
    with pytest.raises(ValueError, match=r"Layer 'transformer_decoder\S*': ff_dim must be a positive integer; "
                                         r"received ff_dim=0"):
        TransformerDecoder(2, 3, 0)
    with pytest.raises(ValueError, match=r"Layer 'transformer_decoder\S*' expects encoder_outputs of sample shape "
                                         r"\(time, features\); received \(6,\)"):
        TransformerDecoder(2, 3, 4)(rng.standard_normal((2, 4, 6)), rng.standard_normal((2, 6)))


def test_save_load_round_trip(tmp_path):
    set_seed(5)
    model = decoder_model(dropout=0.1)
    model.compile("adam", "mse")
    x = [rng.standard_normal((8, 4, 6)).astype(np.float32), rng.standard_normal((8, 3, 6)).astype(np.float32)]
    assert_trained_round_trip(model, x, rng.standard_normal((8, 4, 2)).astype(np.float32), tmp_path / "m.npz")
