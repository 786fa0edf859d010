"""fit/evaluate/predict on arrays, generators and PyDatasets; sample and class weights (as Keras does them)."""

import numpy as np
import pytest

from gpunn import Sequential
from gpunn.layers import Dense
from gpunn.utils import PyDataset, Sequence, set_seed, to_categorical

rng = np.random.default_rng(4)
X = rng.standard_normal((40, 3)).astype(np.float32)
Y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)


def model(loss="sparse_categorical_crossentropy", seed=0):
    set_seed(seed)
    m = Sequential([Dense(8, activation="tanh", input_shape=(3,)), Dense(2, activation="softmax")])
    m.compile("adam", loss, metrics=["accuracy"])
    return m


class Batches(PyDataset):
    """The course's kind of PyDataset: batch i is rows [i*b, (i+1)*b)."""

    def __init__(self, x, y, batch_size, weights=None):
        super().__init__()
        self.x, self.y, self.w, self.batch_size, self.epochs_ended = x, y, weights, batch_size, 0

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, i):
        s = slice(i * self.batch_size, (i + 1) * self.batch_size)
        return (self.x[s], self.y[s]) if self.w is None else (self.x[s], self.y[s], self.w[s])

    def on_epoch_end(self):
        self.epochs_ended += 1


def test_weighted_loss_and_unweighted_metrics_as_keras():
    """Keras: loss = sum_i w_i J_i / n over the whole set, whatever the batch size; accuracy ignores the weights."""
    m = model()
    p = m.predict(X)
    each = -np.log(p[np.arange(len(Y)), Y])
    w = rng.uniform(0, 3, len(Y))
    loss, acc = m.evaluate(X, Y, batch_size=16, sample_weight=w)
    assert loss == pytest.approx(np.mean(w * each), rel=1e-5)
    assert acc == m.evaluate(X, Y)[1]


@pytest.mark.parametrize("loss, targets", [("sparse_categorical_crossentropy", Y),
                                           ("categorical_crossentropy", to_categorical(Y, 2))])
def test_class_weight_is_the_sample_weight_of_each_class(loss, targets):
    by_class = model(loss)
    by_class.fit(X, targets, batch_size=8, epochs=2, verbose=0, class_weight={0: 1.0, 1: 3.0})
    by_sample = model(loss)
    by_sample.fit(X, targets, batch_size=8, epochs=2, verbose=0, sample_weight=np.where(Y == 1, 3.0, 1.0))
    for a, b in zip(by_class.get_weights(), by_sample.get_weights()):
        np.testing.assert_array_equal(a, b)
    unweighted = model(loss)
    unweighted.fit(X, targets, batch_size=8, epochs=2, verbose=0, class_weight={1: 1.0})  # unlisted classes weigh 1
    plain = model(loss)
    plain.fit(X, targets, batch_size=8, epochs=2, verbose=0)
    np.testing.assert_array_equal(unweighted.get_weights()[0], plain.get_weights()[0])


def test_a_pydataset_trains_as_its_arrays_do():
    data = Batches(X, Y, 8)
    m = model()
    history = m.fit(data, epochs=3, shuffle=False, verbose=0, validation_data=Batches(X, Y, 16))
    assert history.params["steps"] == 5 and data.epochs_ended == 3
    arrays = model()
    arrays_history = arrays.fit(X, Y, batch_size=8, epochs=3, shuffle=False, verbose=0, validation_data=(X, Y))
    for a, b in zip(m.get_weights(), arrays.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(history.history["val_loss"], arrays_history.history["val_loss"], rtol=1e-6)
    assert m.evaluate(Batches(X, Y, 7)) == pytest.approx(m.evaluate(X, Y))
    np.testing.assert_allclose(m.predict(Batches(X, Y, 7)), m.predict(X), rtol=1e-6)
    assert m.fit(Batches(X, Y, 8, np.ones(len(X))), epochs=1, verbose=0).history["loss"]
    assert Sequence is PyDataset


def test_a_shuffled_pydataset_sees_every_batch_once_an_epoch():
    seen = []

    class Logged(Batches):
        def __getitem__(self, i):
            seen.append(i)
            return super().__getitem__(i)

    model().fit(Logged(X, Y, 8), epochs=2, verbose=0)
    assert sorted(seen[:5]) == sorted(seen[5:]) == [0, 1, 2, 3, 4] and seen[:5] != [0, 1, 2, 3, 4] != seen[5:]


def test_a_generator_with_steps_per_epoch():
    calls = []

    def batches():
        while True:  # a Keras generator loops forever
            calls.append(1)
            yield X[:8], Y[:8], np.ones(8)

    m = model()
    history = m.fit(batches(), steps_per_epoch=3, epochs=2, verbose=0)
    assert history.params == {"verbose": 0, "epochs": 2, "steps": 3} and len(calls) == 6 and len(history.epoch) == 2
    assert m.evaluate(batches(), steps=2)[0] == pytest.approx(m.evaluate(X[:8], Y[:8])[0])
    assert m.predict((x for x, _, _ in batches()), steps=2).shape == (16, 2)


def test_a_generator_that_runs_out_stops_training_with_a_warning():
    finite = ((X[i:i + 8], Y[i:i + 8]) for i in range(0, 40, 8))
    with pytest.warns(UserWarning, match="ran out of data"):
        history = model().fit(finite, epochs=3, verbose=0)  # the first epoch reads all 5 batches; the second has none
    assert history.epoch == [0] and history.params["steps"] is None
    short = ((X[i:i + 8], Y[i:i + 8]) for i in range(0, 40, 8))
    with pytest.warns(UserWarning, match="ran out of data"):
        history = model().fit(short, steps_per_epoch=3, epochs=3, verbose=0)  # 3 batches, then 2 of 3: stop
    assert history.epoch == [0, 1]


@pytest.mark.parametrize("call, message", [
    (lambda m: m.fit(Batches(X, Y, 8), batch_size=8), r"a PyDataset hands out whole batches.*leave batch_size out of"),
    (lambda m: m.fit(Batches(X, Y, 8), Y), r"leave y out of the call \(received y=ndarray of shape \(40,\)\)"),
    (lambda m: m.fit(iter([(X, Y)]), validation_split=0.2), "validation_split cuts arrays"),
    (lambda m: m.fit(iter([[X, Y]])), r"batch 0 of the generator\): expected a batch \(x, y\).*received list"),
    (lambda m: m.fit(iter([(X,)])), r"batch 0 of the generator\): the batch has no targets"),
    (lambda m: m.fit(Batches(X, Y, 8), steps_per_epoch=9), "Batches has 5 batches .*steps_per_epoch=9 asks for more"),
    (lambda m: m.fit(X, Y, sample_weight=np.ones(3)), r"sample_weight must hold one number per sample, shape \(40,\)"),
    (lambda m: m.fit(X, Y, sample_weight=-np.ones(40)), "sample_weight must be finite and >= 0"),
    (lambda m: m.fit(X, Y, class_weight=[1.0, 2.0]), r"class_weight must be a dict \{class index: weight >= 0\}"),
    (lambda m: m.fit(X, Y, class_weight={0: 1}, sample_weight=np.ones(40)), "sample_weight or class_weight, not both"),
    (lambda m: m.fit(X, Y, validation_data=[X]), r"validation_data must be \(x_val, y_val\)"),
    (lambda m: m.fit(X, Y, steps_per_epoch=0), "steps_per_epoch must be an integer >= 1"),
    (lambda m: m.evaluate(X), "no targets y"),
])
def test_bad_batches_and_weights_are_refused_before_training(call, message):
    m = model()
    before = m.get_weights()
    with pytest.raises(ValueError, match=message):
        call(m)
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)
