"""Luong's Attention and Bahdanau's AdditiveAttention: gradchecks (masks and different widths included), Keras's
numbers for the forms Keras has, the course's formula for the learned W_q, W_k, w_v, and save/load."""

import os

import numpy as np
import pytest

from gpunn import Input, Model, layers
from gpunn.layers import AdditiveAttention, Attention, Dense, Embedding
from gpunn.utils import set_seed
from tests.conftest import assert_gradcheck, assert_trained_round_trip, dev, host

rng = np.random.default_rng(16)


@pytest.mark.parametrize("layer", [
    lambda: Attention(),
    lambda: Attention(use_scale=True),
    lambda: Attention(dropout=0.3),
    lambda: AdditiveAttention(units=4),
    lambda: AdditiveAttention(units=3, dropout=0.3),
], ids=["dot", "dot_scaled", "dot_dropout", "additive_units", "additive_units_dropout"])
def test_gradcheck_self_attention(layer):
    assert_gradcheck(layer(), rng.standard_normal((2, 5, 6)))


def cross(layer, q_width=5, k_width=7):
    """Queries and keys of different widths (a decoder's states against a bidirectional encoder's outputs)."""
    q, k = Input((3, q_width), name="q"), Input((4, k_width), name="k")
    return Model([q, k], Dense(2, name="out")(layer([q, k])))


@pytest.mark.parametrize("use_causal_mask", [False, True])
def test_gradcheck_cross_attention_of_different_widths(use_causal_mask):
    layer = AdditiveAttention(units=4)
    q, k = Input((3, 5)), Input((4, 7))
    model = Model([q, k], layer([q, k], use_causal_mask=use_causal_mask))
    diffs = assert_gradcheck(model, [rng.standard_normal((2, 3, 5)), rng.standard_normal((2, 4, 7))])
    assert {"input_0", "input_1"} <= set(diffs) and any(key.endswith("/key_kernel") for key in diffs)


@pytest.mark.parametrize("make", [lambda: Attention(use_scale=True), lambda: AdditiveAttention(units=3),
                                  lambda: AdditiveAttention()], ids=["dot", "additive_units", "additive_keras"])
def test_gradcheck_through_padding_masks(make):
    """Padded keys get no weight and padded queries a zero output: the embeddings of padding get no gradient."""
    set_seed(2)
    q_ids, k_ids = Input((None,)), Input((None,))
    hq, hk = Embedding(9, 4, mask_zero=True)(q_ids), Embedding(9, 4, mask_zero=True)(k_ids)
    attention = make()
    model = Model([q_ids, k_ids], Dense(3, activation="softmax")(attention([hq, hk])))
    attention.set_weights([3 * w for w in attention.get_weights()])  # scores far from flat: gradients well above noise
    model.compile("sgd", "sparse_categorical_crossentropy")
    qs, ks = np.array([[3, 1, 0], [2, 5, 7]]), np.array([[4, 0, 0, 0], [1, 8, 6, 0]])
    diffs = assert_gradcheck(model, [qs, ks], rng.integers(0, 3, (2, 3)), tol=1e-5)
    assert sum(key.endswith("/embeddings") for key in diffs) == 2


def keras_pair(kind, **kwargs):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    return getattr(keras.layers, kind)(**kwargs), getattr(layers, kind)(**kwargs)


@pytest.mark.parametrize("kind, kwargs", [("Attention", {}), ("Attention", {"use_scale": True}),
                                          ("AdditiveAttention", {}), ("AdditiveAttention", {"use_scale": False})])
@pytest.mark.parametrize("use_causal_mask", [False, True])
def test_keras_forms_give_keras_numbers(kind, kwargs, use_causal_mask):
    theirs, ours = keras_pair(kind, **kwargs)
    q, v, k = (rng.standard_normal(s).astype(np.float32) for s in ((2, 4, 3), (2, 4, 5), (2, 4, 3)))
    masks = [np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool), np.array([[1, 1, 0, 0], [1, 1, 1, 1]], bool)]
    theirs.build([q.shape, v.shape, k.shape])
    ours.build(q.shape[1:])
    ours.set_weights([w + rng.standard_normal(w.shape).astype(np.float32) for w in ours.get_weights()])
    theirs.set_weights(ours.get_weights())
    expected, expected_scores = theirs([q, v, k], mask=masks, return_attention_scores=True,
                                       use_causal_mask=use_causal_mask)
    out, scores = ours([q, v, k], mask=[dev(m) for m in masks], return_attention_scores=True,
                       use_causal_mask=use_causal_mask)
    np.testing.assert_allclose(host(out), np.asarray(expected.detach()), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(host(scores), np.asarray(expected_scores.detach()), rtol=1e-5, atol=1e-6)
    assert {key: ours.get_config()[key] for key in kwargs} == {key: theirs.get_config()[key] for key in kwargs}


def test_the_course_s_additive_score_with_learned_projections():
    """s_ij = w_v^T tanh(W_q q_i + W_k k_j), a = softmax_j(s), out_i = sum_j a_ij v_j, written out with loops."""
    layer = AdditiveAttention(units=6)
    q, v = rng.standard_normal((2, 3, 5)), rng.standard_normal((2, 4, 7))
    out, scores = layer([q, v], return_attention_scores=True)
    w_q, w_k, w_v = (host(getattr(layer, n)).astype(np.float64) for n in ("query_kernel", "key_kernel", "scale"))
    assert w_q.shape == (5, 6) and w_k.shape == (7, 6) and w_v.shape == (6,)
    for b in range(2):
        for i in range(3):
            s = np.array([w_v @ np.tanh(w_q.T @ q[b, i] + w_k.T @ v[b, j]) for j in range(4)])
            a = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
            np.testing.assert_allclose(host(scores)[b, i], a, rtol=1e-5)
            np.testing.assert_allclose(host(out)[b, i], a @ v[b], rtol=1e-5, atol=1e-6)


def test_bad_arguments_name_the_layer():
    with pytest.raises(ValueError, match=r"Layer 'additive_attention\S*': units must be a positive integer.*units=0"):
        AdditiveAttention(units=0)
    with pytest.raises(ValueError, match=r"Layer 'attention\S*': gpunn's Attention has score_mode='dot' only"):
        Attention(score_mode="concat")
    with pytest.raises(ValueError, match=r"Layer 'additive_attention\S*': without units, queries and keys need the "
                                         r"same width; received samples of shapes \(3, 5\) and \(4, 7\)"):
        cross(AdditiveAttention())


@pytest.mark.parametrize("make", [lambda: Attention(use_scale=True, dropout=0.2), lambda: AdditiveAttention(units=4),
                                  lambda: AdditiveAttention(use_scale=False)], ids=["dot", "units", "keras_noscale"])
def test_save_load_round_trip(make, tmp_path):
    set_seed(3)
    model = cross(make(), 5, 5)
    model.compile("adam", "mse")
    x = [rng.standard_normal((8, 3, 5)).astype(np.float32), rng.standard_normal((8, 4, 5)).astype(np.float32)]
    assert_trained_round_trip(model, x, rng.standard_normal((8, 3, 2)).astype(np.float32), tmp_path / "m.npz")
