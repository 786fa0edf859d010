"""Computer vision beyond classification: the course's detection, face verification and style transfer.

- Detection: :func:`iou`, :func:`non_max_suppression`, :class:`YOLOGrid` (anchor assignment, targets,
  decoding the grid to boxes), :class:`YOLOLoss`, :func:`mean_average_precision`, and
  :func:`paste_on_canvas`, a detection dataset made from MNIST digits.
- Face verification: :class:`TripletLoss` (with ``gpunn.layers.UnitNormalization`` and
  ``gpunn.metrics.roc_curve``).
- What a network looks at, and style transfer: :func:`saliency_map`, :func:`gram_matrix`,
  :func:`content_cost`, :func:`style_cost`, :func:`style_transfer`, on :func:`small_vgg`, a VGG-style
  network trained on Fashion-MNIST whose weights ship with gpunn.

The augmentation layers are in :mod:`gpunn.layers` (``RandomFlip``, ``RandomTranslation``,
``RandomRotation``, ``RandomCrop``); input gradients in :func:`gpunn.utils.value_and_input_gradient`.
"""

from gpunn.vision.boxes import centers, corners, iou, non_max_suppression
from gpunn.vision.canvas import paste_on_canvas, tight_box
from gpunn.vision.detection_metrics import average_precision, mean_average_precision
from gpunn.vision.saliency import saliency_map
from gpunn.vision.small_vgg import small_vgg
from gpunn.vision.style import content_cost, gram_matrix, style_cost, style_transfer
from gpunn.vision.triplet import TripletLoss
from gpunn.vision.yolo import YOLOGrid
from gpunn.vision.yolo_loss import YOLOLoss

__all__ = ["TripletLoss", "YOLOGrid", "YOLOLoss", "average_precision", "centers", "content_cost", "corners",
           "gram_matrix", "iou", "mean_average_precision", "non_max_suppression", "paste_on_canvas", "saliency_map",
           "small_vgg", "style_cost", "style_transfer", "tight_box"]
