import json
import os
import zipfile

import numpy as np
import pytest

import gpunn
import gpunn.backend as backend
from gpunn import Sequential, layers, saving
from gpunn.callbacks import ModelCheckpoint
from gpunn.layers import (GRU, LSTM, Activation, AveragePooling1D, AvgPool2D, BatchNormalization, Bidirectional, Conv1D,
                          Conv2D, Dense, Dropout, Embedding, Flatten, GlobalAveragePooling2D, Layer, MaxPool2D,
                          MaxPooling1D, Maxout, PReLU, Reshape, SimpleRNN, TimeDistributed, ZeroPadding2D)
from gpunn.layers import (AdditiveAttention, Attention, GlobalAveragePooling1D, LayerNormalization, MultiHeadAttention,
                          PositionalEncoding, RandomCrop, RandomFlip, RandomRotation, RandomTranslation, Residual,
                          TransformerEncoder, UnitNormalization)
from gpunn.models import load_model
from gpunn.regularizers import l2
from gpunn.schedules import ExponentialDecay
from gpunn.utils import set_seed
from tests.conftest import host

rng = np.random.default_rng(8)

# One small model per layer type; together they must cover every layer gpunn has.
MODELS = {
    "dense_mlp": lambda: [Dense(6, activation="elu", kernel_regularizer=l2(1e-3), input_shape=(5,)), Dropout(0.3),
                          Activation("tanh"), PReLU(alpha_initializer="random_uniform"), Dense(4), Maxout(2),
                          Dense(3, activation="softmax")],
    "reshape": lambda: [Reshape((1, 5, 1), input_shape=(5,)), Flatten(), Dense(3, activation="softmax")],
    "cnn": lambda: [ZeroPadding2D(1, input_shape=(2, 7, 7)), Conv2D(3, 3, strides=2, padding="same", activation="relu"),
                    BatchNormalization(), MaxPool2D(2, padding="same"), AvgPool2D(1), Conv2D(4, 1),
                    GlobalAveragePooling2D(), Dense(3, activation="softmax")],
    "augmented_cnn": lambda: [RandomFlip("horizontal", input_shape=(1, 8, 8)), RandomTranslation(0.1, 0.2),
                              RandomRotation(0.05, fill_mode="constant"), RandomCrop(6, 6), Conv2D(3, 3),
                              GlobalAveragePooling2D(), Dense(4), UnitNormalization(), Dense(3, activation="softmax")],
    "cnn1d": lambda: [Conv1D(4, 3, padding="causal", input_shape=(8, 3)), MaxPooling1D(), AveragePooling1D(2),
                      Flatten(), Dense(3, activation="softmax")],
    "cnn_channels_last": lambda: [Conv2D(3, 3, data_format="channels_last", input_shape=(6, 6, 2)),
                                  BatchNormalization(axis=-1), MaxPool2D(data_format="channels_last"), Flatten(),
                                  Dense(3, activation="softmax")],
    "transformer": lambda: [Dense(8, input_shape=(6, 5)), PositionalEncoding(), TransformerEncoder(2, 4, 16),
                            Residual([MultiHeadAttention(2, 4, value_dim=3), LayerNormalization()]),
                            Residual(AdditiveAttention()), Residual(Attention(use_scale=True)),
                            Residual(AdditiveAttention(units=4)), GlobalAveragePooling1D(), Dense(3, activation="softmax")],
    "rnn": lambda: [Embedding(9, 4, input_length=6), Bidirectional(LSTM(3, return_sequences=True), merge_mode="sum"),
                    GRU(4, reset_after=False, return_sequences=True), TimeDistributed(Dense(5, activation="tanh")),
                    SimpleRNN(3), Dense(3, activation="softmax")],
}


def data(model):
    if isinstance(model.layers[0], Embedding):
        return rng.integers(0, 9, (16, 6)), rng.integers(0, 3, 16)
    x = rng.random((16,) + tuple(model.layers[0].input_shape), dtype=np.float32)
    return x, rng.integers(0, 3, 16)


def trained(name, optimizer="adam"):
    set_seed(0)
    model = Sequential(MODELS[name](), name=name)
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = data(model)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    return model, x, y


def merging_graph():
    """Every merge layer in one graph model (they take several inputs, so no Sequential can hold them)."""
    from gpunn import Input, Model

    a, b = Input((4,), name="a"), Input((4,), name="b")
    ha, hb = Dense(4, activation="tanh", name="ha")(a), Dense(4, name="hb")(b)
    merged = [layers.Add()([ha, hb]), layers.Subtract()([ha, hb]), layers.Multiply()([ha, hb]),
              layers.Average()([ha, hb]), layers.Maximum()([ha, hb]), layers.Minimum()([ha, hb]),
              layers.Dot(axes=1, normalize=True)([ha, hb])]
    out = Dense(3, activation="softmax", name="out")(layers.Concatenate()(merged))
    return Model([a, b], out, name="merging")


def seq2seq_graph():
    """The Transformer decoder, which takes the target and the encoder's outputs."""
    from gpunn import Input, Model

    source, target = Input((6, 5), name="source"), Input((4, 5), name="target")
    h = layers.TransformerDecoder(2, 4, 8)(Dense(8, name="embed_target")(target), Dense(8, name="embed_source")(source))
    return Model([source, target], Dense(3, activation="softmax", name="out")(GlobalAveragePooling1D()(h)),
                 name="seq2seq")


GRAPHS = {"merging": merging_graph, "seq2seq": seq2seq_graph}


def test_round_trips_cover_every_layer():
    used = {type(layer).__name__ for f in MODELS.values() for top in f() for layer in [top, *top.sublayers]}
    used |= {type(layer).__name__ for graph in GRAPHS.values() for layer in graph().layers}
    every = {name for name in layers.__all__ if name != "Layer" and name[0].isupper()}
    aliases = {"MaxPooling2D", "AveragePooling2D", "Convolution2D", "Convolution1D", "MaxPool1D", "AvgPool1D"}
    assert every - aliases - used == set()


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_graph_model_round_trips(name, tmp_path):
    set_seed(0)
    model = GRAPHS[name]()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = [rng.random((16,) + tuple(i.shape[1:]), dtype=np.float32) for i in model.inputs]
    y = rng.integers(0, 3, 16)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    model.save(tmp_path / "graph.npz")
    loaded = load_model(tmp_path / "graph.npz")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.get_config() == model.get_config()
    assert loaded.evaluate(x, y) == model.evaluate(x, y)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_save_load_round_trip(name, tmp_path):
    model, x, y = trained(name)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.get_config() == model.get_config()
    assert loaded.epoch == 2 and loaded.optimizer.iterations == model.optimizer.iterations
    assert loaded.evaluate(x, y) == model.evaluate(x, y)
    lines = []
    loaded.summary(print_fn=lines.append)
    assert f"Total params: {model.count_params():,}" in lines


def test_weights_only_round_trip_and_shape_check(tmp_path):
    model, x, _ = trained("cnn")
    model.save_weights(tmp_path / "w.npz")
    fresh = Sequential(MODELS["cnn"]())
    fresh.load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))
    wider = Sequential([ZeroPadding2D(1, input_shape=(2, 7, 7)), Conv2D(5, 3, strides=2, padding="same")]
                       + MODELS["cnn"]()[2:])
    with pytest.raises(saving.ModelFileError, match=r"weight 'kernel' has shape \(3, 2, 3, 3\) in the file, but the "
                                                    r"layer expects \(5, 2, 3, 3\)"):
        wider.load_weights(tmp_path / "w.npz")
    with pytest.raises(saving.ModelFileError, match="use load_weights"):
        load_model(tmp_path / "w.npz")


def test_resume_equals_uninterrupted_training(tmp_path):
    """4 epochs in one go == 2 epochs, checkpoint, load, 2 more (same weights, bit for bit, on NumPy)."""
    x = rng.random((96, 5), dtype=np.float32)
    y = rng.integers(0, 3, 96)

    def new_model():
        model = Sequential(MODELS["dense_mlp"]())
        model.compile(gpunn.optimizers.Adam(ExponentialDecay(0.01, 3, 0.9)), "sparse_categorical_crossentropy")
        return model

    set_seed(5)
    straight = new_model()
    straight.fit(x, y, batch_size=16, epochs=4, verbose=0)

    set_seed(5)
    first = new_model()
    checkpoint = ModelCheckpoint(tmp_path / "ckpt-{epoch}.npz")
    first.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[checkpoint])
    assert sorted(os.listdir(tmp_path)) == ["ckpt-1.npz", "ckpt-2.npz"]

    set_seed(5)  # a new session
    resumed = load_model(tmp_path / "ckpt-2.npz")
    resumed.fit(x, y, batch_size=16, epochs=4, initial_epoch=resumed.epoch, verbose=0)
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_save_best_only(tmp_path):
    model, x, y = trained("reshape")
    checkpoint = ModelCheckpoint(tmp_path / "best.npz", monitor="loss", save_best_only=True)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[checkpoint])
    assert (tmp_path / "best.npz").exists() and checkpoint.best < np.inf


@saving.register_layer
class Scale(Layer):
    """A user's layer: y = factor * x."""

    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def forward(self, x, training=False):
        return self.factor * x

    def backward(self, dy):
        return self.factor * dy

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def test_registered_custom_layer_round_trips(tmp_path):
    model = Sequential([Dense(3, input_shape=(2,)), Scale(3.0)])
    model.save(tmp_path / "custom.npz")
    x = rng.random((4, 2), dtype=np.float32)
    np.testing.assert_array_equal(load_model(tmp_path / "custom.npz").predict(x), model.predict(x))


def rewrite_header(path, change):
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    header = json.loads(arrays["__gpunn__"].tobytes())
    change(header)
    arrays["__gpunn__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **arrays)


def test_bad_files_get_clear_errors(tmp_path):
    model, _, _ = trained("reshape")
    path = tmp_path / "m.npz"
    model.save(path)
    good = path.read_bytes()

    with pytest.raises(FileNotFoundError, match="No gpunn file at"):
        load_model(tmp_path / "missing.npz")
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(saving.ModelFileError, match="truncated or corrupt"):
        load_model(path)
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(saving.ModelFileError, match="not a gpunn file"):
        load_model(path)
    np.savez(path, weights=np.zeros(3))
    with pytest.raises(saving.ModelFileError, match="not a gpunn file"):
        load_model(path)

    path.write_bytes(good)
    rewrite_header(path, lambda h: h.update(format_version=99))
    with pytest.raises(saving.ModelFileError, match="newer gpunn \\(file format 99\\).*upgrade"):
        load_model(path)
    path.write_bytes(good)
    rewrite_header(path, lambda h: h["model"]["config"]["layers"][0].update(class_name="Mystery"))
    with pytest.raises(saving.ModelFileError, match="Unknown layer class 'Mystery'.*register_layer"):
        load_model(path)


class Payload:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("where", ["extra_entry", "header"])
def test_pickle_payload_is_refused_without_running(tmp_path, where):
    marker = tmp_path / "pwned"
    model, _, _ = trained("reshape")
    path = tmp_path / "evil.npz"
    model.save(path)
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    evil = np.empty(1, dtype=object)
    evil[0] = Payload(marker)
    arrays["__gpunn__" if where == "header" else "weights/evil/x"] = evil
    np.savez(path, **arrays)  # NumPy pickles object arrays when asked to save them
    with zipfile.ZipFile(path) as z:
        assert any(b"pwned" in z.read(n) for n in z.namelist())  # the payload really is in the file
    with pytest.raises(saving.ModelFileError, match="pickled Python objects.*refused"):
        load_model(path)
    assert not marker.exists()


def test_failed_saves_leave_the_old_file_untouched(tmp_path, monkeypatch):
    model, _, _ = trained("reshape")
    path = tmp_path / "m.npz"
    model.save(path)
    before = path.read_bytes()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.save(tmp_path / "no_such_dir" / "m.npz")

    def interrupted(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", interrupted)  # the write dies before the rename
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.npz"]

    readonly = tmp_path / "ro"
    readonly.mkdir()
    (readonly / "m.npz").write_bytes(before)
    readonly.chmod(0o500)
    try:
        if os.access(readonly, os.W_OK):  # root writes anywhere: make the folder refuse as a read-only one would
            def refuse(*args, **kwargs):
                raise PermissionError(13, "Permission denied")

            monkeypatch.setattr(saving.tempfile, "mkstemp", refuse)
        with pytest.raises(PermissionError, match="not writable"):
            model.save(readonly / "m.npz")
        assert (readonly / "m.npz").read_bytes() == before
    finally:
        readonly.chmod(0o700)


@pytest.mark.gpu
@pytest.mark.parametrize("save_on, load_on", [("cupy", "numpy"), ("numpy", "cupy")])
def test_cross_backend_round_trip(tmp_path, save_on, load_on):
    backend.set_backend(save_on)
    model, x, _ = trained("cnn")
    expected = model.predict(x)
    model.save(tmp_path / "m.npz")
    backend.set_backend(load_on)
    loaded = load_model(tmp_path / "m.npz")
    assert backend.get_array_module(loaded.layers[1].kernel) is backend.xp
    np.testing.assert_allclose(loaded.predict(x), expected, rtol=1e-5, atol=1e-6)


def test_resume_after_freezing_and_recompiling(tmp_path):
    """Freeze a layer, recompile with the same optimizer, save, load, go on == never saved (bit for bit)."""
    x = rng.random((64, 5), dtype=np.float32)
    y = rng.integers(0, 3, 64)

    def run(save_after_freezing):
        set_seed(2)
        model = Sequential([Dense(6, activation="relu", input_shape=(5,), name="base"), Dense(6, name="mid"),
                            Dense(3, activation="softmax", name="head")])
        optimizer = gpunn.optimizers.Adam(0.01)
        model.compile(optimizer, "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        model.layers[0].trainable = False
        model.compile(optimizer, "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=16, epochs=2, verbose=0)
        if save_after_freezing:
            model.save(tmp_path / "frozen.npz")
            set_seed(2)
            model = load_model(tmp_path / "frozen.npz")
            assert not model.layers[0].trainable
            assert sorted(model.optimizer.slots) == ["base/bias", "base/kernel", "head/bias", "head/kernel",
                                                     "mid/bias", "mid/kernel"]
        model.fit(x, y, batch_size=16, epochs=4, initial_epoch=2, verbose=0)
        return model.get_weights()

    for a, b in zip(run(False), run(True)):
        np.testing.assert_array_equal(a, b)


def test_optimizer_slots_saved_by_position_still_load(tmp_path):
    """Files written before slots were named ('optimizer/0/m') give slot i to the i-th trainable weight."""
    model, x, y = trained("reshape")
    path = tmp_path / "m.npz"
    model.save(path)
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    keys = model.trainable_keys
    arrays = {(f"optimizer/{keys.index(k.removeprefix('optimizer/').rsplit('/', 1)[0])}/{k.rsplit('/', 1)[1]}"
               if k.startswith("optimizer/") else k): v for k, v in arrays.items()}
    np.savez(path, **arrays)
    loaded = load_model(path)
    for key, slots in model.optimizer.slots.items():
        for name, value in slots.items():
            np.testing.assert_array_equal(host(loaded.optimizer.slots[key][name]), host(value))
    arrays["optimizer/7/m"] = np.zeros(3)
    np.savez(path, **arrays)
    with pytest.raises(saving.ModelFileError, match="optimizer slot optimizer/7/m of shape \\(3,\\) matches no weight"):
        load_model(path)


@pytest.mark.parametrize("optimizer", [gpunn.optimizers.Nadam(0.01), gpunn.optimizers.Adadelta(1.0),
                                       gpunn.optimizers.RMSprop(0.01, momentum=0.5, centered=True)])
def test_every_optimizer_resumes_exactly(tmp_path, optimizer):
    model, x, y = trained("reshape", optimizer)
    model.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    for fit in (model, loaded):
        set_seed(1)
        fit.fit(x, y, batch_size=8, epochs=3, initial_epoch=2, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_save_cleans_its_target_s_stale_temporaries_and_follows_the_umask(tmp_path):
    """A save killed mid-write leaves '.m.npz.<random>.tmp'; the next save of m.npz removes it (not others')."""
    model, _, _ = trained("reshape")
    stale = [tmp_path / ".m.npz.k1ll3d.tmp", tmp_path / ".m.npz.x7q2ab.tmp"]
    other = tmp_path / ".other.npz.abc123.tmp"
    for path in stale + [other]:
        path.write_bytes(b"\0" * 1000)
    old = os.umask(0o027)
    try:
        model.save(tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert sorted(os.listdir(tmp_path)) == [".other.npz.abc123.tmp", "m.npz"]
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o640
