"""``compile(jit_compile=True)``: fit's training step captured as a CUDA graph and replayed.

Each full batch then costs the host three things instead of some fifty kernel launches::

    copy the batch into the step's own buffers          one copy per array
    replay the graph: forward, loss, backward, and      one launch (dW lands in the buffer of all gradients)
        the batch's sums added to the epoch's logs
    optimizer.apply(W, dW)                              one launch for all the weights, outside the graph:
                                                        its learning rate and step count change every step

The graph is captured at the first batch (whose step the warm-up runs for real: see
:class:`gpunn.backend.graphs.Graph` for the rules a captured step keeps). A batch of another
shape -- the last, smaller one -- runs eagerly, as without jit_compile; a model whose weights
were given new arrays since (``set_weights``, loading, freezing a layer) is captured again. A
step that cannot be captured (an operation a graph cannot hold) is said once, in a warning, and
runs eagerly from then on. On the NumPy backend there is nothing to capture: the step runs eagerly.
"""

import warnings

import gpunn.backend as backend
from gpunn.backend import graphs
from gpunn.models.totals import batch_sums


def fit_step(model, totals, x, y, sample_weight):
    """fit's step: trains on the batch, adds it to ``totals`` (the epoch's logs) and returns its loss -- by
    replaying the model's graph where it can."""
    step = model._captured
    if not model.jit_compile or not backend.is_gpu() or step is False:  # eager; or the capture failed once
        return eager_step(model, totals, x, y, sample_weight)
    if step is None or not step.still_valid(model):
        step = CapturedStep(model, x, y, sample_weight)
        model._captured = False if step.failed else step
        loss, sums = step.first
        totals.add_sums(sums, len(x[0]))
        return loss
    if not step.fits(x, y, sample_weight):
        return eager_step(model, totals, x, y, sample_weight)
    loss = step(x, y, sample_weight)
    totals.add_running(step.total, len(x[0]))
    return loss


def eager_step(model, totals, x, y, sample_weight):
    loss, y_pred = model.train_step(x, y, sample_weight)
    totals.add_sums(batch_sums(model, loss, y_pred, y), len(x[0]))
    return loss


def begin_epoch(model):
    """Start the captured step's running total of the logs again (fit calls it before each epoch)."""
    if isinstance(model._captured, CapturedStep):
        model._captured.total.fill(0)


class CapturedStep:
    """A model's forward, loss and backward on buffers of its own, captured for batches shaped like ``x, y``."""

    def __init__(self, model, x, y, sample_weight):
        model._flat_weights()  # the weights' and gradients' buffers, made now: outside the graph's pool
        self.model, self.shapes = model, _shapes(x, y, sample_weight)
        self.x, self.y = [_buffer(a) for a in x], [_buffer(a) for a in y]
        self.w = _buffer(sample_weight)
        self._copy_in(x, y, sample_weight)
        self.graph = graphs.Graph(self._forward_backward)
        self.capturing = False
        for _ in range(2):
            self.first = self.graph.warm_up()  # the first batch's step, for real
        model._apply(self.update)  # (capturing runs nothing)
        self.total = backend.xp.zeros_like(self.first[1])  # the logs' sums of the batches replayed this epoch
        self.failed, self.capturing = False, True
        try:
            self.graph.capture()
        except Exception as error:  # an operation a graph cannot hold (the batch is trained: go on eagerly)
            warnings.warn(f"jit_compile=True: the training step of model '{model.name}' could not be captured as a "
                          f"CUDA graph ({type(error).__name__}: {error}); it runs eagerly", stacklevel=4)
            self.failed = True
        self.capturing = False
        self.weights = [getattr(owner, n) for owner, n in model.weight_refs()]  # what the graph reads and writes

    def __deepcopy__(self, memo):
        return None  # a copy of the model captures its own graph, if it trains with one

    def _forward_backward(self):
        loss, y_pred, self.update = self.model._forward_backward(self.x, self.y, self.w)  # update: fixed buffers
        sums = batch_sums(self.model, loss, y_pred, self.y)
        if self.capturing:  # each replay adds its batch to the epoch's logs itself
            self.total += sums
        return loss, sums

    def still_valid(self, model):
        """Whether the graph still reads the model's weights: none was given a new array, nor frozen."""
        model._flat_weights()  # an array assigned to a trainable weight is copied into the buffer the graph reads
        refs = model.weight_refs()
        return len(refs) == len(self.weights) and all(getattr(owner, n) is w for (owner, n), w in
                                                       zip(refs, self.weights))

    def fits(self, x, y, sample_weight):
        return _shapes(x, y, sample_weight) == self.shapes

    def __call__(self, x, y, sample_weight):
        self._copy_in(x, y, sample_weight)
        self.graph.replay()
        self.model._apply(self.update)
        return self.graph.outputs[0]

    def _copy_in(self, x, y, sample_weight):
        for buffer, a in zip(self.x + self.y + [self.w], list(x) + list(y) + [sample_weight]):
            if buffer is not None:
                buffer[...] = a


def _buffer(a):
    return None if a is None else backend.xp.empty_like(a)


def _shapes(x, y, sample_weight):
    return tuple(None if a is None else (a.shape, a.dtype) for a in list(x) + list(y) + [sample_weight])
