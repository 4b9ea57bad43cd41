import math

import numpy as np
import pytest

from kseg.metrics import ConfusionMatrixMetric, confusion_matrix, segmentation_scores

IGNORE = 255

# Ground truth and prediction on 3 classes plus a 4th class (3) that occurs nowhere.
LABELS = np.array([[0, 0, 1, 1], [2, 2, 255, 0]])
PREDICTIONS = np.array([[0, 1, 1, 1], [2, 0, 2, 255]])
# Rows: truth, columns: prediction 0..3 and "no class". Ignored: the pixel labelled 255.
#   truth 0 at (0,0)->0, (0,1)->1, (1,3)->255 (no class)
#   truth 1 at (0,2)->1, (0,3)->1
#   truth 2 at (1,0)->2, (1,1)->0
EXPECTED = np.array(
    [
        [1, 1, 0, 0, 1],
        [0, 2, 0, 0, 0],
        [1, 0, 1, 0, 0],
        [0, 0, 0, 0, 0],
    ]
)


def test_confusion_matrix_by_hand():
    confusion = confusion_matrix(LABELS, PREDICTIONS, num_classes=4, ignore_index=IGNORE)
    np.testing.assert_array_equal(confusion, EXPECTED)


def test_scores_by_hand():
    scores = segmentation_scores(EXPECTED)
    # t = [3, 2, 2, 0]; n_ii = [1, 2, 1, 0]; predicted-as = [2, 3, 1, 0]
    assert scores["class_pixels"] == [3, 2, 2, 0]
    assert scores["pixel_accuracy"] == pytest.approx(4 / 7)
    assert scores["class_accuracy"][:3] == pytest.approx([1 / 3, 1.0, 0.5])
    assert math.isnan(scores["class_accuracy"][3])
    assert scores["mean_accuracy"] == pytest.approx((1 / 3 + 1 + 0.5) / 3)
    iou = [1 / (3 + 2 - 1), 2 / (2 + 3 - 2), 1 / (2 + 1 - 1)]
    assert scores["class_iou"][:3] == pytest.approx(iou)
    assert math.isnan(scores["class_iou"][3])
    assert scores["absent_classes"] == [3]
    assert scores["mean_iou"] == pytest.approx(sum(iou) / 3)
    assert scores["frequency_weighted_iou"] == pytest.approx((3 * iou[0] + 2 * iou[1] + 2 * iou[2]) / 7)


def test_class_only_predicted_has_zero_iou_and_nan_accuracy():
    confusion = confusion_matrix(np.array([0, 0]), np.array([0, 1]), num_classes=2)
    scores = segmentation_scores(confusion)
    assert scores["class_iou"] == pytest.approx([0.5, 0.0])
    assert math.isnan(scores["class_accuracy"][1])
    assert scores["mean_iou"] == pytest.approx(0.25)


def test_all_ignored_gives_nan_scores():
    confusion = confusion_matrix(np.full((3, 3), IGNORE), np.zeros((3, 3)), num_classes=2)
    assert confusion.sum() == 0
    scores = segmentation_scores(confusion)
    assert all(math.isnan(scores[key]) for key in ("pixel_accuracy", "mean_iou", "mean_accuracy"))


def test_square_matrix_accepted():
    scores = segmentation_scores(EXPECTED[:, :4])
    assert scores["class_iou"][1] == pytest.approx(2 / 3)


@pytest.mark.parametrize("shape", [(), (4,), (4, 6), (4, 3), (2, 2, 2)])
def test_other_shapes_are_refused_as_not_a_confusion_matrix(shape):
    with pytest.raises(ValueError, match=r"expected a \(C, C\) or \(C, C\+1\) confusion matrix"):
        segmentation_scores(np.zeros(shape))


def test_keras_metric_matches_numpy():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=(2, 6, 7))
    labels[rng.random(labels.shape) < 0.2] = IGNORE
    logits = rng.normal(size=(2, 6, 7, 5)).astype("float32")
    metric = ConfusionMatrixMetric(num_classes=5)
    metric.update_state(labels[:1], logits[:1])
    metric.update_state(labels[1:], logits[1:])
    expected = confusion_matrix(labels, logits.argmax(-1), num_classes=5)
    np.testing.assert_array_equal(np.asarray(metric.confusion.numpy()), expected)
    assert float(metric.result()) == pytest.approx(segmentation_scores(expected)["mean_iou"], abs=1e-6)
    assert metric.scores()["pixel_accuracy"] == pytest.approx(segmentation_scores(expected)["pixel_accuracy"])
    metric.reset_state()
    assert float(np.asarray(metric.confusion.numpy()).sum()) == 0
