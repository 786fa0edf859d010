"""The triplet loss (FaceNet): an encoding that puts images of one person close together, other people far away.

For an anchor image A, a positive P (the same person) and a negative N (someone else), with the
encodings f(.) and a margin alpha, the course's loss is::

    L(A, P, N) = max(||f(A) - f(P)||^2 - ||f(A) - f(N)||^2 + alpha, 0)

Most triplets are already right by more than alpha and teach nothing, so the triplets are *mined* in
each batch, from its labels, as "hard" triplets (Hermans, Beyer and Leibe, 2017, "batch hard"): every
sample of the batch is an anchor, with the farthest positive and the closest negative the batch holds
for it::

    J = 1/M sum over anchors a of max(max_p d(a, p) - min_n d(a, n) + alpha, 0),   d(a, b) = ||f(a) - f(b)||^2

(M: the anchors that have a positive and a negative in the batch; batches of a few dozen samples of a
handful of classes have many.)

Batch hard pulls hardest on the worst outliers, and early in training, with a large batch or margin, it can
collapse every encoding to one point (then every term is alpha, and every distance 0). FaceNet's *semi-hard*
mining (``mining="semi_hard"``, as in TensorFlow Addons' TripletSemiHardLoss) takes every positive pair
(a, p) of the batch, each with the closest negative that is still farther than p -- d(a, p) < d(a, n) -- or,
where no negative is, the farthest one::

    J = 1/M sum over pairs (a, p) of max(d(a, p) - d(a, n(a, p)) + alpha, 0)      (M: the positive pairs)

It needs a (batch, batch, batch) comparison: meant for batches of up to a few hundred.

With W[a, p] = +1 and W[a, n] = -1 for each chosen triplet (0 when its term is 0; semi-hard sums them, as
one negative can serve several pairs), J = 1/M sum_ab W[a, b] d(a, b), and as
dd(a, b)/df(a) = 2 (f(a) - f(b)) = -dd(a, b)/df(b)::

    dJ/df = 2/M ((r + c) * f - (W + W^T) f),      r = W 1 (row sums), c = W^T 1 (column sums)

The targets y are the samples' class labels (who is who), one per sample.
"""

import gpunn.backend as backend
from gpunn.losses import Loss, register_loss


@register_loss
class TripletLoss(Loss):
    """The triplet loss, mined in each batch (above): ``compile(loss=TripletLoss(margin=0.2))``, ``fit(x, labels)``.

    The model's output is the encoding f(x), (m, d); an :class:`gpunn.layers.UnitNormalization` before it keeps
    the encodings on the unit sphere, where distances lie in [0, 4] and a margin of 0.2 means the same at every
    scale.

    Args:
        margin: alpha.
        mining: "hard" (batch hard, each anchor's farthest positive and closest negative) or "semi_hard"
            (every positive pair, with the closest negative farther than the positive).
    """

    name = "triplet_loss"
    takes_labels = True

    MINING = ("hard", "semi_hard")

    def __init__(self, margin=0.2, mining="hard"):
        if not margin >= 0:
            raise ValueError(f"TripletLoss: margin must be >= 0; received margin={margin!r}")
        if mining not in self.MINING:
            raise ValueError(f"TripletLoss: mining must be one of {', '.join(self.MINING)}; received mining={mining!r}")
        self.margin = float(margin)
        self.mining = mining

    def forward(self, y_pred, y_true, sample_weight=None, mask=None):
        self.refuse_mask(mask)
        xp = backend.get_array_module(y_pred)
        self.shape = y_pred.shape
        f = self.f = y_pred.reshape(len(y_pred), -1)
        labels = y_true.reshape(-1)
        squares = (f * f).sum(axis=1)
        d = xp.maximum(squares[:, None] + squares[None, :] - 2 * f @ f.T, 0)  # d[a, b] = ||f(a) - f(b)||^2
        same = labels[:, None] == labels[None, :]
        positive = same & ~xp.eye(len(f), dtype=bool)
        if self.mining == "semi_hard":
            return self._semi_hard(xp, f, d, same, positive, sample_weight)
        far = xp.where(positive, d, -xp.inf).argmax(axis=1)  # the hardest positive of each anchor
        close = xp.where(same, xp.inf, d).argmin(axis=1)  # the hardest negative
        rows = xp.arange(len(f))
        valid = positive.any(axis=1) & ~same.all(axis=1)
        terms = xp.maximum(d[rows, far] - d[rows, close] + self.margin, 0) * valid
        weights = valid if sample_weight is None else valid * sample_weight.reshape(-1)
        self.m = xp.maximum(valid.sum(), 1)  # M, kept on the device
        self.w_pair = xp.zeros(d.shape, dtype=f.dtype)  # W of the docstring: +1 at (a, p), -1 at (a, n)
        active = ((terms > 0) * weights).astype(f.dtype)
        self.w_pair[rows, far] += active
        self.w_pair[rows, close] -= active
        return (terms * weights).sum() / self.m

    def _semi_hard(self, xp, f, d, same, positive, sample_weight):
        negative = ~same
        farther = negative[:, None, :] & (d[:, None, :] > d[:, :, None])  # [a, p, n]: n negative, d(a, n) > d(a, p)
        outside = xp.where(farther, d[:, None, :], xp.inf).argmin(axis=2)  # the closest such n, for each (a, p)
        inside = xp.where(negative, d, -xp.inf).argmax(axis=1)  # none: the farthest negative of a
        chosen = xp.where(farther.any(axis=2), outside, inside[:, None])  # n(a, p)
        valid = positive & negative.any(axis=1)[:, None]
        terms = xp.maximum(d - xp.take_along_axis(d, chosen, axis=1) + self.margin, 0) * valid
        weights = valid if sample_weight is None else valid * sample_weight.reshape(-1, 1)
        self.m = xp.maximum(valid.sum(), 1)
        active = ((terms > 0) * weights).astype(f.dtype)  # +1 at (a, p)
        picked = chosen[:, :, None] == xp.arange(len(f))  # [a, p, n]: n is the negative of (a, p)
        self.w_pair = active - (active[:, :, None] * picked).sum(axis=1)
        return (terms * weights).sum() / self.m

    def backward(self):
        w = self.w_pair
        r, c = w.sum(axis=1), w.sum(axis=0)
        df = 2 / self.m * ((r + c)[:, None] * self.f - (w + w.T) @ self.f)
        return df.astype(self.f.dtype).reshape(self.shape)

    def get_config(self):
        return {"name": self.name, "margin": self.margin, "mining": self.mining}
