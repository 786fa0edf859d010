"""A careless user's inputs: each is refused before any work, with what was expected and what was received."""

import numpy as np
import pytest

from gpunn import Sequential, load_model
from gpunn.layers import LSTM, Conv2D, Dense, MaxPool2D
from gpunn.utils import to_categorical


def mlp():
    model = Sequential([Dense(16, activation="relu", input_shape=(784,)), Dense(10, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def no_flatten():
    model = Sequential([Conv2D(4, 3, activation="relu", input_shape=(1, 8, 8)), MaxPool2D(2),
                        Dense(10, activation="softmax", name="classifier")])
    model.compile("adam", "categorical_crossentropy")
    return model


def no_last_step():
    model = Sequential([LSTM(4, return_sequences=True, input_shape=(5, 3)), Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


X = np.zeros((3, 784), dtype=np.float32)
WORDS = np.array(["cat", "dog", "cat"])

CASES = {
    "string labels to fit": (mlp, lambda m: m.fit(X, WORDS, verbose=0),
                             r"x: the targets y hold text \(dtype <U3, e.g. 'cat'\); expected numbers.*np.unique"),
    "string labels to to_categorical": (None, lambda m: to_categorical(WORDS),
                                        r"to_categorical expects integer class labels; received text \(dtype <U3, e.g. "
                                        r"'cat'\).*np.unique"),
    "empty dataset to fit": (mlp, lambda m: m.fit(np.zeros((0, 784)), np.zeros(0), verbose=0),
                             r"x: expected at least one sample; received an empty array of shape \(0, 784\)"),
    "empty dataset to evaluate": (mlp, lambda m: m.evaluate(np.zeros((0, 784)), np.zeros(0)),
                                  r"expected at least one sample; received an empty array of shape \(0, 784\)"),
    "empty dataset to predict": (mlp, lambda m: m.predict(np.zeros((0, 784))),
                                 r"expected at least one sample; received an empty array of shape \(0, 784\)"),
    "text images": (mlp, lambda m: m.fit(np.full((3, 784), "a"), np.zeros(3), verbose=0),
                    r"x: expected a numeric array; received dtype <U1"),
    "missing Flatten": (no_flatten, lambda m: m.fit(np.zeros((2, 1, 8, 8)), np.eye(10)[[1, 2]], verbose=0),
                        r"the model outputs samples of shape \(4, 3, 10\) but y has one target per sample \(y of "
                        r"shape \(2, 10\)\): layer 'classifier' receives samples of shape \(4, 3, 3\) and acts on "
                        r"their last axis only; put Flatten\(\) \(or a global pooling\) before it"),
    "missing return_sequences=False": (no_last_step, lambda m: m.fit(np.zeros((2, 5, 3)), np.zeros(2), verbose=0),
                                       r"layer 'dense\S*' receives samples of shape \(5, 4\).*return_sequences=False"),
    "a folder to load_model": (None, lambda m: load_model("."),
                               r"expected a gpunn file \(\.npz, written by model.save or save_weights\); received "
                               r"the folder \."),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_refused_before_any_work(name):
    make, call, message = CASES[name]
    model = make() if make else None
    before = model.get_weights() if model else []
    with pytest.raises((ValueError, OSError), match=message):
        call(model)
    for a, b in zip(before, model.get_weights() if model else []):
        np.testing.assert_array_equal(a, b)
