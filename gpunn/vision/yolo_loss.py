"""The YOLO loss: objectness, box and class, summed over every cell and anchor of the grid.

With the targets y = (p_c, b_x, b_y, b_h, b_w, c) of :mod:`gpunn.vision.yolo` and the raw outputs t of
the network (s = sigmoid, anchors (p_h, p_w) in cells), over the m images of a batch::

    J = 1/m sum over images, cells, anchors of
          p_c (-log s(t_o)) + lambda_noobj (1 - p_c) (-log(1 - s(t_o)))                    objectness
        + lambda_coord p_c [(s(t_x) - b_x)^2 + (s(t_y) - b_y)^2
                            + (t_h - log(b_h / p_h))^2 + (t_w - log(b_w / p_w))^2]             box
        + p_c (-sum_k c_k log softmax(t_c)_k)                                                class

Only the cells and anchors that hold an object (p_c = 1) learn a box and a class; every one learns
whether it holds one. Most hold none, so their term is weighted down (lambda_noobj, 0.5) and the box's
up (lambda_coord, 5), as in YOLO. Sizes are compared as logarithms, so that 2 pixels off matter more on a
small box than on a large one. The gradient, with the same 1/m::

    dt_o = p_c (s(t_o) - 1) + lambda_noobj (1 - p_c) s(t_o)
    dt_x = 2 lambda_coord p_c (s(t_x) - b_x) s(t_x) (1 - s(t_x))         (and t_y)
    dt_h = 2 lambda_coord p_c (t_h - log(b_h / p_h))                      (and t_w)
    dt_c = p_c (softmax(t_c) - c)
"""

import numpy as np

import gpunn.backend as backend
from gpunn import config
from gpunn.losses import Loss, register_loss


def as_vectors(y, anchors, num_classes, data_format, what):
    """A batch of grids (N, A*(5+K), S, S) or channels-last (N, S, S, A*(5+K)) -> (N, A, 5+K, S, S), a view."""
    depth = anchors * (5 + num_classes)
    axis = 3 if data_format == "channels_last" else 1
    if y.ndim != 4 or y.shape[axis] != depth:
        layout = "(N, S, S, A*(5+K))" if axis == 3 else "(N, A*(5+K), S, S)"
        raise ValueError(f"{what}: expected grids of shape {layout} with A*(5+K) = {anchors}*(5+{num_classes}) = "
                         f"{depth} channels ({data_format}); received an array of shape {tuple(y.shape)}")
    if axis == 1:
        return y.reshape(len(y), anchors, 5 + num_classes, *y.shape[2:])
    return y.reshape(*y.shape[:3], anchors, 5 + num_classes).transpose(0, 3, 4, 1, 2)


@register_loss
class YOLOLoss(Loss):
    """The YOLO loss above; ``compile(loss=YOLOGrid(...).loss())`` makes one for a grid.

    Args:
        anchors: the anchors' (height, width), in cells.
        num_classes: K.
        lambda_coord, lambda_noobj: the weights of the box term and of the objectness of empty anchors.
        data_format: of the model's output and the targets; None: :func:`gpunn.config.image_data_format`.
    """

    name = "yolo_loss"

    def __init__(self, anchors, num_classes, lambda_coord=5.0, lambda_noobj=0.5, data_format=None):
        self.anchors = [[float(h), float(w)] for h, w in anchors]
        self.num_classes, self.lambda_coord, self.lambda_noobj = int(num_classes), float(lambda_coord), \
            float(lambda_noobj)
        self.data_format = config.check_data_format(data_format or config.image_data_format(), "YOLOLoss")

    def forward(self, y_pred, y_true, sample_weight=None, mask=None):
        self.refuse_mask(mask)
        xp = backend.get_array_module(y_pred)
        self.w, self.shape = sample_weight, y_pred.shape
        a, k = len(self.anchors), self.num_classes
        t = as_vectors(y_pred, a, k, self.data_format, f"loss '{self.name}'")
        y = as_vectors(y_true.reshape(y_pred.shape), a, k, self.data_format, f"loss '{self.name}' (targets)")
        prior = self._log_anchors(xp, t.dtype)
        self.obj = obj = y[:, :, 0]
        self.s_obj, self.s_xy = 1 / (1 + xp.exp(-t[:, :, 0])), 1 / (1 + xp.exp(-t[:, :, 1:3]))
        self.xy_error = self.s_xy - y[:, :, 1:3]
        self.hw_error = t[:, :, 3:5] - (xp.log(xp.where(obj[:, :, None] > 0, y[:, :, 3:5], 1)) - prior)
        logits = t[:, :, 5:] - t[:, :, 5:].max(axis=2, keepdims=True)
        log_softmax = logits - xp.log(xp.exp(logits).sum(axis=2, keepdims=True))
        self.softmax, self.classes = xp.exp(log_softmax), y[:, :, 5:]

        def softplus(z):  # -log(1 - sigmoid(z)), without overflow; -log sigmoid(z) = softplus(-z)
            return xp.maximum(z, 0) + xp.log1p(xp.exp(-xp.abs(z)))

        cells = (obj * softplus(-t[:, :, 0]) + self.lambda_noobj * (1 - obj) * softplus(t[:, :, 0])
                 + self.lambda_coord * obj * ((self.xy_error ** 2).sum(axis=2) + (self.hw_error ** 2).sum(axis=2))
                 - obj * (self.classes * log_softmax).sum(axis=2))  # (N, A, S, S)
        return self.weighted(cells.reshape(len(cells), -1).sum(axis=1)).mean()

    def _log_anchors(self, xp, dtype):
        """log(p_h), log(p_w) of each anchor, (1, A, 2, 1, 1), copied to the device once (not at every step)."""
        key = (xp.__name__, np.dtype(dtype).name)
        if getattr(self, "_prior", (None,))[0] != key:
            self._prior = key, xp.asarray(np.log(self.anchors), dtype=dtype).reshape(1, len(self.anchors), 2, 1, 1)
        return self._prior[1]

    def backward(self):
        xp = backend.get_array_module(self.obj)
        obj, m = self.obj[:, :, None], len(self.obj)
        d_obj = obj * (self.s_obj[:, :, None] - 1) + self.lambda_noobj * (1 - obj) * self.s_obj[:, :, None]
        d_xy = 2 * self.lambda_coord * obj * self.xy_error * self.s_xy * (1 - self.s_xy)
        d_hw = 2 * self.lambda_coord * obj * self.hw_error
        d_classes = obj * (self.softmax - self.classes)
        d = self.weighted(xp.concatenate([d_obj, d_xy, d_hw, d_classes], axis=2) / m)  # (N, A, 5+K, S, S)
        if self.data_format == "channels_last":
            d = d.transpose(0, 3, 4, 1, 2)
        return xp.ascontiguousarray(d).reshape(self.shape)

    def get_config(self):
        return {"name": self.name, "anchors": self.anchors, "num_classes": self.num_classes,
                "lambda_coord": self.lambda_coord, "lambda_noobj": self.lambda_noobj, "data_format": self.data_format}
