"""Checking a model's data before any work is done: each error names what was expected and what was received.

:func:`check_data` turns the caller's ``x`` (an array, or a list or dict of arrays for a model
with several inputs) and ``y`` (likewise, per output) into lists of arrays, one per input and
one per output, after checking every one against the model: the samples' shapes, the
values (NaN, labels out of range), and what each output's loss expects.
"""

import numpy as np

import gpunn.backend as backend
from gpunn.layers.core import Dense
from gpunn.models.graph import InputLayer
from gpunn.utils.data import CLASS_NAMES_HINT, non_numeric


def check_data(model, x, y, what="x"):
    """([array per input], [array per output] or None): checked, converted, and the model built if needed."""
    if x is None:
        raise ValueError(f"{what}: no input data was given")
    raw = model._flatten_data(x, "inputs") if model.built else [x]
    xs = [as_float_array(a, what) for a in raw]
    for a in xs:
        if a.ndim < 2:
            raise ValueError(f"{what}: expected a batch of samples with shape (samples, ...); received shape {a.shape}")
        if len(a) == 0:
            raise ValueError(f"{what}: expected at least one sample; received an empty array of shape {a.shape}")
        if len(a) != len(xs[0]):
            raise ValueError(f"{what}: the inputs hold {[len(b) for b in xs]} samples; they must have the same number")
    if not model.built:
        model.build(xs[0].shape[1:])
    for a, tensor, name in zip(xs, model.inputs, model.input_names):
        expected = tensor.sample_shape
        if len(a.shape) - 1 != len(expected) or any(e is not None and e != d for e, d in zip(expected, a.shape[1:])):
            raise ValueError(f"{_reader(model, tensor)} expects samples of shape {expected}; received {what}"
                             f"{'' if len(xs) == 1 else f' for input {name!r}'} with samples of shape {a.shape[1:]} "
                             f"(array shape {a.shape}).{_channels_hint(expected, a)}")
        for node in model.nodes:
            if any(t is tensor for t in node.inputs):
                node.layer.validate_input(a)
    if y is None:
        return xs, None
    raw = model._flatten_data(y, "outputs")
    ys = []
    for target, head, tensor in zip(raw, model.heads, model.outputs):
        if target is None:
            ys.append(None)
            continue
        target = np.asarray(target) if backend.get_array_module(target) is np else target
        if len(target) != len(xs[0]):
            raise ValueError(f"{what}: x has {len(xs[0])} samples but y has {len(target)}; they must have the same "
                             f"length")
        ys.append(check_targets(model, target, head, tensor.sample_shape, what))
    return xs, ys


def check_targets(model, y, head, output_shape, what):
    if head.loss is None:  # an output no loss trains: its targets are not read
        return y
    xp = backend.get_array_module(y)
    output_shape = tuple(d if d is not None else y.shape[1 + i] if y.ndim > 1 + i else 0  # a sequence of any length:
                         for i, d in enumerate(output_shape))                             # as long as its targets
    k = output_shape[-1]
    name = head.loss.name
    where = "" if len(model.heads) == 1 else f" for output {head.name!r}"
    if y.dtype.kind not in "fiub":
        raise ValueError(f"{what}: the targets y{where} hold {non_numeric(y)}; expected numbers: class indices "
                         f"0..{k - 1}, one-hot rows or values; {CLASS_NAMES_HINT}")
    if y.dtype.kind == "f" and not bool(xp.isfinite(y).all()):
        raise ValueError(f"{what}: y{where} contains NaN or infinite values")
    if head.loss.takes_labels:  # one class label per sample, whatever the output's shape (the triplet loss)
        if y.size != len(y):
            raise ValueError(f"{what}: loss '{name}' takes one class label per sample; received y{where} of shape "
                             f"{y.shape}")
        return y.reshape(len(y)).astype(np.int64, copy=False)
    one_per_sample = y.size // len(y) == (1 if name == "sparse_categorical_crossentropy" else k)
    if one_per_sample and int(np.prod(output_shape[:-1])) > 1:
        raise ValueError(f"{what}: the model outputs samples of shape {output_shape} but y{where} has one target per "
                         f"sample (y of shape {y.shape}){unflattened_hint(model)}")
    if name == "sparse_categorical_crossentropy":
        if y.dtype.kind == "f" and not bool((y == xp.round(y)).all()):
            raise ValueError(f"{what}: loss '{name}' takes integer class labels; y{where} holds non-integers "
                             f"(one-hot targets go with loss='categorical_crossentropy')")
        if y.size != len(y) * int(np.prod(output_shape[:-1])):
            raise ValueError(f"{what}: loss '{name}' expects one integer label per sample of shape "
                             f"{output_shape[:-1]}; received y{where} of shape {y.shape}")
        ignored = getattr(head.loss, "ignore_class", None)  # a label that is padding, not a class
        labels = y if ignored is None else y[y != ignored]
        lo, hi = (int(labels.min()), int(labels.max())) if labels.size else (0, 0)
        if lo < 0 or hi >= k:
            raise ValueError(f"{what}: labels must be in [0, {k}) for loss '{name}' on a model with {k} outputs; "
                             f"received labels from {lo} to {hi}{where}"
                             f"{'' if ignored is None else f' (besides ignore_class={ignored})'}")
        return y.astype(np.int64, copy=False)
    if name == "categorical_crossentropy" and tuple(y.shape[1:]) != tuple(output_shape):
        hint = " (integer labels: use loss='sparse_categorical_crossentropy' or gpunn.utils.to_categorical)" \
            if y.ndim == 1 else ""
        raise ValueError(f"{what}: loss '{name}' expects one-hot targets of shape (samples, {k}) to match the "
                         f"model's output {tuple(output_shape)}; received y{where} of shape {y.shape}{hint}")
    if y[0].size != int(np.prod(output_shape)):
        raise ValueError(f"{what}: the model's output has shape {tuple(output_shape)} but y{where} has samples of "
                         f"shape {tuple(y.shape[1:])}")
    if name == "binary_crossentropy" and (float(y.min()) < 0 or float(y.max()) > 1):
        raise ValueError(f"{what}: loss '{name}' expects targets in [0, 1]; received values from "
                         f"{float(y.min())} to {float(y.max())}{where}")
    return y.astype(np.float32 if xp is np else y.dtype, copy=False)


def unflattened_hint(model):
    """Name the first Dense layer that receives samples with several axes, and what to put before it."""
    layers = [node.layer for node in model.nodes if not isinstance(node.layer, InputLayer)]
    for before, layer in zip([None] + layers, layers):
        if isinstance(layer, Dense) and len(layer.input_shape) > 1:
            fix = "give the recurrent layer before it return_sequences=False" if getattr(
                before, "return_sequences", False) else "put Flatten() (or a global pooling) before it"
            return (f": layer '{layer.name}' receives samples of shape {layer.input_shape} and acts on their last "
                    f"axis only; {fix}")
    return ""


def _reader(model, tensor):
    """'Layer 'conv2d'' for the first layer that reads an input (the familiar Sequential message), else the input."""
    readers = [node.layer for node in model.nodes if any(t is tensor for t in node.inputs)]
    return f"Layer '{readers[0].name}'" if len(readers) == 1 else f"Input '{tensor.node.layer.name}'"


def _channels_hint(expected, a):
    if len(expected) == 3 and a.ndim == 4 and a.shape[-1] == expected[0]:
        return (" The model is channels-first (N, C, H, W), gpunn's default; this looks channels-last "
                "(N, H, W, C): build the model with data_format='channels_last' on its image layers (or "
                "gpunn.config.set_image_data_format('channels_last') first), or feed x.transpose(0, 3, 1, 2)")
    return ""


def as_float_array(x, what):
    """x as a float32 array (NumPy or CuPy), refusing NaN and infinities."""
    xp = backend.get_array_module(x)
    x = xp.asarray(x)
    if x.dtype.kind not in "fiub":
        raise ValueError(f"{what}: expected a numeric array; received dtype {x.dtype}")
    if x.dtype.kind == "f":
        bad = int((~xp.isfinite(x)).sum())
        if bad:
            raise ValueError(f"{what}: the input holds {bad} NaN or infinite values; clean or impute them before training")
    return x.astype(np.float32, copy=False)
