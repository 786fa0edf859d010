"""Many arrays as the pieces of one buffer: one operation then covers them all.

A training step on a GPU is launch-bound: each CUDA launch costs the host more time than
the GPU spends on a small layer. An optimizer's update is element-wise -- Adam's
W <- W - lr m_hat / (sqrt(v_hat) + eps) does the same to every number, whichever weight it
belongs to -- so when the weights are the pieces of one buffer W and their gradients the
pieces of one buffer dW (laid out alike), the whole update is one kernel launch over W,
not one per weight. The same buffer lets data-parallel training all-reduce every gradient
in one collective (:mod:`gpunn.distributed`).

- :class:`Flat`: arrays of one dtype laid end to end in one buffer, and views of its pieces.
- :class:`FlatWeights`: a model's trainable weights made views of one such buffer, and their
  gradients written into another (see its docstring for how layers take part).
"""

import numpy as np

import gpunn.backend as backend


class Flat:
    """Several arrays as one contiguous buffer: ``fill`` copies the arrays in (times ``scale``);
    ``views`` are the buffer's pieces in their shapes."""

    def __init__(self, arrays, dtype=None):
        dtypes = {a.dtype for a in arrays}
        if dtype is None and len(dtypes) > 1:
            raise TypeError(f"Flat: the arrays must share one dtype; received {sorted(map(str, dtypes))}")
        self.dtype = np.dtype(dtype or arrays[0].dtype)
        self.shapes = [a.shape for a in arrays]
        self.offsets = np.cumsum([0] + [a.size for a in arrays]).tolist()
        self.buffer = backend.get_array_module(arrays[0]).empty(self.offsets[-1], dtype=self.dtype)

    def fits(self, arrays):
        return [a.shape for a in arrays] == self.shapes and all(a.dtype == self.dtype for a in arrays) and \
            backend.get_array_module(arrays[0]) is backend.get_array_module(self.buffer)

    def fill(self, arrays, scale=None):
        xp = backend.get_array_module(self.buffer)
        for a, lo, hi in zip(arrays, self.offsets, self.offsets[1:]):
            if scale is None:
                self.buffer[lo:hi] = a.reshape(-1)
            else:
                xp.multiply(a.reshape(-1), scale, out=self.buffer[lo:hi])

    def views(self):
        return [self.buffer[lo:hi].reshape(shape) for shape, lo, hi in zip(self.shapes, self.offsets, self.offsets[1:])]


class FlatWeights:
    """The trainable weights ``refs`` [(layer, name)] as views of one buffer, their gradients as views of another.

    - Weights: ``layer.kernel`` becomes a view of :attr:`weights` (its values copied in). An array
      assigned to it later (``set_weights``, loading a file, another model sharing the layer) is
      noticed by :meth:`bind` at the next step: its values are copied into the buffer and the
      attribute points at its view again.
    - Gradients: :meth:`offer` puts each gradient's view in ``layer.grad_targets``; a layer's
      backward may write dW straight into it (``Layer.grad_out``: Dense and Conv2D do). A gradient
      left elsewhere -- by a layer that makes its own array, a layer called twice in one step (the
      offer is taken once), a weight penalty added on -- is copied in by :meth:`collect`.
    """

    def __init__(self, refs):
        self.refs = list(refs)
        arrays = [getattr(owner, n) for owner, n in self.refs]
        weights, grads = Flat(arrays), Flat(arrays)
        weights.fill(arrays)
        self.weights, self.grads = weights.buffer, grads.buffer
        self.weight_views, self.grad_views = weights.views(), grads.views()
        for (owner, n), view in zip(self.refs, self.weight_views):
            setattr(owner, n, view)

    def __deepcopy__(self, memo):
        return None  # a copy of a view is an array of its own: a copied model makes its own buffers

    @staticmethod
    def can_hold(refs):
        """Whether the weights can share one buffer: at least one, all of one dtype, on one device."""
        arrays = [getattr(owner, n) for owner, n in refs]
        return bool(arrays) and len({a.dtype for a in arrays}) == 1 and \
            len({backend.get_array_module(a) for a in arrays}) == 1

    def holds(self, refs):
        """Whether this buffer serves ``refs`` (the same weights, of the same shapes, dtype and device)."""
        if len(refs) != len(self.refs) or any(a[0] is not b[0] or a[1] != b[1] for a, b in zip(refs, self.refs)):
            return False
        xp = backend.get_array_module(self.weights)
        return all(_like(getattr(owner, n), view, xp) for (owner, n), view in zip(self.refs, self.weight_views))

    def bind(self):
        """Point every weight back at its view, copying in the values of any array assigned to it since."""
        for (owner, n), view in zip(self.refs, self.weight_views):
            current = getattr(owner, n)
            if current is not view:
                view[...] = current
                setattr(owner, n, view)

    def offer(self):
        for (owner, n), view in zip(self.refs, self.grad_views):
            owner.grad_targets[n] = view

    def collect(self):
        """After backward: whether every weight got a gradient; if so, each is in :attr:`grads` after this.
        The offers not taken are withdrawn either way."""
        for owner, n in self.refs:
            owner.grad_targets.pop(n, None)
        if not all(n in owner.grads for owner, n in self.refs):
            return False
        for (owner, n), view in zip(self.refs, self.grad_views):
            if not backend.same_memory(owner.grads[n], view):
                view[...] = owner.grads[n]
            owner.grads[n] = view
        return True


def _like(a, view, xp):
    return a is view or (a.shape == view.shape and a.dtype == view.dtype and backend.get_array_module(a) is xp)
