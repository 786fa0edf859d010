"""What ``fit`` does differently when the model's optimizer is a :func:`~gpunn.distributed.DistributedOptimizer`.

Every rank runs the same program on the same data. ``fit`` then calls these hooks:

- ``begin``: check that every rank built the same model, compiled alike and seeded alike; give every
  rank rank 0's weights and optimizer state; cut the data into each rank's :class:`Shards`; only rank
  0 draws the progress bar;
- each step: the rank trains on its share of the batch, and the optimizer averages the gradients
  (:meth:`DataParallel.average`, one all-reduce);
- ``sum_totals``: the losses and metric counts of every rank added up, for the logs;
- ``end_epoch``: the weights that are not trained (batch normalization's moving averages, which each
  rank updated from its own shares) averaged over the ranks, so every rank holds the same model;
- ``any``: whether a rank asks to stop, so that every rank stops at the same step.

Uneven shares. A batch of M samples gives rank r m_r of them (the first M % N ranks one more).
Each rank's loss averages over its m_r samples, J_r = 1/m_r sum_i w_i J_i, so the gradient of the
whole batch's loss J = 1/M sum_i w_i J_i is the average of the ranks' gradients weighted by their
shares::

    dW = sum_r (m_r / M) dW_r

which is what :meth:`DataParallel.average` computes: each rank scales its gradients by m_r / M,
and the all-reduce adds them up.
"""

import numpy as np

import gpunn.backend as backend
from gpunn.utils.flat import Flat


class DataParallel:
    """The hooks ``fit`` calls (see the module docstring), for the ranks of ``group``."""

    def __init__(self, group):
        self.group = group
        self.share = None  # m_r / M of the batch being trained on, set by Shards (None: equal shares)
        self._flat = None  # the gradients' buffer, kept from step to step

    # --- every step ---------------------------------------------------------------------------------
    def average(self, grads):
        """sum_r (m_r / M) dW_r for every gradient: one all-reduce of one flat buffer; returns views of it."""
        if not grads:
            return grads
        if self._flat is None or not self._flat.fits(grads):
            self._flat = Flat(grads)
        self._flat.fill(grads, self._share())
        self.group.allreduce(self._flat.buffer)
        return self._flat.views()

    def average_buffer(self, buffer):
        """The same, in place, for gradients that already are one buffer (a model's, see gpunn.utils.flat): the
        layers' ``grads`` then hold the average of every rank's."""
        buffer *= self._share()
        self.group.allreduce(buffer)

    def _share(self):
        return 1.0 / self.group.size if self.share is None else self.share

    def any(self, flag):
        """True on every rank when ``flag`` is true on one: a rank that stopped alone would leave the others
        waiting in the next all-reduce."""
        return self.group.any(flag)

    # --- the start of fit ---------------------------------------------------------------------------
    def begin(self, model, train, val, verbose):
        """Check that the ranks agree, give them rank 0's model, and cut the data: (train, val, verbose)."""
        self.share = None
        check_alike(self.group, describe(model))
        arrays = [getattr(owner, n) for owner, n in model.weight_refs()]
        slots = model.optimizer.slots
        arrays += [slots[key][name] for key in sorted(slots) for name in sorted(slots[key])]
        for dtype in dict.fromkeys(a.dtype for a in arrays):  # one broadcast per dtype
            flat = Flat([a for a in arrays if a.dtype == dtype])
            flat.fill([a for a in arrays if a.dtype == dtype])
            self.group.broadcast(flat.buffer)
            for a, value in zip([a for a in arrays if a.dtype == dtype], flat.views()):
                a[...] = value
        model.optimizer.iterations = self.group.comm.bcast(model.optimizer.iterations, root=0)
        return (Shards(train, self, training=True), None if val is None else Shards(val, self, training=False),
                verbose if self.group.rank == 0 else 0)

    # --- the end of an epoch ------------------------------------------------------------------------
    def sum_totals(self, sums, n):
        """(every rank's sums added up, every rank's sample count added up): the logs of the whole epoch."""
        total = self.group.sum(np.append(sums, n))
        return total[:-1], int(total[-1])

    def end_epoch(self, model):
        """Average the weights no gradient updates (moving averages) over the ranks, in float64.

        Averages of equal values come back exactly, so a weight every rank holds alike stays as it is."""
        state = [getattr(owner, n) for owner, n in model.weight_refs() if n not in owner.trainable_names]
        if not state:
            return
        flat = Flat(state, dtype=np.float64)
        flat.fill(state)
        self.group.allreduce(flat.buffer)
        flat.buffer /= self.group.size
        for a, value in zip(state, flat.views()):
            a[...] = value


class Shards:
    """This rank's share of every batch of ``data`` (an adapter of :mod:`gpunn.data_adapters`).

    Every rank draws the same batches (the same seeded shuffle); rank r of N keeps rows
    [lo, hi) of a batch of M. For training each rank needs a row of every batch; in evaluation a
    rank with no row of a small batch skips it. Arrays report this rank's samples as ``size``
    (what rank 0's progress bar counts).
    """

    def __init__(self, data, parallel, training):
        self.data, self.parallel, self.training = data, parallel, training
        self.rank, self.ranks = parallel.group.rank, parallel.group.size
        self.steps, self.unit, self.size = data.steps, data.unit, data.size
        if data.unit == "sample":  # arrays: every batch is known now
            sizes = [s.stop - s.start for s in data.slices]
            if training and min(sizes) < self.ranks:
                self._too_small(min(sizes), f"the last batch of {data.n} samples in batches of {sizes[0]}")
            self.size = sum(hi - lo for lo, hi in map(self.bounds, sizes))

    @property
    def ran_out(self):
        return self.data.ran_out

    def bounds(self, m):
        """[lo, hi): this rank's rows of a batch of ``m``."""
        base, extra = divmod(m, self.ranks)
        lo = self.rank * base + min(self.rank, extra)
        return lo, lo + base + (self.rank < extra)

    def batches(self):
        first = True
        try:
            for i, (xs, ys, w) in enumerate(self.data.batches()):
                m = len(xs[0])
                if self.training:
                    if m < self.ranks:
                        self._too_small(m, f"batch {i}")
                    if first:  # every rank has drawn the epoch's shuffle: now each goes its own way (dropout)
                        backend.split(self.rank)
                        first = False
                lo, hi = self.bounds(m)
                if lo == hi:
                    continue
                self.parallel.share = (hi - lo) / m if self.training else None
                yield [a[lo:hi] for a in xs], None if ys is None else [None if a is None else a[lo:hi] for a in ys], \
                    None if w is None else w[lo:hi]
        finally:
            self.parallel.share = None

    def on_epoch_end(self):
        self.data.on_epoch_end()

    def _too_small(self, m, which):
        raise ValueError(f"Data-parallel training splits every batch between the {self.ranks} ranks, so each batch "
                         f"needs at least {self.ranks} samples; {which} holds {m}. Choose a batch_size that leaves "
                         f"a last batch of 0 or at least {self.ranks} samples, or leave the last samples out")


def describe(model):
    """What every rank's model must agree on before training together."""
    slots = model.optimizer.slots
    return {"backend": backend.name,
            "seed": backend.current_seed(),
            "weights": [f"{key} {tuple(getattr(owner, n).shape)} {getattr(owner, n).dtype}"
                        for key, (owner, n) in zip(model.weight_keys(), model.weight_refs())],
            "optimizer": model.optimizer.get_config(),
            "optimizer slots": [f"{key}/{name} {tuple(slots[key][name].shape)}" for key in sorted(slots)
                                for name in sorted(slots[key])]}


def check_alike(group, description):
    """Raise, on every rank, naming the first thing a rank holds differently from rank 0."""
    everyone = group.gather(description)
    for rank, other in enumerate(everyone[1:], start=1):
        for what, expected in everyone[0].items():
            received = other[what]
            if received != expected:
                if isinstance(expected, list):
                    expected, received = _first_difference(expected, received)
                hint = ("seed every rank alike: gpunn.utils.set_seed(s) with the same s" if what == "seed" else
                        "build the same model on every rank, compile it alike, and load the same checkpoint")
                raise ValueError(f"gpunn.distributed: rank {rank}'s {what} differs from rank 0's: expected "
                                 f"{expected!r} (rank 0), received {received!r} (rank {rank}); {hint}")


def _first_difference(a, b):
    for x, y in zip(a, b):
        if x != y:
            return x, y
    return (a[len(b)], "nothing") if len(a) > len(b) else ("nothing", b[len(a)])
