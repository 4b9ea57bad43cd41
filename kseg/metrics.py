"""Confusion matrices and the four metrics of the FCN paper (Long et al. 2015, section 5).

With n_ij the number of pixels of ground-truth class i predicted as class j, and
t_i = sum_j n_ij the number of pixels of class i:

    pixel accuracy           sum_i n_ii / sum_i t_i
    mean class accuracy      (1/n_cl) sum_i n_ii / t_i
    mean IoU                 (1/n_cl) sum_i n_ii / (t_i + sum_j n_ji - n_ii)
    frequency weighted IoU   (1 / sum_k t_k) sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)

Pixels whose ground truth is the ignore label (255) are left out entirely. A prediction
that is no class (e.g. 255, or a Cityscapes void label id) is kept in a last extra column,
"invalid": it counts against the true class (in t_i) but as nobody's false positive.

A class absent from both ground truth and prediction has IoU NaN (0/0), and a class absent
from the ground truth has accuracy NaN; NaNs are left out of the means, so n_cl above is the
number of classes with a defined value.

`confusion_matrix` (NumPy) serves `kseg evaluate`; `ConfusionMatrixMetric` (Keras)
accumulates the same matrix during training, and both are scored by `segmentation_scores`.
"""

import keras
import numpy as np
from keras import ops

from kseg.labels import IGNORE_INDEX

METRIC_NAMES = ("pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou")


def confusion_matrix(labels, predictions, num_classes, ignore_index=IGNORE_INDEX):
    """Counts ground truth (rows) against prediction (columns).

    Args:
        labels: integer array. Ground-truth class indices; `ignore_index` pixels are skipped.
        predictions: integer array of the same shape. Predicted class indices; values
            outside [0, num_classes) go to the extra last column.
        num_classes: int. Number of classes.
        ignore_index: int. The void label of the ground truth.

    Returns:
        int64 array of shape (num_classes, num_classes + 1).
    """
    labels = np.asarray(labels).astype(np.int64).ravel()
    predictions = np.asarray(predictions).astype(np.int64).ravel()
    if labels.shape != predictions.shape:
        raise ValueError(
            f"labels and predictions differ in size. Received: {labels.size} and {predictions.size}"
        )
    keep = (labels != ignore_index) & (labels >= 0) & (labels < num_classes)
    labels, predictions = labels[keep], predictions[keep]
    predictions = np.where((predictions >= 0) & (predictions < num_classes), predictions, num_classes)
    counts = np.bincount(labels * (num_classes + 1) + predictions, minlength=num_classes * (num_classes + 1))
    return counts.reshape(num_classes, num_classes + 1)


def chance_mean_iou(confusion):
    """What a model that predicts one class everywhere scores: (class index, mean IoU).

    The class is the most frequent one of the ground truth, whose IoU is then its share of
    the labelled pixels; every other class present has IoU 0. A mean IoU this low means the
    model learned nothing about the image. (None, NaN) when nothing is labelled.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    class_pixels = confusion.sum(axis=1)
    total = class_pixels.sum()
    if total <= 0:
        return None, float("nan")
    majority = int(np.argmax(class_pixels))
    return majority, float(class_pixels[majority] / total / np.count_nonzero(class_pixels))


def at_chance_level(mean_iou, chance):
    """Whether a mean IoU is no better than `chance` (from `chance_mean_iou`), give or
    take a point of IoU."""
    return bool(np.isfinite(mean_iou) and np.isfinite(chance) and mean_iou <= chance * 1.05 + 0.01)


def segmentation_scores(confusion):
    """The four FCN metrics and per-class values from a confusion matrix.

    Args:
        confusion: array (C, C) or (C, C + 1), rows ground truth, columns prediction (the
            optional last column: invalid predictions).

    Returns:
        dict with "pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou"
        (floats, NaN when nothing was labelled), "class_iou" and "class_accuracy" (lists of
        float with NaN for undefined classes), "class_pixels" (list of int t_i) and
        "absent_classes" (indices whose IoU is NaN).
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    if confusion.ndim != 2 or confusion.shape[1] - confusion.shape[0] not in (0, 1):
        raise ValueError(f"expected a (C, C) or (C, C+1) confusion matrix. Received: {confusion.shape}")
    num_classes = confusion.shape[0]
    true_positives = np.diag(confusion[:, :num_classes])
    class_pixels = confusion.sum(axis=1)  # t_i, invalid predictions included
    predicted_pixels = confusion[:, :num_classes].sum(axis=0)
    union = class_pixels + predicted_pixels - true_positives
    with np.errstate(divide="ignore", invalid="ignore"):
        class_iou = np.where(union > 0, true_positives / union, np.nan)
        class_accuracy = np.where(class_pixels > 0, true_positives / class_pixels, np.nan)
        total = class_pixels.sum()  # 0 when nothing was labelled: both NaN (0/0)
        pixel_accuracy = true_positives.sum() / total
        frequency_weighted_iou = np.nansum(class_pixels * np.nan_to_num(class_iou)) / total
    return {
        "pixel_accuracy": float(pixel_accuracy),
        "mean_accuracy": _nanmean(class_accuracy),
        "mean_iou": _nanmean(class_iou),
        "frequency_weighted_iou": float(frequency_weighted_iou),
        "class_iou": [float(value) for value in class_iou],
        "class_accuracy": [float(value) for value in class_accuracy],
        "class_pixels": [int(value) for value in class_pixels],
        "absent_classes": [int(index) for index in np.flatnonzero(np.isnan(class_iou))],
    }


def _nanmean(values):
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")


def _count_dtype():
    """float64, except under JAX without x64 (float32: counts exact up to 2**24 per cell,
    beyond that each batch added rounds by less than 1e-7 of the count)."""
    if keras.backend.backend() == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            return "float32"
    return "float64"


@keras.saving.register_keras_serializable(package="kseg")
class ConfusionMatrixMetric(keras.metrics.Metric):
    """Accumulates the (C, C + 1) confusion matrix of argmax(logits); reports mean IoU.

    `update_state(labels, logits)` takes labels (B, H, W) with `ignore_index` for void and
    logits (B, H, W, C). The matrix is kept in float64 (exact up to 2**53 pixels; float32
    under JAX without x64) and summed across replicas under a tf.distribute strategy.
    `result()` is the mean IoU, as defined by `segmentation_scores`; `scores()` gives all metrics from the same matrix.

    Args:
        num_classes: int. Number of classes.
        ignore_index: int. The void label.
        name: str. Name of the metric (its result is logged as e.g. "val_mean_iou").
    """

    def __init__(self, num_classes, ignore_index=IGNORE_INDEX, name="mean_iou", **kwargs):
        if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"`num_classes` must be a positive integer. Received: {str(num_classes)[:40]}")
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.confusion = self.add_variable(
            shape=(self.num_classes, self.num_classes + 1), initializer="zeros",
            dtype=_count_dtype(), aggregation="sum", name="confusion",
        )  # fmt: skip

    def update_state(self, y_true, y_pred, sample_weight=None):
        classes = self.num_classes
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        predictions = ops.reshape(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), (-1,))
        keep = ops.logical_and(
            ops.logical_and(labels >= 0, labels < classes), ops.not_equal(labels, self.ignore_index)
        )
        # Ignored pixels are sent to one bin past the matrix and then dropped.
        cells = classes * (classes + 1)
        index = ops.where(keep, labels * (classes + 1) + predictions, cells)
        if keras.backend.backend() == "jax":  # jnp.bincount needs a static length under jit
            counts = ops.segment_sum(ops.ones_like(index), index, num_segments=cells + 1)[:cells]
        else:
            counts = ops.bincount(index, minlength=cells + 1)[:cells]
        counts = ops.reshape(ops.cast(counts, self.confusion.dtype), (classes, classes + 1))
        self.confusion.assign_add(counts)

    def result(self):
        confusion = ops.convert_to_tensor(self.confusion)
        true_positives = ops.diagonal(confusion[:, : self.num_classes])
        union = ops.sum(confusion, axis=1) + ops.sum(confusion[:, : self.num_classes], axis=0)
        union = union - true_positives
        defined = ops.cast(union > 0, confusion.dtype)
        iou = true_positives / ops.maximum(union, 1.0)
        mean = ops.sum(iou * defined) / ops.maximum(ops.sum(defined), 1.0)
        return ops.cast(mean, "float32")

    def scores(self):
        """All metrics of `segmentation_scores` from the accumulated matrix (NumPy)."""
        return segmentation_scores(np.asarray(ops.convert_to_numpy(self.confusion)))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "ignore_index": self.ignore_index}
