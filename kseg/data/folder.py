"""Your own data: an images/ folder and a masks/ folder matched by file stem.

    ROOT/images/[{split}/]NAME.jpg|png|...
    ROOT/masks/[{split}/]NAME.png
    ROOT/classes.yaml              (or the file given as classes_file)

If images/{split}/ and masks/{split}/ exist, each split is its own folder. Otherwise every
image is in one pool (listed by `splits()` as "all") that is returned for any split name,
so the same pairs serve as train and val (fine for a quick look, not for honest
validation: make split folders for that).

classes.yaml lists the classes in train-id order, as names or as name + colour:

    classes:
      - background                       # a plain name: colour chosen for display
      - {name: road, color: [128, 64, 128]}
    ignore_colors: [[0, 0, 0]]           # optional: colours meaning "ignore" (255)

Masks may be index PNGs (value = class index, 255 = ignore) or RGB colour PNGs, mapped
through the colours of classes.yaml; a colour that is in neither list is an error naming
the file and the colour.
"""

import os

import numpy as np

from kseg.data.readers import read_colour_or_index_mask
from kseg.data.spec import DatasetSpec, identity_tables
from kseg.labels import default_palette
from kseg.errors import KsegError
from kseg.files import brief, load_yaml
from kseg.images import IMAGE_EXTENSIONS, equal_channels, list_image_files

CLASSES_FILE = "classes.yaml"
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff")
POOLED_SPLIT = "all"  # the split name reported for a layout without split folders


MAX_CLASSES = 255  # 255 is the ignore label
MAX_CLASS_NAME = 200  # characters
# 255 classes with names and colours take a few KiB; a bigger file is not a class list
# (and YAML parsing of megabytes takes seconds).
CLASSES_FILE_LIMIT = 256 << 10


def _colour(value, where):
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 3
        or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value)
    ):
        raise KsegError(f"{where}: a colour must be [r, g, b] with integers 0..255. Received: {brief(value)}")
    return tuple(value)


def _class_name(name, where):
    if not name.strip():
        raise KsegError(f"{where}: empty class name")
    if len(name) > MAX_CLASS_NAME:
        raise KsegError(
            f"{where}: class name of {len(name):,} characters, more than {MAX_CLASS_NAME} "
            f"({brief(name, 40)})"
        )
    if any(ord(character) < 32 or ord(character) == 127 for character in name):
        raise KsegError(f"{where}: class name {brief(name)} holds a control character (a line break?)")
    return name


def load_classes_file(path):
    """Reads a classes.yaml file.

    The file is read as a regular file only (see `kseg.files`), parsed with YAML's safe
    loader without aliases and with bounded nesting, and every entry is checked, so a
    malformed file gives one line naming it.

    Args:
        path: str. The YAML file.

    Returns:
        tuple. (class_names, colours, ignore_colours): class_names is a tuple of str;
        colours a tuple with one (r, g, b) or None per class; ignore_colours a tuple of
        (r, g, b).

    Raises:
        KsegError: missing or malformed file.
    """
    path = os.fspath(path)
    if not os.path.lexists(path):
        raise KsegError(f"{path}: classes file not found (it lists the class names; see `kseg data --help`)")
    try:
        content = load_yaml(path, "classes file", limit=CLASSES_FILE_LIMIT)
    except (ValueError, TypeError, OverflowError) as error:  # e.g. an int of 10000 digits
        raise KsegError(f"{path}: classes file is not valid YAML ({brief(str(error), 120)})") from None
    if isinstance(content, list):
        content = {"classes": content}
    if not isinstance(content, dict) or not isinstance(content.get("classes"), list):
        raise KsegError(
            f"{path}: expected a 'classes:' list of names or {{name, color}} entries. Received: {brief(content)}"
        )
    entries = content["classes"]
    if len(entries) > MAX_CLASSES:
        raise KsegError(f"{path}: at most {MAX_CLASSES} classes (255 is the ignore label). Received: {len(entries)}")
    names, colours = [], []
    for number, entry in enumerate(entries):
        where = f"{path}: class {number}"
        if isinstance(entry, str):
            name, colour = entry, None
        elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
            name = entry["name"]
            raw = entry.get("color", entry.get("colour"))
            colour = None if raw is None else _colour(raw, where)
        else:
            raise KsegError(f"{where}: expected a name or {{name: ..., color: [r, g, b]}}. Received: {brief(entry)}")
        names.append(_class_name(name, where))
        colours.append(colour)
    if len(names) < 2:
        raise KsegError(f"{path}: at least 2 classes are needed. Received: {len(names)}")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise KsegError(f"{path}: duplicate class names: {brief(', '.join(duplicates))}")
    given = [colour for colour in colours if colour is not None]
    if len(set(given)) != len(given):
        raise KsegError(f"{path}: two classes share a colour, so colour masks would be ambiguous")
    ignore_list = content.get("ignore_colors", []) or []
    if not isinstance(ignore_list, list) or len(ignore_list) > 1 << 16:
        raise KsegError(f"{path}: ignore_colors must be a list of [r, g, b] colours. Received: {brief(ignore_list)}")
    ignore = tuple(_colour(value, f"{path}: ignore_colors") for value in ignore_list)
    return tuple(names), tuple(colours), ignore


def _colour_keys(colours):
    colours = np.asarray(colours, dtype=np.int64).reshape(-1, 3)
    return (colours[:, 0] << 16) | (colours[:, 1] << 8) | colours[:, 2]


class FolderSpec(DatasetSpec):
    """images/ + masks/ folders with a classes.yaml.

    Args:
        root: str. The folder holding images/ and masks/.
        classes_file: str or None. The class list; default ROOT/classes.yaml.
    """

    name = "folder"
    layout = "images/[{split}/]*, masks/[{split}/]*.png, classes.yaml"

    def __init__(self, root, classes_file=None):
        super().__init__(root)
        if not os.path.isdir(self.root):
            raise KsegError(f"{self.root}: {self.name} dataset root not found")
        self.classes_file = os.fspath(classes_file) if classes_file else os.path.join(self.root, CLASSES_FILE)
        names, colours, ignore = load_classes_file(self.classes_file)
        self.class_names = names
        self.has_colours = all(colour is not None for colour in colours)
        fallback = default_palette(len(names))
        self.palette = tuple(c if c is not None else fallback[i] for i, c in enumerate(colours))
        self.ignore_colours = ignore
        self.raw_to_train, self.valid_raw = identity_tables(len(names))
        # Colour lookup: sorted keys r<<16|g<<8|b -> train id.
        keys = list(_colour_keys(self.palette)) + list(_colour_keys(ignore))
        ids = list(range(len(names))) + [self.ignore_index] * len(ignore)
        order = np.argsort(keys)
        self._colour_keys = np.asarray(keys, dtype=np.int64)[order]
        self._colour_ids = np.asarray(ids, dtype=np.uint8)[order]

    def _split_dirs(self, split):
        images = os.path.join(self.root, "images")
        masks = os.path.join(self.root, "masks")
        self._require_dir(images, "images/")
        self._require_dir(masks, "masks/")
        folders = self._split_folders()
        if split in folders:
            return os.path.join(images, split), os.path.join(masks, split)
        if folders:
            raise KsegError(f"{images}: no split folder '{split}' (found: {', '.join(folders)})")
        return images, masks

    def _split_folders(self):
        images = os.path.join(self.root, "images")
        if not os.path.isdir(images):
            return ()
        # A folder named like an image ("x.png") is no split: it is listed, and reported, as
        # an image that is not a regular file. Hidden folders are no splits either.
        return tuple(sorted(
            name for name in os.listdir(images)
            if os.path.isdir(os.path.join(images, name))
            and not name.startswith(".") and not name.lower().endswith(IMAGE_EXTENSIONS)
        ))

    def splits(self):
        """Split folders under images/; ("all",) when every image is in one pool.

        In the pooled layout any split name (train, val, all, ...) gives the same pairs.
        """
        folders = self._split_folders()
        if folders:
            return folders
        return (POOLED_SPLIT,) if os.path.isdir(os.path.join(self.root, "images")) else ()

    def _list_pairs(self, split):
        images_dir, masks_dir = self._split_dirs(split)
        if not os.path.isdir(masks_dir):
            raise KsegError(f"{masks_dir}: missing masks folder for {images_dir}")
        masks, others = {}, {}
        for name in sorted(os.listdir(masks_dir)):
            stem, extension = os.path.splitext(name)
            if not name.startswith("."):
                (masks if extension.lower() in MASK_EXTENSIONS else others).setdefault(
                    stem, os.path.join(masks_dir, name))
        pairs = []
        for image_path in list_image_files(images_dir, recursive=False):
            stem = os.path.splitext(os.path.basename(image_path))[0]
            # A missing mask is reported when read, so verify can list every one; a mask in
            # another format (a JPEG) is paired, so that reading it says what is wrong with it.
            mask = masks.get(stem) or others.get(stem) or os.path.join(masks_dir, stem + ".png")
            pairs.append((image_path, mask))
        return pairs

    def read_raw_mask(self, path, data=None):
        """Reads a mask as class indices; colour masks are mapped through the palette.

        Args:
            path: str. The mask file.
            data: bytes or None. Its content when already read.

        Raises:
            KsegError: a colour mask without colours in classes.yaml, or with a colour
                that is not listed there (the message names the file and colour).
        """
        mask = read_colour_or_index_mask(path, data)
        if mask.ndim == 2:
            return mask
        if not self.has_colours:
            gray = equal_channels(mask)
            if gray is not None:
                return gray
            raise KsegError(
                f"{path}: colour mask, but {self.classes_file} gives no colour for every class "
                "(add `color: [r, g, b]` to each class or store index masks)",
                kind="colour mask",
            )
        keys = (mask[:, :, 0].astype(np.int64) << 16) | (mask[:, :, 1].astype(np.int64) << 8) | mask[:, :, 2]
        position = np.searchsorted(self._colour_keys, keys).clip(max=len(self._colour_keys) - 1)
        found = self._colour_keys[position] == keys
        if not found.all():
            unknown = np.unique(keys[~found])
            colours = [f"({k >> 16}, {(k >> 8) & 255}, {k & 255})" for k in unknown[:5]]
            more = f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else ""
            raise KsegError(
                f"{path}: colour {', '.join(colours)}{more} is not a class colour in {self.classes_file}",
                kind="colour mask",
            )
        return self._colour_ids[position]

    def allowed_values_text(self):
        return f"class indices 0..{self.num_classes - 1} and 255 (ignore)"

