"""Masks as Keras propagates them: Embedding(mask_zero=True) marks padding that the recurrent layers, attention,
the pooling, the loss and the metrics respect -- padded steps contribute exactly nothing."""

import numpy as np
import pytest

from gpunn import Input, Model, Sequential, load_model
from gpunn.layers import (GRU, LSTM, Add, Bidirectional, Concatenate, Dense, Dropout, Embedding,
                          GlobalAveragePooling1D, LayerNormalization, MultiHeadAttention, PositionalEncoding, SimpleRNN,
                          TimeDistributed, TransformerEncoder)
from gpunn.losses import SparseCategoricalCrossentropy, apply_mask
from gpunn.utils import set_seed
from tests.conftest import assert_gradcheck, dev, host

rng = np.random.default_rng(15)
VOCAB, CLASSES = 9, 3
LENGTHS = [3, 6, 1, 4]


def padded_batch(lengths=LENGTHS, width=6):
    """Token ids padded with 0 after each sequence, and one label per token (0 at the padding)."""
    ids, labels = np.zeros((len(lengths), width), np.int64), np.zeros((len(lengths), width), np.int64)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(1, VOCAB, n)
        labels[i, :n] = rng.integers(0, CLASSES, n)
    return ids, labels


# Token taggers of variable length (Input((None,))): each returns one softmax per step.
TAGGERS = {
    "lstm": lambda h: LSTM(5, return_sequences=True)(h),
    "gru_reset_before": lambda h: GRU(4, reset_after=False, return_sequences=True)(h),
    "simple_rnn_stacked": lambda h: SimpleRNN(4, return_sequences=True)(LSTM(4, return_sequences=True)(h)),
    "bidirectional_gru": lambda h: Bidirectional(GRU(3, return_sequences=True))(h),
    "transformer_encoder": lambda h: TransformerEncoder(2, 3, 8, dropout=0.0)(PositionalEncoding()(h)),
    "multi_head_attention": lambda h: LayerNormalization()(Add()([h, MultiHeadAttention(2, 3)(h, h)])),
    "time_distributed": lambda h: TimeDistributed(Dense(4, activation="tanh"))(LSTM(4, return_sequences=True)(h)),
}


def tagger(name):
    set_seed(1)
    ids = Input((None,), name="ids")
    h = Embedding(VOCAB, 6, mask_zero=True)(ids)
    model = Model(ids, Dense(CLASSES, activation="softmax", name="tag")(Dropout(0.0)(TAGGERS[name](h))))
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def loss_and_gradients(model, x, y):
    out = model.forward(dev(x))
    loss = float(model.compute_loss(out, dev(y)))
    model.backward(model.loss_gradient())
    return loss, [host(g) for g in model.trainable_grads]


@pytest.mark.parametrize("name", sorted(TAGGERS))
def test_a_padded_batch_has_the_loss_and_gradients_of_its_sequences_one_by_one(name):
    """Keras's rule: the mean over the real tokens -- so each sequence weighs its length, and padding nothing."""
    model = tagger(name)
    ids, labels = padded_batch()
    loss, grads = loss_and_gradients(model, ids, labels)
    alone = [loss_and_gradients(model, ids[i:i + 1, :n], labels[i:i + 1, :n]) for i, n in enumerate(LENGTHS)]
    total = sum(LENGTHS)
    assert loss == pytest.approx(sum(n * l for n, (l, _) in zip(LENGTHS, alone)) / total, rel=1e-5)
    for k, g in enumerate(grads):
        np.testing.assert_allclose(g, sum(n * a[1][k] for n, a in zip(LENGTHS, alone)) / total, rtol=2e-4, atol=1e-6)
    per_step = host(model.forward(dev(ids)))
    for i, n in enumerate(LENGTHS):  # the real steps' outputs are those of the sequence alone
        np.testing.assert_allclose(per_step[i, :n], host(model.forward(dev(ids[i:i + 1, :n])))[0], rtol=1e-4,
                                   atol=1e-6)
    accuracy = model.evaluate(ids, labels, return_dict=True)["accuracy"]
    right = per_step.argmax(-1) == labels
    assert accuracy == pytest.approx(np.mean([right[i, :n].mean() for i, n in enumerate(LENGTHS)]), rel=1e-6)


@pytest.mark.parametrize("name", ["lstm", "gru_reset_before", "bidirectional_gru", "transformer_encoder"])
def test_gradcheck_through_masks(name):
    model = tagger(name)
    ids, labels = padded_batch([2, 4, 1], width=4)
    diffs = assert_gradcheck(model, ids, labels, tol=1e-5)
    assert any(key.endswith("/embeddings") for key in diffs)


def test_masks_propagate_as_in_keras():
    ids = Input((5,), name="ids")
    h = Embedding(VOCAB, 4, mask_zero=True, name="embed")(ids)
    seq, last_h, last_c = LSTM(3, return_sequences=True, return_state=True, name="seq")(h)
    outputs = {"seq": seq, "last": LSTM(2, name="last")(h), "flat": GlobalAveragePooling1D(name="avg")(seq),
               "joined": Concatenate(axis=1, name="joined")([h, Dense(4, name="d")(h)]), "state": last_h}
    model = Model(ids, outputs)
    x = np.array([[3, 2, 0, 0, 0], [1, 1, 1, 1, 1]])
    model.forward(dev(x))
    masks = dict(zip(model.output_names, model.output_masks))
    np.testing.assert_array_equal(host(masks["seq"]), x != 0)
    assert masks["last"] is None and masks["flat"] is None and masks["state"] is None
    np.testing.assert_array_equal(host(masks["joined"]), np.concatenate([x != 0, x != 0], axis=1))


def test_the_last_state_is_the_state_after_the_last_real_step():
    layer = LSTM(3, return_state=True)
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    out, h, c = layer(x, mask=mask)
    alone, h_alone, c_alone = layer(x[:1, :3])
    for a, b in ((out, alone), (h, h_alone), (c, c_alone)):
        np.testing.assert_allclose(host(a)[0], host(b)[0], rtol=1e-6)
    with pytest.raises(ValueError, match=r"Layer 'lstm\S*' takes a mask of shape \(batch, time\) = \(2, 5\); "
                                         r"received \(2, 4\)"):
        layer(x, mask=mask[:, :4])


def test_masked_average_pooling_averages_the_real_steps():
    x = rng.standard_normal((2, 4, 3))
    mask = np.array([[1, 1, 0, 0], [1, 0, 1, 1]], bool)
    pooled = host(GlobalAveragePooling1D()(x, mask=mask))
    np.testing.assert_allclose(pooled, [x[0, :2].mean(0), x[1, [0, 2, 3]].mean(0)])
    model = Model(*(lambda i: (i, Dense(2, activation="softmax")(GlobalAveragePooling1D()(
        Embedding(VOCAB, 3, mask_zero=True)(i)))))(Input((4,))))
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert_gradcheck(model, np.array([[1, 2, 0, 0], [3, 4, 5, 0]]), np.array([0, 1]))


def test_per_token_sample_weights_and_ignore_class_agree_with_keras_numbers():
    """Values from Keras 3.15 (torch backend) on the same inputs: SparseCategoricalCrossentropy(ignore_class=0)
    and a (batch, time) sample_weight."""
    probs = np.array([[[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]],
                      [[0.2, 0.2, 0.6], [0.5, 0.25, 0.25], [0.9, 0.05, 0.05]]], np.float32)
    labels = np.array([[1, 2, 0], [2, 1, 1]])
    weights = np.array([[1.0, 0.5, 2.0], [0.0, 1.0, 3.0]], np.float32)
    ignoring = SparseCategoricalCrossentropy(ignore_class=0)
    assert ignoring(dev(labels), dev(probs)) == pytest.approx(1.7610, abs=1e-4)
    assert ignoring(dev(labels), dev(probs), dev(weights)) == pytest.approx(2.6268, abs=1e-4)
    assert SparseCategoricalCrossentropy()(dev(labels), dev(probs), dev(weights)) == pytest.approx(2.5904, abs=1e-4)
    assert ignoring.get_config() == {"name": "sparse_categorical_crossentropy", "ignore_class": 0}
    w = host(apply_mask(None, dev(np.array([[True, False], [True, True]]))))
    np.testing.assert_allclose(w, [[4 / 3, 0], [4 / 3, 4 / 3]], rtol=1e-6)


def test_fit_takes_per_token_weights_and_an_ignored_class_and_saves_it(tmp_path):
    set_seed(0)
    model = Sequential([Embedding(VOCAB, 4, input_shape=(6,)), LSTM(4, return_sequences=True),
                        Dense(CLASSES, activation="softmax")])
    model.compile("adam", SparseCategoricalCrossentropy(ignore_class=-1), metrics=["accuracy"])
    ids, labels = padded_batch()
    labels = np.where(ids == 0, -1, labels)  # padding marked in the targets instead of the inputs
    weights = rng.random(ids.shape).astype(np.float32)
    history = model.fit(ids, labels, sample_weight=weights, epochs=2, batch_size=2, verbose=0)
    assert len(history.history["loss"]) == 2
    zeroed = model.evaluate(ids, labels, sample_weight=np.where(ids == 0, 5.0, 0.0))[0]
    assert zeroed == 0.0  # weight only where the targets are ignored: nothing left
    with pytest.raises(ValueError, match=r"sample_weight must hold one number per sample, shape \(4,\), or one per "
                                         r"time step"):
        model.fit(ids, labels, sample_weight=weights[:, :3], verbose=0)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\).*received labels from -2 to 2 "
                                         r"\(besides ignore_class=-1\)"):
        model.fit(ids, np.where(ids == 0, -2, labels), verbose=0)
    model.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert loaded.heads[0].loss.ignore_class == -1
    assert loaded.evaluate(ids, labels) == model.evaluate(ids, labels)
