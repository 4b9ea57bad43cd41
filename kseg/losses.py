"""Segmentation losses on logits (B, H, W, C) against labels (B, H, W), the void label ignored.

`kseg train --loss` names one of them, or a weighted sum (`ce+dice`, `0.5*ce+1.0*lovasz`;
the grammar is `kseg.config.loss_terms`); `make_loss` builds it. Each is computed in float32
from float32 logits whatever the model's dtype policy, with keras.ops only, so it runs
under every Keras backend. A pixel whose label is `ignore_index` (255), or not a class,
contributes nothing to any of them: not to a sum, a mean, a count nor a denominator.

    ce      MaskedSparseCrossEntropy: the mean over labelled pixels of -log p[label].
            Class weights w make it a weighted mean, sum(w[label] * nll) / sum(w[label]),
            so its scale does not depend on the weights chosen.
    focal   MaskedFocalLoss (Lin et al. 2017, "Focal Loss for Dense Object Detection"):
            -(1 - p_t)^gamma * log p_t per labelled pixel, p_t the probability of its label,
            gamma 2. A class weight is the paper's alpha_t: the loss is the weighted mean
            sum(w[label] * fl) / sum(w[label]), as for ce, so gamma 0 gives ce exactly.
    dice    MaskedDiceLoss: soft multi-class Dice over the batch. For class c, with p the
            softmax and g the one-hot labels, summed over the labelled pixels of the whole
            batch: D_c = (2 sum(p_c g_c) + s) / (sum(p_c) + sum(g_c) + s), s = 1 (one pixel's
            worth, so a class of a few pixels is not all-or-nothing). The loss is the mean of
            1 - D_c over the classes present in the batch's labels; absent classes do not
            count (their D_c would only reward predicting none of them). A class weight w_c
            weighs class c's term: sum(w_c (1 - D_c)) / sum(w_c) over present classes.
    lovasz  MaskedLovaszSoftmaxLoss (Berman et al. 2018, "The Lovasz-Softmax loss"): for each
            class present in the batch's labels, the Lovasz extension of its Jaccard loss
            evaluated at the errors |g_c - p_c| of the batch's labelled pixels (per batch,
            as the authors' reference `lovasz_softmax(per_image=False, classes="present")`);
            the loss is their mean over present classes, class weights weighing it as for
            dice.

A weighted sum (`WeightedLossSum`) adds its terms, each with the class weights as above.
A batch with no labelled pixel has loss 0 under every loss.

Under a tf.distribute strategy with several replicas, ce and focal are the mean over the
global batch; dice and lovasz, which do not split into per-pixel parts, are computed on
each replica's share of the batch and averaged over the replicas.
"""

import math

import keras
from keras import ops

from kseg.config import format_loss, loss_terms
from kseg.labels import IGNORE_INDEX

DICE_SMOOTHING = 1.0
FOCAL_GAMMA = 2.0


class _SegmentationLoss(keras.losses.Loss):
    """What every kseg loss shares: its arguments, checked, and the labelled pixels."""

    def __init__(self, num_classes, ignore_index=IGNORE_INDEX, class_weights=None, name=None, **kwargs):
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

    def _labels(self, y_true, y_pred):
        """float32 logits, int labels (void and out-of-range labels as 0) and the labelled mask."""
        logits = ops.cast(y_pred, "float32")
        labels = ops.cast(y_true, "int32")
        if len(labels.shape) == len(logits.shape):  # (B, H, W, 1)
            labels = ops.squeeze(labels, axis=-1)
        valid = ops.logical_and(
            ops.not_equal(labels, self.ignore_index),
            ops.logical_and(labels >= 0, labels < self.num_classes),
        )
        safe_labels = ops.where(valid, labels, ops.zeros_like(labels))
        return logits, safe_labels, valid

    def get_config(self):
        return dict(super().get_config(), num_classes=self.num_classes, ignore_index=self.ignore_index,
                    class_weights=self.class_weights)


@keras.saving.register_keras_serializable(package="kseg")
class MaskedSparseCrossEntropy(_SegmentationLoss):
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
        super().__init__(num_classes, ignore_index, class_weights, name=name, **kwargs)

    def pixel_losses(self, nll):
        """The loss of each pixel from its negative log-likelihood."""
        return nll

    def call(self, y_true, y_pred):
        logits, safe_labels, valid = self._labels(y_true, y_pred)
        log_probs = ops.log_softmax(logits, axis=-1)
        nll = -ops.squeeze(ops.take_along_axis(log_probs, safe_labels[..., None], axis=-1), -1)
        losses = self.pixel_losses(nll)
        weights = ops.cast(valid, "float32")
        if self.class_weights is not None:
            table = ops.convert_to_tensor(self.class_weights, dtype="float32")
            weights = weights * ops.take(table, safe_labels)
        pixels = ops.cast(ops.size(weights), "float32")
        # sum(weights * loss) / sum(weights) once keras divides by the number of pixels
        # (and by the number of replicas, whose sum of weights is pooled: the loss is the
        # mean over the global batch, not a mean of per-replica means).
        scale = pixels / ops.maximum(_mean_over_replicas(ops.sum(weights)), 1e-12)
        return ops.where(weights > 0, weights * losses, ops.zeros_like(losses)) * scale


@keras.saving.register_keras_serializable(package="kseg")
class MaskedFocalLoss(MaskedSparseCrossEntropy):
    """Focal loss (Lin et al. 2017) on logits (B, H, W, C) against labels (B, H, W), 255 ignored.

    Reduced as the cross-entropy, class weights being the paper's alpha_t (module docstring).

    Args:
        num_classes: int. Number of classes (channels of the logits).
        ignore_index: int. Label value excluded from the loss.
        class_weights: list of float or None. alpha per class; None weighs all alike.
        gamma: float. The focusing parameter, 0 or more (2 in the paper).
        name: str. Name of the loss.
    """

    def __init__(self, num_classes, ignore_index=IGNORE_INDEX, class_weights=None, gamma=FOCAL_GAMMA,
                 name="masked_focal", **kwargs):  # fmt: skip
        super().__init__(num_classes, ignore_index, class_weights, name=name, **kwargs)
        self.gamma = _non_negative("gamma", gamma)

    def pixel_losses(self, nll):
        # 1 - p_t = -expm1(-nll) keeps its digits where p_t is close to 1. The floor keeps the
        # gradient of x^gamma finite at x = 0 for gamma < 1 (it changes no value above 1e-12).
        return nll * ops.power(ops.maximum(-ops.expm1(-nll), 1e-12), self.gamma)

    def get_config(self):
        return dict(super().get_config(), gamma=self.gamma)


class _BatchLoss(_SegmentationLoss):
    """A loss of the whole batch that does not split into per-pixel parts (Dice, Lovasz).

    `call` returns it with shape (1,), so keras' reduction keeps it and, under a
    tf.distribute strategy, divides it by the number of replicas like any other loss.
    """

    def call(self, y_true, y_pred):
        logits, safe_labels, valid = self._labels(y_true, y_pred)
        probs = ops.reshape(ops.softmax(logits, axis=-1), (-1, self.num_classes))
        valid = ops.reshape(ops.cast(valid, "float32"), (-1, 1))
        # One-hot labels of the labelled pixels; a void pixel is all zeros, and so are its
        # probabilities below: it adds nothing to any sum.
        truth = ops.one_hot(ops.reshape(safe_labels, (-1,)), self.num_classes, dtype="float32") * valid
        losses, present = self.class_losses(probs * valid, truth)
        weights = ops.cast(present, "float32")
        if self.class_weights is not None:
            weights = weights * ops.convert_to_tensor(self.class_weights, dtype="float32")
        total = ops.sum(weights)
        # The weighted mean over present classes; 0 when no class is present.
        value = ops.sum(ops.where(weights > 0, weights * losses, ops.zeros_like(losses))) / ops.maximum(total, 1e-12)
        return ops.reshape(value, (1,))

    def class_losses(self, probs, truth):
        """Per-class losses (C,) and whether each class is present (C,), from the softmax
        probabilities and one-hot labels (N, C) of the batch's pixels (void pixels zero)."""
        raise NotImplementedError


@keras.saving.register_keras_serializable(package="kseg")
class MaskedDiceLoss(_BatchLoss):
    """Soft multi-class Dice loss over the batch, on logits (B, H, W, C), 255 ignored: the mean
    of 1 - D_c over the classes present in its labels (module docstring).

    Args:
        num_classes: int. Number of classes (channels of the logits).
        ignore_index: int. Label value excluded from the loss.
        class_weights: list of float or None. Weight of each class's term.
        smoothing: float. s, added to the numerator and denominator (0 or more).
        name: str. Name of the loss.
    """

    def __init__(self, num_classes, ignore_index=IGNORE_INDEX, class_weights=None, smoothing=DICE_SMOOTHING,
                 name="masked_dice", **kwargs):  # fmt: skip
        super().__init__(num_classes, ignore_index, class_weights, name=name, **kwargs)
        self.smoothing = _non_negative("smoothing", smoothing)

    def class_losses(self, probs, truth):
        intersection = ops.sum(probs * truth, axis=0)
        pixels = ops.sum(truth, axis=0)
        denominator = ops.sum(probs, axis=0) + pixels + self.smoothing
        dice = (2.0 * intersection + self.smoothing) / ops.maximum(denominator, 1e-12)
        return 1.0 - dice, pixels > 0

    def get_config(self):
        return dict(super().get_config(), smoothing=self.smoothing)


@keras.saving.register_keras_serializable(package="kseg")
class MaskedLovaszSoftmaxLoss(_BatchLoss):
    """Lovasz-softmax loss (Berman et al. 2018) over the batch, on logits (B, H, W, C), 255 ignored.

    For each class c present in the batch's labels: the errors e = |g_c - p_c| of the
    labelled pixels, sorted in decreasing order, dotted with the Lovasz extension's
    gradient of the Jaccard loss at that order, J_i - J_(i-1), where
    J_i = 1 - (G - cumsum(g)_i) / (G + cumsum(1 - g)_i) and G = sum(g) (the authors'
    `lovasz_grad`). The loss is the mean over present classes (weighted by the class
    weights). The sort order is not differentiated, as in the reference.

    Args:
        num_classes: int. Number of classes (channels of the logits).
        ignore_index: int. Label value excluded from the loss.
        class_weights: list of float or None. Weight of each class's term.
        name: str. Name of the loss.
    """

    def __init__(self, num_classes, ignore_index=IGNORE_INDEX, class_weights=None,
                 name="masked_lovasz_softmax", **kwargs):  # fmt: skip
        super().__init__(num_classes, ignore_index, class_weights, name=name, **kwargs)

    def class_losses(self, probs, truth):
        # Void pixels have error 0 and truth 0: sorted after every pixel with an error, they
        # change no J_i that multiplies a non-zero error, so they count as if absent.
        errors = ops.transpose(ops.abs(truth - probs))  # (C, N)
        truth = ops.transpose(truth)
        order = ops.argsort(-errors, axis=-1)  # decreasing errors
        errors_sorted = ops.take_along_axis(errors, order, axis=-1)
        truth_sorted = ops.stop_gradient(ops.take_along_axis(truth, order, axis=-1))
        pixels = ops.sum(truth_sorted, axis=-1, keepdims=True)
        intersection = pixels - ops.cumsum(truth_sorted, axis=-1)
        union = pixels + ops.cumsum(1.0 - truth_sorted, axis=-1)  # at least 1 at every position
        jaccard = 1.0 - intersection / union
        gradient = ops.concatenate([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], axis=-1)
        return ops.sum(errors_sorted * gradient, axis=-1), pixels[:, 0] > 0


# By the names of kseg.config.LOSS_NAMES (a test checks that they agree).
LOSSES = {"ce": MaskedSparseCrossEntropy, "dice": MaskedDiceLoss, "focal": MaskedFocalLoss,
          "lovasz": MaskedLovaszSoftmaxLoss}  # fmt: skip


@keras.saving.register_keras_serializable(package="kseg")
class WeightedLossSum(_SegmentationLoss):
    """A weighted sum of kseg losses, such as "ce+dice" or "0.5*ce+1.0*lovasz".

    Each term is its loss of the batch (as if it were used alone) times its weight; every
    term uses the same class weights.

    Args:
        loss: str. The sum as `kseg.config.loss_terms` reads it.
        num_classes: int. Number of classes (channels of the logits).
        ignore_index: int. Label value excluded from the loss.
        class_weights: list of float or None. Class weights of every term.
        name: str. Name of the loss.
    """

    def __init__(self, loss, num_classes, ignore_index=IGNORE_INDEX, class_weights=None,
                 name="weighted_loss_sum", **kwargs):  # fmt: skip
        super().__init__(num_classes, ignore_index, class_weights, name=name, **kwargs)
        terms = loss_terms(loss)
        self.loss = format_loss(terms)
        self.terms = [(weight, LOSSES[term](num_classes, ignore_index, class_weights)) for weight, term in terms]

    def call(self, y_true, y_pred):
        # Each term's loss of this replica's batch as a scalar (before keras divides by replicas).
        total = sum(weight * ops.mean(term.call(y_true, y_pred)) for weight, term in self.terms)
        return ops.reshape(total, (1,))

    def get_config(self):
        return dict(super().get_config(), loss=self.loss)


def _non_negative(name, value):
    """`value` as a float, refused unless finite and 0 or more."""
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be a finite number, 0 or more. Received: {name}={value}")
    return value


def make_loss(loss, num_classes, ignore_index=IGNORE_INDEX, class_weights=None):
    """The keras loss `--loss` names: one of `LOSSES` alone (with weight 1) or a `WeightedLossSum`.

    Args:
        loss: str. "ce", "dice", "focal", "lovasz" or a weighted sum (`kseg.config.loss_terms`).
        num_classes: int. Number of classes.
        ignore_index: int. Label value excluded from the loss.
        class_weights: list of float or None. One weight per class.
    """
    terms = loss_terms(loss)
    if len(terms) == 1 and terms[0][0] == 1:
        return LOSSES[terms[0][1]](num_classes, ignore_index, class_weights)
    return WeightedLossSum(loss, num_classes, ignore_index, class_weights)


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


def segmentation_loss(loss, labels, logits, num_classes, ignore_index=IGNORE_INDEX, class_weights=None):
    """The loss `loss` names (as `make_loss`) of logits against labels, as a scalar tensor."""
    return make_loss(loss, num_classes, ignore_index, class_weights)(labels, logits)
