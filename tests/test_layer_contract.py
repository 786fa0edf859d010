"""What every layer promises, checked on every layer: backward never modifies its inputs."""

import numpy as np
import pytest

import gpunn.backend as backend
from gpunn import layers
from gpunn.layers import (GRU, LSTM, Activation, Add, AdditiveAttention, Attention, Average, AveragePooling1D,
                          AvgPool2D, BatchNormalization, Bidirectional, Concatenate, Conv1D, Conv2D, Dense, Dot, Dropout,
                          Embedding, Flatten, GlobalAveragePooling1D, Maximum, Minimum, Multiply, Subtract,
                          GlobalAveragePooling2D, LayerNormalization, MaxPool2D, MaxPooling1D, Maxout, MultiHeadAttention,
                          PositionalEncoding, PReLU, RandomCrop, RandomFlip, RandomRotation, RandomTranslation,
                          Reshape, Residual, SimpleRNN, TimeDistributed, TransformerDecoder, TransformerEncoder,
                          UnitNormalization, ZeroPadding2D)

IMAGES, SEQUENCES = (2, 2, 5, 5), (2, 6, 4)

# (layer factory, shape of the input batch); "ids": a (2, 6) batch of token ids; a list of shapes: a merge
# layer's list of inputs; a dict: the shapes of several arguments by name.
CASES = {
    "dense": (lambda: Dense(3, activation="tanh"), (4, 5)),
    "activation": (lambda: Activation("softmax"), (4, 5)),
    "dropout": (lambda: Dropout(0.5), (4, 5)),
    "flatten": (lambda: Flatten(), (2, 3, 4)),
    "reshape": (lambda: Reshape((4, -1)), (2, 3, 4)),
    "prelu": (lambda: PReLU(alpha_initializer="random_uniform"), IMAGES),
    "maxout": (lambda: Maxout(2), (4, 6)),
    "conv2d": (lambda: Conv2D(3, 3, padding="same", activation="relu"), IMAGES),
    "conv2d_channels_last": (lambda: Conv2D(3, 3, data_format="channels_last"), (2, 5, 5, 2)),
    "conv1d": (lambda: Conv1D(3, 3, padding="causal"), SEQUENCES),
    "max_pooling1d": (lambda: MaxPooling1D(2), SEQUENCES),
    "average_pooling1d": (lambda: AveragePooling1D(2, padding="same"), SEQUENCES),
    "zero_padding2d": (lambda: ZeroPadding2D(1), IMAGES),
    "max_pool2d": (lambda: MaxPool2D(2, padding="same"), IMAGES),
    "avg_pool2d": (lambda: AvgPool2D(2, padding="same"), IMAGES),
    "global_average_pooling2d": (lambda: GlobalAveragePooling2D(), IMAGES),
    "random_flip": (lambda: RandomFlip(), IMAGES),
    "random_translation": (lambda: RandomTranslation(0.2, 0.2), IMAGES),
    "random_rotation": (lambda: RandomRotation(0.1, fill_mode="constant"), IMAGES),
    "random_crop": (lambda: RandomCrop(3, 4), IMAGES),
    "unit_normalization": (lambda: UnitNormalization(), (4, 5)),
    "batch_normalization": (lambda: BatchNormalization(), (4, 3)),
    "embedding": (lambda: Embedding(9, 4), "ids"),
    "simple_rnn": (lambda: SimpleRNN(3, return_sequences=True), SEQUENCES),
    "simple_rnn_state": (lambda: SimpleRNN(3, return_state=True), SEQUENCES),
    "gru": (lambda: GRU(3, return_state=True), SEQUENCES),
    "gru_reset_before": (lambda: GRU(3, reset_after=False, return_sequences=True), SEQUENCES),
    "lstm": (lambda: LSTM(3, return_sequences=True), SEQUENCES),
    "lstm_state": (lambda: LSTM(3, return_state=True), SEQUENCES),
    "bidirectional": (lambda: Bidirectional(LSTM(3, return_sequences=True)), SEQUENCES),
    "time_distributed": (lambda: TimeDistributed(Dense(2)), SEQUENCES),
    "multi_head_attention": (lambda: MultiHeadAttention(2, 4, use_causal_mask=True), SEQUENCES),
    "additive_attention": (lambda: AdditiveAttention(), SEQUENCES),
    "additive_attention_units": (lambda: AdditiveAttention(units=3), SEQUENCES),
    "attention": (lambda: Attention(use_scale=True), SEQUENCES),
    "layer_normalization": (lambda: LayerNormalization(), SEQUENCES),
    "positional_encoding": (lambda: PositionalEncoding(), SEQUENCES),
    "residual": (lambda: Residual([Dense(4), LayerNormalization()]), SEQUENCES),
    "transformer_encoder": (lambda: TransformerEncoder(2, 4, 8, dropout=0.2), SEQUENCES),
    "transformer_decoder": (lambda: TransformerDecoder(2, 4, 8, dropout=0.2), {"x": SEQUENCES,
                                                                                "encoder_outputs": (2, 5, 3)}),
    "global_average_pooling1d": (lambda: GlobalAveragePooling1D(), SEQUENCES),
    "add": (lambda: Add(), [(4, 3), (4, 1), (4, 3)]),
    "subtract": (lambda: Subtract(), [(4, 3), (4, 3)]),
    "multiply": (lambda: Multiply(), [(4, 3), (4, 3)]),
    "average": (lambda: Average(), [(4, 3), (4, 3)]),
    "maximum": (lambda: Maximum(), [(4, 3), (4, 3)]),
    "minimum": (lambda: Minimum(), [(4, 3), (4, 3)]),
    "concatenate": (lambda: Concatenate(axis=1), [SEQUENCES, (2, 3, 4)]),
    "dot": (lambda: Dot(axes=2, normalize=True), [SEQUENCES, (2, 5, 4)]),
}


def test_cases_cover_every_layer():
    used = {type(layer) for make, _ in CASES.values() for layer in [make(), *make().sublayers]}
    every = {getattr(layers, name) for name in layers.__all__ if name[0].isupper()} - {layers.Layer}  # aliases: same classes
    assert {cls.__name__ for cls in every - used} == set()


def read_only(a, xp):
    """On the device; NumPy arrays are also made read-only, so a write raises where it happens."""
    a = xp.asarray(a)
    if xp is np:
        a.flags.writeable = False
    return a


@pytest.mark.parametrize("name", sorted(CASES))
def test_backward_never_modifies_its_inputs(name, xp):
    """forward(x) and backward(dy) with x, dy and the state gradients kept: nothing may write to them."""
    make, shape = CASES[name]
    rng = np.random.default_rng(0)
    if shape == "ids":
        xs = [rng.integers(0, 9, (2, 6))]
    else:
        shapes = list(shape.values()) if isinstance(shape, dict) else shape if isinstance(shape, list) else [shape]
        xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    xs = [read_only(a, xp) for a in xs]
    layer = make()
    if isinstance(shape, dict):
        out = layer(**dict(zip(shape, xs)), training=True)
    else:
        out = layer(xs if isinstance(shape, list) else xs[0], training=True)
    outs = out if isinstance(out, list) else [out]
    dys = [read_only(rng.standard_normal(o.shape).astype(np.float32), xp) for o in outs]
    kept = [backend.to_numpy(a).copy() for a in [*xs, *dys]]
    layer.backward(dys if isinstance(out, list) else dys[0])
    for before, after in zip(kept, [*xs, *dys]):
        np.testing.assert_array_equal(before, backend.to_numpy(after))


def test_initial_state_gradients_leave_their_inputs_alone(xp):
    rng = np.random.default_rng(1)
    x, h0, c0 = (read_only(rng.standard_normal(s).astype(np.float32), xp) for s in (SEQUENCES, (2, 3), (2, 3)))
    layer = LSTM(3, return_sequences=True)
    y = layer(x, initial_state=[h0, c0])
    dy = read_only(rng.standard_normal(y.shape).astype(np.float32), xp)
    kept = [backend.to_numpy(a).copy() for a in (x, h0, c0, dy)]
    layer.backward_call(dy, {"x": x, "initial_state": [h0, c0]})
    for before, after in zip(kept, (x, h0, c0, dy)):
        np.testing.assert_array_equal(before, backend.to_numpy(after))
