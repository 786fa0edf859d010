"""The Functional API: Input, Model(inputs, outputs), merge layers, shared layers, several inputs and outputs."""

import re
from pathlib import Path

import numpy as np
import pytest

import gpunn
from gpunn import Input, Model, Sequential, load_model
from gpunn.layers import (LSTM, Activation, Add, Average, Concatenate, Conv2D, Dense, Dot, Dropout,
                          Embedding, Flatten, GlobalAveragePooling2D, Maximum, Minimum, MultiHeadAttention, Multiply,
                          Subtract, add, concatenate)
from gpunn.models.graph import SymbolicTensor
from gpunn.utils import set_seed
from tests.conftest import assert_gradcheck, dev, host

rng = np.random.default_rng(14)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def test_the_readme_graph_snippet_runs_as_written(capsys):
    """The README's (and issue's) residual block with a projection shortcut: trained, with a 'Connected to' summary."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    snippet = readme.split("## Graph models")[1].split("```text\n")[1].split("```")[0]
    x, y_true = rng.random((64, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 64)
    scope = {"x": x, "y_true": y_true}
    exec(compile(snippet.replace("batch_size=128, epochs=5", "batch_size=16, epochs=2"), "README.md", "exec"), scope)
    model = scope["model"]
    assert set(model.fit(x, y_true, epochs=1, verbose=0).history) == {"loss", "accuracy"}
    text = capsys.readouterr().out
    assert "Connected to" in text and "(None, 32, 14, 14)" in text
    assert re.search(r"\badd(_\d+)? \(Add\)", text)  # names count up across the session, as Keras's do
    assert model.predict(x[:3]).shape == (3, 10)


MERGES = {
    "add": (lambda: Add(), [(3, 4), (3, 4), (3, 4)]),
    "add_broadcast": (lambda: Add(), [(3, 4), (3, 1)]),
    "subtract": (lambda: Subtract(), [(3, 4), (3, 4)]),
    "multiply": (lambda: Multiply(), [(3, 4), (1, 4), (3, 4)]),
    "average": (lambda: Average(), [(2, 3, 4), (2, 3, 4)]),
    "maximum": (lambda: Maximum(), [(3, 4), (3, 4), (3, 4)]),
    "minimum": (lambda: Minimum(), [(3, 4), (3, 4)]),
    "concatenate_last": (lambda: Concatenate(), [(2, 3, 4), (2, 3, 2)]),
    "concatenate_channels": (lambda: Concatenate(axis=1), [(3, 2, 4), (1, 2, 4)]),
    "dot_vectors": (lambda: Dot(axes=1), [(5,), (5,)]),
    "dot_cosine": (lambda: Dot(axes=1, normalize=True), [(5,), (5,)]),
    "dot_matrices": (lambda: Dot(axes=2), [(3, 4), (2, 4)]),
    "dot_matrices_1_1": (lambda: Dot(axes=(1, 1), normalize=True), [(3, 4), (3, 2)]),
}


@pytest.mark.parametrize("name", sorted(MERGES))
def test_merge_layer_gradcheck(name):
    make, shapes = MERGES[name]
    xs = [rng.standard_normal((2,) + s) for s in shapes]
    assert_gradcheck(make(), xs)


def test_merge_layers_compute_what_they_say():
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    np.testing.assert_allclose(host(Add()([a, b])), a + b)
    np.testing.assert_allclose(host(Subtract()([a, b])), a - b)
    np.testing.assert_allclose(host(Maximum()([a, b])), np.maximum(a, b))
    np.testing.assert_allclose(host(Concatenate(axis=1)([a, b])), np.concatenate([a, b], axis=1))
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(host(Dot(axes=1, normalize=True)([a, b]))[:, 0], cosine, rtol=1e-6)
    ties = Maximum()
    ties([np.ones((1, 2)), np.ones((1, 2))])
    da, db = ties.backward(dev(np.ones((1, 2))))
    np.testing.assert_array_equal(host(da), 1) and np.testing.assert_array_equal(host(db), 0)  # the first wins a tie


@pytest.mark.parametrize("layer, shapes, message", [
    (Add, [(3,), (4,)], r"Layer 'add\S*' \(Add\) needs inputs of the same shape .*received samples of shapes "
                        r"\[\(3,\), \(4,\)\]"),
    (Subtract, [(3,), (3,), (3,)], r"takes exactly 2 inputs; received 3"),
    (Concatenate, [(2, 3), (4, 5)], r"Concatenate, axis=-1\) needs the inputs' shapes to agree except along the axis"),
    (Dot, [(3,), (4,)], r"needs the axes to have one size"),
])
def test_incompatible_shapes_at_a_merge_are_refused_when_the_graph_is_built(layer, shapes, message):
    inputs = [Input(s) for s in shapes]
    with pytest.raises(ValueError, match=message):
        (layer(axes=1) if layer is Dot else layer())(inputs)


def shared_and_fan_out():
    """x -> shared -> (a, b): the shared Dense is called twice, and x is read three times."""
    x = Input((4,))
    shared = Dense(4, activation="tanh", name="shared")
    a = shared(x)
    b = shared(Dense(4, name="before")(x))
    c = Dense(4, activation="sigmoid", name="side")(x)  # fan-out: x feeds shared, before and side
    out = Dense(2, activation="softmax", name="head")(Concatenate()([a, Multiply()([b, c])]))
    return Model(x, out), shared


def test_gradcheck_with_a_shared_layer_and_a_fan_out():
    model, shared = shared_and_fan_out()
    assert model.shared == {shared} and len(shared.inbound_nodes) == 2
    diffs = assert_gradcheck(model, rng.standard_normal((3, 4)))
    assert {"shared/kernel", "shared/bias", "input"} <= set(diffs)
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert_gradcheck(model, rng.standard_normal((3, 4)), rng.integers(0, 2, 3))
    assert len(model.trainable_weights) == 8  # shared once: shared, before, side, head -- two arrays each


def pairs(x, y, n, seed=0):
    """n pairs of images, half of the same class: (left, right, same)."""
    r = np.random.default_rng(seed)
    left = r.integers(0, len(x), n)
    same = r.random(n) < 0.5
    by_class = {c: np.flatnonzero(y == c) for c in range(10)}
    right = np.array([r.choice(by_class[y[i]]) if s else r.integers(0, len(x)) for i, s in zip(left, same)])
    return x[left], x[right], (y[left] == y[right]).astype(np.float32)


@pytest.mark.learns
@pytest.mark.skipif(not (SHARED / "mnist-t10k").is_dir(), reason="MNIST test files not present")
def test_siamese_network_shares_one_encoder_and_learns_digit_pairs():
    from gpunn.datasets.core import read_idx

    x = (read_idx(SHARED / "mnist-t10k" / "t10k-images-idx3-ubyte.gz")[:6000].reshape(-1, 1, 28, 28) / 255.0)
    y = read_idx(SHARED / "mnist-t10k" / "t10k-labels-idx1-ubyte.gz")[:6000]
    set_seed(0)
    encoder = Sequential([Flatten(input_shape=(1, 28, 28)), Dense(64, activation="relu"), Dense(32)], name="encoder")
    left, right = Input((1, 28, 28), name="left"), Input((1, 28, 28), name="right")
    difference = Subtract()([encoder(left), encoder(right)])
    same = Dense(1, activation="sigmoid")(Dense(32, activation="relu")(difference))
    siamese = Model([left, right], same)
    siamese.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    a, b, target = pairs(x[:5000], y[:5000], 8000)
    siamese.fit([a, b], target, batch_size=64, epochs=4, verbose=0)
    ta, tb, tt = pairs(x[5000:], y[5000:], 2000, seed=1)
    assert siamese.evaluate([ta, tb], tt, batch_size=500)[1] > 0.85  # half the pairs match: chance is 0.5
    assert siamese.shared == {encoder}
    kernels = [w for w in siamese.trainable_weights if w.shape == (784, 64)]
    assert len(kernels) == 1 and kernels[0] is encoder.layers[1].kernel  # one array behind both branches
    same_image = siamese.predict([ta[:1], ta[:1]])
    assert same_image.shape == (1, 1) and same_image[0, 0] > 0.5


def test_several_inputs_and_outputs_train_and_name_their_logs_as_keras():
    a, b = Input((4,), name="a"), Input((3,), name="b")
    h = Dense(8, activation="relu", name="trunk")(concatenate([a, Dense(4)(b)]))
    reg, cls = Dense(1, name="reg")(h), Dense(3, activation="softmax", name="cls")(h)
    model = Model([a, b], [reg, cls])
    model.compile("adam", loss=["mse", "sparse_categorical_crossentropy"], loss_weights=[1.0, 0.5],
                  metrics=[[], ["accuracy"]])
    x1, x2 = rng.random((64, 4), dtype=np.float32), rng.random((64, 3), dtype=np.float32)
    y1, y2 = rng.random((64, 1), dtype=np.float32), rng.integers(0, 3, 64)
    history = model.fit([x1, x2], [y1, y2], epochs=2, verbose=0, validation_split=0.25)
    assert sorted(history.history) == ["cls_accuracy", "cls_loss", "loss", "reg_loss", "val_cls_accuracy",
                                       "val_cls_loss", "val_loss", "val_reg_loss"]
    logs = model.evaluate([x1, x2], [y1, y2], return_dict=True)
    assert logs["loss"] == pytest.approx(logs["reg_loss"] + 0.5 * logs["cls_loss"], rel=1e-5)
    model.compile("adam", loss={"reg": "mse", "cls": "sparse_categorical_crossentropy"}, metrics={"cls": "accuracy"})
    history = model.fit({"a": x1, "b": x2}, {"reg": y1, "cls": y2}, epochs=1, verbose=0)
    assert sorted(history.history) == ["cls_accuracy", "cls_loss", "loss", "reg_loss"]
    p_reg, p_cls = model.predict([x1, x2])
    assert p_reg.shape == (64, 1) and p_cls.shape == (64, 3)


def test_dict_outputs_come_back_as_a_dict():
    x = Input((3,), name="x")
    model = Model({"x": x}, {"p": Dense(2, activation="softmax")(x), "q": Dense(1)(x)})
    model.compile("sgd", {"p": "sparse_categorical_crossentropy", "q": None})
    data = rng.random((10, 3), dtype=np.float32)
    model.fit({"x": data}, {"p": rng.integers(0, 2, 10), "q": None}, verbose=0)
    out = model.predict({"x": data})
    assert set(out) == {"p", "q"} and out["p"].shape == (10, 2)


def encoder_decoder():
    """The seq2seq pattern: an encoder's final state starts the decoder (initial_state, return_state)."""
    source, target = Input((5, 3), name="source"), Input((4, 2), name="target")
    _, h, c = LSTM(6, return_state=True, name="encoder")(source)
    decoded = LSTM(6, return_sequences=True, name="decoder")(target, initial_state=[h, c])
    return Model([source, target], Dense(3, activation="softmax", name="next")(decoded))


def test_initial_state_and_return_state_connect_an_encoder_to_a_decoder():
    model = encoder_decoder()
    diffs = assert_gradcheck(model, [rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 4, 2))], tol=1e-5)
    assert diffs["encoder/kernel"] < 1e-5  # the decoder's loss reaches the encoder only through its state
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = [rng.random((32, 5, 3), dtype=np.float32), rng.random((32, 4, 2), dtype=np.float32)]
    assert model.fit(x, rng.integers(0, 3, (32, 4)), epochs=2, verbose=0).history["loss"][1] > 0


def test_feature_extraction_predicts_intermediate_outputs_in_one_call():
    x = Input((1, 8, 8))
    conv = Conv2D(4, 3, activation="relu", name="conv")
    pooled = GlobalAveragePooling2D(name="pool")(conv(x))
    classifier = Model(x, Dense(2, activation="softmax", name="out")(pooled))
    features = Model(classifier.inputs, [classifier.get_layer("conv").output, classifier.get_layer("pool").output])
    maps, vectors = features.predict(rng.random((5, 1, 8, 8), dtype=np.float32))
    assert maps.shape == (5, 4, 6, 6) and vectors.shape == (5, 4)
    np.testing.assert_allclose(maps.mean(axis=(2, 3)), vectors, rtol=1e-5)
    assert conv.input is x and classifier.get_layer(index=1) is conv
    with pytest.raises(ValueError, match="has no layer named 'nope'"):
        classifier.get_layer("nope")


def test_every_layer_of_a_sequential_has_its_output_for_a_feature_model():
    """Keras's Model(model.inputs, layer.output) for each layer of a LeNet-like Sequential, the poolings included."""
    from gpunn.layers import AvgPool2D, MaxPool2D

    model = Sequential([Conv2D(3, 3, activation="relu", input_shape=(1, 10, 10)), MaxPool2D(2), Conv2D(4, 2),
                        AvgPool2D(2), Flatten(), Dense(2)])
    x = rng.random((3, 1, 10, 10), dtype=np.float32)
    shapes = [Model(model.inputs, layer.output).predict(x).shape for layer in model.layers]
    assert shapes == [(3, 3, 8, 8), (3, 3, 4, 4), (3, 4, 3, 3), (3, 4, 1, 1), (3, 4), (3, 2)]


def test_transfer_learning_freezes_a_trained_encoder_under_a_new_head():
    set_seed(2)
    x = Input((6,))
    base = Dense(8, activation="relu", name="base")
    first = Model(x, Dense(2, activation="softmax")(base(x)))
    first.compile("adam", "sparse_categorical_crossentropy")
    data, labels = rng.random((40, 6), dtype=np.float32), rng.integers(0, 2, 40)
    first.fit(data, labels, epochs=2, verbose=0)
    base.trainable = False
    second = Model(x, Dense(3, activation="softmax", name="new_head")(base(x)))
    second.compile("adam", "sparse_categorical_crossentropy")
    frozen = base.get_weights()
    second.fit(data, rng.integers(0, 3, 40), epochs=2, verbose=0)
    for a, b in zip(frozen, base.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert [w.shape for w in second.trainable_weights] == [(8, 3), (3,)]
    base.trainable = True
    second.compile("adam", "sparse_categorical_crossentropy")
    second.fit(data, rng.integers(0, 3, 40), epochs=1, verbose=0)
    assert not np.array_equal(frozen[0], base.get_weights()[0])


def test_a_multi_input_multi_output_model_saves_and_loads_exactly(tmp_path):
    set_seed(3)
    words, image = Input((6,), name="words"), Input((1, 6, 6), name="image")
    text = MultiHeadAttention(2, 4, name="attend")(Embedding(20, 8, name="embed")(words))
    text = Dense(8, name="text")(Flatten()(text))
    picture = Dense(8, name="picture")(Flatten()(Conv2D(2, 3, name="conv")(image)))
    both = concatenate([text, add([picture, text])])
    outputs = {"kind": Dense(3, activation="softmax", name="kind")(both), "score": Dense(1, name="score")(both)}
    model = Model({"words": words, "image": image}, outputs, name="two_by_two")
    model.compile("adam", {"kind": "sparse_categorical_crossentropy", "score": "mse"}, metrics={"kind": ["accuracy"]},
                  loss_weights={"score": 0.1})
    x = {"words": rng.integers(0, 20, (16, 6)), "image": rng.random((16, 1, 6, 6), dtype=np.float32)}
    y = {"kind": rng.integers(0, 3, 16), "score": rng.random((16, 1), dtype=np.float32)}
    model.fit(x, y, epochs=2, verbose=0)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = load_model(path)
    assert loaded.name == "two_by_two" and loaded.input_names == ["words", "image"]
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    for key, value in model.predict(x).items():
        np.testing.assert_array_equal(loaded.predict(x)[key], value)
    set_seed(4)
    model.fit(x, y, epochs=1, verbose=0)  # resuming from the file gives the very same step
    set_seed(4)
    loaded.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_sequential_is_a_model_and_a_layer_of_one():
    stack = Sequential([Dense(4, activation="relu", input_shape=(3,)), Dropout(0.1), Dense(2)])
    assert isinstance(stack, Model) and stack.output_shape == (2,)
    x = Input((3,))
    outer = Model(x, Activation("softmax")(stack(x)))
    assert outer.layers[1] is stack and len(outer.trainable_weights) == 4
    assert_gradcheck(outer, rng.standard_normal((2, 3)), training=False)


def test_bad_graphs_get_clear_errors_before_any_training():
    a, b = Input((3,), name="in_a"), Input((3,), name="in_b")
    with pytest.raises(ValueError, match=r"depends on input 'in_b', which is not among the model's inputs"):
        Model(a, Add()([a, b]))
    with pytest.raises(ValueError, match=r"input\(s\) \['in_b'\] are not used to compute any output"):
        Model([a, b], Dense(2)(a))
    with pytest.raises(ValueError, match=r"layer name\(s\) \['twin'\] are used by more than one layer"):
        Model(a, Dense(2, name="twin")(Dense(3, name="twin")(a)))
    with pytest.raises(TypeError, match=r"takes symbolic tensors"):
        Model(a, np.zeros(3))
    with pytest.raises(TypeError, match=r"is symbolic: it has a shape but no values"):
        np.asarray(a)
    first = Dense(3, name="first")
    y = first(a)
    second = Dense(3, name="second")(y)
    first.inbound_nodes[0].inputs = [second]  # a hand-made loop: symbolic calls cannot make one
    with pytest.raises(ValueError, match="the graph has a cycle through layer '(first|second)'"):
        Model(a, second)
    assert isinstance(second, SymbolicTensor) and second.shape == (None, 3)


def test_layer_output_of_a_shared_layer_is_ambiguous():
    x = Input((2,))
    layer = Dense(2)
    layer(x), layer(layer(x))
    with pytest.raises(AttributeError, match="has 3 calls in graphs"):
        layer.output
    assert gpunn.layers.Dense(1).name.startswith("dense")


@pytest.mark.learns
@pytest.mark.skipif(not (SHARED / "fashion-mnist").is_dir(), reason="Fashion-MNIST files not present")
def test_resnet_example_learns(monkeypatch, tmp_path):
    from gpunn.examples.resnet import main, small_resnet

    monkeypatch.setenv("GPUNN_DATA_DIR", str(SHARED))
    assert small_resnet().count_params() == 78426
    assert main(["--epochs", "1", "--limit", "2000", "--batch-size", "32"]) > 0.5


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "fashion-mnist").is_dir(), reason="Fashion-MNIST files not present")
def test_resnet_fashion_mnist_full_recipe(monkeypatch):
    """The issue's bar: >= 92.0% after 10 epochs (LeNet-5 reaches 89.7%; measured 92.75%); 20-40 minutes on 2 CPU cores."""
    from gpunn.examples.resnet import main

    monkeypatch.setenv("GPUNN_DATA_DIR", str(SHARED))
    assert main([]) >= 0.92
