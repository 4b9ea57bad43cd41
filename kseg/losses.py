"""Pixel-wise softmax cross-entropy that ignores the void label, and class weighting.

The loss of a batch is the mean, over every pixel whose label is not `ignore_index` (255),
of -log softmax(logits)[label], computed in float32 whatever the model's dtype policy.
With class weights w it is sum(w[label] * nll) / sum(w[label]) over those pixels: a weighted
mean, so its scale does not depend on the weights chosen.
"""

import math

import keras
from keras import ops

from kseg.labels import IGNORE_INDEX


@keras.saving.register_keras_serializable(package="kseg")
class MaskedSparseCrossEntropy(keras.losses.Loss):
    """Softmax cross-entropy on logits (B, H, W, C) against labels (B, H, W), 255 ignored.

    `call` returns one value per pixel, scaled so that keras' default reduction (the sum
    over all pixels divided by their number, then divided by the number of replicas under
    a tf.distribute strategy) gives the mean over labelled pixels only. A batch with no
    labelled pixel has loss 0.

    Args:
        num_classes: int. Number of classes (channels of the logits).
        ignore_index: int. Label value excluded from the loss.
        class_weights: list of float or None. One weight per class; None weighs all alike.
        name: str. Name of the loss.
    """

    def __init__(self, num_classes, ignore_index=IGNORE_INDEX, class_weights=None,
                 name="masked_cross_entropy", **kwargs):  # fmt: skip
        kwargs.pop("dtype", None)
        super().__init__(name=name, dtype="float32", **kwargs)
        if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"`num_classes` must be a positive integer. Received: {str(num_classes)[:40]}")
        if class_weights is not None:
            class_weights = [float(weight) for weight in class_weights]
            if len(class_weights) != num_classes:
                raise ValueError(
                    f"`class_weights` needs one weight per class ({num_classes}). "
                    f"Received: {len(class_weights)} weights"
                )
            # A NaN or infinite weight would make every loss NaN; a negative one rewards errors.
            bad = [weight for weight in class_weights if not math.isfinite(weight) or weight < 0]
            if bad or not any(class_weights):
                raise ValueError(
                    "`class_weights` must be finite, non-negative and not all zero. "
                    f"Received: {bad[0] if bad else 'all zero'}"
                )
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.class_weights = class_weights

    def call(self, y_true, y_pred):
        logits = ops.cast(y_pred, "float32")
        labels = ops.cast(y_true, "int32")
        if len(labels.shape) == len(logits.shape):  # (B, H, W, 1)
            labels = ops.squeeze(labels, axis=-1)
        valid = ops.logical_and(
            ops.not_equal(labels, self.ignore_index),
            ops.logical_and(labels >= 0, labels < self.num_classes),
        )
        safe_labels = ops.where(valid, labels, ops.zeros_like(labels))
        log_probs = ops.log_softmax(logits, axis=-1)
        nll = -ops.squeeze(ops.take_along_axis(log_probs, safe_labels[..., None], axis=-1), -1)
        weights = ops.cast(valid, "float32")
        if self.class_weights is not None:
            table = ops.convert_to_tensor(self.class_weights, dtype="float32")
            weights = weights * ops.take(table, safe_labels)
        pixels = ops.cast(ops.size(weights), "float32")
        # sum(weights * nll) / sum(weights) once keras divides by the number of pixels
        # (and by the number of replicas, whose sum of weights is pooled: the loss is the
        # mean over the global batch, not a mean of per-replica means).
        scale = pixels / ops.maximum(_mean_over_replicas(ops.sum(weights)), 1e-12)
        return ops.where(weights > 0, weights * nll, ops.zeros_like(nll)) * scale

    def get_config(self):
        return {
            "name": self.name,
            "reduction": self.reduction,
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "class_weights": self.class_weights,
        }


def _mean_over_replicas(value):
    """The mean of `value` over the replicas of a tf.distribute strategy (else `value`)."""
    if keras.backend.backend() != "tensorflow":
        return value
    import tensorflow as tf

    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return value
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return tf.stop_gradient(context.all_reduce(tf.distribute.ReduceOp.MEAN, value))


def masked_cross_entropy(labels, logits, num_classes, ignore_index=IGNORE_INDEX, class_weights=None):
    """The mean masked cross-entropy as a scalar tensor (a functional form of the loss)."""
    loss = MaskedSparseCrossEntropy(num_classes, ignore_index, class_weights)
    return loss(labels, logits)
