import numpy as np
import pytest

import gpunn
from gpunn.layers import Conv2D, Dense, Flatten, MaxPool2D
from gpunn.utils import format_profile, profile_layers, time_fn


def test_time_fn_is_the_median_after_warmup():
    calls = []
    seconds = time_fn(lambda: calls.append(sum(range(20000))), warmup=2, repeat=5)
    assert len(calls) == 7 and 0 < seconds < 1


def test_profile_layers_times_every_layer_and_the_loss(xp):
    model = gpunn.Sequential([Conv2D(4, 3, activation="relu", input_shape=(1, 12, 12)), MaxPool2D(2), Flatten(),
                              Dense(5, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = np.random.rand(16, 1, 12, 12).astype(np.float32), np.arange(16) % 5
    before = [w.copy() for w in model.get_weights()]
    rows = profile_layers(model, x, y, warmup=1, repeat=3)
    assert [r["layer"] for r in rows] == [layer.name for layer in model.layers] + ["loss"]
    assert [r["type"] for r in rows] == ["Conv2D", "MaxPool2D", "Flatten", "Dense", "sparse_categorical_crossentropy"]
    assert rows[0]["output_shape"] == (16, 4, 10, 10) and rows[3]["output_shape"] == (16, 5)
    assert all(r["forward_ms"] > 0 and r["backward_ms"] > 0 for r in rows)
    for a, b in zip(before, model.get_weights()):  # profiling does not train
        np.testing.assert_array_equal(a, b)
    table = format_profile(rows)
    assert table.splitlines()[0].startswith("layer") and table.splitlines()[-1].startswith("total")
    assert len(table.splitlines()) == len(rows) + 2


def test_profile_layers_needs_a_compiled_model_and_checks_data():
    model = gpunn.Sequential([Dense(3, input_shape=(4,))])
    with pytest.raises(RuntimeError, match="compile"):
        profile_layers(model, np.zeros((2, 4)), np.zeros((2, 3)))
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="expects samples of shape"):
        profile_layers(model, np.zeros((2, 5)), np.zeros((2, 3)))
