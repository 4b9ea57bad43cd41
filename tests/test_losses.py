import numpy as np
import pytest

from kseg.losses import MaskedSparseCrossEntropy, masked_cross_entropy

IGNORE = 255


def numpy_reference(labels, logits, weights=None):
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    keep = labels != IGNORE
    nll = -np.take_along_axis(log_probs, np.where(keep, labels, 0)[..., None], -1)[..., 0]
    w = np.ones(labels.shape) if weights is None else np.asarray(weights)[np.where(keep, labels, 0)]
    w = w * keep
    return (w * nll).sum() / w.sum()


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(2, 5, 6))
    labels[rng.random(labels.shape) < 0.3] = IGNORE
    logits = rng.normal(size=(2, 5, 6, 4)).astype("float32")
    return labels, logits


def test_mean_over_labelled_pixels(batch):
    labels, logits = batch
    loss = float(masked_cross_entropy(labels, logits, num_classes=4))
    assert loss == pytest.approx(numpy_reference(labels, logits), rel=1e-5)


def test_ignored_pixels_do_not_matter(batch):
    labels, logits = batch
    changed = logits.copy()
    changed[labels == IGNORE] = 1000.0
    assert float(masked_cross_entropy(labels, changed, 4)) == pytest.approx(
        float(masked_cross_entropy(labels, logits, 4)), rel=1e-6
    )


def test_class_weights_give_weighted_mean(batch):
    labels, logits = batch
    weights = [0.5, 2.0, 1.0, 3.0]
    loss = float(masked_cross_entropy(labels, logits, 4, class_weights=weights))
    assert loss == pytest.approx(numpy_reference(labels, logits, weights), rel=1e-5)


def test_all_ignored_is_zero_and_half_precision_logits_give_float32():
    labels = np.full((1, 3, 3), IGNORE)
    logits = np.zeros((1, 3, 3, 2), np.float16)
    loss = MaskedSparseCrossEntropy(num_classes=2)(labels, logits)
    assert str(loss.dtype) == "float32" or "float32" in str(loss.dtype)
    assert float(loss) == 0.0


def test_wrong_number_of_class_weights():
    with pytest.raises(ValueError, match="one weight per class"):
        MaskedSparseCrossEntropy(num_classes=3, class_weights=[1.0, 2.0])


def test_config_round_trip():
    loss = MaskedSparseCrossEntropy(num_classes=3, class_weights=[1.0, 2.0, 3.0])
    again = MaskedSparseCrossEntropy.from_config(loss.get_config())
    assert again.class_weights == [1.0, 2.0, 3.0] and again.num_classes == 3
