"""A model's trainable weights as one buffer and their gradients as another (gpunn/utils/flat.py): the
update over the whole buffers is the update weight by weight, whatever happens to the weights between steps."""

import numpy as np
import pytest

import gpunn
from gpunn import Input, Model, Sequential, backend, regularizers
from gpunn.layers import Conv2D, Dense, Flatten, MaxPooling2D, Subtract
from gpunn.utils.flat import FlatWeights

rng = np.random.default_rng(3)
X = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
Y = rng.integers(0, 3, 16)


def small_cnn(regularized=False):
    gpunn.utils.set_seed(1)
    reg = regularizers.l2(1e-2) if regularized else None
    return Sequential([Conv2D(4, 3, activation="relu", input_shape=(1, 8, 8)), MaxPooling2D(2), Flatten(),
                       Dense(8, activation="tanh", kernel_regularizer=reg), Dense(3, activation="softmax")])


def siamese():
    """One encoder called on two inputs: its gradients are the sum over both calls."""
    gpunn.utils.set_seed(2)
    encoder = Sequential([Flatten(input_shape=(1, 8, 8)), Dense(6, activation="relu")], name="encoder")
    left, right = Input((1, 8, 8)), Input((1, 8, 8))
    return Model([left, right], Dense(3, activation="softmax")(Subtract()([encoder(left), encoder(right)])))


def train(make, optimizer, flat, steps=3, monkeypatch=None, between=None):
    """The weights after ``steps`` steps, with the weights in one buffer (``flat``) or weight by weight."""
    monkeypatch.setattr(FlatWeights, "can_hold", staticmethod(lambda refs: flat and bool(refs)))
    model = make()
    model.compile(optimizer, "sparse_categorical_crossentropy")
    x = [X, X[::-1].copy()] if len(model.inputs) == 2 else X
    for step in range(steps):
        model.train_step([backend.to_device(a) for a in x] if isinstance(x, list) else backend.to_device(x),
                         backend.to_device(Y))
        if between is not None:
            between(model, step)
    return model


OPTIMIZERS = ["adam", "nadam", "rmsprop", "adagrad", "adadelta", gpunn.optimizers.SGD(0.1, momentum=0.9),
              gpunn.optimizers.RMSprop(centered=True, momentum=0.5), gpunn.optimizers.Adam(clipnorm=0.01)]


@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=str)
@pytest.mark.parametrize("make", [small_cnn, lambda: small_cnn(regularized=True), siamese],
                         ids=["cnn", "cnn-regularized", "siamese"])
def test_one_buffer_trains_exactly_as_weight_by_weight(make, optimizer, monkeypatch):
    config = optimizer if isinstance(optimizer, str) else optimizer.get_config()
    flat = train(make, gpunn.optimizers.get(config), True, monkeypatch=monkeypatch)
    apart = train(make, gpunn.optimizers.get(config), False, monkeypatch=monkeypatch)
    assert flat._flat is not None and apart._flat is None
    for a, b in zip(flat.get_weights(), apart.get_weights()):
        np.testing.assert_array_equal(a, b)  # the same operations on the same numbers: bit for bit


def test_weights_and_gradients_are_views_of_the_buffers_and_dense_writes_in_place(monkeypatch):
    model = train(small_cnn, "adam", True, steps=1, monkeypatch=monkeypatch)
    flat = model._flat
    for (owner, n), w, g in zip(flat.refs, flat.weight_views, flat.grad_views):
        assert getattr(owner, n) is w and owner.grads[n] is g
    assert all(np.shares_memory(backend.to_numpy(w), backend.to_numpy(flat.weights)) for w in flat.weight_views) \
        or backend.is_gpu()
    dense = model.layers[3]
    model.train_step(backend.to_device(X), backend.to_device(Y))
    assert dense.grad_targets == {}  # every offer taken or withdrawn


def test_weights_assigned_between_steps_are_copied_in(monkeypatch):
    """set_weights (and loading) give a layer new arrays: the next step trains those values, in the buffer."""
    replacement = [w * 0.5 for w in small_cnn().get_weights()]

    def halve_once(model, step):
        if step == 0:
            model.set_weights(replacement)

    flat = train(small_cnn, "sgd", True, steps=2, monkeypatch=monkeypatch, between=halve_once)
    apart = train(small_cnn, "sgd", False, steps=2, monkeypatch=monkeypatch, between=halve_once)
    for a, b in zip(flat.get_weights(), apart.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert flat.layers[0].kernel is flat._flat.weight_views[0]


def test_freezing_a_layer_makes_a_new_buffer_and_keeps_the_running_averages(monkeypatch):
    def freeze_after_first(model, step):
        if step == 0:
            model.layers[0].trainable = False
            model.compile(model.optimizer, "sparse_categorical_crossentropy")

    flat = train(small_cnn, "adam", True, steps=3, monkeypatch=monkeypatch, between=freeze_after_first)
    apart = train(small_cnn, "adam", False, steps=3, monkeypatch=monkeypatch, between=freeze_after_first)
    for a, b in zip(flat.get_weights(), apart.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert len(flat._flat.refs) == 4  # the convolution's two weights left the buffer
    assert len(flat.optimizer.slots) == len(apart.optimizer.slots) == 6  # the frozen layer's kept for later
    for mine, theirs in zip(flat.optimizer.slots.values(), apart.optimizer.slots.values()):  # the layers' names differ
        for name, value in mine.items():
            np.testing.assert_array_equal(backend.to_numpy(value), backend.to_numpy(theirs[name]))


def test_weights_of_two_dtypes_are_updated_one_by_one():
    gpunn.utils.set_seed(0)
    model = Sequential([Dense(4, input_shape=(3,)), Dense(2, activation="softmax")])
    model.layers[1].cast(np.float64)
    model.compile("adam", "sparse_categorical_crossentropy")
    before = model.get_weights()
    model.train_step(backend.to_device(rng.standard_normal((5, 3)).astype(np.float32)),
                     backend.to_device(rng.integers(0, 2, 5)))
    assert model._flat is None
    assert all(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_a_copy_of_a_trained_model_trains_its_own_weights(monkeypatch):
    """A deep copy's views are arrays of their own: the copy makes its own buffers (and its optimizer its own)."""
    import copy

    model = train(small_cnn, "adam", True, steps=2, monkeypatch=monkeypatch)
    twin = copy.deepcopy(model)
    assert twin._flat is None and twin.optimizer._flat_slots is None
    before, original = twin.get_weights(), model.get_weights()
    twin.train_step(backend.to_device(X), backend.to_device(Y))
    assert all(not np.array_equal(a, b) for a, b in zip(before, twin.get_weights()))
    for a, b in zip(original, model.get_weights()):
        np.testing.assert_array_equal(a, b)  # the original is left alone
    np.testing.assert_array_equal(backend.to_numpy(twin.layers[0].kernel), twin.get_weights()[0])
    slots = twin.optimizer.slots[twin.trainable_keys[0]]["m"]
    assert np.shares_memory(backend.to_numpy(slots), backend.to_numpy(twin.optimizer._flat_slots[1]["m"])) or \
        backend.is_gpu()
