"""Kaggle's cityscapes-image-pairs (pix2pix): the photo and its JPEG-compressed colour label
side by side; each label pixel takes the nearest Cityscapes colour within a tolerance
(docs/importing.md#pix2pix-cityscapes-kaggle-cityscapes-image-pairs)."""

import os

import numpy as np
from cityscapesscripts.helpers import labels as cityscapes_labels

from kseg.data.cityscapes import trained_classes
from kseg.data.importers.common import (
    DEFAULTS,
    IMAGE_LEFT_OUT,
    ClassTable,
    ImportProblem,
    Sample,
    read_image_file,
    require_folder,
)
from kseg.errors import KsegError
from kseg.images import list_image_files
from kseg.labels import IGNORE_INDEX


class Pix2pixCityscapes:
    """Kaggle's cityscapes-image-pairs: train/ and val/ JPEGs, each the photo (left half)
    beside its Cityscapes colour label (right half). Each label pixel takes the class of the
    nearest Cityscapes colour within `tolerance` (RGB distance); farther pixels are ignored
    and counted as uncertain. Pixels nearest to the colour of a label Cityscapes does not
    train (unlabeled, ground, parking, ...) are ignored too, and counted as void."""

    def __init__(self, source, options=DEFAULTS):
        self.source = require_folder(os.fspath(source), "pix2pix Cityscapes folder")
        self.splits = [split for split in ("train", "val") if os.path.isdir(os.path.join(self.source, split))]
        if not self.splits:
            raise KsegError(f"{self.source}: no train/ or val/ folder of side-by-side JPEGs")
        names, colours = zip(*trained_classes())
        self.classes = ClassTable(names, colours, options.ignore, self.source)
        by_colour = {}
        for label in cityscapes_labels.labels:  # every label's colour; a trained class wins a shared one
            colour = tuple(int(c) for c in label.color)
            if by_colour.get(colour, IGNORE_INDEX) == IGNORE_INDEX:  # a label not trained has no id: ignored
                by_colour[colour] = self.classes.id.get(label.name, IGNORE_INDEX)
        self.colours = np.array(list(by_colour), np.int32)
        self.ids = np.array(list(by_colour.values()), np.uint8)
        self.tolerance = float(options.tolerance)
        self.problems = []
        self.tasks = [(split, path) for split in self.splits
                      for path in sorted(list_image_files(os.path.join(self.source, split), recursive=False))]

    def convert(self, task):
        split, path = task
        problems = []
        read = read_image_file(path, problems)
        if read is None:
            return None, problems, None
        pair = read[0]
        height, width = pair.shape[:2]
        if width % 2:
            return None, [ImportProblem(path, f"{width}x{height}: not two halves of equal width (photo | label)",
                                        IMAGE_LEFT_OUT)], None  # fmt: skip
        photo, label = pair[:, : width // 2], pair[:, width // 2:]
        mask, uncertain, void = self.nearest(label)
        sample = Sample(path, split, np.ascontiguousarray(photo), None, ".png", mask, uncertain, void)
        return sample, problems, None

    def nearest(self, label):
        """(train ids, pixels beyond the tolerance, pixels of void colours) of a colour label."""
        pixels = label.reshape(-1, 1, 3).astype(np.int32)
        distances = ((pixels - self.colours[None]) ** 2).sum(axis=2)  # (pixels, colours)
        nearest = np.argmin(distances, axis=1)
        ids = self.ids[nearest]
        beyond = distances[np.arange(len(nearest)), nearest] > self.tolerance ** 2
        void = int((ids[~beyond] == IGNORE_INDEX).sum())
        ids[beyond] = IGNORE_INDEX
        return ids.reshape(label.shape[:2]), int(beyond.sum()), void
