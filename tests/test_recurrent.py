import numpy as np
import pytest

from gpunn import Sequential
from gpunn.layers import (GRU, LSTM, Activation, Bidirectional, Dense, Dropout, Embedding, SimpleRNN,
                          TimeDistributed)
from gpunn.ops import embedding as embedding_ops
from gpunn.ops import lstm as lstm_ops
from gpunn.optimizers import Adam
from gpunn.utils import set_seed
from tests.conftest import assert_gradcheck, dev, host

rng = np.random.default_rng(9)


@pytest.mark.parametrize("layer", [
    lambda rs: SimpleRNN(6, return_sequences=rs),
    lambda rs: SimpleRNN(4, activation="relu", go_backwards=True, return_sequences=rs),
    lambda rs: LSTM(5, return_sequences=rs),
    lambda rs: LSTM(3, go_backwards=True, unit_forget_bias=False, return_sequences=rs),
    lambda rs: GRU(4, reset_after=True, return_sequences=rs),
    lambda rs: GRU(4, reset_after=False, return_sequences=rs),
    lambda rs: Bidirectional(LSTM(3, return_sequences=rs)),
    lambda rs: Bidirectional(GRU(3, return_sequences=rs), merge_mode="sum"),
    lambda rs: Bidirectional(SimpleRNN(3, return_sequences=rs), merge_mode="mul"),
    lambda rs: Bidirectional(LSTM(2, return_sequences=rs), merge_mode="ave"),
], ids=["rnn", "rnn_relu_backwards", "lstm", "lstm_backwards", "gru_reset_after", "gru_course", "bi_lstm",
        "bi_gru_sum", "bi_rnn_mul", "bi_lstm_ave"])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_recurrent_gradcheck(layer, return_sequences):
    assert_gradcheck(layer(return_sequences), rng.standard_normal((3, 5, 4)))


def test_time_distributed_and_embedding_gradcheck():
    assert_gradcheck(TimeDistributed(Dense(3, activation="tanh")), rng.standard_normal((2, 4, 5)))
    diffs = assert_gradcheck(Embedding(7, 4), rng.integers(0, 7, (3, 5)))
    assert len(diffs) == 1 and next(iter(diffs)).endswith("/embeddings")  # ids have no gradient


def test_stacked_model_gradcheck():
    model = Sequential([Embedding(6, 4, input_length=5), LSTM(4, return_sequences=True), GRU(3, return_sequences=True),
                        TimeDistributed(Dense(6)), Activation("softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    assert_gradcheck(model, rng.integers(0, 6, (2, 5)), rng.integers(0, 6, (2, 5)))


def test_return_state():
    layer = LSTM(3, return_state=True)
    x = rng.standard_normal((2, 4, 5))
    out, h, c = layer(x)
    np.testing.assert_array_equal(host(out), host(h))
    dy, dh = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    dx = layer.backward([dev(dy), dev(dh), dev(np.zeros((2, 3)))])
    plain = LSTM(3)
    plain.build((4, 5))
    plain.set_weights(layer.get_weights())
    plain(x)
    np.testing.assert_allclose(host(dx), host(plain.backward(dev(dy + dh))))  # output is h_T: their gradients add up


def course_lstm_cell_forward(xt, a_prev, c_prev, p):
    """The course's equations, examples as columns, one matrix per gate on concat = [a_prev; xt]."""
    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    concat = np.concatenate([a_prev, xt])
    ft = sigmoid(p["Wf"] @ concat + p["bf"])
    it = sigmoid(p["Wi"] @ concat + p["bi"])
    cct = np.tanh(p["Wc"] @ concat + p["bc"])
    c_next = ft * c_prev + it * cct
    ot = sigmoid(p["Wo"] @ concat + p["bo"])
    return ot * np.tanh(c_next), c_next


def test_fused_step_equals_the_course_equations():
    b, d, h = 4, 3, 5
    kernel, recurrent, bias = rng.standard_normal((d, 4 * h)), rng.standard_normal((h, 4 * h)), rng.standard_normal(4 * h)
    x, h_prev, c_prev = rng.standard_normal((b, d)), rng.standard_normal((b, h)), rng.standard_normal((b, h))
    gates, c, h_out = np.empty((b, 4 * h)), np.empty((b, h)), np.empty((b, h))
    lstm_ops.lstm_step_forward_cpu(x @ kernel + bias, h_prev @ recurrent, c_prev, gates, c, h_out)
    p = {}  # gpunn's columns are the gates i, f, g (the course's c~), o
    for gate, k in (("i", 0), ("f", 1), ("c", 2), ("o", 3)):
        cols = slice(k * h, (k + 1) * h)
        p[f"W{gate}"] = np.concatenate([recurrent[:, cols], kernel[:, cols]]).T
        p[f"b{gate}"] = bias[cols][:, None]
    a_ref, c_ref = course_lstm_cell_forward(x.T, h_prev.T, c_prev.T, p)
    np.testing.assert_allclose(h_out, a_ref.T, rtol=1e-12)
    np.testing.assert_allclose(c, c_ref.T, rtol=1e-12)


@pytest.mark.parametrize("cell, bar", [(LSTM, 0.97), (SimpleRNN, 0.9), (GRU, 0.85)])
def test_rnn_learns_to_add_digits(cell, bar):
    """Read 4 digits in 0..4 (one-hot), answer their sum (17 classes)."""
    digits = rng.integers(0, 5, (2000, 4))
    x, y = np.eye(5, dtype=np.float32)[digits], digits.sum(axis=1)
    set_seed(0)
    model = Sequential([cell(32, input_shape=(4, 5)), Dense(17, activation="softmax")])
    model.compile(Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:1600], y[:1600], batch_size=32, epochs=15, verbose=0)
    assert model.evaluate(x[1600:], y[1600:])[1] > bar


def test_course_lstm_language_model_builds_and_trains():
    vocab, steps = 30, 12
    text = rng.integers(0, vocab, 2000)
    x = np.stack([text[i:i + steps] for i in range(0, 1800, 3)])
    y = np.stack([text[i + 1:i + steps + 1] for i in range(0, 1800, 3)])
    set_seed(0)
    model = Sequential([Embedding(vocab, 16, input_length=steps), LSTM(32, return_sequences=True),
                        LSTM(32, return_sequences=True), Dropout(0.5), TimeDistributed(Dense(vocab)),
                        Activation("softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert 0 <= history.history["accuracy"][-1] <= 1
    assert model.predict(x[:2]).shape == (2, steps, vocab)


def test_bad_input_names_the_layer_and_shapes():
    layer = LSTM(4, name="lstm_x")
    with pytest.raises(ValueError, match=r"Layer 'lstm_x' expects samples of shape \(time, features\)"):
        layer.build((5,))
    layer.build((5, 3))
    with pytest.raises(ValueError, match=r"Layer 'lstm_x' expects 3-D input \(batch, time, features\); received an "
                                         r"array of shape \(2, 5\)"):
        layer(np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"expects 3 features per time step; received an array of shape \(2, 5, 4\)"):
        layer(np.zeros((2, 5, 4)))
    emb = Embedding(10, 2, name="words")
    emb.build((3,))
    with pytest.raises(ValueError, match=r"Layer 'words' expects ids in \[0, 10\); received ids from 0 to 12"):
        emb(np.array([[0, 12, 3]]))
    with pytest.raises(ValueError, match="merge_mode must be one of"):
        Bidirectional(LSTM(2), merge_mode="max")
    with pytest.raises(ValueError, match="input_length=4 contradicts"):
        LSTM(2, input_length=4, input_shape=(5, 3))
    with pytest.raises(ValueError, match="unroll must be True or False"):
        GRU(2, unroll="yes")


@pytest.mark.parametrize("batch, units", [(1, 1), (7, 33), (64, 256), (33, 100)])
def test_lstm_kernels_match_twin_with_poisoned_outputs(batch, units, kernel_device):
    dev = kernel_device
    host = {k: rng.standard_normal((batch, 4 * units)).astype(np.float32) for k in ("zx", "zh", "gates_in")}
    host.update({k: rng.standard_normal((batch, units)).astype(np.float32) for k in ("c_prev", "dh_out", "dh_rec", "dc")})
    on = {k: dev.asarray(v) for k, v in host.items()}

    def poisoned(shape):
        return dev.xp.full(shape, np.nan, dtype=np.float32)

    outs = [poisoned((batch, 4 * units)), poisoned((batch, units)), poisoned((batch, units))]
    lstm_ops.lstm_step_forward_gpu(on["zx"], on["zh"], on["c_prev"], *outs)
    ref = [np.empty((batch, 4 * units), np.float32), np.empty((batch, units), np.float32),
           np.empty((batch, units), np.float32)]
    lstm_ops.lstm_step_forward_cpu(host["zx"], host["zh"], host["c_prev"], *ref)
    for a, b in zip(outs, ref):
        np.testing.assert_allclose(dev.to_numpy(a), b, rtol=1e-5, atol=1e-6)
    gates, c = outs[0], outs[1]
    back = [poisoned((batch, 4 * units)), poisoned((batch, units))]
    lstm_ops.lstm_step_backward_gpu(on["dh_out"], on["dh_rec"], on["dc"], gates, on["c_prev"], c, *back)
    ref_back = [np.empty((batch, 4 * units), np.float32), np.empty((batch, units), np.float32)]
    lstm_ops.lstm_step_backward_cpu(host["dh_out"], host["dh_rec"], host["dc"], ref[0], host["c_prev"], ref[1],
                                    *ref_back)
    for a, b in zip(back, ref_back):
        np.testing.assert_allclose(dev.to_numpy(a), b, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("factory", [lambda: LSTM(33, return_sequences=True), lambda: GRU(17),
                                     lambda: Bidirectional(SimpleRNN(9))])
def test_gpu_recurrent_gradients_match_numpy(factory):
    from tests.test_layers import check_forward_backward_agree_with_numpy

    check_forward_backward_agree_with_numpy(factory, rng.standard_normal((5, 40, 7)))


def test_char_rnn_example_learns_and_samples(tmp_path, capsys):
    from gpunn.examples.char_rnn import main

    history, samples = main(["--epochs", "2", "--max-chars", "6000", "--units", "32", "--sample-length", "20"])
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert len(samples) == 2 and all(len(s) == 20 for s in samples)
    poem = tmp_path / "poem.txt"
    poem.write_text("the cat sat on the mat and the rat sat on the hat. " * 40)
    history, samples = main(["--text", str(poem), "--cell", "simple", "--epochs", "2", "--units", "16",
                             "--sample-length", "10"])
    assert set("".join(samples)) <= set(poem.read_text())
    assert "characters" in capsys.readouterr().out


@pytest.mark.parametrize("vocab, n, dim", [(1, 7, 3), (50, 400, 33), (9, 1, 1), (300, 64, 16)])
def test_embedding_kernel_matches_twin_and_is_deterministic(vocab, n, dim, kernel_device):
    """Repeated ids add up, unused rows are 0 (the output starts as NaN), and two runs give the same bits."""
    dev = kernel_device
    ids = rng.integers(0, min(vocab, 5), n)  # few distinct ids: long runs of repeats, most rows unused
    dy = rng.standard_normal((n, dim)).astype(np.float32)
    grad = embedding_ops.embedding_backward_gpu(dev.asarray(ids), dev.asarray(dy), vocab)
    expected = np.zeros((vocab, dim), np.float32)
    np.add.at(expected, ids, dy)
    np.testing.assert_allclose(dev.to_numpy(grad), expected, rtol=1e-5, atol=1e-5)
    again = embedding_ops.embedding_backward_gpu(dev.asarray(ids), dev.asarray(dy), vocab)
    np.testing.assert_array_equal(dev.to_numpy(again), dev.to_numpy(grad))
