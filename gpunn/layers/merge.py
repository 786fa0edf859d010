"""Merge layers: several tensors in, one out -- ResNet's a[l+2] = g(z[l+2] + a[l]), Inception's and
DenseNet's concatenations, a Siamese network's difference and cosine similarity.

Each takes a list, ``Add()([a, b])``, and its backward returns a list: the gradient of each input.

    Add:        y = x1 + x2 + ...            dxi = dy
    Subtract:   y = x1 - x2                  dx1 = dy, dx2 = -dy
    Multiply:   y = x1 * x2 * ...            dxi = dy * (product of the others)
    Average:    y = (x1 + ... + xn) / n      dxi = dy / n
    Maximum:    y = max(x1, x2, ...)         dxi = dy where xi won (the first on ties), else 0
    Minimum:    likewise with the smallest
    Concatenate(axis):  the inputs side by side;  backward cuts dy back into their pieces
    Dot(axes):  sum over one axis of x1 * x2 (a batch of dot products or matrix products)

Element-wise merges take inputs of the same shape; a size of 1 stretches to the others'
(as in Keras), and its gradient is then summed over what it was stretched to.
"""

import numpy as np

import gpunn.backend as backend
from gpunn.layers.base import Layer


class Merge(Layer):
    """What the merge layers share: a list of inputs, shapes checked when built."""

    min_inputs, max_inputs = 2, None

    def build(self, input_shapes):
        if not isinstance(input_shapes, list) or not all(isinstance(s, tuple) for s in input_shapes):
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) takes a list of tensors, "
                             f"{type(self).__name__}()([a, b]); received {input_shapes!r}")
        n = len(input_shapes)
        if n < self.min_inputs or (self.max_inputs is not None and n > self.max_inputs):
            exactly = f"exactly {self.min_inputs}" if self.max_inputs == self.min_inputs else f"at least {self.min_inputs}"
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) takes {exactly} inputs; received {n}")
        self.compute_output_shape(input_shapes)  # incompatible shapes fail here, before any training
        super().build(input_shapes)

    def compute_output_shape(self, input_shapes):
        return broadcast_shape(self, input_shapes)

    def forward(self, inputs, training=False):
        self.shapes = [x.shape for x in inputs]
        return self.merge(inputs)

    def compute_mask(self, x, mask):
        """A step is real where it is real in any input (Keras's rule); None when no input has a mask."""
        masks = [m for m in mask or [] if m is not None]
        if not masks:
            return None
        out = masks[0]
        for m in masks[1:]:
            out = out | m
        return out

    def get_config(self):
        config = super().get_config()
        config.pop("input_shape", None)  # a list of shapes; the graph gives them back when it is rebuilt
        return config


def broadcast_shape(layer, shapes):
    """The element-wise output shape: equal sizes, or 1 stretched to the other's; None is any size."""
    if len({len(s) for s in shapes}) != 1:
        raise ValueError(f"Layer '{layer.name}' ({type(layer).__name__}) needs inputs of the same rank; received "
                         f"samples of shapes {shapes}")
    out = []
    for sizes in zip(*shapes):
        known = {d for d in sizes if d not in (None, 1)}
        if len(known) > 1:
            raise ValueError(f"Layer '{layer.name}' ({type(layer).__name__}) needs inputs of the same shape (or "
                             f"sizes of 1); received samples of shapes {shapes}")
        out.append(known.pop() if known else (None if None in sizes else 1))
    return tuple(out)


def unbroadcast(d, shape):
    """Sum ``d`` over the axes where an input of ``shape`` was stretched: its gradient has its shape again."""
    axes = tuple(i for i, (a, b) in enumerate(zip(shape, d.shape)) if a == 1 and b != 1)
    return d.sum(axis=axes, keepdims=True) if axes else d


class Add(Merge):
    """y = x1 + x2 + ... (the residual connection: the shortcut is simply added)."""

    def merge(self, inputs):
        y = inputs[0] + inputs[1]
        for x in inputs[2:]:
            y = y + x
        return y

    def backward(self, dy):
        return [unbroadcast(dy, s) for s in self.shapes]


class Subtract(Merge):
    """y = x1 - x2 (exactly two inputs)."""

    max_inputs = 2

    def merge(self, inputs):
        return inputs[0] - inputs[1]

    def backward(self, dy):
        return [unbroadcast(dy, self.shapes[0]), unbroadcast(-dy, self.shapes[1])]


class Multiply(Merge):
    """y = x1 * x2 * ... element by element; dxi = dy * (the product of the other inputs)."""

    def merge(self, inputs):
        self.inputs = inputs
        y = inputs[0] * inputs[1]
        for x in inputs[2:]:
            y = y * x
        return y

    def backward(self, dy):
        grads = []
        for i, shape in enumerate(self.shapes):
            d = dy
            for j, x in enumerate(self.inputs):
                if j != i:
                    d = d * x
            grads.append(unbroadcast(d, shape))
        return grads


class Average(Merge):
    """y = (x1 + ... + xn) / n."""

    def merge(self, inputs):
        return Add.merge(self, inputs) / len(inputs)

    def backward(self, dy):
        return [unbroadcast(dy / len(self.shapes), s) for s in self.shapes]


class Maximum(Merge):
    """y = the largest of the inputs, element by element; its gradient goes to the input that won."""

    pick = staticmethod(lambda xp, a, b: xp.maximum(a, b))

    def merge(self, inputs):
        xp = backend.get_array_module(inputs[0])
        y = inputs[0]
        winner = xp.zeros(np.broadcast_shapes(*[x.shape for x in inputs]), dtype=np.int32)
        for i, x in enumerate(inputs[1:], start=1):
            better = self.pick(xp, y, x) != y  # strictly better: the first input keeps a tie
            winner = xp.where(better, np.int32(i), winner)
            y = xp.where(better, x, y)
        self.winner = winner
        return y

    def backward(self, dy):
        return [unbroadcast(dy * (self.winner == i), s) for i, s in enumerate(self.shapes)]


class Minimum(Maximum):
    """y = the smallest of the inputs, element by element; its gradient goes to the input that won."""

    pick = staticmethod(lambda xp, a, b: xp.minimum(a, b))


class Concatenate(Merge):
    """The inputs side by side along ``axis`` (of the whole batch: -1, the features, by default).

    Backward cuts dy into pieces of the inputs' sizes along that axis.
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, (int, np.integer)) or axis == 0:
            raise ValueError(f"Layer '{self.name}': axis must be a non-zero integer (axis 0 is the batch); "
                             f"received axis={axis!r}")
        self.axis = int(axis)

    def compute_output_shape(self, input_shapes):
        rank = len(input_shapes[0]) + 1
        axis = self.axis % rank
        if axis == 0 or any(len(s) + 1 != rank for s in input_shapes):
            raise ValueError(f"Layer '{self.name}' (Concatenate, axis={self.axis}) needs inputs of one rank; received "
                             f"samples of shapes {input_shapes}")
        others = [tuple(d for i, d in enumerate(s) if i != axis - 1) for s in input_shapes]
        if any(not all(a is None or b is None or a == b for a, b in zip(o, others[0])) for o in others):
            raise ValueError(f"Layer '{self.name}' (Concatenate, axis={self.axis}) needs the inputs' shapes to agree "
                             f"except along the axis; received samples of shapes {input_shapes}")
        sizes = [s[axis - 1] for s in input_shapes]
        out = list(input_shapes[0])
        out[axis - 1] = None if None in sizes else sum(sizes)
        return tuple(out)

    def merge(self, inputs):
        return backend.get_array_module(inputs[0]).concatenate(inputs, axis=self.axis)

    def backward(self, dy):
        axis = self.axis % dy.ndim
        edges = np.cumsum([s[axis] for s in self.shapes])[:-1].tolist()  # host positions, as a list
        return backend.get_array_module(dy).split(dy, edges, axis=axis)

    def compute_mask(self, x, mask):
        """Joined along the time axis, the masks are joined too (an input without one is all real);
        side by side along the features, a step is real where any input's is."""
        if not any(m is not None for m in mask or []):
            return None
        mask_rank = next(m for m in mask if m is not None).ndim
        if self.axis % x[0].ndim >= mask_rank:
            return super().compute_mask(x, mask)
        xp = backend.get_array_module(x[0])
        masks = [xp.ones(a.shape[:mask_rank], dtype=bool) if m is None else m for a, m in zip(x, mask)]
        return xp.concatenate(masks, axis=self.axis % x[0].ndim)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Dot(Merge):
    """Dot products of two tensors along ``axes``, sample by sample (Keras's ``Dot``).

    Two vectors per sample, (batch, n) and (batch, n): y = sum_k a_k b_k, shape (batch, 1).
    Two matrices per sample, (batch, m, n) and (batch, p, n) with ``axes=2``: y = a b^T, (batch, m, p).
    ``normalize=True`` divides each side by its L2 norm along the axis first: y is then the
    cosine similarity (a Siamese network's, or word embeddings').

    Backward, with a' and b' arranged as matrices (a' = (..., m, n), b' = (..., n, p)):
    da' = dy b'^T, db' = a'^T dy -- and through the normalisation, dv = (dv_hat - v_hat sum(dv_hat v_hat)) / |v|.
    """

    max_inputs = 2

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        axes = (axes, axes) if isinstance(axes, (int, np.integer)) else tuple(axes)
        if len(axes) != 2 or not all(isinstance(a, (int, np.integer)) and a != 0 for a in axes):
            raise ValueError(f"Layer '{self.name}': axes must be a non-zero integer or a pair of them (axis 0 is the "
                             f"batch); received axes={axes!r}")
        self.axes, self.normalize = tuple(int(a) for a in axes), bool(normalize)

    def compute_output_shape(self, input_shapes):
        a, b = input_shapes
        if len(a) != len(b) or len(a) not in (1, 2):
            raise ValueError(f"Layer '{self.name}' (Dot) takes two batches of vectors or of matrices; received "
                             f"samples of shapes {input_shapes}")
        ka, kb = (ax % (len(s) + 1) - 1 for ax, s in zip(self.axes, (a, b)))
        if ka < 0 or kb < 0 or (a[ka] is not None and b[kb] is not None and a[ka] != b[kb]):
            raise ValueError(f"Layer '{self.name}' (Dot, axes={self.axes}) needs the axes to have one size; received "
                             f"samples of shapes {input_shapes}")
        rest = [d for i, d in enumerate(a) if i != ka] + [d for i, d in enumerate(b) if i != kb]
        return tuple(rest) if rest else (1,)

    def merge(self, inputs):
        xp = backend.get_array_module(inputs[0])
        a, b = inputs
        if self.normalize:
            self.norms = [xp.sqrt((v * v).sum(axis=ax % v.ndim, keepdims=True)) + 1e-12 for v, ax in zip(inputs,
                                                                                                      self.axes)]
            a, b = a / self.norms[0], b / self.norms[1]
        self.a, self.b = self._as_matrices(a, b)
        y = self.a @ self.b  # (batch, m, p)
        return y.reshape(len(y), -1) if inputs[0].ndim == 2 else y

    def compute_mask(self, x, mask):
        return None  # the contracted axis is gone (as in Keras)

    def _as_matrices(self, a, b):
        """a as (batch, m, n) with the contracted axis last; b as (batch, n, p) with it first."""
        xp = backend.get_array_module(a)
        if a.ndim == 2:
            return a[:, None, :], b[:, :, None]
        return xp.moveaxis(a, self.axes[0] % 3, 2), xp.moveaxis(b, self.axes[1] % 3, 1)

    def backward(self, dy):
        xp = backend.get_array_module(dy)
        d = dy.reshape(self.a.shape[0], self.a.shape[1], self.b.shape[2])
        da, db = d @ self.b.swapaxes(1, 2), self.a.swapaxes(1, 2) @ d
        if len(self.shapes[0]) == 2:
            grads = [da[:, 0, :], db[:, :, 0]]
        else:
            grads = [xp.moveaxis(da, 2, self.axes[0] % 3), xp.moveaxis(db, 1, self.axes[1] % 3)]
        if self.normalize:
            grads = [self._through_norm(g, v, n, ax) for g, v, n, ax in zip(grads, self._normalized(), self.norms,
                                                                          self.axes)]
        return grads

    def _normalized(self):
        """The normalised inputs, back in their own layouts."""
        xp = backend.get_array_module(self.a)
        if len(self.shapes[0]) == 2:
            return self.a[:, 0, :], self.b[:, :, 0]
        return xp.moveaxis(self.a, 2, self.axes[0] % 3), xp.moveaxis(self.b, 1, self.axes[1] % 3)

    @staticmethod
    def _through_norm(d_hat, v_hat, norm, axis):
        axis = axis % v_hat.ndim
        return (d_hat - v_hat * (d_hat * v_hat).sum(axis=axis, keepdims=True)) / norm

    def get_config(self):
        return {**super().get_config(), "axes": list(self.axes), "normalize": self.normalize}


def _functional(cls):
    def merge(inputs, **kwargs):
        return cls(**kwargs)(inputs)
    merge.__name__ = cls.__name__.lower()
    merge.__doc__ = f"``{merge.__name__}([a, b], **kwargs)`` is ``{cls.__name__}(**kwargs)([a, b])``, Keras's shorthand."
    return merge


add, subtract, multiply, average = _functional(Add), _functional(Subtract), _functional(Multiply), _functional(Average)
maximum, minimum, concatenate, dot = _functional(Maximum), _functional(Minimum), _functional(Concatenate), \
    _functional(Dot)
