"""Cityscapes (fine annotations): the official folder layout and label-id mapping.

    ROOT/leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png
    ROOT/gtFine/{split}/{city}/{stem}_gtFine_labelIds.png

Masks store the 34 official label ids; the 19 evaluated classes get train ids 0..18 and
every other id becomes 255. The table comes from `cityscapesscripts.helpers.labels`, the
dataset authors' own package, so it cannot drift from the benchmark's definition.
"""

import functools
import glob
import os

import numpy as np

from kseg.data.spec import DatasetSpec, folder_entries
from kseg.errors import KsegError
from kseg.labels import IGNORE_INDEX

IMAGE_SUFFIX = "_leftImg8bit.png"
MASK_SUFFIX = "_gtFine_labelIds.png"
ENV_VARIABLE = "CITYSCAPES_DATASET"
NUM_TRAIN_IDS = 19


def _labels():
    from cityscapesscripts.helpers import labels

    return labels.labels


def label_id_to_train_id_table():
    """Returns uint8[256]: official label id -> train id (0..18), or 255 if not trained."""
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label in _labels():
        if 0 <= label.id < 256 and 0 <= label.trainId < IGNORE_INDEX:
            table[label.id] = label.trainId
    return table


@functools.lru_cache(maxsize=1)
def _label_id_of_train_id():
    """uint8[256], read-only: train id -> official label id; 255 and unknown ids -> 0 (unlabeled)."""
    table = np.zeros(256, dtype=np.uint8)
    for label in _labels():
        if 0 <= label.trainId < IGNORE_INDEX and label.id >= 0:
            table[label.trainId] = label.id
    table.setflags(write=False)
    return table


def train_ids_to_label_ids(train_ids, strict=False):
    """Maps train ids to official label ids (7 road, ..., 33 bicycle), as the benchmark's
    `evalPixelLevelSemanticLabeling` script and server read them.

    Args:
        train_ids: array of integers. 0..18 map to their label ids; 255 and other ids
            to 0 ("unlabeled").
        strict: bool. Refuse ids 19 and above (a model's predictions: one of more than
            19 classes is not a Cityscapes model).

    Returns:
        np.ndarray. uint8 label ids, of the same shape.
    """
    train_ids = np.asarray(train_ids)
    if train_ids.size:
        low, high = int(train_ids.min()), int(train_ids.max())
        if strict and high >= NUM_TRAIN_IDS:
            raise KsegError(
                f"--format cityscapes-ids needs a Cityscapes model ({NUM_TRAIN_IDS} train ids); "
                f"found class {high}"
            )
        if low < 0 or high > 255:
            raise KsegError(
                f"encode_label_ids expects train ids in 0..255. Received: values {low}..{high}"
            )
    return _label_id_of_train_id()[train_ids.astype(np.uint8, copy=False)]


def trained_classes():
    """Returns ((name, colour), ...) of the 19 train ids in order."""
    by_train_id = {}
    for label in _labels():
        if 0 <= label.trainId < IGNORE_INDEX:
            by_train_id.setdefault(label.trainId, (label.name, tuple(int(c) for c in label.color)))
    return tuple(by_train_id[index] for index in sorted(by_train_id))


class CityscapesSpec(DatasetSpec):
    """Cityscapes with gtFine label-id masks.

    Args:
        root: str. The folder holding leftImg8bit/ and gtFine/.
    """

    name = "cityscapes"
    layout = "leftImg8bit/{split}/{city}/*" + IMAGE_SUFFIX + " and gtFine/{split}/{city}/*" + MASK_SUFFIX

    def __init__(self, root):
        super().__init__(root)
        classes = trained_classes()
        self.class_names = tuple(name for name, _ in classes)
        self.palette = tuple(colour for _, colour in classes)
        self.raw_to_train = label_id_to_train_id_table()
        self.valid_raw = np.isin(np.arange(256), [label.id for label in _labels()] + [IGNORE_INDEX])

    def allowed_values_text(self):
        return "label ids 0..33 (gtFine *_labelIds.png, not *_color.png or *_trainIds.png)"

    def splits(self):
        folder = os.path.join(self.root, "leftImg8bit")
        return tuple(sorted(name for name in folder_entries(folder) if os.path.isdir(os.path.join(folder, name))))

    def _list_pairs(self, split):
        images_dir = self._require_dir(os.path.join(self.root, "leftImg8bit"), "leftImg8bit/")
        masks_dir = self._require_dir(os.path.join(self.root, "gtFine"), "gtFine/")
        split_images = os.path.join(images_dir, split)
        if not os.path.isdir(split_images):
            found = ", ".join(self.splits()) or "none"
            raise KsegError(f"{split_images}: no such Cityscapes split (found: {found})")
        pairs = []
        for image_path in glob.glob(os.path.join(glob.escape(split_images), "*", "*" + IMAGE_SUFFIX)):
            city = os.path.basename(os.path.dirname(image_path))
            stem = os.path.basename(image_path)[: -len(IMAGE_SUFFIX)]
            # A missing mask is reported when read, so verify can list every one.
            mask_path = os.path.join(masks_dir, split, city, stem + MASK_SUFFIX)
            pairs.append((image_path, mask_path))
        return pairs

    def encode_label_ids(self, train_id_map):
        """Maps train ids (0..18; 255 and unknown ids to 0) to official label ids, as the
        benchmark server expects (`train_ids_to_label_ids`)."""
        return train_ids_to_label_ids(train_id_map)
