"""Class statistics of a split: pixel frequencies, class weights, image sizes.

Class weights use median frequency balancing (Eigen & Fergus, ICCV 2015): the frequency
of class c is its pixel count divided by the pixel count of the images in which c occurs,
and its weight is median(frequencies) / frequency(c). Common classes get weights below 1,
rare ones above 1; a class that never occurs gets weight 0 (it cannot be learned from
this split). Ignored pixels (255) count in no class; a split whose masks label no pixel at
all is said so loudly (`kseg data stats` then exits 1).
"""

import collections
import contextlib

import numpy as np

from kseg.data.readers import attempt
from kseg.parallel import ordered_map
from kseg.progress import progress as progress_bar


class DatasetStats:
    """Pixel counts of a split, from `compute_stats`.

    Attributes:
        class_names: tuple. The dataset's classes.
        pixels: np.ndarray. int64 [num_classes] pixels per class.
        present_pixels: np.ndarray. int64 [num_classes] pixels of the images holding each class.
        images_with_class: np.ndarray. int64 [num_classes] images holding each class.
        ignored_pixels: int. Pixels labelled 255.
        sizes: collections.Counter. (height, width) -> number of images.
        num_images: int. Masks counted.
        skipped: list. (path, message) of pairs that could not be read.
    """

    def __init__(self, class_names):
        count = len(class_names)
        self.class_names = tuple(class_names)
        self.pixels = np.zeros(count, np.int64)
        self.present_pixels = np.zeros(count, np.int64)
        self.images_with_class = np.zeros(count, np.int64)
        self.ignored_pixels = 0
        self.sizes = collections.Counter()
        self.num_images = 0
        self.skipped = []

    def add(self, mask):
        counts = np.bincount(mask.ravel(), minlength=256).astype(np.int64)
        classes = counts[: len(self.class_names)]
        present = classes > 0
        self.pixels += classes
        self.present_pixels[present] += mask.size
        self.images_with_class += present
        self.ignored_pixels += int(counts[255])
        self.sizes[mask.shape[:2]] += 1
        self.num_images += 1

    @property
    def labelled_pixels(self):
        """int. Pixels whose train id is a class (not ignored). Zero means nothing to learn."""
        return int(self.pixels.sum())

    def frequencies(self):
        """Returns each class's share of the labelled (non-ignored) pixels."""
        return self.pixels / max(self.labelled_pixels, 1)

    def median_frequency_weights(self):
        """Returns median-frequency-balancing class weights (0 for absent classes)."""
        present = self.present_pixels > 0
        frequency = self.pixels[present] / self.present_pixels[present]
        weights = np.zeros(len(self.class_names))
        if present.any():
            weights[present] = np.median(frequency) / frequency
        return weights

    def _rows(self):
        """(id, name, pixels, share, images, weight) of each class."""
        columns = (self.class_names, self.pixels, self.frequencies(), self.images_with_class,
                   self.median_frequency_weights())  # fmt: skip
        return [(index, *row) for index, row in enumerate(zip(*columns))]

    def summary(self):
        """Returns a printable table of frequencies, weights and image sizes."""
        total = self.labelled_pixels + self.ignored_pixels
        lines = [f"{self.num_images} masks, {total:,} pixels, {self.ignored_pixels:,} ignored (255)"]
        if self.skipped:
            lines.append(f"{len(self.skipped)} unreadable pair(s) left out (run `kseg data verify`)")
        if self.num_images and not self.labelled_pixels:
            lines.append(
                f"NO LABELLED PIXEL: every pixel of the {self.num_images} mask(s) is ignored "
                "(255 or a void value); nothing can be learned or scored from this split"
            )
        lines += ["", f"  {'id':>3} {'class':<20} {'pixels':>14} {'share':>8} {'images':>7} {'weight':>8}"]
        for index, name, pixels, share, images, weight in self._rows():
            lines.append(f"  {index:>3} {name:<20} {pixels:>14,} {share:>7.2%} {images:>7} {weight:>8.3f}")
        lines += ["  weights: median frequency balancing (Eigen & Fergus 2015); 0 = class absent",
                  "", f"  {'image size (HxW)':<18} {'images':>7}"]  # fmt: skip
        for (height, width), count in sorted(self.sizes.items(), key=lambda item: -item[1]):
            lines.append(f"  {f'{height}x{width}':<18} {count:>7}")
        return "\n".join(lines)

    def as_dict(self):
        """Returns the statistics as plain Python types (for JSON)."""
        return {
            "num_images": self.num_images,
            "ignored_pixels": self.ignored_pixels,
            "labelled_pixels": self.labelled_pixels,
            "classes": [
                {"id": i, "name": name, "pixels": int(p), "share": float(s), "images": int(n), "weight": float(w)}
                for i, name, p, s, n, w in self._rows()
            ],
            "weighting": "median frequency balancing",
            "sizes": {f"{h}x{w}": count for (h, w), count in self.sizes.items()},
            "skipped": [list(item) for item in self.skipped],
        }


def compute_stats(spec, split, progress=False):
    """Counts class pixels over the masks of a split (images are not decoded).

    Args:
        spec: DatasetSpec. The dataset.
        split: str. The split.
        progress: bool. Show a progress bar on stderr (`kseg.progress`).

    Returns:
        DatasetStats. Masks that cannot be read are left out and listed in `.skipped`.
    """
    pairs = spec.pairs(split)
    stats = DatasetStats(spec.class_names)

    def load(pair):
        return attempt(lambda path: spec.to_train_ids(spec.read_raw_mask(path), path), pair[1])

    with (
        progress_bar(len(pairs), f"stats {spec.name}/{split}", "mask", enabled=progress) as bar,
        contextlib.closing(ordered_map(load, pairs)) as results,
    ):
        for (_, mask_path), (mask, error) in zip(pairs, results):
            bar.update(1)
            if error is not None:
                stats.skipped.append((mask_path, str(error)))
            else:
                stats.add(mask)
    return stats
