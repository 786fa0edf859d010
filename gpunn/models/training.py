"""Training a model with mini-batch gradient descent: compile, fit, evaluate, predict.

One training step is the course's loop, written out in :meth:`Trainer.train_step`::

    A = forward(X)                  # each layer caches what it needs
    J = loss(A, Y)                  # + the weight penalties (a weighted sum over the outputs)
    dA = dJ/dA                      # the loss's gradient (1/m inside)
    backward(dA)                    # each layer fills its grads and passes dX down
    optimizer.apply(W, dW, keys)    # W <- W - lr * (something built from dW), per weight

``fit`` runs that step over shuffled mini-batches for a number of epochs. Array data is
moved to the device once, before the first epoch, and stays there (a generator's or a
PyDataset's batches are moved as they come: see :mod:`gpunn.data_adapters`); losses and
accuracies are summed on the device and read back only when the progress bar is redrawn,
so a GPU is never kept waiting for Python.

Inside, data travels as lists -- one array per model input, one per output -- whatever
form the caller gave (an array, a list, a dict by name).
"""

import warnings

import gpunn.backend as backend
from gpunn import data_adapters
from gpunn import optimizers as optimizers_module
from gpunn.callbacks import Callback, History
from gpunn.data_adapters import check_int
from gpunn.models import captured, checks, heads as heads_module
from gpunn.models.totals import Totals
from gpunn.utils.flat import FlatWeights
from gpunn.utils.progress import Progress, check_verbose


class Trainer:
    """compile / fit / evaluate / predict, for :class:`gpunn.Model` and :class:`gpunn.Sequential`."""

    def _init_training(self):
        self.optimizer, self.loss, self.heads = None, None, []
        self.stop_training = False
        self.epoch = 0  # epochs completed, saved with the model so that training can resume
        self._compile_args = None
        self._flat = None  # the trainable weights in one buffer, made at the first training step
        self.jit_compile, self._captured = False, None  # the captured step of jit_compile=True (gpunn.models.captured)

    # --- compiling -------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None, jit_compile="auto"):
        """Choose the optimizer, the loss (one, or one per output) and the metrics to report.

        ``loss``, ``metrics`` and ``loss_weights`` take one value for every output, a list in the
        order of the outputs or a dict by output name (see :mod:`gpunn.models.heads`).
        ``jit_compile=True``: on a GPU, ``fit`` captures the training step as a CUDA graph and replays
        it (see :mod:`gpunn.models.captured`); "auto" (Keras's default) and False run it eagerly.
        """
        if jit_compile not in (True, False, "auto"):
            raise ValueError(f"compile: jit_compile must be True, False or 'auto'; received {jit_compile!r}")
        self.jit_compile, self._captured = jit_compile is True, None
        for head in self.heads:  # an earlier compile's fusing is undone first
            if head.fused is not None:
                head.fused.fused = False
        self.heads = heads_module.make_heads(self, loss, loss_weights, metrics)  # every name checked now
        self.optimizer = optimizers_module.get(optimizer)
        self.loss = self.heads[0].loss if len(self.heads) == 1 else [h.loss for h in self.heads]
        self._compile_args = (loss, metrics, loss_weights)
        if self.built:  # else (a Sequential that does not know its input shape yet) when it is built
            heads_module.resolve(self, self.heads)

    @property
    def metrics(self):
        """[(display name, metric)] of a one-output model; every output's, named after it, otherwise."""
        if len(self.heads) == 1:
            return self.heads[0].metrics
        return [(f"{h.name}_{name}", m) for h in self.heads for name, m in h.metrics]

    def compute_loss(self, y_pred, y_true, sample_weight=None):
        """J = sum over the outputs of weight * loss (each example's share weighted by its sample weight,
        padded steps masked) + the weight penalties: a 0-d array on the device. Each output's own loss is
        kept for the logs."""
        preds, targets = self._flatten_data(y_pred, "outputs"), self._flatten_data(y_true, "outputs")
        total, self._head_losses = None, []
        for head, pred, target, mask in zip(self.heads, preds, targets, self.output_masks):
            if head.loss is None:
                continue
            if head.fused is not None:
                loss = head.loss.forward_fused(head.fused.z, pred, target, sample_weight, mask)
            else:
                loss = head.loss.forward(pred, target, sample_weight, mask)
            self._head_losses.append(loss)
            weighted = loss if head.weight == 1 else head.weight * loss
            total = weighted if total is None else total + weighted
        penalty = sum(layer.regularization_loss() for layer in self.sublayers)
        return total if isinstance(penalty, (int, float)) and penalty == 0 else total + penalty  # no op for a 0

    def loss_gradient(self):
        """dJ/dA of each output -- or dJ/dZ where the activation is fused -- in the form of the outputs."""
        grads = []
        for head in self.heads:
            if head.loss is None:
                grads.append(None)
                continue
            g = head.loss.backward_fused() if head.fused is not None else head.loss.backward()
            grads.append(g if head.weight == 1 else head.weight * g)
        return self._pack(grads)

    def train_step(self, x, y, sample_weight=None):
        """One step of gradient descent on a batch; returns the loss and the predictions."""
        self._check_compiled("train_step")
        loss, y_pred, update = self._forward_backward(x, y, sample_weight)
        self._apply(update)
        return loss, y_pred

    def _forward_backward(self, x, y, sample_weight):
        """The step up to the update: (loss, y_pred, update), ``update`` the arguments of optimizer.apply."""
        flat = self._flat_weights()  # before forward: what layers keep from it (shared ones) refers to the views
        y_pred = self.forward(x, training=True)
        loss = self.compute_loss(y_pred, y, sample_weight)
        self.needs_input_grad = False  # nothing uses dL/dX of the data: a layer may skip computing it
        try:
            if flat is not None:
                flat.offer()  # Dense and Conv2D write their dW straight into the buffer of all gradients
            self.backward(self.loss_gradient())
        finally:
            self.needs_input_grad = True
            everywhere = flat is not None and flat.collect()
        keys = self.trainable_keys
        if everywhere:  # every weight has its gradient: the update is made once, over the whole buffers
            return loss, y_pred, (flat.weight_views, flat.grad_views, keys, (flat.weights, flat.grads))
        reached = [(key, getattr(owner, n), owner.grads[n]) for key, (owner, n) in
                   zip(keys, self._trainable_refs()) if n in owner.grads]
        keys, weights, grads = zip(*reached) if reached else ((), (), ())
        return loss, y_pred, (list(weights), list(grads), list(keys), None)

    def _apply(self, update):
        weights, grads, keys, flat = update
        self.optimizer.apply(weights, grads, keys, flat=flat)

    def _flat_weights(self):
        """The trainable weights as views of one buffer (:class:`FlatWeights`), made again when they change
        (freezing, a new dtype); None when they cannot share one."""
        refs = self._trainable_refs()
        if self._flat is None or not self._flat.holds(refs):
            self._flat = FlatWeights(refs) if FlatWeights.can_hold(refs) else None
        if self._flat is not None:
            self._flat.bind()
        return self._flat

    # --- training and inference ------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            steps_per_epoch=None, validation_steps=None, **kwargs):
        """Train for ``epochs`` epochs of mini-batch gradient descent; returns a :class:`History`.

        ``x`` and ``y`` are arrays (lists or dicts of arrays for several inputs or outputs;
        ``batch_size`` samples a batch, 32 by default), or ``x`` is a generator or a
        :class:`gpunn.utils.PyDataset` of batches ``(x, y)`` or ``(x, y, sample_weight)``
        (``steps_per_epoch`` batches an epoch). ``sample_weight`` (one per sample) or
        ``class_weight`` (``{class: weight}``) scale each sample's share of the loss; the metrics
        stay unweighted, as in Keras. ``verbose``: see :mod:`gpunn.utils.progress`.

        Data-parallel (compiled with :func:`gpunn.distributed.DistributedOptimizer`, run by ``mpirun``):
        ``batch_size`` is the global batch, shared out between the ranks, and the logs are those of every
        rank's samples together; see :mod:`gpunn.distributed`.
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
        parallel = self.optimizer.data_parallel  # the hooks of data-parallel training (gpunn.distributed), or None
        if parallel is not None:  # rank 0's model on every rank; each rank's share of the data; rank 0 prints
            train, val, verbose = parallel.begin(self, train, val, verbose)
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
            totals = Totals(self)
            progress = Progress(verbose, train.size, f"Epoch {epoch + 1}/{epochs}", train.unit)
            for batch, (loss, size) in enumerate(captured.train_epoch(self, train, totals)):  # eager or replayed
                for cb in callbacks:
                    cb.on_batch_end(batch, {"batch": batch, "size": size, "loss": loss})
                progress.update(size if train.unit == "sample" else 1, totals)
                if self._stopping(parallel):
                    break
            if train.ran_out:
                warnings.warn(data_adapters.RAN_OUT, stacklevel=2)
                if not totals.n:  # nothing at all this epoch
                    progress.close(None)
                    break
                self.stop_training = True
            logs = totals.result(parallel)
            if parallel is not None:  # every rank's moving averages alike before validating and saving
                parallel.end_epoch(self)
            if val is not None:
                logs.update({f"val_{k}": v for k, v in self._evaluate_batches(val, parallel).items()})
            progress.close(logs)
            self.epoch = epoch + 1
            train.on_epoch_end()
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            if self._stopping(parallel):
                break
        for cb in callbacks:
            cb.on_train_end()
        return history

    def evaluate(self, x=None, y=None, batch_size=None, verbose=0, sample_weight=None, steps=None, return_dict=False):
        """The loss and metrics on (x, y) -- arrays, a generator or a PyDataset: ``[loss, metric_1, ...]``
        (a dict by name with ``return_dict=True``)."""
        self._check_compiled("evaluate")
        check_verbose(verbose)
        logs = self._evaluate_batches(data_adapters.adapt(self, x, y, sample_weight, None, batch_size, steps=steps))
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        return logs if return_dict else list(logs.values())

    def _stopping(self, parallel):
        """Whether training stops now. Data-parallel, every rank stops when one asks: a rank stopping alone
        would leave the others waiting in the next all-reduce."""
        if parallel is not None:
            self.stop_training = parallel.any(self.stop_training)
        return self.stop_training

    def _evaluate_batches(self, data, parallel=None):
        totals = Totals(self)
        for xb, yb, wb in data.batches():
            y_pred = self.forward(xb, training=False)
            totals.add(self.compute_loss(y_pred, yb, wb), y_pred, yb)
        data.on_epoch_end()
        return totals.result(parallel)

    def predict(self, x, batch_size=None, verbose=0, steps=None):
        """The model's outputs for ``x`` (arrays, a generator or a PyDataset) as NumPy arrays whatever the backend:
        one array, or a list / dict of them for a model with several outputs (``verbose`` is accepted as in Keras)."""
        check_verbose(verbose)
        data = data_adapters.adapt(self, x, batch_size=batch_size, steps=steps, targets=False)
        batches = [self._flatten_data(self.forward(xb, training=False), "outputs") for xb, _, _ in data.batches()]
        data.on_epoch_end()
        if not batches:
            raise ValueError("predict: the generator gave no batches (it had run out)")
        xp = backend.xp
        return self._pack([backend.to_numpy(xp.concatenate([b[i] for b in batches])) for i in range(len(batches[0]))])

    # --- input checks --------------------------------------------------------------------------
    def _check_compiled(self, what):
        if self.optimizer is None or self._compile_args is None:
            raise RuntimeError(f"Call model.compile(optimizer=..., loss=...) before model.{what}()")

    def _check_data(self, x, y, what="x"):
        """The arrays as lists (one per input, one per output), validated before any work is done."""
        return checks.check_data(self, x, y, what)
