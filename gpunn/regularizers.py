"""Weight penalties added to the loss.

L2 ("weight decay"): penalty = l2 * sum(W^2), gradient 2 * l2 * W.
L1: penalty = l1 * sum(|W|), gradient l1 * sign(W) (drives weights to exactly 0).

The course writes the L2 cost as (lambda / 2m) * ||W||_F^2; that is this
penalty with l2 = lambda / (2m). As in Keras, the penalty is not divided by
the batch size here, so choose l2 accordingly (typical values 1e-4 .. 1e-2).
"""

import gpunn.backend as backend
from gpunn.utils.registry import from_identifier


class Regularizer:
    name = None

    def __init__(self, l1=0.0, l2=0.0):
        self.l1, self.l2 = float(l1), float(l2)

    def __call__(self, w):
        """The penalty (a 0-d array on the weight's device)."""
        xp = backend.get_array_module(w)
        penalty = 0.0
        if self.l1:
            penalty = penalty + self.l1 * xp.abs(w).sum()
        if self.l2:
            penalty = penalty + self.l2 * (w * w).sum()
        return penalty

    def gradient(self, w):
        """d penalty / dW."""
        xp = backend.get_array_module(w)
        grad = 0.0
        if self.l1:
            grad = grad + self.l1 * xp.sign(w)
        if self.l2:
            grad = grad + (2 * self.l2) * w
        return grad

    def get_config(self):
        return {"name": self.name, "l1": self.l1, "l2": self.l2}


class L1(Regularizer):
    name = "l1"

    def get_config(self):
        return {"name": self.name, "l1": self.l1}

    def __init__(self, l1=0.01):
        super().__init__(l1=l1)


class L2(Regularizer):
    name = "l2"

    def get_config(self):
        return {"name": self.name, "l2": self.l2}

    def __init__(self, l2=0.01):
        super().__init__(l2=l2)


class L1L2(Regularizer):
    name = "l1_l2"

    def __init__(self, l1=0.0, l2=0.0):
        super().__init__(l1=l1, l2=l2)


def l1(l1=0.01):
    return L1(l1)


def l2(l2=0.01):
    return L2(l2)


def l1_l2(l1=0.01, l2=0.01):
    return L1L2(l1, l2)


REGULARIZERS = {cls.name: cls for cls in (L1, L2, L1L2)}


def get(identifier):
    """A regularizer from None, a name ('l2'), a config dict, or an instance."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    return from_identifier(identifier, REGULARIZERS, "regularizer")
