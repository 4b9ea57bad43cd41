"""Augmentation: image and mask stay aligned, labels are never invented, seeds repeat."""

import cv2
import numpy as np
import pytest
from data_helpers import block_mask

from kseg.data.augment import TrainAugmenter
from kseg.errors import KsegError

LEVEL = 40  # image red value = (label + 1) * LEVEL, so the label can be read back


def _painted_pair(seed, height=48, width=64, num_classes=4):
    rng = np.random.default_rng(seed)
    mask = block_mask(rng, height, width, values=list(range(num_classes)) + [255], block=8)
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = np.where(mask == 255, 250, (mask.astype(np.int32) + 1) * LEVEL)
    image[..., 1] = 128
    image[..., 2] = 128
    return image, mask


def _agreement(decoded, mask, inner, shift):
    moved = np.roll(decoded, shift, axis=(0, 1))
    return (moved[inner] == mask[inner]).mean()


@pytest.mark.parametrize("seed", range(8))
def test_geometry_keeps_image_and_mask_aligned(seed):
    augmenter = TrainAugmenter(crop=(40, 56), scale_range=(0.5, 2.0), colour_jitter=False)
    image, mask = _painted_pair(seed)
    out_image, out_mask = augmenter(image, mask, seed=seed)
    assert out_image.shape == (40, 56, 3) and out_mask.shape == (40, 56)
    assert out_image.dtype == np.uint8 and out_mask.dtype == np.uint8
    # Padding: image 0 exactly where padded, and the mask ignores it.
    padded = (out_image == 0).all(axis=2)
    assert (out_mask[padded] == 255).all()
    # Read the label back from the image; linear resizing blurs block edges, so compare
    # where the mask's 3x3 neighbourhood is uniform.
    decoded = np.rint(out_image[..., 0] / LEVEL).astype(np.int32) - 1
    kernel = np.ones((3, 3), np.uint8)
    inner = (cv2.erode(out_mask, kernel) == cv2.dilate(out_mask, kernel)) & (out_mask != 255)
    assert inner.sum() > 100
    here = _agreement(decoded, out_mask, inner, (0, 0))
    assert here > 0.97, here
    # A half-pixel or one-pixel misalignment would make some shifted copy fit better.
    for shift in [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]:
        assert _agreement(decoded, out_mask, inner, shift) < here, shift


def test_flip_alone_is_exact():
    augmenter = TrainAugmenter(crop=None, scale_range=(1.0, 1.0), colour_jitter=False)
    image, mask = _painted_pair(7)
    flipped = 0
    for seed in range(8):
        out_image, out_mask = augmenter(image, mask, seed=seed)
        decoded = np.where(out_image[..., 0] == 250, 255, out_image[..., 0] // LEVEL - 1)
        np.testing.assert_array_equal(decoded, out_mask)
        flipped += not np.array_equal(out_mask, mask)
    assert 0 < flipped < 8  # flip happens with probability 0.5


def test_labels_are_never_invented():
    augmenter = TrainAugmenter(crop=(32, 32), scale_range=(0.3, 3.0))
    allowed = {0, 1, 2, 3, 255}
    for seed in range(20):
        image, mask = _painted_pair(seed)
        _, out_mask = augmenter(image, mask, seed=seed)
        assert set(np.unique(out_mask).tolist()) <= allowed


def test_same_seed_same_sample_and_jitter_changes_image_only():
    augmenter = TrainAugmenter(crop=(32, 48))
    image, mask = _painted_pair(3)
    first = augmenter(image, mask, seed=11)
    second = TrainAugmenter(crop=(32, 48))(image, mask, seed=11)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    different = [not np.array_equal(augmenter(image, mask, seed=s)[0], first[0]) for s in range(12, 16)]
    assert any(different)


def test_bad_arguments():
    with pytest.raises(KsegError, match="crop"):
        TrainAugmenter(crop=(0, 10))
    # not two finite numbers: one line naming the argument, not an error from deep inside
    for scale_range in ((2.0, 1.0), (0.5,), (0.5, "x"), None, (0.5, float("inf"))):
        with pytest.raises(KsegError, match="scale_range"):
            TrainAugmenter(scale_range=scale_range)
