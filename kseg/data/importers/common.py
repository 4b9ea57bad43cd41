"""What every importer of `kseg.data.importers` shares: the options, the problem record, the
converted sample, the result and its summary, the class table, and the image reader that
turns a bad file into a named problem instead of an exception."""

import collections
import dataclasses
import os

import numpy as np

from kseg.choices import CROWD, UNLABELLED
from kseg.data.folder import DEFAULT_SPLIT_SEED, DEFAULT_VAL_FRACTION, MAX_CLASSES
from kseg.data.readers import read_rgb_image
from kseg.errors import KsegError
from kseg.files import brief
from kseg.images import ImageError, probe, read_file, read_image
from kseg.labels import IGNORE_INDEX, class_name_problem, default_palette

REPORT_FILE = "import-report.txt"
BACKGROUND = "background"
# What a problem did: its region ignored, the annotation left out, the image left out, or
# the annotation kept as drawn inside the image.
IGNORED, SHAPE_LEFT_OUT, IMAGE_LEFT_OUT, KEPT = ("pixels ignored", "annotation left out",
                                                 "image left out", "kept, clipped to the image")
# Folders of a source that are splits (LabelMe, COCO), by the names tools give them; Roboflow
# calls its validation split "valid".
SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "bmp": ".bmp", "tiff": ".tif"}


@dataclasses.dataclass(frozen=True)
class ImportOptions:
    """How `import_dataset` reads a source (each option is for the formats named).

    Args:
        images: str or None. COCO: the folder `file_name`s are relative to (default: the
            JSON file's folder).
        labels: str or None. LabelMe: a labels.txt fixing the classes and their order.
        unlabelled: str. LabelMe, COCO: pixels no annotation covers are "background"
            (class 0) or "ignore" (255).
        crowd: str. COCO: `iscrowd` regions are "ignore"d or drawn as their "class".
        ignore: tuple of str. Class names whose pixels are ignored instead of learned.
        tolerance: float. pix2pix: largest RGB distance to a Cityscapes colour.
        strict: bool. Stop, writing nothing, if any annotation or image has a problem.
        workers: int or None. Reader threads.
    """

    images: str = None
    labels: str = None
    unlabelled: str = BACKGROUND
    crowd: str = "ignore"
    ignore: tuple = ()
    tolerance: float = 40.0
    strict: bool = False
    workers: int = None

    def __post_init__(self):
        if self.unlabelled not in UNLABELLED or self.crowd not in CROWD:
            raise KsegError(f"unlabelled must be background or ignore, crowd ignore or class. Received: "
                            f"unlabelled={brief(self.unlabelled)}, crowd={brief(self.crowd)}")  # fmt: skip
        if isinstance(self.tolerance, bool) or not isinstance(self.tolerance, (int, float)) or not (
                0 <= self.tolerance <= 442):
            raise KsegError(f"tolerance must be an RGB distance 0..442. Received: {brief(self.tolerance)}")


DEFAULTS = ImportOptions()


@dataclasses.dataclass(frozen=True)
class ImportProblem:
    """One annotation or image that was not imported as it stands.

    Attributes:
        path: str. The file holding it.
        message: str. What is wrong (which shape or annotation, and why).
        action: str. What the import did: IGNORED, SHAPE_LEFT_OUT, IMAGE_LEFT_OUT or KEPT.
    """

    path: str
    message: str
    action: str

    def __str__(self):
        return f"{self.path}: {self.message} ({self.action})"


@dataclasses.dataclass
class Sample:
    """One converted image: what goes to images/ and masks/."""

    origin: str  # the file named in messages about the sample (its image, or its annotation)
    split: str
    image: np.ndarray  # RGB, as kseg reads it
    data: bytes = None  # the file to copy, or None: write `image` as PNG
    extension: str = ".png"
    mask: np.ndarray = None  # uint8 train ids, 255 ignored
    uncertain: int = 0  # pix2pix: pixels beyond the colour tolerance
    void: int = 0  # pix2pix: pixels nearest to a colour of a class Cityscapes does not train

    @property
    def stem(self):
        """The name the sample is written under: its origin's file name without extension."""
        return stem_of(self.origin)


@dataclasses.dataclass
class ImportResult:
    """What `import_dataset` wrote.

    Attributes:
        out_dir: str. The dataset folder.
        format: str. One of FORMATS.
        names: tuple of str. The classes, in train-id order.
        colours: tuple. Their (r, g, b) colours.
        images: collections.Counter. Split ("" for one pool) -> images written.
        problems: list of ImportProblem.
        counts: collections.Counter. What was read and drawn (shapes, crowd regions, ...).
        class_pixels: np.ndarray. Pixels per class over every mask written.
        ignored_pixels: int. Pixels written as 255.
        uncertain: dict. pix2pix: image path -> (pixels beyond the tolerance, pixels of void
            colours, pixels), the first two ignored.
    """

    out_dir: str
    format: str
    names: tuple = ()
    colours: tuple = ()
    images: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    problems: list = dataclasses.field(default_factory=list)
    counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    class_pixels: np.ndarray = None
    ignored_pixels: int = 0
    uncertain: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.class_pixels is None:
            self.class_pixels = np.zeros(len(self.names), np.int64)

    def summary(self):
        """Printable lines: images per split, pixels per class, counts, problems by action."""
        total = sum(self.images.values())
        splits = ", ".join(f"{split} {count}" for split, count in sorted(self.images.items()) if split)
        lines = [f"imported {total} image(s) from {self.format} into {self.out_dir}"
                 + (f" (splits: {splits})" if splits else " (one pool: validation holds out "
                    f"{DEFAULT_VAL_FRACTION:.0%} of it, seed {DEFAULT_SPLIT_SEED})")]
        pixels = int(self.class_pixels.sum()) + self.ignored_pixels
        for index, name in enumerate(self.names):
            count = int(self.class_pixels[index])
            empty = "  (no pixel: check the class list)" if not count else ""
            lines.append(f"  {index:>3} {name[:40]:<40} {count:>14,} px ({count / max(pixels, 1):6.1%}){empty}")
        lines.append(f"  255 {'(ignored)':<40} {self.ignored_pixels:>14,} px "
                     f"({self.ignored_pixels / max(pixels, 1):6.1%})")
        if self.counts:
            lines.append("read: " + ", ".join(f"{count:,} {what}" for what, count in sorted(self.counts.items())))
        if self.uncertain:
            uncertain, void, _ = map(sum, zip(*self.uncertain.values()))
            lines.append(f"colours: {uncertain:,} px uncertain (beyond the tolerance, ignored) in "
                         f"{sum(1 for v in self.uncertain.values() if v[0])} of {len(self.uncertain)} image(s), "
                         f"{void:,} px of void colours (ignored); per image in "
                         f"{os.path.join(self.out_dir, REPORT_FILE)}")
        actions = collections.Counter(problem.action for problem in self.problems)
        if actions:
            lines.append(f"{len(self.problems)} problem(s): " + ", ".join(
                f"{count} {action}" for action, count in sorted(actions.items())))
        return lines


# -- shared pieces ---------------------------------------------------------------------------


def split_folders(source):
    """{kseg split name: folder} of the first-level folders of `source` named like splits."""
    found = {}
    for name in sorted(os.listdir(source)):
        split = SPLIT_FOLDERS.get(name.lower())
        if split and os.path.isdir(os.path.join(source, name)):
            if split in found:
                raise KsegError(f"{source}: both {os.path.basename(found[split])}/ and {name}/ would be split "
                                f"{split!r}; keep one")  # fmt: skip
            found[split] = os.path.join(source, name)
    return found


def require_folder(path, what):
    if not os.path.isdir(path):
        raise KsegError(f"{path}: {what} not found" + (" (it is a file)" if os.path.exists(path) else ""))
    return path


def left_out(path, error):
    """The problem of a file that cannot be read: the reader's message without its leading 'PATH: '."""
    return ImportProblem(path, str(error).removeprefix(f"{path}: "), IMAGE_LEFT_OUT)


def read_image_file(where, problems, data=None):
    """(RGB array, bytes to copy or None, extension) of the image file `where`, or of its
    content `data`; None and a problem when it cannot be read."""
    try:
        data = read_file(where) if data is None else data
        header = probe(data)
        try:
            rgb = read_rgb_image(where, data)
        except ImageError as error:
            if error.kind not in ("grayscale", "RGBA", "16-bit"):
                raise
            return read_image(where, data), None, ".png"  # converted to 8-bit RGB
        extension = EXTENSIONS.get(header.format)
        return rgb, (data if extension else None), extension or ".png"
    except KsegError as error:
        problems.append(left_out(where, error))
        return None


def stem_of(path):
    return os.path.splitext(os.path.basename(path))[0]


def swapped_note(expected, found):
    """A hint when two (height, width) sizes are each other turned by 90 degrees."""
    if tuple(expected) == tuple(found)[::-1] and expected[0] != expected[1]:
        return (" (width and height swapped: the image's EXIF orientation turns it, and the annotation was "
                "made on the stored pixels or the other way round)")
    return ""


class ClassTable:
    """Names and colours in train-id order, with the names mapped to ignore."""

    def __init__(self, names, colours, ignore, where):
        names = list(names)
        if len(names) > MAX_CLASSES:
            raise KsegError(f"{where}: {len(names)} classes, more than kseg's {MAX_CLASSES} (255 is the ignore label)")
        for name in names:
            problem = class_name_problem(name) if isinstance(name, str) else f"class name {brief(name)} is not text"
            if problem:
                raise KsegError(f"{where}: {problem}")
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise KsegError(f"{where}: two classes are named {brief(duplicates[0])}")
        missing = [name for name in ignore if name not in names]
        if missing:
            raise KsegError(f"--ignore-class {missing[0]}: no such class in {where} (classes: "
                            f"{brief(', '.join(names), 300)})")  # fmt: skip
        kept = [index for index, name in enumerate(names) if name not in ignore]
        self.names = tuple(names[index] for index in kept)
        self.colours = tuple(colours[index] for index in kept) if colours else default_palette(len(kept))
        if len(self.names) < 2:
            raise KsegError(f"{where}: {len(self.names)} class(es) to learn ({brief(', '.join(self.names))}); "
                            "kseg needs at least 2")  # fmt: skip
        self.id = {name: IGNORE_INDEX for name in ignore}
        self.id.update({name: index for index, name in enumerate(self.names)})
