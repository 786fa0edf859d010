"""Loss functions J(y_hat, y), averaged over the m examples of a batch.

Each loss has ``forward(y_pred, y_true) -> J`` and ``backward() -> dJ/dy_pred``.
The 1/m of the average is in that gradient, so the layers below never divide
by m again.

Cross-entropy after softmax (or sigmoid) is where naive code breaks: log(0)
is -inf and dJ/dA = -Y/A divides by zero. The two are really one function of
the logits Z, with a famously simple gradient::

    J  = -1/m sum_i sum_k Y_ik log softmax(Z)_ik = 1/m sum_i (logsumexp(Z_i) - Z_i . Y_i)
    dZ = (A - Y) / m

so when the model ends in the matching activation, ``compile`` calls
``forward_fused(z, a, y_true)`` instead, and the gradient goes straight to Z.

Sample weights w (one per example: ``fit(sample_weight=...)`` or
``class_weight``) scale each example's share, as Keras does: J = 1/m sum_i w_i J_i
and its gradient w_i dJ_i/dA_i (still divided by m, not by the sum of the weights).
For sequences, w may also give one weight per time step, (m, T): J = 1/(m T) sum_it w_it J_it.

Masks (padded sequences, :mod:`gpunn.layers.masking`; the ``ignore_class`` of
SparseCategoricalCrossentropy): the loss is the mean over the real steps alone,
J = 1/n sum over the n real steps of w_it J_it -- Keras's rule, :func:`apply_mask`. A padded
step then adds exactly nothing to J or to its gradient, so a padded batch has the loss of its
sequences laid end to end, step for step.
"""

import numpy as np

import gpunn.backend as backend
from gpunn.backend import kernels
from gpunn.ops import losses as loss_ops

_EPS = 1e-7  # the clip Keras uses when it must take log(A) of probabilities


class Loss:
    name = None
    fuses_with = None  # the output activation whose logits this loss can take
    takes_labels = False  # True: y holds one class label per sample, whatever the output's shape

    def __call__(self, y_true, y_pred, sample_weight=None):
        """Keras-style call: the mean loss as a float."""
        return float(self.forward(y_pred, y_true, sample_weight))

    def forward(self, y_pred, y_true, sample_weight=None, mask=None):
        raise NotImplementedError

    def backward(self):
        raise NotImplementedError

    def refuse_mask(self, mask):
        """For a loss of whole examples, which has no padded steps to skip."""
        if mask is not None:
            raise ValueError(f"Loss '{self.name}' cannot skip padded steps: it received the mask of an output "
                             f"(from Embedding(mask_zero=True)); use a loss of steps, or no mask_zero")

    def weighted(self, values):
        """``values`` (m, ...) with each example's entries -- or each step's, for weights (m, T) -- scaled by
        the weights ``self.w``, if there are any."""
        w = self.w
        return values if w is None else values * w.reshape(tuple(w.shape) + (1,) * (values.ndim - w.ndim))

    def row_weights(self, shape):
        """The weights ``self.w`` spread to ``shape`` (every axis of the output but the last), or None."""
        w = self.w
        if w is None:
            return None
        xp = backend.get_array_module(w)
        return xp.broadcast_to(w.reshape(tuple(w.shape) + (1,) * (len(shape) - w.ndim)), shape)

    def get_config(self):
        return {"name": self.name}


class MeanSquaredError(Loss):
    """J = 1/(m k) sum (y_hat - y)^2 over m examples of k outputs;  dJ/dy_hat = 2 (y_hat - y) / (m k)."""

    name = "mean_squared_error"

    def forward(self, y_pred, y_true, sample_weight=None, mask=None):
        self.w = apply_mask(sample_weight, mask)
        self.diff = y_pred - y_true.reshape(y_pred.shape)
        return self.weighted(self.diff * self.diff).mean()

    def backward(self):
        return self.weighted((2.0 / self.diff.size) * self.diff)


class BinaryCrossentropy(Loss):
    """J = -1/(m k) sum [y log a + (1 - y) log(1 - a)].

    From the logits (fused with sigmoid) this is, without any exp overflow,
    J = mean(max(z, 0) - z y + log(1 + e^-|z|)) and dZ = (a - y) / (m k).
    """

    name = "binary_crossentropy"
    fuses_with = "sigmoid"

    def forward(self, y_pred, y_true, sample_weight=None, mask=None):
        xp = backend.get_array_module(y_pred)
        self.w = apply_mask(sample_weight, mask)
        self.y = y_true.reshape(y_pred.shape)
        self.a = xp.clip(y_pred, _EPS, 1 - _EPS)
        return -self.weighted(self.y * xp.log(self.a) + (1 - self.y) * xp.log(1 - self.a)).mean()

    def backward(self):
        return self.weighted((self.a - self.y) / (self.a * (1 - self.a)) / self.a.size)

    def forward_fused(self, z, a, y_true, sample_weight=None, mask=None):
        xp = backend.get_array_module(z)
        self.w = apply_mask(sample_weight, mask)
        self.y, self.a = y_true.reshape(z.shape), a
        return self.weighted(xp.maximum(z, 0) - z * self.y + xp.log1p(xp.exp(-xp.abs(z)))).mean()

    def backward_fused(self):
        return self.weighted((self.a - self.y) / self.a.size)


class CategoricalCrossentropy(Loss):
    """J = -1/m sum_i sum_k Y_ik log A_ik, with one-hot (or soft) targets Y of shape (m, k)."""

    name = "categorical_crossentropy"
    fuses_with = "softmax"

    def forward(self, y_pred, y_true, sample_weight=None, mask=None):
        xp = backend.get_array_module(y_pred)
        self.w = apply_mask(sample_weight, mask)
        self.y = y_true
        self.a = xp.clip(y_pred, _EPS, 1.0)
        return -self.weighted((self.y * xp.log(self.a)).sum(axis=-1)).mean()

    def backward(self):
        return self.weighted(-self.y / self.a / _batch(self.a))

    def forward_fused(self, z, a, y_true, sample_weight=None, mask=None):
        self.w = apply_mask(sample_weight, mask)
        self.y, self.a = y_true, a
        return self.weighted(_logsumexp(z) - (z * y_true).sum(axis=-1)).mean()

    def backward_fused(self):
        return self.weighted((self.a - self.y) / _batch(self.a))


class SparseCategoricalCrossentropy(Loss):
    """Categorical cross-entropy with integer labels y in [0, k): J = -1/m sum_i log A_{i, y_i}.

    Args:
        ignore_class: a label that is not a class but padding (often 0, or -1): those targets are
            masked, and J is the mean over the others (as in Keras).
    """

    name = "sparse_categorical_crossentropy"
    fuses_with = "softmax"
    dz = None  # dJ/dZ, when the GPU kernel computed it together with the loss

    def __init__(self, ignore_class=None):
        if ignore_class is not None and (isinstance(ignore_class, bool) or not isinstance(ignore_class,
                                                                                           (int, np.integer))):
            raise ValueError(f"SparseCategoricalCrossentropy: ignore_class must be an integer label or None; "
                             f"received ignore_class={ignore_class!r}")
        self.ignore_class = None if ignore_class is None else int(ignore_class)

    def _read_labels(self, y_true, like, sample_weight, mask):
        """The labels, and ``self.w`` with the ignored ones (given class 0 instead, weight 0) masked."""
        labels = _labels(y_true, like)
        if self.ignore_class is not None:
            real = labels != self.ignore_class
            mask = real if mask is None else mask & real
            labels = backend.get_array_module(labels).where(real, labels, 0)
        self.w = apply_mask(sample_weight, mask)
        return labels

    def forward(self, y_pred, y_true, sample_weight=None, mask=None):
        xp = backend.get_array_module(y_pred)
        self.labels = self._read_labels(y_true, y_pred, sample_weight, mask)
        self.a = y_pred
        picked = xp.take_along_axis(y_pred, self.labels[..., None], axis=-1)[..., 0]
        return -self.weighted(xp.log(xp.clip(picked, _EPS, 1.0))).mean()

    def backward(self):
        xp = backend.get_array_module(self.a)
        onehot = _one_hot(self.labels, self.a)
        return self.weighted(-onehot / xp.clip(self.a, _EPS, 1.0) / _batch(self.a))

    def forward_fused(self, z, a, y_true, sample_weight=None, mask=None):
        xp = backend.get_array_module(z)
        self.labels, self.a = self._read_labels(y_true, z, sample_weight, mask), a
        self.dz = None
        if kernels.takes(z):  # on the GPU: the loss of each row and dJ/dZ in one kernel
            _, loss, self.dz = loss_ops.softmax_cross_entropy(z, self.labels, self.row_weights(z.shape[:-1]))
            return loss  # J, summed by the kernel too
        picked = xp.take_along_axis(z, self.labels[..., None], axis=-1)[..., 0]
        return self.weighted(_logsumexp(z) - picked).mean()

    def backward_fused(self):
        if self.dz is not None:  # computed with the loss
            return self.dz
        return self.weighted((self.a - _one_hot(self.labels, self.a)) / _batch(self.a))

    def get_config(self):
        return {**super().get_config(), "ignore_class": self.ignore_class}


def apply_mask(sample_weight, mask):
    """The weights that make a loss the mean over the unmasked steps alone (Keras's rule).

    The losses average over all N = m T entries, so a real step is weighted N / n (n real steps)
    and a padded one 0: 1/N sum w_it (N/n) m_it J_it = 1/n sum over the real steps of w_it J_it.
    ``mask``: booleans (m, T), or None (the weights are then returned as they are).
    """
    if mask is None:
        return sample_weight
    xp = backend.get_array_module(mask)
    real = mask.astype(np.float32)
    w = real * (real.size / xp.maximum(real.sum(), 1))  # stays on the device: no count read back
    if sample_weight is not None:
        w = w * sample_weight.reshape(tuple(sample_weight.shape) + (1,) * (w.ndim - sample_weight.ndim))
    return w


def _batch(a):
    """m: the number of examples (every axis but the class axis)."""
    return a.size // a.shape[-1]


def _labels(y_true, y_pred):
    return y_true.reshape(y_pred.shape[:-1]).astype(np.int64, copy=False)


def _one_hot(labels, like):
    xp = backend.get_array_module(like)
    return (labels[..., None] == xp.arange(like.shape[-1])).astype(like.dtype)


def _logsumexp(z):
    xp = backend.get_array_module(z)
    zmax = z.max(axis=-1, keepdims=True)
    return xp.log(xp.exp(z - zmax).sum(axis=-1)) + zmax[..., 0]


ALIASES = {"mse": "mean_squared_error"}
LOSSES = {cls.name: cls for cls in (MeanSquaredError, BinaryCrossentropy, CategoricalCrossentropy,
                                    SparseCategoricalCrossentropy)}


def register_loss(cls):
    """Make a Loss subclass known by its ``name`` (``compile(loss=name)``, and saved models that use it); a decorator.

    Its constructor must accept its own ``get_config()`` (without 'name') as keyword arguments."""
    if not (isinstance(cls, type) and issubclass(cls, Loss) and isinstance(cls.name, str)):
        raise TypeError(f"register_loss expects a Loss subclass with a name; received {cls!r}")
    LOSSES[cls.name] = cls
    return cls


def get(identifier):
    """A loss from a name ('categorical_crossentropy', 'mse'), a config dict ({'name': ..., 'margin': ...}), or an
    instance."""
    if isinstance(identifier, Loss):
        return identifier
    config = dict(identifier) if isinstance(identifier, dict) else {"name": identifier}
    name = config.pop("name", None)
    if isinstance(name, str):
        key = ALIASES.get(name.lower(), name.lower())
        if key in LOSSES:
            try:
                return LOSSES[key](**config)
            except TypeError as e:  # a loss that needs settings (a YOLO loss's anchors) given by name alone
                raise ValueError(f"Loss {name!r} cannot be made from {identifier!r} ({e}): create the loss object "
                                 f"and pass it, e.g. loss={LOSSES[key].__name__}(...)") from None
    raise ValueError(f"Unknown loss {identifier!r}; valid losses are: {', '.join(list(LOSSES) + list(ALIASES))}")
