import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kseg.config import LOSS_NAMES
from kseg.losses import (
    LOSSES,
    MaskedDiceLoss,
    MaskedFocalLoss,
    MaskedLovaszSoftmaxLoss,
    MaskedSparseCrossEntropy,
    WeightedLossSum,
    make_loss,
    masked_cross_entropy,
    segmentation_loss,
)

IGNORE = 255


# References in NumPy (float64), written from the papers' formulas and independently of
# kseg.losses: they drop void pixels by boolean indexing, where kseg zeroes them.


def softmax(logits):
    logits = np.asarray(logits, np.float64)
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def labelled(labels, logits):
    """The labelled pixels' labels (N,) and softmax probabilities (N, C)."""
    keep = labels != IGNORE
    return labels[keep], softmax(logits)[keep]


def numpy_reference(labels, logits, weights=None):
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    keep = labels != IGNORE
    nll = -np.take_along_axis(log_probs, np.where(keep, labels, 0)[..., None], -1)[..., 0]
    w = np.ones(labels.shape) if weights is None else np.asarray(weights)[np.where(keep, labels, 0)]
    w = w * keep
    return (w * nll).sum() / w.sum()


def focal_reference(labels, logits, weights=None, gamma=2.0):
    """Lin et al. 2017, eq. 5: FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t), alpha_t = w[label]."""
    truth, probs = labelled(labels, logits)
    p_t = probs[np.arange(len(truth)), truth]
    alpha = np.ones(len(truth)) if weights is None else np.asarray(weights, np.float64)[truth]
    return (alpha * -((1 - p_t) ** gamma) * np.log(p_t)).sum() / alpha.sum()


def class_mean(losses, present, weights):
    weights = np.ones(len(losses)) if weights is None else np.asarray(weights, np.float64)
    weights = weights * present
    return (weights * losses).sum() / weights.sum()


def dice_reference(labels, logits, weights=None, smoothing=1.0):
    truth, probs = labelled(labels, logits)
    losses, present = [], []
    for c in range(probs.shape[-1]):
        g = (truth == c).astype(np.float64)
        p = probs[:, c]
        losses.append(1 - (2 * (p * g).sum() + smoothing) / (p.sum() + g.sum() + smoothing))
        present.append(g.sum() > 0)
    return class_mean(np.array(losses), np.array(present), weights)


def lovasz_grad(gt_sorted):
    """Berman et al. 2018, Algorithm 1: the gradient of the Lovasz extension of the Jaccard
    loss with respect to errors sorted in decreasing order (the authors' `lovasz_grad`)."""
    gts = gt_sorted.sum()
    intersection = gts - np.cumsum(gt_sorted)
    union = gts + np.cumsum(1 - gt_sorted)
    jaccard = 1.0 - intersection / union
    jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def lovasz_reference(labels, logits, weights=None):
    """Lovasz-softmax over the batch, classes present (the authors' lovasz_softmax_flat)."""
    truth, probs = labelled(labels, logits)
    losses, present = [], []
    for c in range(probs.shape[-1]):
        g = (truth == c).astype(np.float64)
        errors = np.abs(g - probs[:, c])
        order = np.argsort(-errors, kind="stable")
        losses.append(np.dot(errors[order], lovasz_grad(g[order])))
        present.append(g.sum() > 0)
    return class_mean(np.array(losses), np.array(present), weights)


REFERENCES = {"ce": numpy_reference, "focal": focal_reference, "dice": dice_reference, "lovasz": lovasz_reference}


def value(loss, labels, logits, **kwargs):
    return float(np.asarray(segmentation_loss(loss, labels, logits, 4, **kwargs)))


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(2, 5, 6))
    labels[rng.random(labels.shape) < 0.3] = IGNORE
    logits = rng.normal(size=(2, 5, 6, 4)).astype("float32")
    return labels, logits


# Two labelled pixels and a void one with wild logits, worked by hand below. Softmax
# probabilities: pixel 1 (label 0) [0.8, 0.2], pixel 2 (label 1) [0.4, 0.6].
HAND_LABELS = np.array([[[0, 1, IGNORE]]])
HAND_LOGITS = np.log(np.array([[[[0.8, 0.2], [0.4, 0.6], [1e-6, 1.0]]]], np.float32))


@pytest.mark.parametrize(
    "loss, expected",
    [
        # -(log 0.8 + log 0.6) / 2
        ("ce", 0.3669845),
        # (0.2^2 * -log 0.8 + 0.4^2 * -log 0.6) / 2 = (0.0089257 + 0.0817321) / 2
        ("focal", 0.0453289),
        # class 0: (2*0.8 + 1) / (1.2 + 1 + 1) = 0.8125; class 1: (2*0.6 + 1) / (0.8 + 1 + 1) = 0.785714
        ("dice", 1 - (0.8125 + 2.2 / 2.8) / 2),
        # class 0: errors (0.2, 0.4), sorted 0.4 (g=0), 0.2 (g=1): J = (1/2, 1), gradient (1/2, 1/2),
        # 0.4/2 + 0.2/2 = 0.3; class 1: errors (0.2, 0.4), sorted 0.4 (g=1), 0.2 (g=0): J = (1, 1),
        # gradient (1, 0), 0.4. Mean 0.35.
        ("lovasz", 0.35),
        ("ce+dice", 0.3669845 + 1 - (0.8125 + 2.2 / 2.8) / 2),
        ("0.5*focal+2*lovasz", 0.5 * 0.0453289 + 2 * 0.35),
    ],
)
def test_values_worked_by_hand(loss, expected):
    got = float(np.asarray(segmentation_loss(loss, HAND_LABELS, HAND_LOGITS, num_classes=2)))
    assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_each_loss_equals_its_reference(batch, name):
    labels, logits = batch
    assert value(name, labels, logits) == pytest.approx(REFERENCES[name](labels, logits), rel=1e-5)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_class_weights(batch, name):
    labels, logits = batch
    weights = [0.5, 2.0, 0.0, 3.0]
    got = value(name, labels, logits, class_weights=weights)
    assert got == pytest.approx(REFERENCES[name](labels, logits, weights), rel=1e-5)
    assert got != pytest.approx(value(name, labels, logits), rel=1e-3)
    # Scaling every weight alike changes nothing: each loss is a weighted mean.
    assert value(name, labels, logits, class_weights=[5 * w for w in weights]) == pytest.approx(got, rel=1e-5)


def test_a_weighted_sum_adds_its_terms(batch):
    labels, logits = batch
    weights = [1.0, 2.0, 0.5, 1.0]
    expected = 0.5 * numpy_reference(labels, logits, weights) + 1.5 * lovasz_reference(labels, logits, weights)
    assert value("0.5*ce + 1.5*lovasz", labels, logits, class_weights=weights) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("loss", [*LOSS_NAMES, "ce+dice", "0.5*focal+lovasz"])
def test_ignored_pixels_do_not_matter(batch, loss):
    labels, logits = batch
    changed = logits.copy()
    changed[labels == IGNORE] = np.random.default_rng(1).normal(size=changed[labels == IGNORE].shape) * 1000
    assert value(loss, labels, changed) == pytest.approx(value(loss, labels, logits), rel=1e-6)
    # Nor do void labels written as any value that is not a class.
    other = np.where(labels == IGNORE, 17, labels)
    assert value(loss, other, logits) == pytest.approx(value(loss, labels, logits), rel=1e-6)


def test_an_image_without_labelled_pixels_changes_nothing_for_batch_losses(batch):
    """Dice and Lovasz are sums over the batch: an all-void image (a padded blank) adds nothing."""
    labels, logits = batch
    blank_labels = np.concatenate([labels, np.full((1, 5, 6), IGNORE)])
    blank_logits = np.concatenate([logits, np.random.default_rng(2).normal(size=(1, 5, 6, 4)).astype("float32")])
    for name in LOSS_NAMES:
        assert value(name, blank_labels, blank_logits) == pytest.approx(value(name, labels, logits), rel=1e-6)


def test_absent_classes_do_not_count_in_dice_and_lovasz(batch):
    labels, logits = batch
    absent = np.where(labels == 3, IGNORE, labels)  # class 3 no longer appears
    for name in ("dice", "lovasz"):
        # A weight on a class that is absent changes nothing.
        assert value(name, absent, logits, class_weights=[1, 1, 1, 100]) == pytest.approx(
            value(name, absent, logits), rel=1e-6
        )
        assert value(name, absent, logits) == pytest.approx(REFERENCES[name](absent, logits), rel=1e-5)


def test_focal_with_gamma_zero_is_cross_entropy(batch):
    labels, logits = batch
    weights = [1.0, 2.0, 0.5, 3.0]
    focal = MaskedFocalLoss(4, class_weights=weights, gamma=0)
    assert float(focal(labels, logits)) == pytest.approx(numpy_reference(labels, logits, weights), rel=1e-6)
    assert float(MaskedFocalLoss(4, gamma=1.5)(labels, logits)) == pytest.approx(
        focal_reference(labels, logits, gamma=1.5), rel=1e-5
    )


def test_hard_predictions_give_one_minus_iou_and_dice():
    """On 0/1 probabilities the Lovasz extension equals the Jaccard loss itself, 1 - IoU
    (Berman et al., the extension agrees with the set function on the cube's corners)."""
    truth = np.array([[0, 0, 1, 1, 2, IGNORE], [0, 1, 1, 2, 2, 2]])[None]
    predicted = np.array([[0, 1, 1, 1, 2, 0], [0, 0, 1, 2, 1, 2]])[None]
    logits = np.where(np.eye(3, dtype=bool)[predicted], 60.0, -60.0).astype("float32")
    ious, dices = [], []
    for c in range(3):
        g, p = (truth == c), (predicted == c) & (truth != IGNORE)
        ious.append((g & p).sum() / (g | p).sum())
        dices.append((2 * (g & p).sum() + 1) / (g.sum() + p.sum() + 1))
    lovasz = float(segmentation_loss("lovasz", truth, logits, 3))
    assert lovasz == pytest.approx(1 - np.mean(ious), abs=1e-6)
    assert float(segmentation_loss("dice", truth, logits, 3)) == pytest.approx(1 - np.mean(dices), abs=1e-6)


@pytest.mark.parametrize("loss", [*LOSS_NAMES, "ce+dice"])
def test_all_ignored_is_zero_with_zero_gradients(loss):
    import tensorflow as tf

    labels = np.full((1, 3, 3), IGNORE)
    logits = tf.constant(np.random.default_rng(0).normal(size=(1, 3, 3, 2)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(logits)
        result = make_loss(loss, 2)(labels, logits)
    gradient = tape.gradient(result, logits).numpy()
    assert float(result) == 0.0
    assert np.all(gradient == 0)


@pytest.mark.parametrize("loss", [*LOSS_NAMES, "ce+dice"])
def test_gradients_are_finite_and_match_finite_differences(batch, loss):
    import tensorflow as tf

    labels, logits = batch
    function = make_loss(loss, 4)
    variable = tf.Variable(logits.astype("float64"))
    with tf.GradientTape() as tape:
        result = function(labels, variable)
    gradient = tape.gradient(result, variable).numpy()
    assert np.all(np.isfinite(gradient)) and np.abs(gradient).max() > 0
    assert np.all(gradient[labels == IGNORE] == 0)
    # Central differences on a few labelled logits, computed with the float64 reference.
    rng = np.random.default_rng(3)
    reference = lambda x: sum(  # noqa: E731
        weight * REFERENCES[name](labels, x) for weight, name in _terms(loss)
    )
    places = np.argwhere(labels != IGNORE)[rng.choice(int((labels != IGNORE).sum()), 6, replace=False)]
    for b, y, x in places:
        c = rng.integers(4)
        step = np.zeros_like(logits, dtype=np.float64)
        step[b, y, x, c] = 1e-4
        numeric = (reference(logits + step) - reference(logits - step)) / 2e-4
        assert gradient[b, y, x, c] == pytest.approx(numeric, rel=2e-3, abs=2e-5)


def _terms(loss):
    from kseg.config import loss_terms

    return loss_terms(loss)


@pytest.mark.parametrize("loss", [*LOSS_NAMES, "ce+lovasz"])
def test_saturated_logits_give_finite_gradients(loss):
    import tensorflow as tf

    labels = np.array([[[0, 1], [1, IGNORE]]])
    logits = tf.constant(np.array([[[[200.0, -200.0], [-200.0, 200.0]], [[200.0, -200.0], [0.0, 1.0]]]], "float32"))
    with tf.GradientTape() as tape:
        tape.watch(logits)
        result = make_loss(loss, 2)(labels, logits)
    assert np.isfinite(float(result))
    assert np.all(np.isfinite(tape.gradient(result, logits).numpy()))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("loss", [*LOSS_NAMES, "ce+dice"])
def test_half_precision_logits_are_computed_in_float32(batch, loss, dtype):
    import keras

    labels, logits = batch
    half = keras.ops.cast(logits, dtype)
    rounded = keras.ops.convert_to_numpy(keras.ops.cast(half, "float32"))
    result = make_loss(loss, 4)(labels, half)
    assert "float32" in str(result.dtype)
    assert float(result) == pytest.approx(value(loss, labels, rounded), rel=1e-6)


def test_under_a_mixed_policy_the_loss_stays_float32(batch):
    import keras

    labels, logits = batch
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        losses = {name: make_loss(name, 4) for name in LOSS_NAMES}
        results = {name: loss(labels, logits) for name, loss in losses.items()}
    finally:
        keras.config.set_dtype_policy(previous)
    for name, result in results.items():
        assert losses[name].dtype == "float32" and "float32" in str(result.dtype)
        assert float(result) == pytest.approx(REFERENCES[name](labels, logits), rel=1e-5)


JAX_SCRIPT = """
import json, sys
import numpy as np
import jax
from kseg.losses import make_loss
data = np.load(sys.argv[1])
out = {}
for loss in sys.argv[2:]:
    function = make_loss(loss, 4, class_weights=[1.0, 2.0, 0.5, 1.5])
    value, gradient = jax.value_and_grad(lambda x: function(data["labels"], x))(data["logits"])
    out[loss] = [float(value), np.asarray(gradient).tolist()]
print(json.dumps(out))
"""


def test_jax_gives_the_same_values_and_gradients(batch, tmp_path):
    pytest.importorskip("jax")
    import tensorflow as tf

    labels, logits = batch
    np.savez(tmp_path / "batch.npz", labels=labels, logits=logits)
    names = [*LOSS_NAMES, "0.5*ce+lovasz"]
    environment = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT, str(tmp_path / "batch.npz"), *names],
        env=environment, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    from_jax = json.loads(result.stdout.strip().splitlines()[-1])
    for name in names:
        function = make_loss(name, 4, class_weights=[1.0, 2.0, 0.5, 1.5])
        variable = tf.Variable(logits)
        with tf.GradientTape() as tape:
            result = function(labels, variable)
        assert from_jax[name][0] == pytest.approx(float(result), rel=1e-5), name
        np.testing.assert_allclose(np.array(from_jax[name][1]), tape.gradient(result, variable).numpy(),
                                   rtol=1e-4, atol=1e-7)  # fmt: skip


def test_make_loss_and_the_names():
    assert tuple(LOSSES) == LOSS_NAMES
    for name, loss_class in LOSSES.items():
        assert type(make_loss(name, 3)) is loss_class
    summed = make_loss("1.0*ce + 0.5*dice", 3, class_weights=[1, 2, 3])
    assert isinstance(summed, WeightedLossSum) and summed.loss == "ce+0.5*dice"
    assert [(weight, type(term)) for weight, term in summed.terms] == [(1.0, MaskedSparseCrossEntropy),
                                                                      (0.5, MaskedDiceLoss)]  # fmt: skip
    assert all(term.class_weights == [1.0, 2.0, 3.0] for _, term in summed.terms)
    assert isinstance(make_loss("2*lovasz", 3), WeightedLossSum)
    from kseg.errors import KsegError

    with pytest.raises(KsegError, match="unknown loss 'bce'"):
        make_loss("bce", 3)


@pytest.mark.parametrize(
    "loss",
    [MaskedSparseCrossEntropy(3, class_weights=[1.0, 2.0, 3.0]), MaskedFocalLoss(3, gamma=1.0),
     MaskedDiceLoss(3, smoothing=0.5), MaskedLovaszSoftmaxLoss(3, ignore_index=7),
     WeightedLossSum("ce+0.25*lovasz", 3, class_weights=[1, 0, 1])],
)  # fmt: skip
def test_config_round_trip(loss):
    import keras

    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(again) is type(loss) and again.get_config() == loss.get_config()
    labels = np.array([[[0, 1, 2, 7]]])
    logits = np.random.default_rng(0).normal(size=(1, 1, 4, 3)).astype("float32")
    assert float(again(labels, logits)) == pytest.approx(float(loss(labels, logits)), rel=1e-6)


def test_mean_over_labelled_pixels(batch):
    labels, logits = batch
    loss = float(masked_cross_entropy(labels, logits, num_classes=4))
    assert loss == pytest.approx(numpy_reference(labels, logits), rel=1e-5)


def test_class_weights_give_weighted_mean(batch):
    labels, logits = batch
    weights = [0.5, 2.0, 1.0, 3.0]
    loss = float(masked_cross_entropy(labels, logits, 4, class_weights=weights))
    assert loss == pytest.approx(numpy_reference(labels, logits, weights), rel=1e-5)


def test_wrong_arguments():
    with pytest.raises(ValueError, match="one weight per class"):
        MaskedSparseCrossEntropy(num_classes=3, class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="one weight per class"):
        MaskedLovaszSoftmaxLoss(num_classes=3, class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="not all zero"):
        MaskedDiceLoss(num_classes=2, class_weights=[0, 0])
    with pytest.raises(ValueError, match="gamma"):
        MaskedFocalLoss(num_classes=2, gamma=-1)
    with pytest.raises(ValueError, match="smoothing"):
        MaskedDiceLoss(num_classes=2, smoothing=float("nan"))
