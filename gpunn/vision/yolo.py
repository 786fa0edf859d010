"""YOLO's grid: from boxes to the targets a network learns, and from its outputs back to boxes.

YOLO cuts the image into an S x S grid of cells and gives every cell A *anchor boxes*, shapes fixed in
advance (a tall one, a wide one...). An object belongs to the cell that holds its centre, and within
it to the anchor whose shape is most like its own (the highest IoU, both centred). The target of each
cell and anchor is the course's vector of 5 + K numbers::

    y = (p_c, b_x, b_y, b_h, b_w, c_1, ..., c_K)

p_c = 1 when an object is there (and the rest then says where and what, else it is 0): (b_x, b_y) its
centre within the cell, from (0, 0) at the cell's top-left corner to (1, 1) at its bottom-right; b_h, b_w
its height and width in cells (more than 1 for an object larger than a cell); c its class, one-hot.

The network outputs, for each cell and anchor, 5 + K raw numbers t, read as (YOLOv2, the course's
assignment)::

    p_c = sigmoid(t_o)     b_x = sigmoid(t_x)     b_y = sigmoid(t_y)
    b_h = p_h exp(t_h)     b_w = p_w exp(t_w)     (p_h, p_w: the anchor's shape)     c = softmax(t_c)

A model's output is laid out as a convolution gives it: (A * (5 + K), S, S) per image, channels-first
(anchor a's vector in channels a*(5+K) to (a+1)*(5+K) - 1), or (S, S, A * (5 + K)) channels-last.
"""

import numpy as np

import gpunn.backend as backend
from gpunn import config
from gpunn.vision.boxes import corners, non_max_suppression
from gpunn.vision.yolo_loss import YOLOLoss, as_vectors


def _pair(value, what):
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or not all(v > 0 for v in pair):
        raise ValueError(f"YOLOGrid: {what} must be a positive number or a pair (height, width); received {value!r}")
    return pair


class YOLOGrid:
    """The grid a YOLO model predicts on: ``grid_size`` cells a side over images of ``image_size`` pixels.

    Args:
        image_size: the images' size in pixels, an int or (height, width).
        grid_size: cells a side, an int or (rows, columns).
        anchors: the anchor boxes' (height, width) in pixels, e.g. ``[(20, 8), (20, 16)]``.
        num_classes: K.
        data_format: of the model's output; None: :func:`gpunn.config.image_data_format`.

    Example:
        >>> grid = YOLOGrid(64, 8, anchors=[(20, 8), (20, 16)], num_classes=10)
        >>> y = grid.targets(boxes, classes)                  # (n, 30, 8, 8) for model.fit
        >>> model.compile("adam", loss=grid.loss())
        >>> found = grid.decode(model.predict(x))            # [(boxes, scores, classes)] per image
    """

    def __init__(self, image_size, grid_size, anchors, num_classes, data_format=None):
        self.image_size, self.grid_size = _pair(image_size, "image_size"), _pair(grid_size, "grid_size")
        self.cell = tuple(i / g for i, g in zip(self.image_size, self.grid_size))  # (height, width) in pixels
        self.anchors = np.array(anchors, dtype=np.float64).reshape(-1, 2)
        if len(self.anchors) == 0 or (self.anchors <= 0).any():
            raise ValueError(f"YOLOGrid: anchors must be one or more (height, width) pairs of positive sizes; "
                             f"received {anchors!r}")
        self.num_classes = int(num_classes)
        self.data_format = config.check_data_format(data_format or config.image_data_format(), "YOLOGrid")
        self.depth = len(self.anchors) * (5 + self.num_classes)  # the channels of the model's output

    def loss(self, lambda_coord=5.0, lambda_noobj=0.5):
        """The :class:`YOLOLoss` for this grid (its anchors in cells)."""
        return YOLOLoss((self.anchors / self.cell).tolist(), self.num_classes, lambda_coord, lambda_noobj,
                        self.data_format)

    def targets(self, boxes, classes):
        """The targets of a batch of images: ``boxes[n]`` (k, 4) corners in pixels and ``classes[n]`` (k,) of image n.

        Each object goes to the cell that holds its centre and to the anchor most like it; two objects
        wanting the same cell and anchor cannot both be learnt (the later one is kept), YOLO's known limit.
        """
        (rows, cols), a, k = self.grid_size, len(self.anchors), self.num_classes
        y = np.zeros((len(boxes), rows, cols, a, 5 + k), dtype=np.float32)
        for n, (image_boxes, image_classes) in enumerate(zip(boxes, classes)):
            for (x1, y1, x2, y2), label in zip(np.reshape(image_boxes, (-1, 4)), np.reshape(image_classes, -1)):
                h, w = y2 - y1, x2 - x1
                cx, cy = (x1 + x2) / 2 / self.cell[1], (y1 + y2) / 2 / self.cell[0]  # the centre, in cells
                i, j = min(int(cy), rows - 1), min(int(cx), cols - 1)
                inter = np.minimum(h, self.anchors[:, 0]) * np.minimum(w, self.anchors[:, 1])
                best = int(np.argmax(inter / (h * w + self.anchors.prod(axis=1) - inter)))
                y[n, i, j, best, :5] = 1, cx - j, cy - i, h / self.cell[0], w / self.cell[1]
                y[n, i, j, best, 5:] = np.eye(k)[int(label)]
        y = y.reshape(len(boxes), rows, cols, self.depth)
        return y if self.data_format == "channels_last" else np.ascontiguousarray(y.transpose(0, 3, 1, 2))

    def decode(self, y_pred, score_threshold=0.5, iou_threshold=0.5, max_boxes=None):
        """The boxes a model found, for each image: a list of (boxes (k, 4) corners in pixels, scores, classes).

        Each cell and anchor proposes its box with the score p_c * max_k c_k and the class of that max;
        proposals scoring below ``score_threshold`` are dropped, then :func:`non_max_suppression` keeps
        one box per object, class by class.
        """
        t = backend.to_numpy(as_vectors(y_pred, len(self.anchors), self.num_classes, self.data_format, "decode"))
        t = t.astype(np.float64)  # (N, A, 5 + K, rows, cols)
        rows, cols = np.meshgrid(np.arange(self.grid_size[0]), np.arange(self.grid_size[1]), indexing="ij")
        p_c = 1 / (1 + np.exp(-t[:, :, 0]))
        b_x = (cols + 1 / (1 + np.exp(-t[:, :, 1]))) * self.cell[1]  # the centre, in pixels
        b_y = (rows + 1 / (1 + np.exp(-t[:, :, 2]))) * self.cell[0]
        b_h = self.anchors[:, 0, None, None] * np.exp(t[:, :, 3])
        b_w = self.anchors[:, 1, None, None] * np.exp(t[:, :, 4])
        logits = t[:, :, 5:] - t[:, :, 5:].max(axis=2, keepdims=True)
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
        scores, labels = p_c * probabilities.max(axis=2), probabilities.argmax(axis=2)
        found = []
        for n in range(len(t)):
            boxes = corners(np.stack([b_x[n], b_y[n], b_h[n], b_w[n]], axis=-1).reshape(-1, 4))
            keep = non_max_suppression(boxes, scores[n].ravel(), labels[n].ravel(), score_threshold, iou_threshold,
                                       max_boxes)
            found.append((boxes[keep], scores[n].ravel()[keep], labels[n].ravel()[keep]))
        return found
