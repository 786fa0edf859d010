import io
import sys

import numpy as np
import pytest

import gpunn.backend as backend
from gpunn import Sequential
from gpunn.callbacks import EarlyStopping, LearningRateScheduler, TerminateOnNaN
from gpunn.layers import Dense, Dropout, Flatten
from gpunn.optimizers import SGD, Adam
from gpunn.utils import set_seed, to_categorical
from tests.conftest import dev, host


def spirals(n=600, seed=0):
    """Two interleaved spirals: a problem no linear model solves."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.5, 3 * np.pi, n)
    label = rng.integers(0, 2, n)
    sign = np.where(label == 1, 1.0, -1.0)
    x = np.stack([sign * t * np.cos(t), sign * t * np.sin(t)], axis=1) / 5 + rng.normal(0, 0.05, (n, 2))
    return x.astype(np.float32), label


def mlp(output="softmax", units=2):
    return Sequential([
        Dense(64, activation="relu", input_shape=(2,)),
        Dense(64, activation="relu"),
        Dense(units, activation=output),
    ])


def check_mlp_learns_spirals(xp):
    set_seed(0)
    x, y = spirals()
    model = mlp()
    model.compile(Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=60, verbose=0)
    loss, acc = model.evaluate(x, y)
    assert acc > 0.97, history.history["accuracy"][-5:]
    assert history.history["loss"][-1] < history.history["loss"][0] / 5
    assert isinstance(model.predict(x[:3]), np.ndarray)
    return model


@pytest.mark.learns
def test_mlp_learns_non_linear_problem(xp):
    check_mlp_learns_spirals(xp)


def test_one_hot_and_binary_variants():
    set_seed(1)
    x, y = spirals(400)
    model = mlp()
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, to_categorical(y, 2), batch_size=32, epochs=5, validation_data=[x, to_categorical(y, 2)],
                        verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    binary = mlp("sigmoid", 1)
    binary.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    assert binary.fit(x, y, epochs=2, verbose=0).history["accuracy"][-1] > 0.5
    assert binary.metrics[0][1].name == "binary_accuracy"


def test_same_seed_same_training():
    x, y = spirals(200)
    results = []
    for _ in range(2):
        set_seed(7)
        model = Sequential([Dense(16, activation="relu", input_shape=(2,)), Dropout(0.2), Dense(2, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=2, verbose=0)
        results.append(model.get_weights())
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_verbose_output_shows_progress(capsys, monkeypatch):
    """A terminal gets a redrawn bar; a log file or a pipe one line per epoch (verbose=1 or 'auto'), as verbose=2."""
    x, y = spirals(100)
    model = mlp()
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["acc"])
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    model.fit(x, y, epochs=2, batch_size=50, verbose=1)
    monkeypatch.undo()
    out = terminal.getvalue()
    assert "Epoch 2/2" in out and "100/100" in out and "loss=" in out and "acc=" in out and "\r" in out
    model.fit(x, y, epochs=2, batch_size=10)  # verbose="auto", and capsys is not a terminal
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "\r" not in out and len(lines) == 2 and lines[1].startswith("Epoch 2/2 - 100/100 samples - ")
    assert " - loss: " in lines[1] and " - acc: " in lines[1]
    model.fit(x, y, epochs=1, verbose=2)
    assert "Epoch 1/1 - " in capsys.readouterr().out
    with pytest.raises(ValueError, match="verbose must be 0 .*received verbose=3"):
        model.fit(x, y, verbose=3)


def test_summary_counts_parameters():
    lines = []
    model = Sequential([Flatten(input_shape=(1, 28, 28)), Dense(10, activation="softmax")])
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "(None, 784)" in text and "7,850" in text and "Total params: 7,850" in text


def test_callbacks():
    x, y = spirals(200)
    model = mlp()
    model.compile(SGD(0.1), "sparse_categorical_crossentropy", metrics=["accuracy"])
    stopper = EarlyStopping(monitor="loss", patience=0, min_delta=10.0, restore_best_weights=True)
    history = model.fit(x, y, epochs=10, verbose=0, callbacks=[stopper])
    assert len(history.epoch) == 2 and stopper.stopped_epoch == 1

    scheduler = LearningRateScheduler(lambda epoch, lr: 0.1 / (1 + epoch))
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[scheduler])
    np.testing.assert_allclose(history.history["learning_rate"], [0.1, 0.05, 0.1 / 3])

    model.compile(SGD(1e30), "sparse_categorical_crossentropy")
    with np.errstate(all="ignore"):
        history = model.fit(x * 1e10, y, epochs=5, verbose=0, callbacks=[TerminateOnNaN()])
    assert len(history.epoch) == 1


def test_nb_epoch_still_works_with_a_warning():
    x, y = spirals(64)
    model = mlp()
    model.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.warns(DeprecationWarning, match="epochs"):
        history = model.fit(x, y, nb_epoch=2, verbose=0)
    assert len(history.epoch) == 2


@pytest.mark.parametrize("call, message", [
    (lambda m, x, y: m.fit(x, y[:-1]), "x has 64 samples but y has 63"),
    (lambda m, x, y: m.fit(x[:, :1], y), r"Layer 'dense\S*' expects samples of shape \(2,\); received x with samples of shape \(1,\)"),
    (lambda m, x, y: m.fit(x, y + 5), r"labels must be in \[0, 2\) .* received labels from 5 to 6"),
    (lambda m, x, y: m.fit(np.where(x > 0, np.nan, x), y), "NaN or infinite"),
    (lambda m, x, y: m.fit(x, y, batch_size=0), "batch_size must be an integer >= 1; received batch_size=0"),
    (lambda m, x, y: m.fit(x, y, epochs=-1), "epochs must be an integer >= 0"),
    (lambda m, x, y: m.fit(x, y, validation_data=(x,)), "validation_data must be"),
    (lambda m, x, y: m.fit(x, y, steps=3), "unexpected keyword arguments: steps"),
])
def test_bad_input_fails_before_training(call, message):
    x, y = spirals(64)
    model = mlp()
    model.compile("sgd", "sparse_categorical_crossentropy")
    before = model.get_weights() if model.built else None
    with pytest.raises((ValueError, TypeError), match=message):
        call(model, x, y)
    if before is not None:
        for a, b in zip(before, model.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_more_errors():
    model = mlp()
    with pytest.raises(RuntimeError, match=r"Call model.compile\(optimizer=..., loss=...\) before model.fit\(\)"):
        model.fit(*spirals(10))
    with pytest.raises(ValueError, match="valid losses"):
        model.compile("adam", "cross_entropy")
    with pytest.raises(ValueError, match="valid metrics"):
        model.compile("adam", "mse", metrics=["f1"])
    model.compile("adam", "categorical_crossentropy")
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy"):
        model.fit(*spirals(10))
    images = Sequential([Flatten(input_shape=(1, 28, 28)), Dense(10, activation="softmax")])
    images.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"channels-first \(N, C, H, W\).*transpose\(0, 3, 1, 2\)"):
        images.fit(np.zeros((4, 28, 28, 1)), np.zeros(4, dtype=int))


@pytest.mark.gpu
def test_backends_agree_on_a_training_step():
    """One seeded training run on CuPy equals the same run on NumPy (float32 tolerance)."""
    x, y = spirals(128)
    results = {}
    for name in ("cupy", "numpy"):
        backend.set_backend(name)
        set_seed(3)
        model = mlp()
        model.compile(Adam(0.01), "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=1, batch_size=32, verbose=0, shuffle=False)
        results[name] = model.get_weights()
    for a, b in zip(*results.values()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_weights_come_out_and_go_in_as_copies():
    """get_weights is a snapshot and set_weights takes one: training changes neither (as in Keras)."""
    x, y = spirals(64)
    model = mlp()
    model.compile(SGD(0.5), "sparse_categorical_crossentropy")
    model.build()
    snapshot = model.get_weights()
    if backend.name == "numpy":  # on a GPU the weights are not even in host memory
        assert not np.shares_memory(snapshot[0], model.layers[0].kernel)
        assert not np.shares_memory(model.layers[0].get_weights()[0], model.layers[0].kernel)
    kept = [w.copy() for w in snapshot]
    model.set_weights(snapshot)
    model.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(snapshot, kept):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_restores_the_best_weights():
    x, y = spirals(128)
    model = mlp()
    model.compile(SGD(0.5), "sparse_categorical_crossentropy")
    stopper = EarlyStopping(monitor="val_loss", min_delta=10.0, patience=1, restore_best_weights=True)
    history = model.fit(x, y, epochs=10, verbose=0, validation_data=(x, y), callbacks=[stopper])
    assert len(history.epoch) == 3  # epoch 0 is the best; two epochs without a 10.0 improvement stop it
    assert model.evaluate(x, y, batch_size=128)[0] == pytest.approx(history.history["val_loss"][0], rel=1e-6)


def test_freeze_unfreeze_and_recompile_with_the_same_optimizer():
    """The transfer-learning recipe: train, freeze the base, train a head, unfreeze, fine-tune with a small rate."""
    x, y = spirals(128)
    set_seed(0)
    model = Sequential([Dense(20, activation="relu", input_shape=(2,)), Dense(16, activation="relu"),
                        Dense(2, activation="softmax")])
    optimizer = Adam(0.01)
    model.compile(optimizer, "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    base = model.layers[0]
    base.trainable = False
    frozen = base.get_weights()
    model.compile(optimizer, "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    for a, b in zip(frozen, base.get_weights()):
        np.testing.assert_array_equal(a, b)
    base.trainable = True
    optimizer.learning_rate = 1e-4
    model.compile(optimizer, "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    assert not np.array_equal(frozen[0], base.get_weights()[0])


def test_optimizer_state_follows_each_weight_not_its_position():
    """Three same-shaped layers: freezing the first must not hand its Adam averages to the second."""
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    model = Sequential([Dense(4, input_shape=(4,), name="a"), Dense(4, name="b"), Dense(4, name="c")])
    optimizer = Adam(0.01)
    model.compile(optimizer, "mse")
    model.build()
    x = dev(x)
    model.train_step(x, x)
    m_before = {key: host(slots["m"]) for key, slots in optimizer.slots.items()}
    assert sorted(m_before) == ["a/bias", "a/kernel", "b/bias", "b/kernel", "c/bias", "c/kernel"]
    model.layers[0].trainable = False  # takes effect at the next step, as in Keras 3
    model.train_step(x, x)
    g = host(model.layers[1].grads["kernel"])
    np.testing.assert_allclose(host(optimizer.slots["b/kernel"]["m"]), 0.9 * m_before["b/kernel"] + 0.1 * g, rtol=1e-6)
    np.testing.assert_array_equal(host(optimizer.slots["a/kernel"]["m"]), m_before["a/kernel"])
