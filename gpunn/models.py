"""Sequential: a stack of layers, trained with mini-batch gradient descent.

One training step is the course's loop, written out in :meth:`Sequential.train_step`::

    A = forward(X)                  # each layer caches what it needs
    J = loss(A, Y)                  # + the weight penalties
    dA = dJ/dA                      # the loss's gradient (1/m inside)
    backward(dA)                    # each layer fills its grads and passes dX down
    optimizer.apply(W, dW, keys)    # W <- W - lr * (something built from dW), per weight

``fit`` runs that step over shuffled mini-batches for a number of epochs. Array
data is moved to the device once, before the first epoch, and stays there (a
generator's or a PyDataset's batches are moved as they come: see
:mod:`gpunn.data_adapters`); losses and accuracies are summed on the device and
read back only when the progress bar is redrawn, so a GPU is never kept waiting
for Python.
"""

import warnings

import numpy as np

import gpunn.backend as backend
from gpunn import data_adapters
from gpunn import losses as losses_module
from gpunn import metrics as metrics_module
from gpunn import optimizers as optimizers_module
from gpunn import saving
from gpunn.callbacks import Callback, History
from gpunn.data_adapters import check_int
from gpunn.layers.base import Layer, layer_config
from gpunn.layers.core import Dense
from gpunn.utils.data import CLASS_NAMES_HINT, non_numeric
from gpunn.utils.progress import Progress, check_verbose


class Sequential:
    """A linear stack of layers.

    Example:
        >>> model = Sequential()
        >>> model.add(Dense(64, activation="relu", input_shape=(784,)))
        >>> model.add(Dense(10, activation="softmax"))
        >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        >>> history = model.fit(x_train, y_train, batch_size=128, epochs=5, validation_split=0.1)
    """

    def __init__(self, layers=None, name="sequential"):
        self.name = name
        self.layers = []
        self.built = False
        self.optimizer = None
        self.loss = None
        self.metrics = []
        self.stop_training = False
        self.epoch = 0  # epochs completed, saved with the model so that training can resume
        self._fused_activation = None
        for layer in layers or []:
            self.add(layer)

    # --- building --------------------------------------------------------------
    def add(self, layer):
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a gpunn layer; received {layer!r}")
        if any(existing.name == layer.name for existing in self.layers):
            raise ValueError(f"Sequential '{self.name}' already has a layer named '{layer.name}'; layer names must be unique")
        self.layers.append(layer)
        self.built = False
        if self.layers[0].input_shape is not None:  # the input shape is known: build now, as Keras does
            try:
                self.build()
            except ValueError:
                self.layers.pop()  # a layer that cannot take the shape it would receive is not added
                raise

    def build(self, input_shape=None):
        """Create every layer's weights, inferring each layer's input shape from the one before."""
        if not self.layers:
            raise ValueError(f"Sequential '{self.name}' has no layers; add some before building or training it")
        shape = input_shape or self.layers[0].input_shape
        if shape is None:
            raise ValueError(f"Sequential '{self.name}' does not know its input shape: give the first layer "
                             f"input_shape=... or call fit/predict, which infer it from the data")
        self.input_shape = tuple(shape)
        for layer in self.layers:
            if not layer.built:
                layer.build(shape)
            elif tuple(layer.input_shape) != tuple(shape):
                raise ValueError(f"Layer '{layer.name}' was built for samples of shape {layer.input_shape} "
                                 f"but receives samples of shape {tuple(shape)}")
            shape = layer.compute_output_shape(shape)
        self.output_shape = tuple(shape)
        self.built = True
        if self.loss is not None:
            self._resolve_metrics()

    # --- forward and backward ------------------------------------------------------
    def forward(self, x, training=False):
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    def backward(self, dy, input_grad=True):
        """Backpropagate dL/dA of the output through every layer; returns dL/dX (None if not input_grad)."""
        self.layers[0].needs_input_grad = input_grad
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        for layer in self.layers:
            layer.add_regularization_grads()
        return dy

    def trainable_weights(self):
        return [w for layer in self.layers for w in layer.trainable_weights]

    def trainable_grads(self):
        return [g for layer in self.layers for g in layer.trainable_grads]

    def trainable_keys(self):
        """'<layer>/<weight>' for each of :meth:`trainable_weights`: the names the optimizer keeps its state under."""
        return [f"{layer.name}/{key}" for layer in self.layers for key in layer.trainable_keys]

    # --- compiling -------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None):
        """Choose the optimizer, the loss and the metrics to report.

        When the last layer's activation is softmax (or sigmoid) and the loss is the
        matching cross-entropy, the two are fused: the loss is computed from the
        logits and its gradient dZ = (A - Y) / m goes straight to the last layer.
        """
        if loss is None:
            raise ValueError("compile needs a loss, e.g. loss='categorical_crossentropy'; valid losses are: "
                             + ", ".join(losses_module.LOSSES))
        self.optimizer = optimizers_module.get(optimizer)
        self.loss = losses_module.get(loss)
        self._metric_specs = list(metrics or [])
        for name in self._metric_specs:  # an unknown name fails here, not mid-training
            metrics_module.get(name, self.loss, (2,))
        if self._fused_activation is not None:
            self._fused_activation.fused = False
        self._fused_activation = None
        last = getattr(self.layers[-1], "activation", None) if self.layers else None
        if last is not None and last.name == self.loss.fuses_with:
            last.fused = True
            self._fused_activation = last
        self.metrics = []
        if self.built:
            self._resolve_metrics()

    def _resolve_metrics(self):
        self.metrics = [metrics_module.get(m, self.loss, self.output_shape) for m in self._metric_specs]

    def compute_loss(self, y_pred, y_true, sample_weight=None):
        """J = data loss (each example's share weighted by its sample weight) + weight penalties (0-d, on the device)."""
        act = self._fused_activation
        if act is not None:
            loss = self.loss.forward_fused(act.z, y_pred, y_true, sample_weight)
        else:
            loss = self.loss.forward(y_pred, y_true, sample_weight)
        return loss + sum(layer.regularization_loss() for layer in self.layers)

    def loss_gradient(self):
        """dJ/dA of the last layer's output -- or dJ/dZ when the activation is fused."""
        return self.loss.backward_fused() if self._fused_activation is not None else self.loss.backward()

    def train_step(self, x, y, sample_weight=None):
        """One step of gradient descent on a batch; returns the loss and the predictions."""
        y_pred = self.forward(x, training=True)
        loss = self.compute_loss(y_pred, y, sample_weight)
        self.backward(self.loss_gradient(), input_grad=False)
        self.optimizer.apply(self.trainable_weights(), self.trainable_grads(), self.trainable_keys())
        return loss, y_pred

    # --- training and inference -------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            steps_per_epoch=None, validation_steps=None, **kwargs):
        """Train for ``epochs`` epochs of mini-batch gradient descent; returns a :class:`History`.

        ``x`` and ``y`` are arrays (``batch_size`` samples a batch, 32 by default), or ``x`` is a
        generator or a :class:`gpunn.utils.PyDataset` of batches ``(x, y)`` or ``(x, y, sample_weight)``
        (``steps_per_epoch`` batches an epoch). ``sample_weight`` (one per sample) or ``class_weight``
        (``{class: weight}``) scale each sample's share of the loss; the metrics stay unweighted, as in
        Keras. ``verbose``: see :mod:`gpunn.utils.progress`.
        """
        if "nb_epoch" in kwargs:
            warnings.warn("fit(nb_epoch=...) is the old Keras 1 spelling; use epochs=...", DeprecationWarning, stacklevel=2)
            epochs = kwargs.pop("nb_epoch")
        if kwargs:
            raise TypeError(f"fit() got unexpected keyword arguments: {', '.join(kwargs)}")
        self._check_compiled("fit")
        check_int("epochs", epochs, minimum=0)
        check_int("initial_epoch", initial_epoch, minimum=0)
        check_verbose(verbose)
        (x, y, sample_weight), split = data_adapters.split_validation(x, y, sample_weight, validation_split)
        train = data_adapters.adapt(self, x, y, sample_weight, class_weight, batch_size, shuffle, steps_per_epoch,
                                    steps_name="steps_per_epoch")
        val = None
        if split is not None or validation_data is not None:
            x_val, y_val, w_val = split or data_adapters.unpack_validation(validation_data)
            val = data_adapters.adapt(self, x_val, y_val, w_val, None, None if data_adapters.is_batches(x_val) else
                                      batch_size, steps=validation_steps, what="validation_data",
                                      steps_name="validation_steps")

        history = History()
        callbacks = list(callbacks or []) + [history]  # last, so it records what the others add to the logs
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be gpunn.callbacks.Callback objects; received {cb!r}")
            cb.set_model(self)
            cb.set_params({"verbose": verbose, "epochs": epochs, "steps": train.steps})
            cb.on_train_begin()
        self.stop_training = False

        for epoch in range(initial_epoch, epochs):
            backend.reseed(epoch)
            for cb in callbacks:
                cb.on_epoch_begin(epoch)
            totals = _Totals(self)
            progress = Progress(verbose, train.size, f"Epoch {epoch + 1}/{epochs}", train.unit)
            for batch, (xb, yb, wb) in enumerate(train.batches()):
                loss, y_pred = self.train_step(xb, yb, wb)
                totals.add(loss, y_pred, yb)
                for cb in callbacks:
                    cb.on_batch_end(batch, {"batch": batch, "size": len(xb), "loss": loss})
                progress.update(len(xb) if train.unit == "sample" else 1, totals)
                if self.stop_training:
                    break
            if train.ran_out:
                warnings.warn(data_adapters.RAN_OUT, stacklevel=2)
                if not totals.n:  # nothing at all this epoch
                    progress.close(None)
                    break
                self.stop_training = True
            logs = totals.result()
            if val is not None:
                logs.update({f"val_{k}": v for k, v in self._evaluate_batches(val).items()})
            progress.close(logs)
            self.epoch = epoch + 1
            train.on_epoch_end()
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        for cb in callbacks:
            cb.on_train_end()
        return history

    def evaluate(self, x=None, y=None, batch_size=None, verbose=0, sample_weight=None, steps=None):
        """The loss and metrics on (x, y) -- arrays, a generator or a PyDataset: ``[loss, metric_1, ...]``."""
        self._check_compiled("evaluate")
        check_verbose(verbose)
        logs = self._evaluate_batches(data_adapters.adapt(self, x, y, sample_weight, None, batch_size, steps=steps))
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        return list(logs.values())

    def _evaluate_batches(self, data):
        totals = _Totals(self)
        for xb, yb, wb in data.batches():
            y_pred = self.forward(xb, training=False)
            totals.add(self.compute_loss(y_pred, yb, wb), y_pred, yb)
        data.on_epoch_end()
        return totals.result()

    def predict(self, x, batch_size=None, verbose=0, steps=None):
        """The model's outputs for ``x`` (an array, a generator or a PyDataset), as a NumPy array whatever the
        backend (``verbose`` is accepted as in Keras)."""
        check_verbose(verbose)
        data = data_adapters.adapt(self, x, batch_size=batch_size, steps=steps, targets=False)
        outputs = [self.forward(xb, training=False) for xb, _, _ in data.batches()]
        data.on_epoch_end()
        if not outputs:
            raise ValueError("predict: the generator gave no batches (it had run out)")
        return backend.to_numpy(backend.xp.concatenate(outputs))

    def __getattr__(self, name):
        """Only reached for a missing attribute: Keras methods that are gone say what to write instead."""
        if name in REMOVED_METHODS:
            raise AttributeError(f"Sequential.{name} was removed from Keras (2.6) and gpunn does not have it: "
                                 f"{REMOVED_METHODS[name]}")
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    # --- input checks --------------------------------------------------------------
    def _check_compiled(self, what):
        if self.optimizer is None or self.loss is None:
            raise RuntimeError(f"Call model.compile(optimizer=..., loss=...) before model.{what}()")

    def _check_data(self, x, y, what="x"):
        """Validate and convert the arrays before any work is done; build the model if needed."""
        if x is None:
            raise ValueError(f"{what}: no input data was given")
        x = _as_float_array(x, what)
        if x.ndim < 2:
            raise ValueError(f"{what}: expected a batch of samples with shape (samples, ...); received shape {x.shape}")
        if len(x) == 0:
            raise ValueError(f"{what}: expected at least one sample; received an empty array of shape {x.shape}")
        if not self.built:
            self.build(self.layers[0].input_shape if self.layers and self.layers[0].input_shape else x.shape[1:])
        first = self.layers[0]
        if tuple(x.shape[1:]) != self.input_shape:
            hint = ""
            if len(self.input_shape) == 3 and x.ndim == 4 and x.shape[-1] == self.input_shape[0]:
                hint = (" The model is channels-first (N, C, H, W), gpunn's default; this looks channels-last "
                        "(N, H, W, C): build the model with data_format='channels_last' on its image layers (or "
                        "gpunn.config.set_image_data_format('channels_last') first), or feed x.transpose(0, 3, 1, 2)")
            raise ValueError(f"Layer '{first.name}' expects samples of shape {self.input_shape}; received {what} "
                             f"with samples of shape {tuple(x.shape[1:])} (array shape {x.shape}).{hint}")
        first.validate_input(x)
        if y is None:
            return x, None
        y = np.asarray(y) if backend.get_array_module(y) is np else y
        if len(y) != len(x):
            raise ValueError(f"{what}: x has {len(x)} samples but y has {len(y)}; they must have the same length")
        return x, self._check_targets(y, what)

    def _check_targets(self, y, what):
        xp = backend.get_array_module(y)
        k = self.output_shape[-1]
        name = self.loss.name
        if y.dtype.kind not in "fiub":
            raise ValueError(f"{what}: the targets y hold {non_numeric(y)}; expected numbers: class indices 0..{k - 1}, "
                             f"one-hot rows or values; {CLASS_NAMES_HINT}")
        if y.dtype.kind == "f" and not bool(xp.isfinite(y).all()):
            raise ValueError(f"{what}: y contains NaN or infinite values")
        one_per_sample = y.size // len(y) == (1 if name == "sparse_categorical_crossentropy" else k)
        if one_per_sample and int(np.prod(self.output_shape[:-1])) > 1:
            raise ValueError(f"{what}: the model outputs samples of shape {self.output_shape} but y has one target per "
                             f"sample (y of shape {y.shape}){self._unflattened_hint()}")
        if name == "sparse_categorical_crossentropy":
            if y.dtype.kind == "f" and not bool((y == xp.round(y)).all()):
                raise ValueError(f"{what}: loss '{name}' takes integer class labels; y holds non-integers "
                                 f"(one-hot targets go with loss='categorical_crossentropy')")
            if y.size != len(y) * int(np.prod(self.output_shape[:-1])):
                raise ValueError(f"{what}: loss '{name}' expects one integer label per sample of shape "
                                 f"{self.output_shape[:-1]}; received y of shape {y.shape}")
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= k:
                raise ValueError(f"{what}: labels must be in [0, {k}) for loss '{name}' on a model with {k} outputs; "
                                 f"received labels from {lo} to {hi}")
            return y.astype(np.int64, copy=False)
        if name == "categorical_crossentropy" and tuple(y.shape[1:]) != self.output_shape:
            hint = " (integer labels: use loss='sparse_categorical_crossentropy' or gpunn.utils.to_categorical)" \
                if y.ndim == 1 else ""
            raise ValueError(f"{what}: loss '{name}' expects one-hot targets of shape (samples, {k}) to match the "
                             f"model's output {self.output_shape}; received y of shape {y.shape}{hint}")
        if y[0].size != int(np.prod(self.output_shape)):
            raise ValueError(f"{what}: the model's output has shape {self.output_shape} but y has samples of shape "
                             f"{tuple(y.shape[1:])}")
        if name == "binary_crossentropy" and (float(y.min()) < 0 or float(y.max()) > 1):
            raise ValueError(f"{what}: loss '{name}' expects targets in [0, 1]; received values from "
                             f"{float(y.min())} to {float(y.max())}")
        return y.astype(np.float32 if xp is np else y.dtype, copy=False)

    def _unflattened_hint(self):
        """Name the first Dense layer that receives samples with several axes, and what to put before it."""
        for before, layer in zip([None] + self.layers, self.layers):
            if isinstance(layer, Dense) and len(layer.input_shape) > 1:
                fix = "give the recurrent layer before it return_sequences=False" if getattr(
                    before, "return_sequences", False) else "put Flatten() (or a global pooling) before it"
                return (f": layer '{layer.name}' receives samples of shape {layer.input_shape} and acts on their last "
                        f"axis only; {fix}")
        return ""

    # --- weights and description --------------------------------------------------------
    def get_weights(self):
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights):
        weights = list(weights)
        expected = sum(len(layer.weight_refs()) for layer in self.layers)
        if len(weights) != expected:
            raise ValueError(f"Sequential '{self.name}' has {expected} weight arrays; received {len(weights)}")
        for layer in self.layers:
            k = len(layer.weight_refs())
            layer.set_weights(weights[:k])
            weights = weights[k:]

    def count_params(self):
        return sum(layer.count_params() for layer in self.layers)

    # --- saving ----------------------------------------------------------------------
    def get_config(self):
        """The architecture as JSON-friendly data: each layer's class name and config."""
        return {"name": self.name,
                "layers": [layer_config(layer) for layer in self.layers]}

    @classmethod
    def from_config(cls, config):
        return cls([saving.layer_from_config(entry) for entry in config["layers"]], name=config.get("name", "sequential"))

    def save(self, path, include_optimizer=True):
        """Write architecture, weights, compile settings, epoch counter and optimizer state to one file.

        Reopen with :func:`gpunn.models.load_model`, on either backend.
        """
        saving.save_model(self, path, include_optimizer)

    def save_weights(self, path):
        saving.save_weights(self, path)

    def load_weights(self, path):
        """Load weights saved by :meth:`save_weights` or :meth:`save`, checked layer by layer."""
        saving.load_weights(self, path)

    def cast(self, dtype):
        """Convert every weight to ``dtype`` (float64 for gradient checking)."""
        for layer in self.layers:
            layer.cast(dtype)
        return self

    def summary(self, print_fn=print):
        """Print a table of the layers, their output shapes and parameter counts."""
        if not self.built:
            self.build()
        rows = [("Layer (type)", "Output Shape", "Param #")]
        shape = self.input_shape
        for layer in self.layers:
            shape = layer.compute_output_shape(shape)
            rows.append((f"{layer.name} ({type(layer).__name__})", str((None,) + tuple(shape)), f"{layer.count_params():,}"))
        widths = [max(len(r[i]) for r in rows) + 3 for i in range(3)]
        line = "_" * sum(widths)
        trainable = sum(int(w.size) for w in self.trainable_weights())
        print_fn(f'Model: "{self.name}"')
        print_fn(line)
        for i, row in enumerate(rows):
            print_fn("".join(cell.ljust(w) for cell, w in zip(row, widths)))
            print_fn("=" * len(line) if i in (0, len(rows) - 1) else "")
        total = self.count_params()
        print_fn(f"Total params: {total:,}")
        print_fn(f"Trainable params: {trainable:,}")
        print_fn(f"Non-trainable params: {total - trainable:,}")
        print_fn(line)


load_model = saving.load_model

REMOVED_METHODS = {
    "fit_generator": "fit takes a generator or a Sequence/PyDataset itself: "
                     "model.fit(generator, steps_per_epoch=..., epochs=...)",
    "evaluate_generator": "evaluate takes a generator or a Sequence/PyDataset itself: "
                          "model.evaluate(generator, steps=...)",
    "predict_generator": "predict takes a generator or a Sequence/PyDataset itself: model.predict(generator, steps=...)",
    "predict_classes": "write model.predict(x).argmax(axis=-1) for a softmax output, "
                       "(model.predict(x) > 0.5).astype(int) for a sigmoid one",
    "predict_proba": "model.predict(x) gives the probabilities",
}


class _Totals:
    """Running sums of the loss and metric counts over an epoch, kept on the device."""

    def __init__(self, model):
        self.model, self.n, self.loss, self.counts = model, 0, 0.0, [0] * len(model.metrics)

    def add(self, loss, y_pred, y_true):
        m = len(y_pred)
        self.n += m
        self.loss = self.loss + loss * m
        for i, (_, metric) in enumerate(self.model.metrics):
            self.counts[i] = self.counts[i] + metric.count(y_pred, y_true)

    def result(self):
        """{'loss': ..., 'accuracy': ...} as Python floats (one device-to-host copy)."""
        if not self.n:
            raise ValueError("no batches to average over: the generator had run out of data")
        values = backend.to_numpy(backend.xp.stack([backend.xp.asarray(v, dtype=np.float64)
                                                    for v in [self.loss, *self.counts]])) / self.n
        names = ["loss"] + [name for name, _ in self.model.metrics]
        return {name: float(v) for name, v in zip(names, values)}


def _as_float_array(x, what):
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
