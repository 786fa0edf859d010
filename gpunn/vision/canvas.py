"""A detection dataset made on the spot: small images (MNIST digits) pasted at random places on a black canvas.

Nothing is downloaded beyond the digits themselves, and every object's box is known exactly: the
tight box around its bright pixels. Objects never overlap, so each one is fully visible.

    (x_train, y_train), _ = gpunn.datasets.mnist.load_data()
    images, boxes, classes = paste_on_canvas(x_train, y_train, n_images=1000, canvas_size=64, seed=0)
"""

import numpy as np


def tight_box(image, threshold=0.25):
    """(x1, y1, x2, y2) around the pixels brighter than ``threshold`` x the brightest (edges between pixels)."""
    rows, cols = np.nonzero(image > threshold * image.max())
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=np.float64)


def paste_on_canvas(images, labels, n_images, canvas_size=64, objects=(1, 3), seed=0):
    """``n_images`` canvases, each holding ``objects[0]`` to ``objects[1]`` of ``images`` at random places.

    Args:
        images: (n, h, w) small images (uint8 or float; scaled to [0, 1] by their maximum value range).
        labels: (n,) their classes.
        n_images: how many canvases to make.
        canvas_size: an int or (height, width), in pixels.
        objects: (fewest, most) objects per canvas; fewer when no free place is found.
        seed: the same seed makes the same dataset.

    Returns:
        x (n_images, 1, H, W) float32 in [0, 1] (channels-first), boxes (a list of (k, 4) arrays of corners
        (x1, y1, x2, y2) in pixels, one per canvas) and classes (a list of (k,) int64 arrays).
    """
    rng = np.random.default_rng(seed)
    height, width = (canvas_size, canvas_size) if np.isscalar(canvas_size) else canvas_size
    images = np.asarray(images, dtype=np.float32)
    images = images / 255.0 if images.max() > 1 else images
    h, w = images.shape[1:]
    if h > height or w > width:
        raise ValueError(f"paste_on_canvas: images of {h}x{w} pixels do not fit on a {height}x{width} canvas")
    x = np.zeros((n_images, 1, height, width), dtype=np.float32)
    boxes, classes = [], []
    for n in range(n_images):
        placed, kinds = [], []
        for _ in range(rng.integers(objects[0], objects[1] + 1)):
            pick = rng.integers(len(images))
            box = tight_box(images[pick])
            for _attempt in range(20):  # a free place, or give this object up
                top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
                moved = box + [left, top, left, top]
                if all(not _overlap(moved, other) for other in placed):
                    x[n, 0, top:top + h, left:left + w] = np.maximum(x[n, 0, top:top + h, left:left + w], images[pick])
                    placed.append(moved)
                    kinds.append(int(labels[pick]))
                    break
        boxes.append(np.array(placed, dtype=np.float64).reshape(-1, 4))
        classes.append(np.array(kinds, dtype=np.int64))
    return x, boxes, classes


def _overlap(a, b, gap=1):
    """Whether boxes a and b come closer than ``gap`` pixels."""
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap
