"""Pascal VOC 2012 segmentation: 20 object classes plus background.

    ROOT/JPEGImages/{id}.jpg
    ROOT/SegmentationClass/{id}.png        palette PNG: value = class index, 255 = border
    ROOT/ImageSets/Segmentation/{split}.txt  one id per line

ROOT may also be a folder holding VOC2012/ or VOCdevkit/VOC2012/. The masks are read as
palette indices (not colours); the "difficult/border" band (255) stays ignored.
"""

import os

from kseg.data.spec import DatasetSpec, check_listed_path, folder_entries, value_tables
from kseg.errors import KsegError
from kseg.files import read_text
from kseg.labels import default_palette

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)


def find_voc_root(path):
    """Returns the VOC2012 folder at or below `path` (accepts VOCdevkit/ and its parent)."""
    for candidate in (path, os.path.join(path, "VOC2012"), os.path.join(path, "VOCdevkit", "VOC2012")):
        if os.path.isdir(os.path.join(candidate, "JPEGImages")):
            return candidate
    return path


class VOCSpec(DatasetSpec):
    """Pascal VOC 2012 with palette-PNG class masks.

    Args:
        root: str. The VOC2012 folder (or a parent holding VOC2012/ or VOCdevkit/VOC2012/).
    """

    name = "voc"
    layout = "JPEGImages/*.jpg, SegmentationClass/*.png, ImageSets/Segmentation/{split}.txt"

    def __init__(self, root):
        super().__init__(find_voc_root(os.fspath(root)))
        self.class_names = VOC_CLASSES
        # The VOC palette is the same bit-spreading colour map as default_palette.
        self.palette = default_palette(len(VOC_CLASSES))
        self.raw_to_train, self.valid_raw = value_tables(len(VOC_CLASSES))

    def splits(self):
        folder = os.path.join(self.root, "ImageSets", "Segmentation")
        return tuple(sorted(name[:-4] for name in folder_entries(folder) if name.endswith(".txt")))

    def _list_pairs(self, split):
        images_dir = self._require_dir(os.path.join(self.root, "JPEGImages"), "JPEGImages/")
        masks_dir = self._require_dir(os.path.join(self.root, "SegmentationClass"), "SegmentationClass/")
        list_file = os.path.join(self.root, "ImageSets", "Segmentation", f"{split}.txt")
        if not os.path.lexists(list_file):
            found = ", ".join(self.splits()) or "none"
            raise KsegError(f"{list_file}: no such VOC split list (found: {found})")
        # A listed file that is missing is reported when read (verify lists them all).
        pairs = []
        for number, line in enumerate(read_text(list_file, "split list").splitlines(), 1):
            if line.strip():
                image_id = check_listed_path(line.split()[0], list_file, number)
                pairs.append((os.path.join(images_dir, image_id + ".jpg"), os.path.join(masks_dir, image_id + ".png")))
        return pairs
