"""The course's Keras programs, as a student copies them from the slides: only the imports changed
(``from keras.models import Sequential`` -> ``from gpunn import Sequential``, ...), and sizes cut down
so that each runs in seconds. Each function is one program; its body is the slide's."""

import os
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
needs_mnist = pytest.mark.skipif(not os.environ.get("GPUNN_DATA_DIR") and not (SHARED / "mnist").is_dir(),
                                 reason="MNIST files not present (set GPUNN_DATA_DIR)")


@pytest.fixture(autouse=True)
def mnist_files(monkeypatch):
    if not os.environ.get("GPUNN_DATA_DIR") and SHARED.is_dir():
        monkeypatch.setenv("GPUNN_DATA_DIR", str(SHARED))


def mlp_program(n_train=2000, n_test=500):
    from gpunn import Sequential  # from keras.models import Sequential
    from gpunn.datasets import mnist  # from keras.datasets import mnist
    from gpunn.layers import Dense  # from keras.layers import Dense
    from gpunn.optimizers import SGD  # from keras.optimizers import SGD
    from gpunn.utils import to_categorical  # from keras.utils import to_categorical

    (x_train, y_train), (x_test, y_test) = mnist.load_data()
    x_train = x_train[:n_train].reshape(n_train, 784).astype("float32") / 255
    x_test = x_test[:n_test].reshape(n_test, 784).astype("float32") / 255
    y_train = to_categorical(y_train[:n_train], 10)
    y_test = to_categorical(y_test[:n_test], 10)

    model = Sequential()
    model.add(Dense(500, input_dim=784, activation="relu"))
    model.add(Dense(10, activation="softmax"))
    print(model.count_params())
    model.compile(loss="categorical_crossentropy", optimizer=SGD(lr=0.1), metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=None, epochs=3, verbose="auto", validation_split=0.1)
    print(history.params)
    score = model.evaluate(x_test, y_test, verbose=0)
    print("Test loss:", score[0])
    print("Test accuracy:", score[1])
    return model, history, score


def lenet_program(n_train=1500, n_test=500):
    from gpunn import Sequential  # from keras.models import Sequential
    from gpunn.datasets import mnist  # from keras.datasets import mnist
    from gpunn.layers import Convolution2D, Dense, Flatten, MaxPooling2D  # from keras.layers import ...

    (x_train, y_train), (x_test, y_test) = mnist.load_data()
    x_train = x_train[:n_train].reshape(-1, 28, 28, 1).astype("float32") / 255  # the slide's channels-last reshape
    x_test = x_test[:n_test].reshape(-1, 28, 28, 1).astype("float32") / 255
    y_train, y_test = y_train[:n_train], y_test[:n_test]

    model = Sequential()
    model.add(Convolution2D(6, (5, 5), padding="same", activation="relu", input_shape=(28, 28, 1)))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Convolution2D(16, (5, 5), activation="relu"))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Flatten())
    model.add(Dense(120, activation="relu"))
    model.add(Dense(84, activation="relu"))
    model.add(Dense(10, activation="softmax"))
    model.summary()
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=64, epochs=2, validation_data=(x_test, y_test))
    return model, model.evaluate(x_test, y_test)


CORPUS = ("the quick brown fox jumps over the lazy dog. the dog sleeps and the fox runs away. " * 12)


def char_rnn_program(path):
    import io

    from gpunn import Sequential  # from keras.models import Sequential
    from gpunn.callbacks import Callback  # from keras.callbacks import Callback
    from gpunn.layers import Dense, SimpleRNN  # from keras.layers import Dense, SimpleRNN
    from gpunn.optimizers import RMSprop  # from keras.optimizers import RMSprop

    text = io.open(path, encoding="utf-8").read().lower()
    chars = sorted(list(set(text)))
    char_indices = dict((c, i) for i, c in enumerate(chars))
    indices_char = dict((i, c) for i, c in enumerate(chars))
    maxlen, step = 10, 3
    sentences, next_chars = [], []
    for i in range(0, len(text) - maxlen, step):
        sentences.append(text[i: i + maxlen])
        next_chars.append(text[i + maxlen])
    x = np.zeros((len(sentences), maxlen, len(chars)), dtype=bool)
    y = np.zeros((len(sentences), len(chars)), dtype=bool)
    for i, sentence in enumerate(sentences):
        for t, char in enumerate(sentence):
            x[i, t, char_indices[char]] = 1
        y[i, char_indices[next_chars[i]]] = 1

    model = Sequential()
    model.add(SimpleRNN(64, input_shape=(maxlen, len(chars))))
    model.add(Dense(len(chars), activation="softmax"))
    model.compile(loss="categorical_crossentropy", optimizer=RMSprop(lr=0.01, momentum=0.5))

    def sample(preds, temperature=1.0):
        preds = np.asarray(preds).astype("float64")
        preds = np.log(preds) / temperature
        exp_preds = np.exp(preds)
        preds = exp_preds / np.sum(exp_preds)
        probas = np.random.multinomial(1, preds, 1)
        return np.argmax(probas)

    class Generate(Callback):
        def on_epoch_end(self, epoch, logs=None):
            sentence = text[:maxlen]
            generated = sentence
            for _ in range(20):
                x_pred = np.zeros((1, maxlen, len(chars)))
                for t, char in enumerate(sentence):
                    x_pred[0, t, char_indices[char]] = 1.0
                next_char = indices_char[sample(model.predict(x_pred, verbose=0)[0], 0.5)]
                generated += next_char
                sentence = sentence[1:] + next_char
            print(generated)

    return model.fit(x, y, batch_size=128, epochs=4, callbacks=[Generate()])


def lstm_language_model_program(text):
    from gpunn import Sequential  # from keras.models import Sequential
    from gpunn.layers import LSTM, Dense, Embedding  # from keras.layers import Dense, Embedding, LSTM
    from gpunn.optimizers import Nadam  # from keras.optimizers import Nadam
    from gpunn.utils import to_categorical  # from keras.utils import to_categorical

    words = text.split()
    vocab = sorted(set(words))
    word_index = {w: i for i, w in enumerate(vocab)}
    encoded = [word_index[w] for w in words]
    seq_length = 4
    sequences = np.array([encoded[i - seq_length:i + 1] for i in range(seq_length, len(encoded))])
    X, y = sequences[:, :-1], to_categorical(sequences[:, -1], num_classes=len(vocab))

    def batches(batch_size=32):  # the slide's generator (it fed fit_generator in Keras 2)
        while True:
            for start in range(0, len(X), batch_size):
                yield X[start:start + batch_size], y[start:start + batch_size]

    model = Sequential()
    model.add(Embedding(len(vocab), 10, input_length=seq_length))
    model.add(LSTM(50))
    model.add(Dense(len(vocab), activation="softmax"))
    model.compile(loss="categorical_crossentropy", optimizer=Nadam(learning_rate=0.01), metrics=["accuracy"])
    history = model.fit(batches(), steps_per_epoch=len(X) // 32, epochs=15, verbose=2)
    return model, history, X, y


@needs_mnist
def test_mlp_program():
    with pytest.warns(DeprecationWarning, match="learning_rate"):
        model, history, score = mlp_program()
    assert model.count_params() == 784 * 500 + 500 + 5010
    assert history.params == {"verbose": "auto", "epochs": 3, "steps": 57} and score[1] > 0.7  # it learns (chance: 0.1)


@needs_mnist
def test_lenet_program_with_the_slide_s_channels_last_reshape(monkeypatch):
    with pytest.raises(ValueError, match=r"input_shape=\(28, 28, 1\) looks channels-last.*data_format='channels_last'"):
        lenet_program()
    monkeypatch.setenv("GPUNN_IMAGE_DATA_FORMAT", "channels_last")  # or data_format="channels_last" in the program
    model, (loss, accuracy) = lenet_program()
    assert model.count_params() == 61706 and accuracy > 0.6


def test_char_rnn_program(tmp_path):
    (tmp_path / "corpus.txt").write_text(CORPUS, encoding="utf-8")
    with pytest.warns(DeprecationWarning, match="learning_rate"):
        history = char_rnn_program(tmp_path / "corpus.txt")
    assert history.history["loss"][-1] < 0.6 * history.history["loss"][0]


def test_lstm_language_model_program():
    model, history, X, y = lstm_language_model_program(CORPUS)
    assert history.params["steps"] == len(X) // 32
    assert history.history["accuracy"][-1] > 0.5 and history.history["loss"][-1] < history.history["loss"][0] / 2
