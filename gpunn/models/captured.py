"""``compile(jit_compile=True)``: fit's training step captured as a CUDA graph and replayed.

With the data in arrays (moved to the device once, as ``fit`` does), each full batch then costs the
host one launch instead of some fifty -- the replay of a graph that holds the whole step::

    the batch's rows gathered from the arrays           its position in the epoch's order read from device
                                                        memory, and moved on
    forward, loss, backward                             dW lands in the buffer of all gradients
    the batch's sums added to the epoch's logs
    the optimizer's step count and rate, then           read from device memory (DeviceSchedule): a kernel's
        its update over the buffer of all weights       arguments are frozen in a graph, and these change

(A new rate -- a schedule -- is written before the replay, one small launch.) An optimizer without
such kernels (Nadam, Adadelta, centered RMSprop), clipping, or data-parallel training keep the
update outside the graph: one more launch.

Batches from a generator or a PyDataset are copied into the step's own buffers first (one copy
per array). The graph is captured at the first batch (whose step the warm-up runs for real: see
:class:`gpunn.backend.graphs.Graph` for the rules a captured step keeps). A batch of another shape
-- the last, smaller one -- runs eagerly, as without jit_compile; a model whose weights were given
new arrays since (``set_weights``, loading, freezing a layer) is captured again, and so is a new
``fit``'s data. A step that cannot be captured (an operation a graph cannot hold) is said once, in
a warning, and runs eagerly from then on. On the NumPy backend nothing is captured.

What a graph holds stays fixed, and shared: the loss a replayed batch hands to callbacks
(``logs["loss"]``) is the graph's buffer, refilled by the next replay -- read it in the callback
(``float(...)``) rather than keep the array; and the graph keeps the device arrays it gathers from,
and its memory pool, until the model is compiled again or fitted on other data.
"""

import warnings

import numpy as np

import gpunn.backend as backend
from gpunn.backend import graphs, kernels
from gpunn.data_adapters import ArrayBatches
from gpunn.models.totals import batch_sums
from gpunn.ops import optimizers as optimizer_ops


def train_epoch(model, train, totals):
    """fit's epoch over ``train`` (a data adapter): each batch trained on and added to ``totals`` (the
    epoch's logs); yields (loss, batch size) batch by batch."""
    step = model._captured
    if not (model.jit_compile and backend.is_gpu()) or step is False:  # eager; or the capture failed once
        for x, y, w in train.batches():
            yield eager_step(model, totals, x, y, w), len(x[0])
        return
    if not isinstance(train, ArrayBatches):
        _begin_epoch(model, train, None)
        for x, y, w in train.batches():
            yield fit_step(model, totals, x, y, w), len(x[0])
        return
    order = train.epoch_order()  # arrays on the device: the graph gathers its batches itself
    _begin_epoch(model, train, order)
    for position, rows in enumerate(train.slices):
        step, size = model._captured, rows.stop - rows.start
        if step and step.gathers_from(train) and size == step.size and step.still_valid(model):
            yield step.replay(totals), size
        else:
            last = position == len(train.slices) - 1
            yield fit_step(model, totals, *train.batch(order, rows), source=(train, order, position), last=last), size


def fit_step(model, totals, x, y, sample_weight, source=None, last=True):
    """One batch that is not a replay of the graph as it is: the first (captured now), the epoch's last, smaller
    one (eager), or one after the weights, the data or the batch size changed (captured again). ``source``:
    (adapter, order, position) when the graph is to gather its batches from the adapter's arrays itself; ``last``:
    whether the batch is the epoch's last (a generator's batches: not known, so any smaller batch runs eagerly)."""
    step = model._captured
    if step is False:
        return eager_step(model, totals, x, y, sample_weight)
    same_data = step is not None and (step.gathers_from(source[0]) if source else step.arrays is None)
    if same_data and last and not step.fits(x, y, sample_weight) and len(x[0]) < step.size:
        return eager_step(model, totals, x, y, sample_weight)
    if same_data and step.arrays is None and step.fits(x, y, sample_weight) and step.still_valid(model):
        step.copy_in(x, y, sample_weight)
        return step.replay(totals)
    old, step = step, CapturedStep(model, x, y, sample_weight, source)
    if old is not None:  # captured again mid-epoch: the batches the old graph added stay in the logs
        step.total += old.total
    model._captured = False if step.failed else step
    loss, sums = step.first
    totals.add_sums(sums, len(x[0]))
    return loss


def eager_step(model, totals, x, y, sample_weight):
    loss, y_pred = model.train_step(x, y, sample_weight)
    totals.add_sums(batch_sums(model, loss, y_pred, y), len(x[0]))
    return loss


def _begin_epoch(model, train, order):
    """Start the captured step's running total of the logs again; and its gathering, at this epoch's order."""
    step = model._captured
    if isinstance(step, CapturedStep):
        step.total.fill(0)
        if step.gathers_from(train):
            step.start_order(order, 0)


class CapturedStep:
    """A model's step on buffers of its own, captured for batches shaped like ``x, y``; with ``source``
    (adapter, order, position), it gathers each batch from the adapter's arrays itself."""

    def __init__(self, model, x, y, sample_weight, source=None):
        model._flat_weights()  # the weights' and gradients' buffers, made now: outside the graph's pool
        xp = backend.xp
        self.model, self.shapes, self.size = model, _shapes(x, y, sample_weight), len(x[0])
        self.x, self.y, self.w = [_buffer(a) for a in x], [_buffer(a) for a in y], _buffer(sample_weight)
        self.copy_in(x, y, sample_weight)  # the first batch, for the warm-up
        self.arrays = None if source is None else _arrays(source[0])  # what the graph gathers its batches from
        if self.arrays is not None:  # where the batch is in the epoch's order (device memory), and its rows
            self.order, self.offset = xp.empty(source[0].n, dtype=np.int64), xp.zeros(1, dtype=np.int64)
            self.arange, self.at, self.rows = (xp.arange(self.size, dtype=np.int64) for _ in range(3))
            self.start_order(source[1], source[2])  # at this batch
        self.graph, self.capturing = graphs.Graph(self._step), False
        state = [getattr(owner, n) for owner, n in model.weight_refs() if n not in owner.trainable_names]
        kept = [a.copy() for a in state]  # moving statistics: the first batch's step must count once, not twice
        for warm_up in range(2):
            if warm_up:
                for a, value in zip(state, kept):
                    a[...] = value
            self.first = self.graph.warm_up()  # the first batch's step, for real
        model._apply(self.update)  # (capturing runs nothing)
        self.optimizer, self.schedule = model.optimizer, _schedule(model.optimizer, self.update)
        self.config = self.optimizer.get_config()  # its numbers are in the graph
        self.total = xp.zeros_like(self.first[1])  # the logs' sums of the batches replayed this epoch
        self._compile_the_rest()
        self.failed, self.capturing = False, True
        try:
            self.graph.capture()
        except Exception as error:  # an operation a graph cannot hold (the batch is trained: go on eagerly)
            warnings.warn(f"jit_compile=True: the training step of model '{model.name}' could not be captured as a "
                          f"CUDA graph ({type(error).__name__}: {error}); it runs eagerly", stacklevel=4)
            self.failed = True
        self.capturing = False
        if self.arrays is not None:
            self.start_order(source[1], source[2] + 1)  # the next replay gathers the batch after this one
        self.weights = [getattr(owner, n) for owner, n in model.weight_refs()]  # what the graph reads and writes

    def __deepcopy__(self, memo):
        return None  # a copy of the model captures its own graph, if it trains with one

    def _compile_the_rest(self):
        """Run once, eagerly, what only the capture runs (the gather, the running total, the schedule), so that
        each of their kernels is compiled and loaded before the capture: loading one during it may fail."""
        if self.arrays is not None:
            self._gather()
        self.total += self.first[1]
        self.total.fill(0)
        if self.schedule is not None:
            self.schedule.compile()

    def gathers_from(self, train):
        """Whether the graph gathers its batches from the arrays of data adapter ``train`` (the same arrays)."""
        arrays = _arrays(train) if isinstance(train, ArrayBatches) else None
        return self.arrays is not None and arrays is not None and len(arrays) == len(self.arrays) and all(
            a is b or (a is not None and b is not None and backend.same_memory(a, b))
            for a, b in zip(arrays, self.arrays)) and len(self.order) == train.n

    def _step(self):
        if self.capturing and self.arrays is not None:
            self._gather()
        loss, y_pred, self.update = self.model._forward_backward(self.x, self.y, self.w)  # update: fixed buffers
        sums = batch_sums(self.model, loss, y_pred, self.y)
        if self.capturing:  # each replay adds its batch to the epoch's logs itself, and updates the weights
            self.total += sums
            if self.schedule is not None:
                self.schedule.update(self.update)
        return loss, sums

    def _gather(self):
        """In the graph: rows = order[offset : offset + size], each array's rows into the step's buffers; offset
        moves on by size -- all read from and written to device memory, so that every replay takes the next batch."""
        xp = backend.xp
        xp.add(self.offset, self.arange, out=self.at)
        xp.take(self.order, self.at, out=self.rows)
        for buffer, a in zip(self.x + self.y + [self.w], self.arrays):
            if buffer is not None:
                xp.take(a, self.rows, axis=0, out=buffer)
        self.offset += self.size

    def start_order(self, order, position):
        """Gather from this epoch's ``order`` (None: the samples as they are), from batch ``position`` on."""
        if order is None:
            self.order[...] = backend.xp.arange(len(self.order), dtype=np.int64)
        else:
            self.order[...] = order
        self.offset.fill(position * self.size)

    def still_valid(self, model):
        """Whether the graph still reads the model's weights: none was given a new array, nor frozen."""
        model._flat_weights()  # an array assigned to a trainable weight is copied into the buffer the graph reads
        refs = model.weight_refs()
        return (len(refs) == len(self.weights) and all(getattr(owner, n) is w for (owner, n), w in
                                                        zip(refs, self.weights))
                and model.optimizer is self.optimizer and self.optimizer.get_config() == self.config
                and (self.schedule is None or self.schedule.still_valid()))

    def fits(self, x, y, sample_weight):
        return _shapes(x, y, sample_weight) == self.shapes

    def copy_in(self, x, y, sample_weight):
        for buffer, a in zip(self.x + self.y + [self.w], list(x) + list(y) + [sample_weight]):
            if buffer is not None:
                buffer[...] = a

    def replay(self, totals):
        """The step on the batch in its buffers (or the next one it gathers); adds it to ``totals``; its loss."""
        if self.schedule is not None:
            self.schedule.before_replay()
            self.graph.replay()  # the update included
        else:
            self.graph.replay()
            self.model._apply(self.update)
        totals.add_running(self.total, self.size)
        return self.graph.outputs[0]


class DeviceSchedule:
    """An optimizer's rate and step count in device memory, so that its update runs inside the graph: the graph's
    first kernel advances the count and writes hyper = [lr, 1 - beta_1^t, 1 - beta_2^t] (optimizer_schedule), and
    the update kernel reads them (``Optimizer.update_scheduled``), one launch over the buffer of all the weights."""

    def __init__(self, optimizer, update):
        xp = backend.xp
        self.optimizer, (self.pieces, _, self.keys, (self.weights, self.grads)) = optimizer, update
        self.slots = optimizer.flat_slots(self.keys, self.pieces, self.weights)
        self.rate, self.step, self.hyper = xp.zeros(1, np.float32), xp.zeros(1, np.int64), xp.ones(3, np.float32)
        self.rate_value = self.step_value = None  # what device memory holds, as the host knows it

    def compile(self):
        """Load the kernels before the capture: the schedule runs once (it is written again before the first
        replay), the scheduled updates are looked up in their module (loaded by the eager updates)."""
        optimizer_ops.optimizer_schedule(self.hyper, self.step, self.rate, *self.optimizer.schedule_betas)
        for name in ("sgd", "sgd_momentum", "adagrad", "rmsprop", "adam"):
            kernels.get_kernel("optimizers", f"{name}_update_scheduled")

    def update(self, update):
        """In the graph: the next step's numbers, then the update."""
        optimizer_ops.optimizer_schedule(self.hyper, self.step, self.rate, *self.optimizer.schedule_betas)
        self.optimizer.update_scheduled(self.weights, self.grads, self.slots, self.hyper)

    def before_replay(self):
        """On the host: the replay is the optimizer's next step. Device memory is written only when it does not
        hold what the step needs already: a new rate (a schedule), a count changed by an eager step."""
        optimizer = self.optimizer
        rate = optimizer.current_learning_rate()
        if rate != self.rate_value:
            self.rate.fill(rate)
            self.rate_value = rate
        if optimizer.iterations != self.step_value:
            self.step.fill(optimizer.iterations)
        optimizer.iterations += 1
        self.step_value = optimizer.iterations

    def still_valid(self):
        """Whether the optimizer's running averages are still the buffers the graph updates (not loaded anew)."""
        return self.optimizer.flat_slots(self.keys, self.pieces, self.weights) is self.slots


def _schedule(optimizer, update):
    """A DeviceSchedule when the optimizer's update can run inside the graph: it has scheduled kernels, the
    gradients are one buffer, no clipping, not data-parallel (the all-reduce stays outside); else None."""
    flat = update[3]
    if (flat is None or not optimizer.scheduled or optimizer.data_parallel is not None
            or any(c is not None for c in (optimizer.clipnorm, optimizer.clipvalue, optimizer.global_clipnorm))):
        return None
    schedule = DeviceSchedule(optimizer, update)
    return schedule if kernels.takes(*flat, *schedule.slots.values()) else None


def _arrays(train):
    """The device arrays an ArrayBatches adapter cuts its batches from: its inputs, targets and sample weights."""
    return tuple(train.xs) + tuple(train.ys if train.ys is not None else ()) + (train.w,)


def _buffer(a):
    return None if a is None else backend.xp.empty_like(a)


def _shapes(x, y, sample_weight):
    return tuple(None if a is None else (a.shape, a.dtype) for a in list(x) + list(y) + [sample_weight])
