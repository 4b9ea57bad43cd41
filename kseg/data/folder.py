"""Your own data: an images/ folder and a masks/ folder matched by file stem.

    ROOT/images/[{split}/]NAME.jpg|png|...
    ROOT/masks/[{split}/]NAME.png
    ROOT/classes.yaml              (or the file given as classes_file)

If images/{split}/ and masks/{split}/ exist, each split is its own folder. Otherwise every
image is in one pool (listed by `splits()` as "all"): split "val" is a seeded, held-out
share of it (10% by default, at least one image), split "train" the rest, and any other
name the whole pool. `kseg data init ROOT` writes a classes.yaml from the masks it finds.

classes.yaml lists the classes in train-id order (see docs/datasets.md):

    classes:
      - background                       # a plain name: masks store its index (0)
      - {name: road, color: [128, 64, 128]}
      - {name: car, value: 7}            # masks store 7 for car (all classes or none)
    ignore_colors: [[0, 0, 0]]           # optional: colours meaning "ignore" (255)
    ignore_values: [254]                 # optional: index-mask values meaning "ignore"
    splits: {val_fraction: 0.1, seed: 0} # optional: the held-out share without split folders

Masks may be index PNGs (a class's index, or its `value:` when the classes give one; 255
is ignored unless it is a class's value) or RGB colour PNGs, mapped through the colours
of classes.yaml; a value or colour that is declared nowhere is an error naming the file.

Pairing: an image and a mask pair when their stems are equal. An image without a mask, a
mask without an image, and a name shared by two images (a.png, a.jpg) or two masks are
left out and reported (`kseg.data.spec.PairingIssue`), never paired by guess.
"""

import dataclasses
import hashlib
import os

import numpy as np

from kseg.data.readers import read_colour_or_index_mask
from kseg.data.spec import (
    IMAGE_WITHOUT_MASK,
    IMAGES_SHARE_A_NAME,
    MASK_WITHOUT_IMAGE,
    MASKS_SHARE_A_NAME,
    DatasetSpec,
    PairingIssue,
    describe_values,
    folder_entries,
    value_tables,
)
from kseg.errors import KsegError
from kseg.files import brief, load_yaml
from kseg.images import IMAGE_EXTENSIONS, equal_channels, list_image_files
from kseg.labels import IGNORE_INDEX, class_name_problem, default_palette, is_byte

CLASSES_FILE = "classes.yaml"
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff")
POOLED_SPLIT = "all"  # the split name reported for a layout without split folders
TRAIN_SPLIT, VAL_SPLIT = "train", "val"  # the names a pooled layout divides its images into
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_SPLIT_SEED = 0
MAX_SEED = 2**32 - 1

MAX_CLASSES = 255  # 255 is the ignore label
# 255 classes with names and colours take a few KiB; a bigger file is not a class list
# (and YAML parsing of megabytes takes seconds).
CLASSES_FILE_LIMIT = 256 << 10
CLASS_KEYS = ("name", "color", "colour", "value")
FILE_KEYS = ("classes", "ignore_colors", "ignore_colours", "ignore_values", "splits")
SPLITS_KEYS = ("val_fraction", "seed")


@dataclasses.dataclass(frozen=True)
class ClassesFile:
    """What a classes.yaml says.

    Attributes:
        names: tuple of str. The classes, in train-id order.
        colours: tuple. One (r, g, b) or None per class.
        values: tuple or None. Per class, the tuple of index-mask values that store it;
            None when masks store each class as its index.
        ignore_colours: tuple of (r, g, b). Colours of colour masks meaning "ignore".
        ignore_values: tuple of int. Index-mask values meaning "ignore" (besides 255,
            which is ignored unless a class's value).
        val_fraction: float. Without split folders: the share of images validated on.
        seed: int. Without split folders: the seed choosing them.
    """

    names: tuple
    colours: tuple
    values: tuple = None
    ignore_colours: tuple = ()
    ignore_values: tuple = ()
    val_fraction: float = DEFAULT_VAL_FRACTION
    seed: int = DEFAULT_SPLIT_SEED


def comment_text(text):
    """`text` (a path, a file name) as it may stand in a one-line comment of a classes.yaml
    kseg writes: a character that is not printable (a line break, a byte of a name that is
    not UTF-8) becomes "?", so the comment neither ends early nor fails to encode."""
    return "".join(character if character.isprintable() else "?" for character in text)


def _colour(value, where):
    if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(map(is_byte, value)):
        raise KsegError(f"{where}: a colour must be [r, g, b] with integers 0..255. Received: {brief(value)}")
    return tuple(value)


def _mask_value(value, where):
    if not is_byte(value):
        raise KsegError(f"{where}: a mask value must be an integer 0..255. Received: {brief(value)}")
    return value


def _class_values(raw, where):
    """A class's `value:`: one mask value or a list of them."""
    listed = raw if isinstance(raw, list) else [raw]
    if not listed or len(listed) > 256:
        raise KsegError(f"{where}: value must be a mask value 0..255 or a list of them. Received: {brief(raw)}")
    return tuple(dict.fromkeys(_mask_value(value, where) for value in listed))


def _class_name(name, where):
    problem = class_name_problem(name)
    if problem:
        raise KsegError(f"{where}: {problem}")
    return name


def _unknown_keys(mapping, known, where):
    unknown = [key for key in mapping if key not in known]
    if unknown:
        raise KsegError(f"{where}: unknown key {brief(unknown[0])} (known: {', '.join(known)})")


def _spelt_either_way(mapping, keys, where, default=None):
    """The value `mapping` gives under either spelling of `keys` (color, colour); both
    spellings at once is an error, as one of them would be ignored."""
    given = [key for key in keys if key in mapping]
    if len(given) > 1:
        raise KsegError(f"{where}: {given[0]} and {given[1]} both given; keep one")
    return mapping[given[0]] if given else default


def _class_entry(entry, where):
    """(name, colour or None, values or None) of one entry of the classes list."""
    if isinstance(entry, str):
        return _class_name(entry, where), None, None
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise KsegError(
            f"{where}: expected a name or {{name: ..., color: [r, g, b], value: N}}. Received: {brief(entry)}"
        )
    _unknown_keys(entry, CLASS_KEYS, where)
    raw = _spelt_either_way(entry, ("color", "colour"), where)
    colour = None if raw is None else _colour(raw, where)
    values = _class_values(entry["value"], where) if "value" in entry else None
    return _class_name(entry["name"], where), colour, values


def _check_values(path, names, values, ignore_values):
    """Refuses classes of which only some give a value, a value given twice, and ignored
    values that are a class's value; returns the values (None: masks store indices)."""
    given = [value is not None for value in values]
    if any(given) and not all(given):
        missing = given.index(False)
        raise KsegError(
            f"{path}: class {missing} ({names[missing]}) has no value, but other classes give one: give every "
            "class the mask value(s) storing it (`value: N`), or none (masks then store class indices)"
        )
    if not any(given):
        for value in ignore_values:
            if value < len(names):
                raise KsegError(
                    f"{path}: ignore_values: {value} is the index of class {names[value]} (masks store class "
                    f"indices unless every class gives its `value:`)"
                )
        return None
    owner = {}
    for index, class_values in enumerate(values):
        for value in class_values:
            if value in owner:
                raise KsegError(f"{path}: mask value {value} is given to both {names[owner[value]]} and {names[index]}")
            owner[value] = index
    for value in ignore_values:
        if value in owner:
            raise KsegError(
                f"{path}: mask value {value} is both the value of {names[owner[value]]} and in ignore_values"
            )
    return tuple(values)


def _splits_section(raw, path):
    """(val_fraction, seed) of the optional `splits:` mapping."""
    if raw is None:
        return DEFAULT_VAL_FRACTION, DEFAULT_SPLIT_SEED
    where = f"{path}: splits"
    if not isinstance(raw, dict):
        raise KsegError(f"{where}: expected {{val_fraction: 0.1, seed: 0}}. Received: {brief(raw)}")
    _unknown_keys(raw, SPLITS_KEYS, where)
    fraction = raw.get("val_fraction", DEFAULT_VAL_FRACTION)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 0.5:
        raise KsegError(f"{where}: val_fraction must be a number above 0 and at most 0.5. Received: {brief(fraction)}")
    seed = raw.get("seed", DEFAULT_SPLIT_SEED)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise KsegError(f"{where}: seed must be an integer 0..{MAX_SEED}. Received: {brief(seed)}")
    return float(fraction), seed


def load_classes_file(path):
    """Reads a classes.yaml file (its keys: see the module docstring and docs/datasets.md).

    The file is read as a regular file only (see `kseg.files`), parsed with YAML's safe
    loader without aliases and with bounded nesting, and every entry is checked (an
    unknown key too: a misspelt one would silently change nothing), so a malformed file
    gives one line naming it.

    Args:
        path: str. The YAML file.

    Returns:
        ClassesFile.

    Raises:
        KsegError: missing or malformed file.
    """
    path = os.fspath(path)
    if not os.path.lexists(path):
        raise KsegError(
            f"{path}: classes file not found (it lists the class names; `kseg data init` writes one "
            "from the masks, see `kseg data --help`)"
        )
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
    _unknown_keys(content, FILE_KEYS, path)
    entries = content["classes"]
    if len(entries) > MAX_CLASSES:
        raise KsegError(f"{path}: at most {MAX_CLASSES} classes (255 is the ignore label). Received: {len(entries)}")
    names, colours, values = _class_entries(entries, path)
    ignore_list = _spelt_either_way(content, ("ignore_colors", "ignore_colours"), path) or []
    if not isinstance(ignore_list, list) or len(ignore_list) > 1 << 16:
        raise KsegError(f"{path}: ignore_colors must be a list of [r, g, b] colours. Received: {brief(ignore_list)}")
    ignore = tuple(_colour(value, f"{path}: ignore_colors") for value in ignore_list)
    shared = [colour for colour in ignore if colour in colours]
    if shared:
        owner = names[colours.index(shared[0])]
        raise KsegError(f"{path}: colour {list(shared[0])} is both the colour of {owner} and in ignore_colors")
    ignore_values = content.get("ignore_values", []) or []
    if not isinstance(ignore_values, list) or len(ignore_values) > 256:
        raise KsegError(f"{path}: ignore_values must be a list of mask values 0..255. Received: {brief(ignore_values)}")
    ignore_values = tuple(dict.fromkeys(_mask_value(value, f"{path}: ignore_values") for value in ignore_values))
    fraction, seed = _splits_section(content.get("splits"), path)
    return ClassesFile(names, colours, _check_values(path, names, values, ignore_values),
                       ignore, ignore_values, fraction, seed)  # fmt: skip


def _class_entries(entries, path):
    """The names, colours and mask values of a classes file's entries, checked: at least
    two, no name twice, no colour shared."""
    parsed = [_class_entry(entry, f"{path}: class {number}") for number, entry in enumerate(entries)]
    if len(parsed) < 2:
        raise KsegError(f"{path}: at least 2 classes are needed. Received: {len(parsed)}")
    names, colours, values = zip(*parsed)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise KsegError(f"{path}: duplicate class names: {brief(', '.join(duplicates))}")
    given = [colour for colour in colours if colour is not None]
    if len(set(given)) != len(given):
        raise KsegError(f"{path}: two classes share a colour, so colour masks would be ambiguous")
    return names, colours, values


def paths_by_stem(paths):
    """{file stem: [paths with that stem]}, in the order of `paths`."""
    found = {}
    for path in paths:
        found.setdefault(os.path.splitext(os.path.basename(path))[0], []).append(path)
    return found


def pair_files(images_dir, masks_dir):
    """Pairs the images of one folder with the masks of another by file stem.

    A mask is a file with a mask extension (PNG, BMP, TIFF); failing one, an image file of
    another format with the stem (a JPEG), so that reading it says what is wrong with it.
    Nothing is paired by guess: an image without a mask, a mask without an image, and a
    stem shared by two images or two masks are left out, each a PairingIssue.

    Args:
        images_dir: str. The folder of images (not searched recursively).
        masks_dir: str. The folder of masks.

    Returns:
        tuple. (pairs, issues): pairs a sorted list of (image_path, mask_path); issues a
        list of PairingIssue.

    Raises:
        KsegError: no masks folder.
    """
    if not os.path.isdir(masks_dir):
        raise KsegError(f"{masks_dir}: missing masks folder for {images_dir}")
    listed = list_image_files(masks_dir, recursive=False)
    masks = paths_by_stem(path for path in listed if path.lower().endswith(MASK_EXTENSIONS))
    others = paths_by_stem(path for path in listed if not path.lower().endswith(MASK_EXTENSIONS))
    images = paths_by_stem(list_image_files(images_dir, recursive=False))
    pairs, issues = [], []
    for stem in sorted(images):
        found = images[stem]
        candidates = masks.get(stem) or others.get(stem) or []
        if not candidates:
            issues += [PairingIssue(
                IMAGE_WITHOUT_MASK, image,
                f"{image}: its mask is missing (no {os.path.join(masks_dir, stem)}.png, nor in another format); "
                f"the image is left out: add its mask, or move the image out of {images_dir}",
            ) for image in found]  # fmt: skip
        elif len(found) > 1:
            shared = ", ".join(os.path.basename(image) for image in found)
            issues += [PairingIssue(
                IMAGES_SHARE_A_NAME, image,
                f"{image}: the images {shared} share the name of the mask {candidates[0]}, so which one it "
                "belongs to is unknown and none is used: rename them (one mask each) or remove the extra ones",
            ) for image in found]  # fmt: skip
        elif len(candidates) > 1:
            shared = ", ".join(os.path.basename(mask) for mask in candidates)
            issues.append(PairingIssue(
                MASKS_SHARE_A_NAME, found[0],
                f"{found[0]}: the masks {shared} in {masks_dir} share its name, so which one is its mask is "
                "unknown and the image is left out: keep one of them",
            ))  # fmt: skip
        else:
            pairs.append((found[0], candidates[0]))
    for stem in sorted((masks.keys() | others.keys()) - images.keys()):
        issues += [PairingIssue(
            MASK_WITHOUT_IMAGE, mask,
            f"{mask}: no image named {stem} in {images_dir}; the mask is left out: check the names of "
            "the two files, or remove the mask",
        ) for mask in masks.get(stem, []) + others.get(stem, [])]  # fmt: skip
    return pairs, issues


def split_folders(root):
    """The split folders under ROOT/images (sorted), or () for one pool of images.

    A folder named like an image ("x.png") is no split: it is listed, and reported, as an
    image that is not a regular file. Hidden folders are no splits either.
    """
    images = os.path.join(root, "images")
    return tuple(sorted(
        name for name in folder_entries(images)
        if os.path.isdir(os.path.join(images, name))
        and not name.startswith(".") and not name.lower().endswith(IMAGE_EXTENSIONS)
    ))


def held_out(pairs, fraction=DEFAULT_VAL_FRACTION, seed=DEFAULT_SPLIT_SEED):
    """The pairs a pool without split folders validates on: a seeded `fraction` of them.

    round(fraction * n) pairs, at least one, and none when the pool holds fewer than two.
    Each image is ranked by a hash of the seed and its file name, so the choice depends
    on nothing else (not on the machine, nor on the order files are listed), and adding
    images to the pool moves few of the earlier ones between the splits.

    Args:
        pairs: list of (image_path, mask_path).
        fraction: float. The share held out.
        seed: int. Another seed holds out other images.

    Returns:
        set. The image paths held out.
    """
    if len(pairs) < 2:
        return set()
    count = min(max(1, round(fraction * len(pairs))), len(pairs) - 1)

    def rank(pair):
        name = os.path.basename(pair[0]).encode("utf8", "surrogateescape")
        return hashlib.blake2b(name, digest_size=8, key=str(seed).encode()).digest(), pair[0]

    return {image for image, _ in sorted(pairs, key=rank)[:count]}


def colour_keys(colours):
    """r << 16 | g << 8 | b of the (r, g, b) colours along the last axis of `colours`."""
    colours = np.asarray(colours, dtype=np.int64)
    return (colours[..., 0] << 16) | (colours[..., 1] << 8) | colours[..., 2]


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
        self.classes = classes = load_classes_file(self.classes_file)
        self.class_names = names = classes.names
        self.has_colours = all(colour is not None for colour in classes.colours)
        fallback = default_palette(len(names))
        self.palette = tuple(c if c is not None else fallback[i] for i, c in enumerate(classes.colours))
        self.raw_to_train, self.valid_raw = value_tables(len(names), classes.values, classes.ignore_values)
        # Colour masks become the mask values index masks would hold: each class its first
        # value, an ignored colour a value meaning "ignore". Sorted keys r<<16|g<<8|b.
        stored = [values[0] for values in classes.values] if classes.values else list(range(len(names)))
        ignored = [value for value in (IGNORE_INDEX, *classes.ignore_values)
                   if self.valid_raw[value] and self.raw_to_train[value] == IGNORE_INDEX]  # fmt: skip
        if classes.ignore_colours and not ignored:
            raise KsegError(
                f"{self.classes_file}: ignore_colors need a mask value meaning ignore, and 255 is a class's "
                "value here: add one to ignore_values (e.g. [254])"
            )
        keys = colour_keys(self.palette + classes.ignore_colours)
        ids = stored + ignored[:1] * len(classes.ignore_colours)
        order = np.argsort(keys)
        self._colour_keys = keys[order]
        self._colour_ids = np.asarray(ids, dtype=np.uint8)[order]

    def _split_dirs(self, split):
        images = self._require_dir(os.path.join(self.root, "images"), "images/")
        masks = self._require_dir(os.path.join(self.root, "masks"), "masks/")
        folders = split_folders(self.root)
        if split in folders:
            return os.path.join(images, split), os.path.join(masks, split)
        if folders:
            raise KsegError(f"{images}: no split folder '{split}' (found: {', '.join(folders)})")
        return images, masks

    @property
    def pooled(self):
        """bool. True when images/ has no split folders (one pool of images)."""
        return not split_folders(self.root)

    def splits(self):
        """Split folders under images/; ("all",) when every image is in one pool.

        In the pooled layout "val" is a held-out share of the pool, "train" the rest, and
        any other name (all, test, ...) the whole pool.
        """
        folders = split_folders(self.root)
        if folders:
            return folders
        return (POOLED_SPLIT,) if os.path.isdir(os.path.join(self.root, "images")) else ()

    def _listing_key(self, split):
        return POOLED_SPLIT if self.pooled else split

    def _pairs_and_issues(self, split):
        pairs, issues = pair_files(*self._split_dirs(split))
        if self.pooled and split in (TRAIN_SPLIT, VAL_SPLIT):
            held = held_out(pairs, self.classes.val_fraction, self.classes.seed)
            if held:
                pairs = [pair for pair in pairs if (pair[0] in held) == (split == VAL_SPLIT)]
        return pairs, issues

    def validation_note(self, split, train_split=TRAIN_SPLIT):
        """How validation images are chosen: the held-out share of a pool, or a split.

        Without validation, a pool's "train" split still leaves out the held-out share:
        the line says so, and how to train on every image.
        """
        if self.pooled and split.lower() == "none" and train_split == TRAIN_SPLIT:
            total, count = len(self.pairs(POOLED_SPLIT)), len(self.pairs(TRAIN_SPLIT))
            if count < total:
                return (f"validation: none; the split '{TRAIN_SPLIT}' of {self.root} (no split folders) still leaves "
                        f"out the {total - count} image(s) held out for validation: pass --train-split "
                        f"{POOLED_SPLIT} to train on all {total}")  # fmt: skip
        if not self.pooled or split != VAL_SPLIT:
            return super().validation_note(split, train_split)
        total, count = len(self.pairs(POOLED_SPLIT)), len(self.pairs(VAL_SPLIT))
        if count == total:
            return (f"validation: on the only image of {self.root}, which is trained on too (no split folders, and "
                    "one image cannot be divided)")  # fmt: skip
        return (f"validation: {count} of the {total} images of {self.root} held out by seed "
                f"{self.classes.seed} (val_fraction {self.classes.val_fraction:g}; `splits:` in {self.classes_file}), "
                f"training on the other {total - count}; make images/train and images/val folders to choose "
                "yourself")  # fmt: skip

    def ignored_class_advice(self, present, missing):
        """The classes file's fix: give each class the value its masks store it as."""
        if self.classes.values is not None:
            return (f"if a class is stored as {self.ignore_index}, make that its `value:` in {self.classes_file} "
                    f"(docs/datasets.md)")  # fmt: skip
        if len(present) == 1 and len(missing) == 1:
            example = (f"classes: [{{name: {present[0]}, value: {self.class_names.index(present[0])}}}, "
                       f"{{name: {missing[0]}, value: {self.ignore_index}}}]")  # fmt: skip
        else:
            example = f"- {{name: {missing[0]}, value: {self.ignore_index}}} (and every other class its value)"
        return (f"declare the values your masks store in {self.classes_file}, e.g. `{example}` "
                f"(docs/datasets.md), or move that file away and write one from the masks with "
                f"`kseg data init {self.root}`")  # fmt: skip

    def read_raw_mask(self, path, data=None):
        """Reads a mask's stored values; colour masks are mapped through the palette to the
        values an index mask would store (a class's first value, or its index).

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
        keys = colour_keys(mask)
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
        ignored = describe_values(np.flatnonzero(self.valid_raw & (self.raw_to_train == self.ignore_index)))
        if self.classes.values is None:
            return f"class indices 0..{self.num_classes - 1} and {ignored} (ignore)"
        pairs = list(zip(self.class_names, self.classes.values))[:8]
        declared = ", ".join(f"{describe_values(values, 3)} ({name})" for name, values in pairs)
        more = f" (+{self.num_classes - 8} more classes)" if self.num_classes > 8 else ""
        return f"the values of {self.classes_file}: {declared}{more}, and {ignored} (ignore)"

