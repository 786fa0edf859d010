"""What an epoch reports: the loss and the metrics, summed batch by batch on the device.

Each batch adds one vector, :func:`batch_sums` -- its loss times its size (each output's loss too,
for a model with several), then each metric's count of examples right -- and the epoch's logs
are the sums over the samples seen, read back once (:meth:`Totals.result`), so a GPU is never
kept waiting for Python mid-epoch.
"""

import numpy as np

import gpunn.backend as backend
from gpunn.models import heads as heads_module


def batch_sums(model, loss, y_pred, y_true):
    """One batch's share of the epoch's logs, as one float64 vector on the device (see the module docstring)."""
    preds, targets = model._flatten_data(y_pred, "outputs"), model._flatten_data(y_true, "outputs")
    m = len(preds[0])
    parts = [loss] + (model._head_losses if len(model.heads) > 1 else [])
    parts = [p * m for p in parts] + [metric.count(p, t, mask) for head, p, t, mask in
                                      zip(model.heads, preds, targets, model.output_masks)
                                      for _, metric in head.metrics]
    return backend.get_array_module(loss).stack(parts).astype(np.float64, copy=False)


class Totals:
    """Running sums of the losses and metric counts over an epoch, kept on the device."""

    def __init__(self, model):
        self.model, self.n, self.sums, self.running = model, 0, None, None

    def add(self, loss, y_pred, y_true):
        self.add_sums(batch_sums(self.model, loss, y_pred, y_true), len(self.model._flatten_data(y_pred, "outputs")[0]))

    def add_sums(self, sums, m):
        """Add a batch of ``m`` samples whose :func:`batch_sums` are ``sums`` (not kept: a graph refills it)."""
        self.n += m
        if self.sums is None:
            self.sums = sums.copy()
        else:
            self.sums += sums

    def add_running(self, running, m):
        """Add a batch of ``m`` samples whose sums a captured step added to ``running`` itself (in its graph)."""
        self.n += m
        self.running = running

    def result(self, parallel=None):
        """{'loss': ..., 'accuracy': ...} as Python floats (one device-to-host copy); with the hooks of
        data-parallel training, ``parallel``, over the samples of every rank together."""
        names = heads_module.log_names(self.model, self.model.heads)
        parts = [v for v in (self.sums, self.running) if v is not None]
        sums = backend.to_numpy(sum(parts[1:], parts[0])) if parts else np.zeros(len(names))
        n = self.n
        if parallel is not None:
            sums, n = parallel.sum_totals(sums, n)
        if not n:
            raise ValueError("no batches to average over: the generator had run out of data")
        return {name: float(v) for name, v in zip(names, sums / n)}
