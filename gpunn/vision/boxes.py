"""Bounding boxes: intersection over union and non-max suppression.

A box is given by its corners, ``(x1, y1, x2, y2)``: left, top, right, bottom, in pixels, x to the
right and y down (Keras's "xyxy"). The course's YOLO writes a box by its centre and size,
``(b_x, b_y, b_h, b_w)``; :func:`corners` and :func:`centers` convert between the two.

These work on NumPy arrays: they read detections after a model ran (``model.predict`` returns NumPy).
"""

import numpy as np


def corners(centers_hw):
    """(b_x, b_y, b_h, b_w) -> (x1, y1, x2, y2), along the last axis."""
    b = np.asarray(centers_hw, dtype=np.float64)
    bx, by, bh, bw = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack([bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2], axis=-1)


def centers(boxes):
    """(x1, y1, x2, y2) -> (b_x, b_y, b_h, b_w), along the last axis."""
    b = np.asarray(boxes, dtype=np.float64)
    return np.stack([(b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2, b[..., 3] - b[..., 1],
                     b[..., 2] - b[..., 0]], axis=-1)


def _as_boxes(boxes, what):
    b = np.asarray(boxes, dtype=np.float64)
    b = b.reshape(0, 4) if b.size == 0 else b
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{what}: expected boxes of shape (n, 4), (x1, y1, x2, y2) each; received shape {b.shape}")
    return b


def iou(boxes_a, boxes_b):
    """Intersection over union of every box of ``boxes_a`` (M, 4) with every box of ``boxes_b`` (K, 4): (M, K).

    The intersection of two boxes is the box between the larger of the left edges and the smaller of
    the right edges (and the same vertically), or nothing when those cross::

        inter = max(0, min(x2, x2') - max(x1, x1')) * max(0, min(y2, y2') - max(y1, y1'))
        IoU   = inter / (area + area' - inter)

    1 for identical boxes, 0 for boxes that do not overlap (or have no area).
    """
    a, b = _as_boxes(boxes_a, "iou: boxes_a")[:, None, :], _as_boxes(boxes_b, "iou: boxes_b")[None, :, :]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def non_max_suppression(boxes, scores, classes=None, score_threshold=0.5, iou_threshold=0.5, max_boxes=None):
    """The boxes to keep, as indices into ``boxes``, best score first: the course's non-max suppression.

    1. Discard every box whose score is below ``score_threshold``.
    2. While boxes remain: keep the one with the highest score, and discard every remaining box
       whose IoU with it is ``iou_threshold`` or more (another detection of the same object).

    With ``classes`` (one label per box), this runs for each class on its own: a box never suppresses
    a box of another class (a car and a person may share a place).

    Args:
        boxes: (n, 4) corners (x1, y1, x2, y2).
        scores: (n,) -- for YOLO, p_c times the class's probability.
        classes: (n,) integer labels, or None for one class.
        score_threshold, iou_threshold: as above.
        max_boxes: keep at most this many (the best ones), or None.
    """
    boxes = _as_boxes(boxes, "non_max_suppression: boxes")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.zeros(len(scores), dtype=np.int64) if classes is None else np.asarray(classes).reshape(-1)
    if not len(boxes) == len(scores) == len(labels):
        raise ValueError(f"non_max_suppression: expected one score (and class) per box; received {len(boxes)} boxes, "
                         f"{len(scores)} scores and {len(labels)} classes")
    candidates = [i for i in np.argsort(-scores, kind="stable") if scores[i] >= score_threshold]
    overlaps = iou(boxes, boxes)
    kept = []
    while candidates and (max_boxes is None or len(kept) < max_boxes):
        best = candidates.pop(0)
        kept.append(int(best))
        candidates = [i for i in candidates if labels[i] != labels[best] or overlaps[best, i] < iou_threshold]
    return np.array(kept, dtype=np.int64)
