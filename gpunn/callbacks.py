"""Callbacks: code that ``fit`` calls at the start and end of epochs and batches.

A callback sees the model as ``self.model`` and the epoch's numbers in
``logs`` (``{'loss': ..., 'accuracy': ..., 'val_loss': ...}``). Setting
``self.model.stop_training = True`` ends training after the current epoch.
"""

import math
import time

import gpunn.backend as backend
from gpunn import distributed


class Callback:
    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        """What ``fit`` was asked for, as in Keras: ``{'verbose': ..., 'epochs': ..., 'steps': batches per epoch}``."""
        self.params = params

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass


class History(Callback):
    """Records every epoch's logs: ``history.history['loss']`` is the list of epoch losses.

    ``fit`` always adds one and returns it, as Keras does.
    """

    def on_train_begin(self, logs=None):
        self.epoch = getattr(self, "epoch", [])
        self.history = getattr(self, "history", {})

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    Args:
        monitor: a key of the logs, e.g. 'val_loss' or 'val_accuracy'.
        mode: 'min', 'max', or 'auto' (max for accuracies, min otherwise).
        restore_best_weights: put back the weights of the best epoch when stopping.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto", restore_best_weights=False):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'auto', 'min' or 'max'; received mode={mode!r}")
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.monitor, self.min_delta, self.patience = monitor, abs(min_delta), patience
        self.sign = 1 if mode == "min" else -1
        self.restore_best_weights = restore_best_weights

    def on_train_begin(self, logs=None):
        self.best, self.wait, self.best_weights, self.stopped_epoch = math.inf, 0, None, None

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor not in (logs or {}):
            raise KeyError(f"EarlyStopping monitors '{self.monitor}', which is not among the logs: {sorted(logs or {})}")
        value = self.sign * logs[self.monitor]
        if value < self.best - self.min_delta:
            self.best, self.wait = value, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait > self.patience:
            self.model.stop_training = True
            self.stopped_epoch = epoch
            if self.restore_best_weights and self.best_weights is not None:
                self.model.set_weights(self.best_weights)


class LearningRateScheduler(Callback):
    """Sets the learning rate at the start of each epoch to ``schedule(epoch, lr)``.

    Example (the course's 1 / (1 + decay_rate * epoch) decay):
        >>> LearningRateScheduler(lambda epoch, lr: 0.1 / (1 + 1.0 * epoch))
    """

    def __init__(self, schedule):
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        if callable(optimizer.learning_rate):
            raise ValueError("LearningRateScheduler cannot be combined with an optimizer whose learning_rate is "
                             "already a schedule; give the optimizer a number")
        optimizer.learning_rate = float(self.schedule(epoch, optimizer.current_learning_rate()))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self.model.optimizer.current_learning_rate()


class ModelCheckpoint(Callback):
    """Save the model after every epoch (or only when ``monitor`` improves).

    ``filepath`` may hold fields filled from the epoch and the logs, e.g.
    ``"lenet-{epoch:02d}-{val_loss:.3f}.npz"``. Each save is atomic; resume with
    ``model = gpunn.models.load_model(path)`` then
    ``model.fit(..., epochs=E, initial_epoch=model.epoch)``. In data-parallel training rank 0
    writes the file (see :mod:`gpunn.distributed`).
    """

    def __init__(self, filepath, monitor="val_loss", save_best_only=False, save_weights_only=False, mode="auto",
                 verbose=0):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"ModelCheckpoint: mode must be 'auto', 'min' or 'max'; received mode={mode!r}")
        self.filepath, self.monitor = str(filepath), monitor
        self.save_best_only, self.save_weights_only, self.verbose = save_best_only, save_weights_only, verbose
        self.sign = -1 if mode == "max" or (mode == "auto" and "acc" in monitor) else 1
        self.best = math.inf

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            if self.monitor not in logs:
                raise KeyError(f"ModelCheckpoint monitors '{self.monitor}', which is not among the logs: {sorted(logs)}")
            if not self.sign * logs[self.monitor] < self.best:
                return
            self.best = self.sign * logs[self.monitor]
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        if self.verbose and distributed.is_main_process():
            print(f"Epoch {epoch + 1}: saved {path}")


class TerminateOnNaN(Callback):
    """Stop training as soon as a batch's loss is NaN or infinite.

    Each batch's loss stays on the device: reading it back every batch would make the
    GPU wait at every step. So whether it is finite is folded into one flag on the
    device, read back at most every ``CHECK_SECONDS`` (as often as the progress bar
    redraws) and at the end of every epoch.
    """

    CHECK_SECONDS = 0.5

    def on_train_begin(self, logs=None):
        self.finite, self.last_check = None, time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.batch = None

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        finite = backend.get_array_module(loss).isfinite(loss)
        self.finite = finite if self.finite is None else self.finite & finite
        self.batch = batch
        if time.perf_counter() - self.last_check >= self.CHECK_SECONDS:
            self._check()

    def on_epoch_end(self, epoch, logs=None):
        self._check()

    def _check(self):
        self.last_check = time.perf_counter()
        if self.finite is not None and not bool(self.finite):
            print(f"Batch {self.batch}: invalid loss, terminating training")
            self.model.stop_training = True
            self.finite = None
