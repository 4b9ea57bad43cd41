"""Training augmentation with albumentations: scale, pad, crop, flip, colour jitter.

Geometric transforms move image and mask together; masks are resized with nearest
neighbour, so no label is ever invented, and padding fills the image with 0 and the mask
with 255 (ignored). Colour jitter touches the image only. Images stay uint8 RGB.

Every call takes a seed, so an augmented sample depends only on (seed, image) and not on
which thread of the tf.data pipeline ran it: each thread keeps its own transform objects.
"""

import math
import operator
import threading

import cv2
import numpy as np

from kseg.errors import KsegError
from kseg.labels import IGNORE_INDEX

DEFAULT_SCALE_RANGE = (0.5, 2.0)


def check_crop(crop):
    """Returns `crop` as a (height, width) tuple of positive ints, or raises KsegError."""
    try:
        values = tuple(operator.index(value) for value in crop)
    except TypeError:
        values = ()
    if len(values) != 2 or min(values) <= 0:
        raise KsegError(f"crop must be (height, width) with positive integers. Received: crop={crop!r}")
    return values


class TrainAugmenter:
    """Seeded segmentation augmentation for one (image, mask) pair at a time.

    Args:
        crop: tuple or None. (height, width) of the output; smaller inputs are padded.
            None keeps the (scaled) size.
        scale_range: tuple. (low, high) random scale factors, low <= high, both > 0.
        colour_jitter: bool. Random brightness, contrast, saturation and a small hue shift.
    """

    def __init__(self, crop=None, scale_range=DEFAULT_SCALE_RANGE, colour_jitter=True):
        if crop is not None:
            crop = check_crop(crop)
        try:
            low, high = (float(v) for v in scale_range)
        except (TypeError, ValueError):
            low = high = math.nan  # not two numbers: refused below
        if not 0 < low <= high < math.inf:
            raise KsegError(
                f"scale_range must be (low, high) with 0 < low <= high. Received: scale_range={scale_range!r}"
            )
        self.crop = crop
        self.scale_range = (low, high)
        self.colour_jitter = bool(colour_jitter)
        self._local = threading.local()

    def _build(self):
        import albumentations as A

        steps = []
        low, high = self.scale_range
        if (low, high) != (1.0, 1.0):
            steps.append(
                A.RandomScale(scale_limit=(low - 1.0, high - 1.0), interpolation=cv2.INTER_LINEAR,
                              mask_interpolation=cv2.INTER_NEAREST_EXACT, p=1.0)
            )
        if self.crop is not None:
            height, width = self.crop
            steps.append(
                A.PadIfNeeded(min_height=height, min_width=width, position="random",
                              border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE_INDEX)
            )
            steps.append(A.RandomCrop(height=height, width=width))
        steps.append(A.HorizontalFlip(p=0.5))
        if self.colour_jitter:
            steps.append(
                A.ColorJitter(brightness=(0.75, 1.25), contrast=(0.75, 1.25), saturation=(0.75, 1.25),
                              hue=(-0.05, 0.05), p=0.8)
            )
        return A.Compose(steps, mask_interpolation=cv2.INTER_NEAREST_EXACT)

    def __call__(self, image, mask, seed):
        """Augments one pair.

        Args:
            image: np.ndarray. uint8 RGB (H, W, 3).
            mask: np.ndarray. uint8 (H, W) train ids.
            seed: int. Fixes every random choice for this sample.

        Returns:
            tuple. (image uint8 (h, w, 3), mask uint8 (h, w)), (h, w) = crop if given.
        """
        compose = getattr(self._local, "compose", None)
        if compose is None:
            compose = self._local.compose = self._build()
        # A side shorter than 1 / lowest scale could shrink to 0 pixels, which OpenCV
        # refuses; such tiny images are padded first (image 0, mask ignored).
        smallest = math.ceil(1.0 / self.scale_range[0]) if self.scale_range[0] < 1 else 1
        short_rows, short_columns = max(0, smallest - mask.shape[0]), max(0, smallest - mask.shape[1])
        if short_rows or short_columns:
            image = np.pad(image, ((0, short_rows), (0, short_columns), (0, 0)))
            mask = np.pad(mask, ((0, short_rows), (0, short_columns)), constant_values=IGNORE_INDEX)
        compose.set_random_seed(int(seed) % (2**32))
        result = compose(image=image, mask=mask)
        return result["image"], result["mask"]


def epoch_order(size, seed, shuffle, epoch=0):
    """The (indices, sample seeds) of pass `epoch` over `size` pairs: a seeded
    permutation when shuffling, and one augmentation seed per position."""
    rng = np.random.default_rng([int(seed) * 100003 + int(epoch), 0])
    order = rng.permutation(size) if shuffle else np.arange(size)
    seeds = rng.integers(0, 2**31 - 1, size=size)
    return order, seeds
