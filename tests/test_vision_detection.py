"""gpunn.vision's detection: IoU and NMS on hand-computed cases, YOLO's grid and loss, mAP, the canvas dataset."""

import numpy as np
import pytest

from gpunn import Input, Model, load_model
from gpunn.layers import Conv2D
from gpunn.vision import (YOLOGrid, YOLOLoss, average_precision, centers, corners, iou, mean_average_precision,
                          non_max_suppression, paste_on_canvas)
from tests.conftest import assert_gradcheck, dev, host

rng = np.random.default_rng(16)


@pytest.mark.parametrize("a, b, expected", [
    ((2, 1, 4, 3), (1, 2, 3, 4), 1 / 7),  # the course's example: intersection 1, union 4 + 4 - 1
    ((0, 0, 2, 2), (1, 0, 3, 2), 2 / 6),
    ((0, 0, 4, 4), (1, 1, 3, 3), 4 / 16),  # one inside the other
    ((0, 0, 2, 2), (0, 0, 2, 2), 1.0),  # identical
    ((0, 0, 2, 2), (2, 0, 4, 2), 0.0),  # touching edges
    ((0, 0, 2, 2), (5, 5, 6, 6), 0.0),  # apart
    ((1, 1, 1, 3), (1, 1, 1, 3), 0.0),  # no area
])
def test_iou_by_hand(a, b, expected):
    assert iou([a], [b])[0, 0] == pytest.approx(expected)
    assert iou([b], [a])[0, 0] == pytest.approx(expected)


def test_iou_is_pairwise_and_takes_no_boxes():
    a, b = [(0, 0, 2, 2), (1, 1, 3, 3), (5, 5, 6, 6)], [(0, 0, 2, 2), (1, 0, 3, 2)]
    np.testing.assert_allclose(iou(a, b), [[1, 1 / 3], [1 / 7, 1 / 3], [0, 0]])
    assert iou(np.zeros((0, 4)), b).shape == (0, 2) and iou(a, []).shape == (3, 0)
    with pytest.raises(ValueError, match=r"iou: boxes_a: expected boxes of shape \(n, 4\).*received shape \(2, 3\)"):
        iou(np.zeros((2, 3)), b)


def test_corners_and_centers_are_inverse():
    boxes = rng.random((5, 4)) * 10
    boxes[:, 2:] += boxes[:, :2]
    np.testing.assert_allclose(corners(centers(boxes)), boxes)
    np.testing.assert_allclose(centers([[2, 4, 6, 12]]), [[4, 8, 8, 4]])  # (b_x, b_y, b_h, b_w)


BOXES = np.array([(0, 0, 10, 10), (1, 1, 11, 11), (20, 20, 30, 30), (0, 0, 10, 10)], dtype=float)


@pytest.mark.parametrize("boxes, scores, classes, kwargs, kept", [
    (np.zeros((0, 4)), [], None, {}, []),  # no boxes
    (BOXES[:1], [0.9], None, {}, [0]),  # one box
    (BOXES[:1], [0.3], None, {}, []),  # one box, below the score threshold
    (BOXES[[0, 3]], [0.6, 0.9], None, {}, [1]),  # identical boxes: the better one stays
    (BOXES, [0.4, 0.3, 0.2, 0.1], None, {}, []),  # all below the score threshold
    (BOXES[:3], [0.9, 0.8, 0.7], None, {}, [0, 2]),  # box 1 overlaps box 0 (IoU 0.68), box 2 is elsewhere
    (BOXES[:3], [0.9, 0.8, 0.7], None, {"iou_threshold": 0.7}, [0, 1, 2]),
    (BOXES[:3], [0.9, 0.8, 0.7], [0, 1, 0], {}, [0, 1, 2]),  # another class is never suppressed
    (BOXES[[0, 3]], [0.9, 0.9], [0, 0], {}, [0]),  # a tie: the first one
    (BOXES[:3], [0.7, 0.8, 0.9], None, {"max_boxes": 1}, [2]),
    (BOXES[[0, 3]], [0.9, 0.8], None, {"iou_threshold": 1.0}, [0]),  # IoU equal to the threshold suppresses
])
def test_non_max_suppression_by_hand(boxes, scores, classes, kwargs, kept):
    assert non_max_suppression(boxes, scores, classes, **kwargs).tolist() == kept


def test_non_max_suppression_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="one score \\(and class\\) per box; received 4 boxes, 3 scores"):
        non_max_suppression(BOXES, [0.9, 0.8, 0.7])


GRID = YOLOGrid(64, 8, anchors=[(20, 8), (20, 16)], num_classes=3)
TRUE_BOXES = [np.array([[10, 10, 18, 30], [30, 30, 46, 50]]), np.zeros((0, 4))]
TRUE_CLASSES = [np.array([1, 2]), np.array([], dtype=int)]


def test_targets_put_each_object_in_its_cell_and_anchor():
    y = GRID.targets(TRUE_BOXES, TRUE_CLASSES)
    assert y.shape == (2, 16, 8, 8) and GRID.depth == 16
    v = y.reshape(2, 2, 8, 8, 8)  # (image, anchor, 5 + K, row, column)
    assert np.argwhere(v[:, :, 0]).tolist() == [[0, 0, 2, 1], [0, 1, 5, 4]]  # the tall box to anchor 0, the wide to 1
    np.testing.assert_allclose(v[0, 0, :, 2, 1], [1, 0.75, 0.5, 2.5, 1, 0, 1, 0])  # centre (14, 20): cell (2, 1)
    np.testing.assert_allclose(v[0, 1, :, 5, 4], [1, 0.75, 0, 2.5, 2, 0, 0, 1])  # centre (38, 40): cell (5, 4)
    assert not v[1].any()
    last = YOLOGrid(64, 8, anchors=[(20, 8), (20, 16)], num_classes=3, data_format="channels_last")
    np.testing.assert_array_equal(last.targets(TRUE_BOXES, TRUE_CLASSES), y.transpose(0, 2, 3, 1))


def logits_of(y, grid):
    """Raw outputs that decode exactly to the targets y (sure where an object is, sure there is none elsewhere)."""
    v = y.reshape(len(y), len(grid.anchors), 5 + grid.num_classes, *y.shape[2:]).astype(np.float64)
    t = np.zeros_like(v)
    obj = v[:, :, :1] > 0
    t[:, :, 0] = np.where(obj[:, :, 0], 12, -12)
    xy = np.clip(v[:, :, 1:3], 1e-6, 1 - 1e-6)
    t[:, :, 1:3] = np.log(xy / (1 - xy))
    anchors = (grid.anchors / grid.cell)[None, :, :, None, None]
    t[:, :, 3:5] = np.log(np.where(obj, v[:, :, 3:5], anchors) / anchors)
    t[:, :, 5:] = 12 * v[:, :, 5:]
    return t.reshape(y.shape)


def test_decoding_the_targets_gives_the_boxes_back():
    found = GRID.decode(logits_of(GRID.targets(TRUE_BOXES, TRUE_CLASSES), GRID))
    np.testing.assert_allclose(found[0][0], TRUE_BOXES[0], atol=1e-3)
    assert found[0][2].tolist() == [1, 2] and (found[0][1] > 0.99).all()
    assert len(found[1][0]) == 0
    assert mean_average_precision(found, list(zip(TRUE_BOXES, TRUE_CLASSES)), 3) == 1.0


def test_yolo_loss_is_near_zero_on_perfect_outputs_and_refuses_wrong_shapes():
    y = GRID.targets(TRUE_BOXES, TRUE_CLASSES)
    loss = GRID.loss()
    assert host(loss.forward(dev(logits_of(y, GRID)), dev(y))) < 1e-3
    assert host(loss.forward(dev(np.zeros_like(y)), dev(y))) > 1
    with pytest.raises(ValueError, match=r"loss 'yolo_loss': expected grids of shape \(N, A\*\(5\+K\), S, S\) with "
                                         r"A\*\(5\+K\) = 2\*\(5\+3\) = 16 channels.*received .*\(2, 15, 8, 8\)"):
        loss.forward(dev(np.zeros((2, 15, 8, 8))), dev(y))


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_yolo_loss_gradient_by_gradcheck(data_format):
    grid = YOLOGrid(16, 4, anchors=[(6, 3), (4, 6)], num_classes=2, data_format=data_format)
    boxes = [np.array([[1, 1, 4, 8], [8, 9, 14, 12]]), np.array([[2, 5, 9, 9]])]
    y = grid.targets(boxes, [np.array([0, 1]), np.array([1])])
    shape = (3, 4, 4) if data_format == "channels_first" else (4, 4, 3)
    x_in = Input(shape)
    model = Model(x_in, Conv2D(grid.depth, 1, data_format=data_format)(x_in))
    model.compile("sgd", loss=grid.loss(lambda_coord=2.0, lambda_noobj=0.3))
    assert_gradcheck(model, rng.standard_normal((2,) + shape), y)


def test_yolo_loss_is_saved_and_loaded_with_its_settings(tmp_path):
    x_in = Input((3, 8, 8))
    model = Model(x_in, Conv2D(GRID.depth, 1)(x_in))
    model.compile("adam", loss=GRID.loss(lambda_noobj=0.25))
    model.save(tmp_path / "yolo.npz")
    loaded = load_model(tmp_path / "yolo.npz").loss
    assert isinstance(loaded, YOLOLoss) and loaded.get_config() == GRID.loss(lambda_noobj=0.25).get_config()
    with pytest.raises(ValueError, match=r"Loss 'yolo_loss' cannot be made from 'yolo_loss' .*anchors.*loss=YOLOLoss"):
        model.compile("adam", loss="yolo_loss")


def test_average_precision_by_hand():
    truths = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([0, 0]))]
    perfect = [(truths[0][0], np.array([0.9, 0.8]), np.array([0, 0]))]
    assert average_precision(perfect, truths, 0) == 1.0
    # a false alarm ranked first, then both objects: precision 0, 1/2, 2/3 at recall 0, 1/2, 1 -> AP = 2/3
    found = [(np.array([[50, 50, 60, 60], [0, 0, 10, 10], [20, 20, 30, 31]]), np.array([0.9, 0.8, 0.7]),
              np.array([0, 0, 0]))]
    assert average_precision(found, truths, 0) == pytest.approx(2 / 3)
    twice = [(np.array([[0, 0, 10, 10], [0, 0, 10, 11]]), np.array([0.9, 0.8]), np.array([0, 0]))]
    assert average_precision(twice, truths, 0) == pytest.approx(0.5)  # the same object twice: one hit, one false alarm
    wrong_class = [(truths[0][0], np.array([0.9, 0.8]), np.array([1, 1]))]
    assert average_precision(wrong_class, truths, 0) == 0.0 and average_precision(wrong_class, truths, 1) is None
    assert mean_average_precision(wrong_class, truths, 2) == 0.0  # class 1 has no objects: left out of the mean
    assert mean_average_precision([(np.zeros((0, 4)), [], [])], truths, 2) == 0.0


def test_canvas_dataset_places_objects_apart_with_tight_boxes():
    digits = np.zeros((5, 12, 12), dtype=np.uint8)
    for k in range(5):
        digits[k, 2 + k % 3:9, 3:10 - k % 2] = 255
    x, boxes, classes = paste_on_canvas(digits, np.arange(5), n_images=20, canvas_size=(40, 48), objects=(1, 3), seed=1)
    assert x.shape == (20, 1, 40, 48) and x.dtype == np.float32 and x.max() == 1.0
    again = paste_on_canvas(digits, np.arange(5), n_images=20, canvas_size=(40, 48), objects=(1, 3), seed=1)
    np.testing.assert_array_equal(again[0], x)
    assert {len(b) for b in boxes} <= {1, 2, 3} and len({len(b) for b in boxes}) > 1
    for image, image_boxes, image_classes in zip(x[:, 0], boxes, classes):
        assert len(image_boxes) == len(image_classes)
        assert (iou(image_boxes, image_boxes) == np.eye(len(image_boxes))).all()  # apart
        covered = np.zeros_like(image, dtype=bool)
        for (x1, y1, x2, y2), label in zip(image_boxes.astype(int), image_classes):
            assert (y2 - y1, x2 - x1) == (9 - 2 - label % 3, 7 - label % 2)  # the bright block, exactly
            covered[y1:y2, x1:x2] = True
        assert (image[~covered] == 0).all()
