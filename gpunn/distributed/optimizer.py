"""DistributedOptimizer: any gpunn optimizer, averaging the gradients of every rank before each update.

Horovod's spelling and Horovod's way: the optimizer returned is of a new class, made from the
optimizer's own class with :class:`Distributed` in front of it, so it *is* an Adam (or an SGD...)
in every other respect -- its settings, its running averages, how it is saved -- and only
``apply`` changes::

    apply(W, dW):   dW <- sum_r (m_r / M) dW_r     (one all-reduce of every gradient, in one buffer)
                    then the optimizer's own update, the same on every rank

Every rank then makes the same update from the same gradient, so the weights stay identical
without ever being sent again. A model compiled with it trains data-parallel in ``fit`` (see
:mod:`gpunn.distributed.data_parallel`); its file is an ordinary gpunn file, which opens on one
process or on any number of ranks.
"""

from gpunn import optimizers
from gpunn.distributed import group as group_module
from gpunn.distributed.data_parallel import DataParallel

_classes = {}  # optimizer class -> its distributed class, made once


class Distributed:
    """Put in front of an optimizer's class by :func:`DistributedOptimizer` (see the module docstring)."""

    def apply(self, weights, grads, keys=None, flat=None):
        if flat is not None:  # the gradients are one buffer already: averaged where they are
            self.data_parallel.average_buffer(flat[1])
            super().apply(weights, grads, keys, flat)
        else:
            super().apply(weights, self.data_parallel.average(list(grads)), keys)


def DistributedOptimizer(optimizer="rmsprop"):  # noqa: N802 -- Horovod's spelling
    """``optimizer`` (a name, a config or an optimizer) averaging the gradients of every rank before each update.

    ``model.compile(optimizer=dist.DistributedOptimizer("adam"), ...)`` and ``fit`` trains
    data-parallel. An optimizer object keeps its running averages and step count, so a
    loaded model goes on where it stopped: ``DistributedOptimizer(model.optimizer)``.
    Needs :func:`gpunn.distributed.init` first.
    """
    group = group_module.require("DistributedOptimizer")
    inner = optimizers.get(optimizer)
    if isinstance(inner, Distributed):
        return inner
    cls = type(inner)
    if cls not in _classes:
        _classes[cls] = type(f"Distributed{cls.__name__}", (Distributed, cls), {})
    distributed = object.__new__(_classes[cls])
    distributed.__dict__.update(vars(inner))  # its settings, running averages and step count
    distributed.data_parallel = DataParallel(group)
    return distributed
