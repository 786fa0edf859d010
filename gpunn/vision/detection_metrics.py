"""Mean average precision: how detectors are scored (PASCAL VOC's mAP at IoU 0.5).

For one class, take every box the detector found in every image, best score first. A box is a *true
positive* when it overlaps (IoU >= 0.5) an object of its class in its image that no better box has
claimed yet, else a *false positive*. After the first k boxes::

    precision_k = TP_k / k        recall_k = TP_k / (number of objects of the class)

The average precision is the area under the precision-recall curve, precision first made to never
rise as recall grows (VOC's all-point interpolation). The mAP is its mean over the classes that have
objects. 1 means every object found, before any false alarm.
"""

import numpy as np

from gpunn.vision.boxes import iou


def average_precision(detections, truths, label, iou_threshold=0.5):
    """AP of class ``label``; arguments as :func:`mean_average_precision`'s. None when no object has that class."""
    found = [(score, n, box) for n, (boxes, scores, classes) in enumerate(detections)
             for box, score, c in zip(np.reshape(boxes, (-1, 4)), np.reshape(scores, -1), np.reshape(classes, -1))
             if c == label]
    objects = [np.reshape(boxes, (-1, 4))[np.reshape(classes, -1) == label] for boxes, classes in truths]
    total = sum(len(o) for o in objects)
    if total == 0:
        return None
    claimed = [np.zeros(len(o), dtype=bool) for o in objects]
    hits = []
    for score, n, box in sorted(found, key=lambda f: -f[0]):
        overlaps = iou(box[None], objects[n])[0] if len(objects[n]) else np.zeros(0)
        best = int(np.argmax(overlaps)) if len(overlaps) else -1
        hit = best >= 0 and overlaps[best] >= iou_threshold and not claimed[n][best]
        if hit:
            claimed[n][best] = True
        hits.append(hit)
    tp = np.cumsum(hits)
    recall = np.concatenate([[0.0], tp / total])
    precision = np.concatenate([[1.0], tp / np.arange(1, len(hits) + 1)])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # never rising as recall grows
    return float(np.sum(np.diff(recall) * precision[1:]))


def mean_average_precision(detections, truths, num_classes, iou_threshold=0.5):
    """The mAP of a detector over a set of images.

    Args:
        detections: for each image, (boxes (k, 4), scores (k,), classes (k,)) -- as ``YOLOGrid.decode`` gives.
        truths: for each image, (boxes (k, 4), classes (k,)): the objects really there.
        num_classes: the classes are 0 .. num_classes - 1.
        iou_threshold: the overlap a box needs to count as finding an object (0.5: "mAP@0.5").
    """
    if len(detections) != len(truths):
        raise ValueError(f"mean_average_precision: expected detections and truths for the same images; received "
                         f"{len(detections)} and {len(truths)}")
    aps = [average_precision(detections, truths, c, iou_threshold) for c in range(num_classes)]
    aps = [ap for ap in aps if ap is not None]
    return float(np.mean(aps)) if aps else 0.0
