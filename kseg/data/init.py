"""`kseg data init`: a classes.yaml written from the masks a folder dataset holds.

The masks are found and paired the way `kseg.data.folder` does (split folders or one
pool, images and masks matched by stem) and read with the same readers. Index masks
give their values and pixel counts, colour masks their colours. The file written lists
each with its count under a placeholder name the user edits:

- index masks: one class per value (`{name: class_3, value: 3}`); 255, kseg's ignore
  value, is a commented suggestion; masks holding two values of which one is 255 (0/255,
  the usual export of one-class annotation tools) become background and object;
- colour masks: one class per colour (`{name: class_1, color: [r, g, b]}`); black,
  often "unlabelled", gets a commented `ignore_colors` suggestion.

It says whether there are split folders and, if not, how validation images are held out.
An existing classes.yaml is never replaced.
"""

import collections
import contextlib
import dataclasses
import os

import numpy as np

from kseg.data.folder import (
    CLASSES_FILE,
    DEFAULT_SPLIT_SEED,
    DEFAULT_VAL_FRACTION,
    MAX_CLASSES,
    colour_keys,
    comment_text,
    held_out,
    pair_files,
    split_folders,
)
from kseg.data.readers import attempt, read_colour_or_index_mask
from kseg.errors import KsegError
from kseg.images import equal_channels
from kseg.labels import IGNORE_INDEX
from kseg.outputs import check, write_bytes
from kseg.parallel import ordered_map
from kseg.progress import progress as progress_bar

BLACK = (0, 0, 0)
# More colours than classes kseg can learn: anti-aliased edges or a lossy copy, not class colours.
MAX_COLOURS = MAX_CLASSES


@dataclasses.dataclass
class MaskScan:
    """What `scan_masks` found.

    Attributes:
        root: str. The dataset folder.
        kind: str. "index" or "colour".
        pixels: collections.Counter. Value (int) or colour ((r, g, b)) -> pixels over every mask read.
        masks: collections.Counter. Value or colour -> number of masks holding it.
        masks_read: int. Masks read.
        unreadable: list. (path, message) of masks that could not be read.
        issues: list of kseg.data.spec.PairingIssue. Files left out of pairing.
        splits: tuple of str. The split folders (empty: one pool).
        num_pairs: int. Image/mask pairs found.
        held_out: int. Without split folders: images validation holds out.
    """

    root: str
    kind: str = "index"
    pixels: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    masks: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    masks_read: int = 0
    unreadable: list = dataclasses.field(default_factory=list)
    issues: list = dataclasses.field(default_factory=list)
    splits: tuple = ()
    num_pairs: int = 0
    held_out: int = 0

    @property
    def binary(self):
        """bool. Index masks of two values, one of them 255 (0/255 masks)."""
        return self.kind == "index" and len(self.pixels) == 2 and IGNORE_INDEX in self.pixels


def _pairs(root):
    """(pairs, issues, split folders) of the folder layout under `root`."""
    images, masks = os.path.join(root, "images"), os.path.join(root, "masks")
    for folder in (images, masks):
        if not os.path.isdir(folder):
            raise KsegError(
                f"{folder}: not found; `kseg data init` expects ROOT/images/ and ROOT/masks/ "
                "(optionally with split folders such as train/ and val/ in both)"
            )
    folders = split_folders(root)
    places = [(os.path.join(images, split), os.path.join(masks, split)) for split in folders]
    pairs, issues = [], []
    for images_dir, masks_dir in places or [(images, masks)]:
        found, left_out = pair_files(images_dir, masks_dir)
        pairs += found
        issues += left_out
    return pairs, issues, folders


def _read(mask_path):
    """(kind, {value or colour: pixels}) of one mask, or (None, message)."""
    mask, error = attempt(read_colour_or_index_mask, mask_path)
    if error is not None:
        return None, str(error)
    if mask.ndim == 3:
        gray = equal_channels(mask)
        if gray is None:
            colours, counts = np.unique(colour_keys(mask), return_counts=True)
            return "colour", {(int(k >> 16), int((k >> 8) & 255), int(k & 255)): int(n)
                              for k, n in zip(colours, counts)}  # fmt: skip
        mask = gray
    counts = np.bincount(mask.ravel(), minlength=256)
    return "index", {int(value): int(counts[value]) for value in np.flatnonzero(counts)}


def scan_masks(root, progress=False):
    """Reads every paired mask of a folder dataset and counts its values or colours.

    Args:
        root: str. The folder holding images/ and masks/.
        progress: bool. Show a progress bar on stderr.

    Returns:
        MaskScan.

    Raises:
        KsegError: no images/ or masks/ folder, no pair, no readable mask, masks that
            mix index and colour files, or more colours than classes.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise KsegError(f"{root}: folder not found")
    pairs, issues, folders = _pairs(root)
    scan = MaskScan(root, issues=issues, splits=folders, num_pairs=len(pairs))
    if not pairs:
        first = f"; first: {issues[0].message}" if issues else ""
        raise KsegError(f"{root}: no image/mask pair found (pairs share a file stem){first}")
    if not folders:
        scan.held_out = len(held_out(pairs))
    example = {}
    with (
        progress_bar(len(pairs), "scanning masks", "mask", enabled=progress) as bar,
        contextlib.closing(ordered_map(lambda pair: _read(pair[1]), pairs)) as results,
    ):
        for (_, mask_path), (kind, found) in zip(pairs, results):
            bar.update(1)
            if kind is None:
                scan.unreadable.append((mask_path, found))
                continue
            example.setdefault(kind, mask_path)
            scan.masks_read += 1
            scan.pixels.update(found)
            scan.masks.update(found.keys())
            if len(example) > 1:
                raise KsegError(
                    f"{root}: the masks mix index PNGs (e.g. {example['index']}) and colour PNGs (e.g. "
                    f"{example['colour']}); store them all one way, then run `kseg data init` again"
                )
            if kind == "colour" and len(scan.pixels) > MAX_COLOURS:
                raise KsegError(
                    f"{mask_path}: the colour masks hold more than {MAX_COLOURS} colours, more than kseg has "
                    "classes: are they anti-aliased, resized or saved as JPEG? Class colours must be exact"
                )
    if not scan.masks_read:
        raise KsegError(f"{root}: none of the {len(pairs)} masks could be read; first: {scan.unreadable[0][1]}")
    scan.kind = next(iter(example))
    return scan


def _count(scan, key):
    total = sum(scan.pixels.values())
    return f"{scan.pixels[key]:,} px ({scan.pixels[key] / total:.1%}) in {scan.masks[key]} of {scan.masks_read} masks"


def _class_lines(scan):
    """(class lines, suggestion lines) of the `classes:` list."""
    lines, after = [], []
    if scan.kind == "colour":
        colours = sorted(scan.pixels, key=lambda colour: (-scan.pixels[colour], colour))
        for number, colour in enumerate(colours):
            entry = f"  - {{name: class_{number}, color: [{colour[0]}, {colour[1]}, {colour[2]}]}}"
            lines.append(f"{entry:<52} # {_count(scan, colour)}")
            if colour == BLACK:
                lines += ["    # black often means 'unlabelled': to ignore it, delete the line above and remove",
                          "    # the # before ignore_colors below"]
                after += ["", f"# ignore_colors: [[{BLACK[0]}, {BLACK[1]}, {BLACK[2]}]]   # pixels kseg does not learn"]
        return lines, after
    values = sorted(scan.pixels)  # 255, the ignore value, comes last
    names = ("background", "object") if scan.binary else [f"class_{value}" for value in values]
    for name, value in zip(names, values):
        commented = "# " if value == IGNORE_INDEX and not scan.binary else ""
        entry = f"  {commented}- {{name: {name}, value: {value}}}"
        lines.append(f"{entry:<44} # {_count(scan, value)}")
    if IGNORE_INDEX in scan.pixels and not scan.binary:
        lines += [f"    # {IGNORE_INDEX} is kseg's ignore value (void, borders): its pixels are not learned. If it",
                  "    # is a class in your masks, remove the # before the line above"]
    return lines, after


def classes_yaml(scan):
    """The text of the classes.yaml `kseg data init` writes for a MaskScan."""
    what = "index PNGs: each value a class" if scan.kind == "index" else "colour PNGs: each colour a class"
    lines = [
        f"# classes.yaml written by `kseg data init` from the {scan.masks_read} masks of "
        f"{comment_text(scan.root)}",
        f"# ({what}).",
        "# The classes are in train-id order: the model's output k is the k-th class. Rename",
        "# the placeholders; keep each value or colour: it is what the masks store for the",
        "# class. A mask value or colour declared nowhere is an error in `kseg data verify`",
        "# and `kseg train`. The format: docs/datasets.md and `kseg data init --help`.",
    ]
    if scan.binary:
        lines.append(f"# The masks hold two values, {min(scan.pixels)} and {IGNORE_INDEX}: read as background and "
                     f"object (not as ignore {IGNORE_INDEX}).")  # fmt: skip
    if scan.unreadable:
        first = comment_text(os.path.basename(scan.unreadable[0][0]))
        lines.append(f"# {len(scan.unreadable)} mask(s) could not be read and are not counted (first: "
                     f"{first}); `kseg data verify` says why.")  # fmt: skip
    class_lines, after = _class_lines(scan)
    lines += ["", "classes:", *class_lines, *after, ""]
    if scan.splits:
        lines.append(f"# Split folders: {', '.join(scan.splits)} (train on train, validate on val).")
    else:
        lines += [
            "# No split folders (images/train, images/val): kseg trains on the pool of images but",
            f"# holds out val_fraction of it for validation ({scan.held_out} of the {scan.num_pairs} images), "
            "chosen by the",
            "# seed; the split 'all' is the whole pool. To choose yourself, make images/train,",
            "# images/val, masks/train and masks/val.",
            f"splits: {{val_fraction: {DEFAULT_VAL_FRACTION}, seed: {DEFAULT_SPLIT_SEED}}}",
        ]
    return "\n".join(lines) + "\n"


def init_classes_file(root, progress=False):
    """Scans a folder dataset's masks and writes ROOT/classes.yaml (never over a file).

    Args:
        root: str. The folder holding images/ and masks/.
        progress: bool. Show a progress bar on stderr.

    Returns:
        tuple. (path written, MaskScan).

    Raises:
        KsegError: ROOT/classes.yaml exists (or anything `scan_masks` refuses).
    """
    root = os.fspath(root)
    path = os.path.join(root, CLASSES_FILE)
    check(path, "dataset classes", option=None)  # never replaced: edit it, or move it away
    scan = scan_masks(root, progress=progress)
    classes = len(scan.pixels) - (IGNORE_INDEX in scan.pixels and not scan.binary and scan.kind == "index")
    if classes < 2:
        only = ", ".join(str(key) for key in scan.pixels)
        raise KsegError(f"{root}: every mask holds only {only}, so there is a single class and nothing to learn "
                        "(are these the right masks?)")  # fmt: skip
    text = classes_yaml(scan)
    with check(path, "dataset classes", option=None):  # written meanwhile?
        write_bytes(path, text.encode("utf8"))
    return path, scan


def scan_summary(scan):
    """Printable lines: what was scanned and found, what was left out, how validation is chosen."""
    what = "value" if scan.kind == "index" else "colour"
    lines = [f"scanned the masks of {scan.masks_read} of the {scan.num_pairs} image/mask pairs in {scan.root} "
             f"({scan.kind} masks): {len(scan.pixels)} {what}(s)"]  # fmt: skip
    order = sorted(scan.pixels) if scan.kind == "index" else sorted(scan.pixels, key=lambda c: -scan.pixels[c])
    for key in order[:20]:
        label = str(key) if scan.kind == "index" else f"[{key[0]}, {key[1]}, {key[2]}]"
        note = ("  (kseg's ignore value)" if key == IGNORE_INDEX and not scan.binary and scan.kind == "index"
                else "  (black: often unlabelled)" if key == BLACK else "")  # fmt: skip
        lines.append(f"  {label:<16} {scan.pixels[key]:>14,} px in {scan.masks[key]:>6} masks{note}")
    if len(order) > 20:
        lines.append(f"  ... and {len(order) - 20} more (all are in the file)")
    if scan.unreadable:
        lines.append(f"{len(scan.unreadable)} mask(s) could not be read (first: {scan.unreadable[0][1]})")
    if scan.issues:
        lines.append(f"{len(scan.issues)} file(s) cannot be paired and are left out (first: {scan.issues[0].message})")
    if scan.splits:
        lines.append(f"split folders: {', '.join(scan.splits)}")
    else:
        lines.append(f"no split folders: validation will hold out {scan.held_out} of the {scan.num_pairs} images "
                     f"({DEFAULT_VAL_FRACTION:.0%}, seed {DEFAULT_SPLIT_SEED}), training on the rest")  # fmt: skip
    return lines
