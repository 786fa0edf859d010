"""Saving and loading models: one ``.npz`` file, no pickle, written atomically.

A gpunn file is a NumPy ``.npz`` archive (a zip of ``.npy`` arrays) holding

- ``__gpunn__``: a JSON header, stored as bytes -- the format and its version,
  the architecture (the model's class and ``get_config()``: a Sequential's
  layers, or a graph model's layers and calls, see :mod:`gpunn.models.serial`),
  the compile settings, the epoch counter and the optimizer's step counter;
- ``weights/<layer>/<weight>``: every weight, as a plain array;
- ``optimizer/<layer>/<weight>/<slot>``: the optimizer's running averages, when
  saved, under the name of the weight they belong to (frozen layers' too).

Loading reads arrays with ``allow_pickle=False`` and the header with
``json.loads``: nothing in a file can run code. Arrays come back as NumPy and
are moved to the *current* backend, so a model saved on a GPU opens on a laptop.

Writes go to a temporary file in the same folder, are flushed to disk, then
renamed over the target: an interrupted save leaves the previous file intact.
A save killed outright leaves its temporary behind (``.<name>.<random>.tmp``);
the next save to the same target removes it. Saved files get the permissions
the umask gives, like any file the user writes.

In data-parallel training (:mod:`gpunn.distributed`) every rank holds the same model and only
rank 0 writes; the other ranks' saves return at once.
"""

import glob
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

import gpunn.backend as backend
from gpunn import distributed
from gpunn import layers as layers_module
from gpunn import losses, optimizers

FORMAT_VERSION = 2  # 2: the model's class is named (Sequential or Model); 1: always a Sequential
HEADER = "__gpunn__"

_custom_layers = {}


class ModelFileError(ValueError):
    """A file that is not a readable gpunn model (missing, corrupt, foreign, or from a newer gpunn)."""


def register_layer(cls):
    """Make a custom layer class loadable: use as a decorator, ``@gpunn.saving.register_layer``.

    The class must accept its own ``get_config()`` as keyword arguments.
    """
    if not (isinstance(cls, type) and issubclass(cls, layers_module.Layer)):
        raise TypeError(f"register_layer expects a Layer subclass; received {cls!r}")
    _custom_layers[cls.__name__] = cls
    return cls


def layer_classes():
    """Every class a file may name: gpunn's layers, models (a model may be a layer of another) and the registered ones."""
    from gpunn import models

    builtin = {name: getattr(layers_module, name) for name in layers_module.__all__ if name[0].isupper()}
    builtin.update({cls.__name__: cls for cls in (models.InputLayer, models.Model, models.Sequential)})
    return {**builtin, **_custom_layers}


def layer_from_config(entry):
    """A layer from ``{'class_name': ..., 'config': {...}}``, as written by ``Sequential.get_config``."""
    classes = layer_classes()
    name = entry.get("class_name")
    if name not in classes:
        raise ModelFileError(f"Unknown layer class '{name}'. If it is your own layer, register it before loading: "
                             f"decorate the class with @gpunn.saving.register_layer")
    try:
        return classes[name].from_config(entry["config"])
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"Layer class '{name}' could not be rebuilt from its saved config: {e}") from None


# --- writing -------------------------------------------------------------------------


def save_model(model, path, include_optimizer=True):
    """Write the architecture, weights and (by default) optimizer state of ``model`` to ``path``."""
    if not model.built:
        model.build()
    header = {
        "format": "gpunn-model",
        "format_version": FORMAT_VERSION,
        "model": {"class_name": type(model).__name__, "config": model.get_config()},
        "input_shape": _jsonable(model.input_shape),
        "epoch": model.epoch,
        "weight_layers": _weight_layers(model),
        "compile": None,
    }
    arrays = _weight_arrays(model)
    if model._compile_args is not None:
        loss, metrics, loss_weights = model._compile_args
        header["compile"] = {"optimizer": model.optimizer.get_config(), "loss": _names(loss),
                             "metrics": _names(metrics), "loss_weights": loss_weights}
        if include_optimizer:
            header["optimizer_iterations"] = model.optimizer.iterations
            for key, slots in model.optimizer.slots.items():
                for name, value in slots.items():
                    arrays[f"optimizer/{key}/{name}"] = backend.to_numpy(value)
    _write(path, header, arrays)


def save_weights(model, path):
    """Write the weights alone, keyed by layer and weight name."""
    if not model.built:
        model.build()
    _write(path, {"format": "gpunn-weights", "format_version": FORMAT_VERSION, "weight_layers": _weight_layers(model)},
           _weight_arrays(model))


def _names(spec):
    """A loss or metric setting (names, objects, lists or dicts of them) as JSON: objects by their name -- a loss
    with settings of its own (``ignore_class``, a triplet loss's margin) as Keras writes objects,
    ``{"class_name", "config"}``."""
    if isinstance(spec, dict):
        return {k: _names(v) for k, v in spec.items()}
    if isinstance(spec, (list, tuple)):
        return [_names(v) for v in spec]
    if isinstance(spec, losses.Loss) and any(v is not None for k, v in spec.get_config().items() if k != "name"):
        return {"class_name": type(spec).__name__, "config": spec.get_config()}
    return spec if spec is None or isinstance(spec, str) else spec.name


def _losses(spec):
    """The losses of a saved compile setting: what :func:`_names` wrote, with each loss's config made a loss again."""
    if isinstance(spec, dict) and set(spec) == {"class_name", "config"}:
        return losses.get(spec["config"])
    if isinstance(spec, dict):
        return {k: _losses(v) for k, v in spec.items()}
    return [_losses(v) for v in spec] if isinstance(spec, list) else spec


def _jsonable(shape):
    return [_jsonable(s) for s in shape] if isinstance(shape, list) else list(shape)


def _weight_layers(model):
    """The names of the layers that have weights, in order: weights are matched by position."""
    return [layer.name for layer in model.layers if layer.weight_refs()]


def _weight_arrays(model):
    return {f"weights/{layer.name}/{key}": value for layer in model.layers
            for key, value in zip(layer.weight_keys(), layer.get_weights())}


def _write(path, header, arrays):
    if not distributed.is_main_process():  # data-parallel: rank 0 writes what every rank holds
        return
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"Cannot save to {path}: the folder {folder} does not exist")
    buffer = io.BytesIO()
    np.savez(buffer, **{HEADER: np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}, **arrays)
    for stale in folder.glob(f".{glob.escape(path.name)}.*.tmp"):  # left by an earlier save of path, killed mid-write
        stale.unlink(missing_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise PermissionError(f"Cannot save to {path}: the folder {folder} is not writable ({e.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private (0600); a saved model is an ordinary file
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _umask():
    """The process's umask: read by setting it and putting it back, the only portable way."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- reading -------------------------------------------------------------------------


def _read(path, formats):
    """(header, {name: numpy array}) from a gpunn file holding one of ``formats``, refusing anything else."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"expected a gpunn file (.npz, written by model.save or save_weights); received the "
                                f"folder {path}")
    if not path.is_file():
        raise FileNotFoundError(f"No gpunn file at {path}")
    if not zipfile.is_zipfile(path):  # np.load would otherwise try the file as a pickle
        raise ModelFileError(f"{path} is not a gpunn file: not a NumPy .npz archive (truncated or corrupt?)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except zipfile.BadZipFile as e:
        raise ModelFileError(f"{path} is not a gpunn file: truncated or corrupt archive ({e})") from None
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise ModelFileError(f"{path} holds pickled Python objects, which gpunn never writes; refused without "
                                 f"loading them (they could run code)") from None
        raise ModelFileError(f"{path} is not a gpunn file: {e}") from None
    except (OSError, EOFError) as e:
        raise ModelFileError(f"{path} is not a gpunn file: truncated or corrupt ({e})") from None
    if HEADER not in arrays:
        raise ModelFileError(f"{path} is a NumPy archive but not a gpunn file (no '{HEADER}' header)")
    try:
        header = json.loads(arrays.pop(HEADER).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path} has a corrupt gpunn header ({e})") from None
    version = header.get("format_version")
    if not isinstance(version, int):
        raise ModelFileError(f"{path} has a gpunn header without a format version")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path} was written by a newer gpunn (file format {version}); this gpunn reads "
                             f"format {FORMAT_VERSION} and older: upgrade gpunn to open it")
    if header.get("format") not in formats:
        hint = " (use load_weights for weights-only files)" if header.get("format") == "gpunn-weights" else ""
        raise ModelFileError(f"{path} holds '{header.get('format')}', not {' or '.join(map(repr, formats))}{hint}")
    return header, arrays


def load_model(path, compile=True):
    """Rebuild the model saved at ``path`` on the current backend, compiled again if it was compiled."""
    from gpunn.models import Model, Sequential

    header, arrays = _read(path, ("gpunn-model",))
    entry = header["model"] if header["format_version"] >= 2 else {"class_name": "Sequential", "config": header["model"]}
    classes = {"Sequential": Sequential, "Model": Model}
    if entry.get("class_name") not in classes:
        raise ModelFileError(f"{path} holds a model of class {entry.get('class_name')!r}; gpunn reads "
                             f"{' and '.join(classes)}")
    try:
        model = classes[entry["class_name"]].from_config(entry["config"])
    except (TypeError, ValueError, KeyError) as e:
        raise ModelFileError(f"{path}: the saved architecture could not be rebuilt: {e}") from None
    if isinstance(model, Sequential):
        model.build(tuple(header["input_shape"]))
    _set_weights(model, header, arrays, path)
    model.epoch = int(header.get("epoch", 0))
    settings = header.get("compile")
    if compile and settings:
        model.compile(optimizers.get(settings["optimizer"]), _losses(settings["loss"]), settings["metrics"],
                      settings.get("loss_weights"))
        if "optimizer_iterations" in header:
            _set_optimizer_state(model, header["optimizer_iterations"], arrays, path)
    return model


def load_weights(model, path):
    """Load weights saved by :func:`save_weights` (or a whole model file) into ``model``, layer by layer."""
    header, arrays = _read(path, ("gpunn-weights", "gpunn-model"))
    if not model.built:
        model.build()
    _set_weights(model, header, arrays, path)


def _set_weights(model, header, arrays, path):
    """Give the i-th layer with weights in the file to the i-th in the model, checking every shape first."""
    saved = header.get("weight_layers", [])
    layers = [layer for layer in model.layers if layer.weight_refs()]
    if len(saved) != len(layers):
        raise ModelFileError(f"{path} holds weights for {len(saved)} layers {saved}; the model has {len(layers)} "
                             f"layers with weights {[layer.name for layer in layers]}")
    values = {}
    for saved_name, layer in zip(saved, layers):
        for name, (owner, attr) in zip(layer.weight_keys(), layer.weight_refs()):
            key = f"weights/{saved_name}/{name}"
            if key not in arrays:
                raise ModelFileError(f"{path} has no weight '{name}' for layer '{layer.name}' (saved as '{saved_name}')")
            current = getattr(owner, attr)
            if arrays[key].shape != current.shape:
                raise ModelFileError(f"{path}: layer '{layer.name}' weight '{name}' has shape {arrays[key].shape} "
                                     f"in the file, but the layer expects {tuple(current.shape)}")
            values.setdefault(layer.name, []).append(arrays[key])
    for layer in layers:  # only once everything matched: a failed load changes nothing
        layer.set_weights(values[layer.name])


def _set_optimizer_state(model, iterations, arrays, path):
    """Give each weight its saved running averages, found by the weight's name.

    Files from before names were used key slots by position among the trainable weights ('optimizer/0/m').
    """
    weights = {key: getattr(owner, n) for key, (owner, n) in zip(model.weight_keys(), model.weight_refs())}
    by_position = model.trainable_keys
    slots = {}
    for entry, value in arrays.items():
        if entry.startswith("optimizer/"):
            key, name = entry.removeprefix("optimizer/").rsplit("/", 1)
            if key.isdigit() and int(key) < len(by_position):
                key = by_position[int(key)]
            if key not in weights or value.shape != weights[key].shape:
                raise ModelFileError(f"{path}: optimizer slot {entry} of shape {value.shape} matches no weight of the "
                                     f"model (its weights: {', '.join(weights)})")
            slots.setdefault(key, {})[name] = backend.to_device(value, dtype=weights[key].dtype)
    model.optimizer.iterations = int(iterations)
    model.optimizer.slots = slots
