"""CamVid in the SegNet layout: 11 classes, index 11 ("Unlabelled") ignored.

    ROOT/{split}/*.png          RGB images (480x360)
    ROOT/{split}annot/*.png     single-channel masks, values 0..10 and 11 = void
    ROOT/{split}.txt            optional list: "IMAGE LABEL" per line

With a list file its entries are used, in its order. SegNet's lists hold absolute paths of
the authors' machine, so a listed path not found under ROOT is read as its last two
components. The list is read as a regular UTF-8 file only; the masks it names are checked
when read (a listed .jpg mask is refused as lossy). Without a list, the images of
{split}/ are matched to {split}annot/ by file name.
"""

import os

from kseg.data.spec import DatasetSpec, check_listed_path, folder_entries, value_tables
from kseg.errors import KsegError
from kseg.files import MalformedFileError, brief, read_text
from kseg.images import list_image_files

CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
    "Pedestrian", "Bicyclist",
)
CAMVID_PALETTE = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
    (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)
VOID_INDEX = 11


class CamVidSpec(DatasetSpec):
    """CamVid (SegNet's 11-class version).

    Args:
        root: str. The folder holding train/, trainannot/, val/, valannot/ ...
    """

    name = "camvid"
    layout = "{split}/*.png, {split}annot/*.png, optional {split}.txt"

    def __init__(self, root):
        super().__init__(root)
        self.class_names = CAMVID_CLASSES
        self.palette = CAMVID_PALETTE
        self.raw_to_train, self.valid_raw = value_tables(len(CAMVID_CLASSES), ignore_values=(VOID_INDEX,))

    def allowed_values_text(self):
        return f"0..{self.num_classes - 1}, {VOID_INDEX} (void) or 255"

    def splits(self):
        return tuple(sorted(
            name for name in folder_entries(self.root)
            if os.path.isdir(os.path.join(self.root, name)) and os.path.isdir(os.path.join(self.root, name + "annot"))
        ))  # fmt: skip

    def _list_pairs(self, split):
        images_dir = os.path.join(self.root, split)
        masks_dir = os.path.join(self.root, split + "annot")
        list_file = os.path.join(self.root, f"{split}.txt")
        if not os.path.isdir(images_dir) or not os.path.isdir(masks_dir):
            found = ", ".join(self.splits()) or "none"
            raise KsegError(
                f"{self.root}: no CamVid split '{split}' ({split}/ and {split}annot/ expected; "
                f"splits found: {found})"
            )
        if os.path.lexists(list_file):  # a FIFO or folder in its place is reported, not skipped
            return self._pairs_from_list(list_file)
        # A missing mask is reported when read, so verify can list every one.
        return [(image, os.path.join(masks_dir, os.path.basename(image)))
                for image in list_image_files(images_dir, recursive=False)]  # fmt: skip

    def _pairs_from_list(self, list_file):
        pairs = []
        for number, line in enumerate(read_text(list_file, "split list").splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise MalformedFileError(f"{list_file}:{number}: expected 'IMAGE LABEL', found {brief(line.strip())}")
            pairs.append(tuple(self._resolve(check_listed_path(field, list_file, number)) for field in fields))
        return pairs

    def _resolve(self, listed):
        listed = listed.replace("\\", "/")
        path = os.path.join(self.root, listed.lstrip("/"))
        if os.path.exists(path):
            return path
        return os.path.join(self.root, *listed.split("/")[-2:])
