"""`kseg data import`: annotation-tool exports and Kaggle datasets in kseg's folder layout.

Five sources are read (docs/importing.md says what each one decides):

    labelme             one LabelMe .json per image (shapes drawn as LabelMe's own tools do)
    coco                a COCO instances .json (polygons and RLE, decoded by pycocotools)
    cvat                a CVAT "Segmentation mask 1.1" export (labelmap.txt, colour masks)
    camvid-kaggle       Kaggle's CamVid (train/, train_labels/ *_L.png, class_dict.csv)
    pix2pix-cityscapes  Kaggle's cityscapes-image-pairs (photo | colour label in one JPEG)

Each becomes the folder layout of `kseg.data.folder`: images/[SPLIT/], masks/[SPLIT/]
holding lossless index PNGs of train ids (0..N-1, 255 ignored), and a classes.yaml with
the class names and colours. Images are copied byte for byte where kseg reads them as
they are (RGB, 8-bit); a grayscale, RGBA or 16-bit image, an image embedded in a LabelMe
file, and the photo half of a pix2pix pair are written as PNG.

Nothing is dropped silently. A problem with one annotation or one image is an
`ImportProblem`, naming the file and what is wrong, and says what was done: the region
ignored (its label is unknown but its pixels are known), the annotation left out (it
cannot be drawn), or the image left out (missing, unreadable, of another size than its
annotation). The problems, the counts and, for pix2pix, the pixels whose colour was
uncertain are in the report printed at the end and in OUT_DIR/import-report.txt. With
`strict`, any problem stops the import and nothing is written. A source that cannot be
read at all (no such folder, a damaged COCO file, no labelmap.txt) is one `KsegError`.

The dataset is built in a hidden scratch folder beside OUT_DIR and renamed into place
when complete (`kseg.outputs.writing`), so an interrupted import leaves nothing; an
existing OUT_DIR is never replaced (`kseg.outputs.KINDS["imported dataset"]`).
"""

import base64
import binascii
import collections
import contextlib
import csv
import dataclasses
import io
import math
import os

import numpy as np
import yaml
from cityscapesscripts.helpers import labels as cityscapes_labels
from PIL import Image, ImageDraw
from pycocotools import mask as coco_mask

from kseg.data.cityscapes import trained_classes
from kseg.data.folder import CLASSES_FILE, DEFAULT_SPLIT_SEED, DEFAULT_VAL_FRACTION, MAX_CLASS_NAME, MAX_CLASSES
from kseg.errors import KsegError
from kseg.files import IMAGE_FILE_LIMIT, brief, load_json, parse_json, read_bytes, read_text
from kseg.images import ImageError, check_pixels, list_image_files, probe, read_file, read_image, write_png
from kseg.data.readers import read_rgb_image
from kseg.labels import IGNORE_INDEX, default_palette
from kseg.outputs import Outputs, write_bytes, writing
from kseg.parallel import ordered_map
from kseg.progress import progress as progress_bar

FORMATS = ("labelme", "coco", "cvat", "camvid-kaggle", "pix2pix-cityscapes")
REPORT_FILE = "import-report.txt"
BACKGROUND = "background"
# LabelMe's own conventions (labelme2voc, labels.txt): these names are not classes.
LABELME_IGNORE = "__ignore__"
LABELME_BACKGROUND = ("_background_", "background")
# How LabelMe's shape_to_mask draws shapes without an area (pixels).
LINE_WIDTH, POINT_RADIUS = 10, 5
LABELME_SHAPES = ("polygon", "rectangle", "circle", "line", "linestrip", "point", "mask")
# pix2pix: RGB distance from the nearest Cityscapes colour beyond which a pixel is ignored.
DEFAULT_TOLERANCE = 40.0
# Ignored region, annotation left out, image left out, kept as drawn: what a problem did.
IGNORED, SHAPE_LEFT_OUT, IMAGE_LEFT_OUT, KEPT = ("pixels ignored", "annotation left out",
                                                 "image left out", "kept, clipped to the image")
COCO_FILE_LIMIT = IMAGE_FILE_LIMIT  # COCO train2017's instances file alone is 450 MB
EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "bmp": ".bmp", "tiff": ".tif"}


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
class _Sample:
    """One converted image: what goes to images/ and masks/."""

    stem: str
    split: str
    image: np.ndarray  # RGB, as kseg reads it
    data: bytes = None  # the file to copy, or None: write `image` as PNG
    extension: str = ".png"
    mask: np.ndarray = None  # uint8 train ids, 255 ignored
    uncertain: int = 0  # pix2pix: pixels beyond the colour tolerance
    void: int = 0  # pix2pix: pixels nearest to a colour of a class Cityscapes does not train


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

    def summary(self):
        """Printable lines: images per split, pixels per class, counts, problems by action."""
        total = sum(self.images.values())
        splits = ", ".join(f"{split} {count}" for split, count in sorted(self.images.items()) if split)
        lines = [f"imported {total} image(s) from {self.format} into {self.out_dir}"
                 + (f" (splits: {splits})" if splits else " (one pool: validation holds out "
                    f"{DEFAULT_VAL_FRACTION:.0%} of it, seed {DEFAULT_SPLIT_SEED})")]
        pixels = int(self.class_pixels.sum()) + self.ignored_pixels if self.class_pixels is not None else 0
        for index, name in enumerate(self.names):
            count = int(self.class_pixels[index]) if pixels else 0
            empty = "  (no pixel: check the class list)" if not count else ""
            lines.append(f"  {index:>3} {name[:40]:<40} {count:>14,} px ({count / max(pixels, 1):6.1%}){empty}")
        lines.append(f"  255 {'(ignored)':<40} {self.ignored_pixels:>14,} px "
                     f"({self.ignored_pixels / max(pixels, 1):6.1%})")
        if self.counts:
            lines.append("read: " + ", ".join(f"{count:,} {what}" for what, count in sorted(self.counts.items())))
        if self.uncertain:
            uncertain = sum(value[0] for value in self.uncertain.values())
            void = sum(value[1] for value in self.uncertain.values())
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


def _folder(path, what):
    if not os.path.isdir(path):
        raise KsegError(f"{path}: {what} not found" + (" (it is a file)" if os.path.exists(path) else ""))
    return path


def _image(data, where, left_out):
    """(RGB array, bytes to copy or None, extension) of an image file's content; None and
    a problem when it cannot be read."""
    try:
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
        left_out.append(ImportProblem(where, _strip(str(error), where), IMAGE_LEFT_OUT))
        return None


def _read_image_file(path, left_out):
    try:
        data = read_file(path)
    except KsegError as error:
        left_out.append(ImportProblem(path, _strip(str(error), path), IMAGE_LEFT_OUT))
        return None
    return _image(data, path, left_out)


def _strip(message, path):
    """A reader's message without its leading 'PATH: '."""
    return message[len(path) + 2:] if message.startswith(f"{path}: ") else message


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def _colour_keys(array):
    array = array.astype(np.int64)
    return (array[..., 0] << 16) | (array[..., 1] << 8) | array[..., 2]


def _colours_to_ids(rgb, table, where, what, problems):
    """Maps an RGB mask to train ids through {colour: id}; colours not in the table are
    ignored and named."""
    keys, inverse = np.unique(_colour_keys(rgb), return_inverse=True)
    ids = np.array([table.get((int(k >> 16), int((k >> 8) & 255), int(k & 255)), -1) for k in keys], np.int16)
    unknown = keys[ids < 0]
    if unknown.size:
        counts = np.bincount(inverse.ravel(), minlength=len(keys))[ids < 0]
        shown = ", ".join(f"[{k >> 16}, {(k >> 8) & 255}, {k & 255}] ({n} px)" for k, n in zip(unknown[:4], counts[:4]))
        more = f" and {unknown.size - 4} more" if unknown.size > 4 else ""
        problems.append(ImportProblem(where, f"{int(counts.sum())} px of {unknown.size} colour(s) not in {what}: "
                                      f"{shown}{more}", IGNORED))  # fmt: skip
    ids[ids < 0] = IGNORE_INDEX
    return ids.astype(np.uint8)[inverse.reshape(rgb.shape[:2])]


def _read_colour_mask(path, problems):
    """An RGB colour mask (palette PNGs through their palette), or None and a problem."""
    try:
        data = read_file(path, "mask file")
        header = probe(data)
        check_pixels(header, path, "mask")
        if header.lossy:
            raise ImageError(f"{path}: mask is stored as {header.lossy}, a lossy format: its colours are "
                             "not exact")  # fmt: skip
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except KsegError as error:
        problems.append(ImportProblem(path, _strip(str(error), path), IMAGE_LEFT_OUT))
    except Exception:  # noqa: BLE001 - Pillow raises many types for damaged files
        problems.append(ImportProblem(path, "not a readable image (corrupt, truncated or unknown format)",
                                      IMAGE_LEFT_OUT))  # fmt: skip
    return None


def _sized(rgb, mask, image_path, mask_path, problems):
    if rgb.shape[:2] == mask.shape[:2]:
        return True
    problems.append(ImportProblem(mask_path, f"mask is {mask.shape[1]}x{mask.shape[0]}, its image {image_path} "
                                  f"{rgb.shape[1]}x{rgb.shape[0]}", IMAGE_LEFT_OUT))  # fmt: skip
    return False


def _check_names(names, where):
    if len(names) > MAX_CLASSES:
        raise KsegError(f"{where}: {len(names)} classes, more than kseg's {MAX_CLASSES} (255 is the ignore label)")
    for name in names:
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_CLASS_NAME or any(
                ord(c) < 32 or ord(c) == 127 for c in name):
            raise KsegError(f"{where}: class name {brief(name)} cannot be a class name (empty, longer than "
                            f"{MAX_CLASS_NAME} characters or holding a control character)")  # fmt: skip
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise KsegError(f"{where}: two classes are named {brief(duplicates[0])}")


class _Classes:
    """Names and colours in train-id order, with the names mapped to ignore."""

    def __init__(self, names, colours, ignore, where):
        names = list(names)
        _check_names(names, where)
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


# -- LabelMe ---------------------------------------------------------------------------------


def _points(shape, where):
    """A shape's points as an (N, 2) float array, or an error message."""
    points = shape.get("points")
    if not isinstance(points, list):
        return f"{where}: 'points' is {brief(points)}, not a list of [x, y]"
    try:
        array = np.array(points, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return f"{where}: 'points' holds something other than [x, y] numbers: {brief(points)}"
    if array.ndim != 2 or array.shape[1] != 2 or not np.isfinite(array).all() or (
            array.size and np.abs(array).max() > 1e7):
        return f"{where}: 'points' must be [x, y] pairs of finite numbers. Received: {brief(points)}"
    return array


def _labelme_region(shape, where, size):
    """(bool mask or None, list of problem messages with actions) of one LabelMe shape,
    drawn the way LabelMe's own `shape_to_mask` draws it."""
    height, width = size
    kind = shape.get("shape_type") or "polygon"  # files of LabelMe 3 have no shape_type
    if kind not in LABELME_SHAPES:
        return None, [(f"{where}: unknown shape_type {brief(kind)} (LabelMe's: {', '.join(LABELME_SHAPES)})",
                       SHAPE_LEFT_OUT)]  # fmt: skip
    points = _points(shape, where)
    if isinstance(points, str):
        return None, [(points, SHAPE_LEFT_OUT)]
    need = {"polygon": "at least 3", "rectangle": "2", "circle": "2", "line": "2", "linestrip": "at least 2",
            "point": "1", "mask": "2"}[kind]  # fmt: skip
    count = len(points)
    if (need.startswith("at least") and count < int(need[-1])) or (need.isdigit() and count != int(need)):
        return None, [(f"{where}: a {kind} needs {need} point(s), this one has {count}", SHAPE_LEFT_OUT)]
    notes = []
    outside = (points[:, 0] < 0) | (points[:, 0] > width) | (points[:, 1] < 0) | (points[:, 1] > height)
    if outside.any():
        x, y = points[np.argmax(outside)]
        notes.append((f"{where}: {int(outside.sum())} point(s) outside the {width}x{height} image "
                      f"(e.g. [{x:g}, {y:g}])", KEPT))  # fmt: skip
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    xy = [tuple(point) for point in points.tolist()]
    if kind == "mask":
        problem = _place_mask(shape, points, canvas, where)
        if problem:
            return None, notes + [(problem, SHAPE_LEFT_OUT)]
    elif kind == "circle":
        (cx, cy), (px, py) = xy
        radius = math.hypot(cx - px, cy - py)
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], outline=1, fill=1)
    elif kind == "rectangle":
        (x1, y1), (x2, y2) = xy
        draw.rectangle([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)], outline=1, fill=1)
    elif kind in ("line", "linestrip"):
        draw.line(xy, fill=1, width=LINE_WIDTH)
    elif kind == "point":
        (cx, cy), = xy
        draw.ellipse([cx - POINT_RADIUS, cy - POINT_RADIUS, cx + POINT_RADIUS, cy + POINT_RADIUS], outline=1, fill=1)
    else:
        draw.polygon(xy, outline=1, fill=1)
    return np.asarray(canvas, dtype=bool), notes


def _place_mask(shape, points, canvas, where):
    """Pastes a 'mask' shape (a base64 PNG covering the box of its two points) on the
    canvas; returns a problem message or None."""
    encoded = shape.get("mask")
    if not isinstance(encoded, str):
        return f"{where}: a mask shape without its 'mask' (base64 PNG)"
    try:
        data = base64.b64decode(encoded, validate=True)
        check_pixels(probe(data), where, "mask")
        with Image.open(io.BytesIO(data)) as image:
            mask = np.asarray(image.convert("L")) > 0
    except (binascii.Error, ValueError):
        return f"{where}: 'mask' is not base64 data"
    except KsegError as error:
        return str(error)
    except Exception:  # noqa: BLE001 - Pillow raises many types for damaged files
        return f"{where}: 'mask' is not a readable PNG"
    (x1, y1), (x2, y2) = points.astype(int)
    if (y2 - y1 + 1, x2 - x1 + 1) != mask.shape:
        return (f"{where}: its mask is {mask.shape[1]}x{mask.shape[0]} but its points span "
                f"{x2 - x1 + 1}x{y2 - y1 + 1}")  # fmt: skip
    full = np.zeros((canvas.height, canvas.width), bool)
    top, left = max(y1, 0), max(x1, 0)
    bottom, right = min(y2 + 1, canvas.height), min(x2 + 1, canvas.width)
    if bottom > top and right > left:
        full[top:bottom, left:right] = mask[top - y1:bottom - y1, left - x1:right - x1]
    canvas.paste(Image.fromarray(full.astype(np.uint8)), (0, 0))
    return None


class LabelMe:
    """LabelMe: SOURCE is a folder of .json files (searched recursively) or one .json.

    Classes: `background` (unlabelled pixels), then the labels in `labels_file` order (a
    LabelMe labels.txt, one name a line; `__ignore__` and `_background_` lines are
    LabelMe's conventions, not classes) or, without one, every label found, sorted.
    """

    name = "labelme"

    def __init__(self, source, labels_file=None, unlabelled=BACKGROUND, ignore=()):
        self.source = os.fspath(source)
        if os.path.isfile(self.source):
            self.files = [self.source]
        else:
            _folder(self.source, "LabelMe folder")
            self.files = sorted(
                os.path.join(parent, name) for parent, folders, names in os.walk(self.source)
                for name in names if name.lower().endswith(".json") and not name.startswith("."))
            if not self.files:
                raise KsegError(f"{self.source}: no LabelMe .json file found (searched every folder inside)")
        self.unlabelled = unlabelled
        found = set()
        for path in self.files:  # a first pass for the class list; problems are named later
            with contextlib.suppress(KsegError):
                document = load_json(path, "LabelMe file")
                for shape in document.get("shapes") or () if isinstance(document, dict) else ():
                    if isinstance(shape, dict) and isinstance(shape.get("label"), str):
                        found.add(shape["label"])
        if labels_file:
            listed = [line.strip() for line in read_text(labels_file, "labels file").splitlines()]
            listed = [name for name in listed if name and name != LABELME_IGNORE]
        else:
            listed = sorted(found - {LABELME_IGNORE})
        background = [name for name in listed if name in LABELME_BACKGROUND]
        others = [name for name in listed if name not in LABELME_BACKGROUND]
        if len(background) > 1:
            raise KsegError(f"{labels_file}: lists both {background[0]} and {background[1]}: which is background?")
        first = background[:1] or ([BACKGROUND] if unlabelled == BACKGROUND else [])
        self.classes = _Classes(first + others, None, ignore, labels_file or self.source)
        self.labelled = set(listed)
        self.background = self.classes.id.get(first[0], IGNORE_INDEX) if first else IGNORE_INDEX
        self.labels_file = labels_file

    def tasks(self):
        return [("", path) for path in self.files]

    def convert(self, task):
        split, path = task
        problems = []
        try:
            document = load_json(path, "LabelMe file")
        except KsegError as error:
            return None, [ImportProblem(path, _strip(str(error), path), IMAGE_LEFT_OUT)], None
        if not isinstance(document, dict) or not isinstance(document.get("shapes"), list):
            return None, [ImportProblem(path, "not a LabelMe file (no 'shapes' list)", IMAGE_LEFT_OUT)], None
        image = self._image(document, path, problems)
        if image is None:
            return None, problems, None
        rgb, data, extension = image
        height, width = rgb.shape[:2]
        claimed = document.get("imageHeight"), document.get("imageWidth")
        if all(isinstance(value, int) for value in claimed) and claimed != (height, width):
            return None, problems + [ImportProblem(path, f"imageWidth x imageHeight is {claimed[1]}x{claimed[0]}, "
                                                   f"the image {width}x{height}", IMAGE_LEFT_OUT)], None  # fmt: skip
        mask = np.full((height, width), self.background, np.uint8)
        counts = collections.Counter()
        for number, shape in enumerate(document["shapes"]):
            where = f"shape {number}"
            if not isinstance(shape, dict) or not isinstance(shape.get("label"), str):
                problems.append(ImportProblem(path, f"{where}: no text 'label': {brief(shape)}", SHAPE_LEFT_OUT))
                continue
            label = shape["label"]
            where = f"shape {number} ({brief(label, 40)})"
            region, notes = _labelme_region(shape, where, (height, width))
            problems += [ImportProblem(path, message, action) for message, action in notes]
            if region is None:
                continue
            if label == LABELME_IGNORE:
                value = IGNORE_INDEX
            elif label in LABELME_BACKGROUND and label not in self.labelled:
                value = self.background
            elif label not in self.classes.id:
                problems.append(ImportProblem(path, f"{where}: label not in {self.labels_file}", IGNORED))
                value = IGNORE_INDEX
            else:
                value = self.classes.id[label]
            mask[region] = value  # later shapes on top, as LabelMe draws them
            counts["shapes drawn"] += 1
        return _Sample(_stem(path), split, rgb, data, extension, mask), problems, counts

    def _image(self, document, path, problems):
        encoded = document.get("imageData")
        if isinstance(encoded, str) and encoded:
            try:
                data = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                problems.append(ImportProblem(path, "imageData is not base64 data", IMAGE_LEFT_OUT))
                return None
            return _image(data, f"{path} (imageData)", problems)
        name = document.get("imagePath")
        if not isinstance(name, str) or not name:
            problems.append(ImportProblem(path, "no imagePath and no imageData: image missing", IMAGE_LEFT_OUT))
            return None
        image_path = os.path.join(os.path.dirname(path), name.replace("\\", "/"))  # Windows-made files
        if not os.path.exists(image_path):
            problems.append(ImportProblem(path, f"image missing: imagePath {brief(name)} is not there "
                                          f"({image_path}) and there is no imageData", IMAGE_LEFT_OUT))  # fmt: skip
            return None
        return _read_image_file(image_path, problems)


# -- COCO -----------------------------------------------------------------------------------


class Coco:
    """A COCO instances file: `images`, `annotations` (polygons, RLE, `iscrowd`) and
    `categories`. Category ids become train ids 1..K in id order after `background` (0);
    crowd regions are ignored (`crowd="ignore"`) or drawn as their category ("class")."""

    name = "coco"

    def __init__(self, source, images_dir=None, unlabelled=BACKGROUND, crowd="ignore", ignore=()):
        self.source = os.fspath(source)
        self.images_dir = os.fspath(images_dir) if images_dir else os.path.dirname(os.path.abspath(self.source))
        _folder(self.images_dir, "images folder (--images)")
        document = parse_json(read_bytes(self.source, "COCO annotation file", COCO_FILE_LIMIT), self.source,
                              "COCO annotation file")  # fmt: skip
        if not isinstance(document, dict) or not all(isinstance(document.get(key), list)
                                                      for key in ("images", "annotations", "categories")):
            raise KsegError(f"{self.source}: not a COCO instances file (it needs 'images', 'annotations' and "
                            "'categories' lists)")  # fmt: skip
        if any(isinstance(a, dict) and "segments_info" in a for a in document["annotations"][:1]):
            raise KsegError(f"{self.source}: a COCO panoptic file; kseg imports instances files "
                            "(instances_*.json with polygons or RLE)")  # fmt: skip
        categories = {}
        for number, category in enumerate(document["categories"]):
            if not isinstance(category, dict) or not _is_int(category.get("id")) or not isinstance(
                    category.get("name"), str):
                raise KsegError(f"{self.source}: categories[{number}] needs an integer 'id' and a 'name'. "
                                f"Received: {brief(category)}")  # fmt: skip
            if category["id"] in categories:
                raise KsegError(f"{self.source}: category id {category['id']} is given twice")
            categories[category["id"]] = category["name"]
        order = sorted(categories)
        names = ([BACKGROUND] if unlabelled == BACKGROUND else []) + [categories[key] for key in order]
        self.classes = _Classes(names, None, ignore, self.source)
        self.category = {key: self.classes.id[categories[key]] for key in order}
        self.background = 0 if unlabelled == BACKGROUND else IGNORE_INDEX
        self.crowd = crowd
        self.images, self.problems = {}, []
        for number, image in enumerate(document["images"]):
            if not isinstance(image, dict) or not _is_int(image.get("id")) or not isinstance(
                    image.get("file_name"), str) or not all(_is_int(image.get(key)) and image[key] > 0
                                                            for key in ("width", "height")):
                raise KsegError(f"{self.source}: images[{number}] needs an integer 'id', a 'file_name' and a "
                                f"positive 'width' and 'height'. Received: {brief(image)}")  # fmt: skip
            if image["id"] in self.images:
                raise KsegError(f"{self.source}: image id {image['id']} is given twice")
            self.images[image["id"]] = (image, [])
        for number, annotation in enumerate(document["annotations"]):
            if not isinstance(annotation, dict):
                self.problems.append(ImportProblem(self.source, f"annotations[{number}] is not an object: "
                                                   f"{brief(annotation)}", SHAPE_LEFT_OUT))  # fmt: skip
                continue
            owner = annotation.get("image_id")
            if owner not in self.images or isinstance(owner, bool):
                where = f"annotations[{number}] (id {brief(annotation.get('id'))})"
                self.problems.append(ImportProblem(self.source, f"{where}: image_id {brief(owner)} is not in "
                                                   "'images'", SHAPE_LEFT_OUT))  # fmt: skip
                continue
            self.images[owner][1].append((number, annotation))

    def tasks(self):
        return list(self.images.values())

    def convert(self, task):
        image, annotations = task
        path = os.path.join(self.images_dir, image["file_name"])
        problems = []
        if not os.path.exists(path):
            return None, [ImportProblem(self.source, f"image id {image['id']}: image missing ({path})",
                                        IMAGE_LEFT_OUT)], None
        read = _read_image_file(path, problems)
        if read is None:
            return None, problems, None
        rgb, data, extension = read
        height, width = rgb.shape[:2]
        if (image["height"], image["width"]) != (height, width):
            return None, [ImportProblem(self.source, f"image id {image['id']} is {image['width']}x{image['height']} "
                                        f"here, the file {path} {width}x{height}", IMAGE_LEFT_OUT)], None  # fmt: skip
        mask = np.full((height, width), self.background, np.uint8)
        counts = collections.Counter()
        if not annotations:
            counts["images without annotations"] += 1
        crowd = [item for item in annotations if item[1].get("iscrowd") == 1]
        single = [item for item in annotations if item[1].get("iscrowd") != 1]
        for number, annotation in crowd + single:  # crowd regions first: single objects stay on top
            where = f"annotations[{number}] (id {brief(annotation.get('id'))}, image {image['file_name']})"
            region = self._region(annotation, where, height, width, problems)
            if region is None:
                continue
            category = annotation.get("category_id")
            if category not in self.category or isinstance(category, bool):
                problems.append(ImportProblem(self.source, f"{where}: category_id {brief(category)} is not in "
                                              "'categories'", IGNORED))  # fmt: skip
                value = IGNORE_INDEX
            else:
                crowd = annotation.get("iscrowd") == 1
                value = IGNORE_INDEX if crowd and self.crowd == "ignore" else self.category[category]
                counts["crowd regions" if crowd else "objects drawn"] += 1
            mask[region] = value
        return _Sample(_stem(path), "", rgb, data, extension, mask), problems, counts

    def _region(self, annotation, where, height, width, problems):
        """The bool mask of one annotation (pycocotools decodes it), or None and a problem."""
        segmentation = annotation.get("segmentation")

        def bad(message):
            problems.append(ImportProblem(self.source, f"{where}: {message}", SHAPE_LEFT_OUT))

        if isinstance(segmentation, list):
            polygons = []
            for polygon in segmentation:
                if not isinstance(polygon, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                            and math.isfinite(v) for v in polygon):
                    return bad(f"a polygon must be a list of numbers [x1, y1, x2, y2, ...]. Received: {brief(polygon)}")
                if len(polygon) % 2:
                    return bad(f"a polygon with an odd count of coordinates ({len(polygon)})")
                if len(polygon) < 6:
                    return bad(f"a polygon with {len(polygon) // 2} point(s); a polygon needs at least 3")
                values = np.asarray(polygon, np.float64)
                if values[0::2].min() < 0 or values[0::2].max() > width or values[1::2].min() < 0 or (
                        values[1::2].max() > height):
                    problems.append(ImportProblem(self.source, f"{where}: points outside the {width}x{height} "
                                                  "image", KEPT))  # fmt: skip
                polygons.append([float(v) for v in polygon])
            if not polygons:
                return bad("an empty segmentation")
            rle = coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))
        elif isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
            size, counts = segmentation["size"], segmentation["counts"]
            if size != [height, width]:
                return bad(f"its RLE size {brief(size)} is not the image's [height, width] [{height}, {width}]")
            if isinstance(counts, list):  # uncompressed RLE
                if not all(_is_int(v) and v >= 0 for v in counts) or sum(counts) != height * width:
                    return bad(f"its RLE counts do not add up to the image's {height * width} pixels "
                               "(or are not whole numbers)")  # fmt: skip
                rle = coco_mask.frPyObjects(segmentation, height, width)
            elif isinstance(counts, str):  # compressed RLE
                rle = {"size": [height, width], "counts": counts.encode("ascii", "replace")}
            else:
                return bad(f"RLE counts are neither a list nor a string. Received: {brief(counts)}")
        else:
            return bad(f"segmentation is neither polygons nor RLE. Received: {brief(segmentation)}")
        try:
            decoded = coco_mask.decode(rle)
        except Exception as error:  # noqa: BLE001 - the codec's own errors on broken data
            return bad(f"its RLE cannot be decoded ({brief(str(error), 80)})")
        if decoded.shape[:2] != (height, width):
            return bad("its RLE does not decode to the image's size")
        return decoded.astype(bool)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


# -- colour-mask datasets: CVAT, Kaggle CamVid ----------------------------------------------


def _images_by_stem(folder, problems):
    found = collections.defaultdict(list)
    for path in list_image_files(folder):
        found[_stem(path)].append(path)
    for stem, paths in list(found.items()):
        if len(paths) > 1:
            for path in paths:
                problems.append(ImportProblem(path, f"{len(paths)} images are named {stem}: which one is "
                                              "annotated is unknown", IMAGE_LEFT_OUT))  # fmt: skip
            del found[stem]
    return {stem: paths[0] for stem, paths in found.items()}


class _ColourMasks:
    """Shared by CVAT and CamVid: pairs of (image, colour mask) and a colour -> class table."""

    def _set_classes(self, entries, ignore, where):
        names, colours = [name for name, _ in entries], [colour for _, colour in entries]
        if len(set(colours)) != len(colours):
            twice = next(colour for colour in colours if colours.count(colour) > 1)
            raise KsegError(f"{where}: two classes share the colour {list(twice)}, so masks are ambiguous")
        self.classes = _Classes(names, colours, ignore, where)
        self.table = {colour: self.classes.id[name] for name, colour in entries}

    def convert(self, task):
        split, image_path, mask_path = task
        problems = []
        read = _read_image_file(image_path, problems)
        colour = _read_colour_mask(mask_path, problems) if read else None
        if colour is None or not _sized(read[0], colour, image_path, mask_path, problems):
            return None, problems, None
        mask = _colours_to_ids(colour, self.table, mask_path, self.colour_file, problems)
        return _Sample(_stem(image_path), split, *read, mask), problems, collections.Counter()


class Cvat(_ColourMasks):
    """A CVAT "Segmentation mask 1.1" export: labelmap.txt (`name:r,g,b:parts:actions`),
    SegmentationClass/*.png colour masks, JPEGImages/, ImageSets/Segmentation/*.txt."""

    name = "cvat"

    def __init__(self, source, ignore=()):
        self.source = _folder(os.fspath(source), "CVAT export folder")
        self.colour_file = os.path.join(self.source, "labelmap.txt")
        if not os.path.isfile(self.colour_file):
            raise KsegError(f"{self.colour_file}: not found; a CVAT 'Segmentation mask 1.1' export holds labelmap.txt, "
                            "SegmentationClass/ and JPEGImages/")  # fmt: skip
        entries = []
        for number, line in enumerate(read_text(self.colour_file, "CVAT label map").splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = line.split(":")
            try:
                colour = tuple(int(value) for value in fields[1].split(","))
                if len(colour) != 3 or not all(0 <= value <= 255 for value in colour):
                    raise ValueError
            except (IndexError, ValueError):
                raise KsegError(f"{self.colour_file}: line {number}: expected 'name:r,g,b::' with r, g, b in "
                                f"0..255. Received: {brief(line)}") from None  # fmt: skip
            entries.append((fields[0], colour))
        self._set_classes(entries, ignore, self.colour_file)
        self.masks_dir = _folder(os.path.join(self.source, "SegmentationClass"), "SegmentationClass/ folder")
        self.images_dir = _folder(os.path.join(self.source, "JPEGImages"), "JPEGImages/ folder")
        self.lists_dir = os.path.join(self.source, "ImageSets", "Segmentation")

    def tasks(self):
        self.problems = []
        masks = {_stem(path): path for path in sorted(list_image_files(self.masks_dir, recursive=False))}
        images = _images_by_stem(self.images_dir, self.problems)
        split_of = {}
        lists = sorted(name for name in os.listdir(self.lists_dir) if name.endswith(".txt")) if os.path.isdir(
            self.lists_dir) else []
        for name in lists:
            path = os.path.join(self.lists_dir, name)
            for stem in read_text(path, "split list").split():
                if split_of.get(stem, name[:-4]) != name[:-4]:
                    self.problems.append(ImportProblem(path, f"{stem} is also in {split_of[stem]}.txt",
                                                       IMAGE_LEFT_OUT))  # fmt: skip
                    split_of[stem] = None
                else:
                    split_of[stem] = name[:-4]
        pooled = {split for split in split_of.values() if split} <= {"default"}
        tasks = []
        for stem in sorted(set(masks) | set(split_of)):
            split = split_of.get(stem, "") if lists else ""
            if split is None:
                continue
            if stem not in masks or stem not in images:
                where = masks.get(stem) or images.get(stem) or os.path.join(self.lists_dir, f"{split}.txt")
                missing = "SegmentationClass/" if stem not in masks else "JPEGImages/"
                self.problems.append(ImportProblem(where, f"{stem}: nothing in {missing} for it", IMAGE_LEFT_OUT))
                continue
            if lists and not split:
                self.problems.append(ImportProblem(masks[stem], "listed in no ImageSets/Segmentation/*.txt",
                                                   IMAGE_LEFT_OUT))  # fmt: skip
                continue
            tasks.append(("" if pooled else split, images[stem], masks[stem]))
        for stem in sorted(set(images) - set(masks) - set(split_of)):
            self.problems.append(ImportProblem(images[stem], "no mask in SegmentationClass/", IMAGE_LEFT_OUT))
        return tasks


class CamvidKaggle(_ColourMasks):
    """Kaggle's CamVid: SPLIT/NAME.png with SPLIT_labels/NAME_L.png colour masks and
    class_dict.csv (name,r,g,b), for the splits train, val and test."""

    name = "camvid-kaggle"

    def __init__(self, source, ignore=()):
        self.source = _folder(os.fspath(source), "CamVid folder")
        self.colour_file = os.path.join(self.source, "class_dict.csv")
        text = read_text(self.colour_file, "CamVid class list")
        entries = []
        rows = list(csv.reader(io.StringIO(text)))
        if not rows or [cell.strip().lower() for cell in rows[0]] != ["name", "r", "g", "b"]:
            raise KsegError(f"{self.colour_file}: expected the header 'name,r,g,b'. Received: "
                            f"{brief(','.join(rows[0]) if rows else '')}")  # fmt: skip
        for number, row in enumerate(rows[1:], 2):
            if not row:
                continue
            try:
                colour = tuple(int(value) for value in row[1:])
                if len(colour) != 3 or not all(0 <= value <= 255 for value in colour):
                    raise ValueError
            except ValueError:
                raise KsegError(f"{self.colour_file}: line {number}: expected name,r,g,b with r, g, b in 0..255. "
                                f"Received: {brief(','.join(row))}") from None  # fmt: skip
            entries.append((row[0].strip(), colour))
        self._set_classes(entries, ignore, self.colour_file)
        self.splits = [split for split in ("train", "val", "test") if os.path.isdir(os.path.join(self.source, split))]
        if not self.splits:
            raise KsegError(f"{self.source}: no train/, val/ or test/ folder (Kaggle CamVid holds train/ and "
                            "train_labels/, val/ and val_labels/, test/ and test_labels/)")  # fmt: skip

    def tasks(self):
        self.problems, tasks = [], []
        for split in self.splits:
            labels_dir = _folder(os.path.join(self.source, f"{split}_labels"), f"labels folder of {split}/")
            images = _images_by_stem(os.path.join(self.source, split), self.problems)
            labels = {_stem(path): path for path in list_image_files(labels_dir, recursive=False)}
            for stem, image_path in sorted(images.items()):
                label = labels.pop(f"{stem}_L", None)
                if label is None:
                    self.problems.append(ImportProblem(image_path, f"no {split}_labels/{stem}_L.png",
                                                       IMAGE_LEFT_OUT))  # fmt: skip
                    continue
                tasks.append((split, image_path, label))
            for path in sorted(labels.values()):
                self.problems.append(ImportProblem(path, f"no image in {split}/ for this label", IMAGE_LEFT_OUT))
        return tasks


# -- pix2pix Cityscapes ----------------------------------------------------------------------


class Pix2pixCityscapes:
    """Kaggle's cityscapes-image-pairs: train/ and val/ JPEGs, each the photo (left half)
    beside its Cityscapes colour label (right half). Each label pixel takes the class of the
    nearest Cityscapes colour within `tolerance` (RGB distance); farther pixels are ignored
    and counted as uncertain. Pixels nearest to the colour of a label Cityscapes does not
    train (unlabeled, ground, parking, ...) are ignored too, and counted as void."""

    name = "pix2pix-cityscapes"
    colour_file = "the Cityscapes colours"

    def __init__(self, source, tolerance=DEFAULT_TOLERANCE, ignore=()):
        self.source = _folder(os.fspath(source), "pix2pix Cityscapes folder")
        self.splits = [split for split in ("train", "val") if os.path.isdir(os.path.join(self.source, split))]
        if not self.splits:
            raise KsegError(f"{self.source}: no train/ or val/ folder of side-by-side JPEGs")
        trained = trained_classes()
        self.classes = _Classes([name for name, _ in trained], [colour for _, colour in trained], ignore, self.source)
        by_colour = {}
        for label in cityscapes_labels.labels:  # every label's colour; a trained class wins a shared one
            colour = tuple(int(c) for c in label.color)
            train_id = self.classes.id.get(label.name, IGNORE_INDEX) if 0 <= label.trainId < IGNORE_INDEX else (
                IGNORE_INDEX)
            if by_colour.get(colour, IGNORE_INDEX) == IGNORE_INDEX:
                by_colour[colour] = train_id
        self.colours = np.array(list(by_colour), np.int32)
        self.ids = np.array(list(by_colour.values()), np.uint8)
        self.tolerance = float(tolerance)

    def tasks(self):
        self.problems = []
        return [(split, path) for split in self.splits
                for path in sorted(list_image_files(os.path.join(self.source, split), recursive=False))]

    def convert(self, task):
        split, path = task
        problems = []
        read = _read_image_file(path, problems)
        if read is None:
            return None, problems, None
        pair = read[0]
        height, width = pair.shape[:2]
        if width % 2 or width // 2 < 1:
            return None, [ImportProblem(path, f"{width}x{height}: not two halves of equal width (photo | label)",
                                        IMAGE_LEFT_OUT)], None  # fmt: skip
        photo, label = pair[:, : width // 2], pair[:, width // 2:]
        mask, uncertain, void = self.nearest(label)
        sample = _Sample(_stem(path), split, np.ascontiguousarray(photo), None, ".png", mask, uncertain, void)
        return sample, problems, collections.Counter()

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


# -- writing ---------------------------------------------------------------------------------


def _classes_yaml(result, source, pooled):
    entries = [{"name": name, "color": list(colour)} for name, colour in zip(result.names, result.colours)]
    text = yaml.safe_dump({"classes": entries}, sort_keys=False, allow_unicode=True, default_flow_style=None,
                          width=1000)  # fmt: skip
    header = [f"# classes.yaml written by `kseg data import {result.format}` from {source}.",
              "# Masks are index PNGs: class k is stored as k, 255 is ignored (void, crowd, unknown).",
              "# The colours are for pictures kseg draws. The format: docs/datasets.md."]
    if pooled:
        text += (f"# No split folders: validation holds out val_fraction of the images, chosen by the seed.\n"
                 f"splits: {{val_fraction: {DEFAULT_VAL_FRACTION}, seed: {DEFAULT_SPLIT_SEED}}}\n")  # fmt: skip
    return "\n".join(header) + "\n" + text


def _report_text(result, source):
    lines = [f"kseg data import {result.format} {source}", "", *result.summary(), "", "problems:"]
    lines += [f"  {problem}" for problem in result.problems] or ["  none"]
    if result.uncertain:
        lines += ["", "colours per image: uncertain pixels (beyond the tolerance), void pixels, all pixels"]
        lines += [f"  {path}: {far} {void} {pixels}" for path, (far, void, pixels) in result.uncertain.items()]
    return "\n".join(lines) + "\n"


def make_importer(format, source, images=None, labels=None, unlabelled=BACKGROUND, crowd="ignore",
                  ignore=(), tolerance=DEFAULT_TOLERANCE):
    """The reader of one format (see the module docstring); reads its class list.

    Raises:
        KsegError: an unknown format, or a source that cannot be read.
    """
    if format not in FORMATS:
        raise KsegError(f"unknown import format {brief(format)} (known: {', '.join(FORMATS)})")
    if unlabelled not in (BACKGROUND, "ignore") or crowd not in ("ignore", "class"):
        raise KsegError(f"unlabelled must be background or ignore, crowd ignore or class. Received: "
                        f"unlabelled={brief(unlabelled)}, crowd={brief(crowd)}")  # fmt: skip
    if not isinstance(tolerance, (int, float)) or not 0 <= tolerance <= 442:
        raise KsegError(f"tolerance must be an RGB distance 0..442. Received: {brief(tolerance)}")
    if not os.path.exists(source):
        raise KsegError(f"{source}: not found")
    if format == "labelme":
        return LabelMe(source, labels, unlabelled, ignore)
    if format == "coco":
        return Coco(source, images, unlabelled, crowd, ignore)
    if format == "cvat":
        return Cvat(source, ignore)
    if format == "camvid-kaggle":
        return CamvidKaggle(source, ignore)
    return Pix2pixCityscapes(source, tolerance, ignore)


def import_dataset(format, source, out_dir, images=None, labels=None, unlabelled=BACKGROUND, crowd="ignore",
                   ignore=(), tolerance=DEFAULT_TOLERANCE, strict=False, progress=False, on_problem=None,
                   workers=None):
    """Imports an annotation export or Kaggle dataset into a new folder dataset.

    Args:
        format: str. One of FORMATS.
        source: str. The folder or file the format reads (see the module docstring).
        out_dir: str. The dataset folder to create; an existing path is never replaced.
        images: str or None. COCO: the folder `file_name`s are relative to (default: the
            JSON file's folder).
        labels: str or None. LabelMe: a labels.txt fixing the classes and their order.
        unlabelled: str. LabelMe, COCO: pixels no annotation covers are "background"
            (class 0) or "ignore" (255).
        crowd: str. COCO: `iscrowd` regions are "ignore"d or drawn as their "class".
        ignore: tuple of str. Class names whose pixels are ignored instead of learned.
        tolerance: float. pix2pix: largest RGB distance to a Cityscapes colour.
        strict: bool. Stop, writing nothing, if any annotation or image has a problem.
        progress: bool. Show a progress bar on stderr.
        on_problem: callable or None. Called with each ImportProblem as it is found.
        workers: int or None. Reader threads.

    Returns:
        ImportResult.

    Raises:
        KsegError: an unreadable source, an existing OUT_DIR, nothing importable, or
            (strict) any problem. Nothing is written then.
    """
    out_dir, source = os.fspath(out_dir), os.fspath(source)
    checked = Outputs(inputs=[source, images, labels])
    checked.add(out_dir, "imported dataset", option="OUT_DIR", folder=True)
    importer = make_importer(format, source, images, labels, unlabelled, crowd, tuple(ignore), tolerance)
    result = ImportResult(out_dir, format, importer.classes.names, importer.classes.colours)
    result.class_pixels = np.zeros(len(result.names), np.int64)
    tasks = importer.tasks()

    def note(problems):
        for problem in problems:
            result.problems.append(problem)
            if on_problem is not None:
                on_problem(problem)

    note(getattr(importer, "problems", []))
    splits, stems = set(), {}
    with checked, writing(out_dir, directory=True) as temporary:
        with progress_bar(len(tasks), f"importing {format}", "image", enabled=progress) as bar, \
                contextlib.closing(ordered_map(importer.convert, tasks, workers)) as converted:
            for task, outcome in zip(tasks, converted):
                bar.update(1)
                sample, problems, counts = outcome
                note(problems)
                if sample is None:
                    continue
                result.counts.update(counts)
                where = task[1] if isinstance(task[1], str) else os.path.join(importer.images_dir,
                                                                              task[0]["file_name"])
                key = (sample.split, sample.stem)
                if key in stems or not sample.stem or sample.stem.startswith("."):
                    note([ImportProblem(where, f"another image is already imported as {sample.stem!r} (from "
                                        f"{stems.get(key)}); names must differ" if key in stems else
                                        "a file name kseg cannot use", IMAGE_LEFT_OUT)])
                    continue
                stems[key] = where
                _write_sample(temporary, sample)
                splits.add(sample.split)
                result.images[sample.split] += 1
                pixels = np.bincount(sample.mask.ravel(), minlength=256)
                result.class_pixels += pixels[: len(result.names)]
                result.ignored_pixels += int(pixels[IGNORE_INDEX])
                if isinstance(importer, Pix2pixCityscapes):
                    result.uncertain[where] = (sample.uncertain, sample.void, int(sample.mask.size))
        if not result.images:
            first = f"; first problem: {result.problems[0]}" if result.problems else ""
            raise KsegError(f"{source}: no image could be imported{first}")
        if "" in splits and len(splits) > 1:
            raise KsegError(f"{source}: some images belong to a split and some to none")
        if strict and result.problems:
            raise KsegError(f"{source}: {len(result.problems)} problem(s) (listed above; first: {result.problems[0]}); "
                            "nothing was written (without --strict these are left out or ignored and the rest "
                            "is imported)")  # fmt: skip
        write_bytes(os.path.join(temporary, CLASSES_FILE), _classes_yaml(result, source, "" in splits).encode())
        write_bytes(os.path.join(temporary, REPORT_FILE), _report_text(result, source).encode())
        if os.path.lexists(out_dir):  # made meanwhile: never replaced
            raise KsegError(f"OUT_DIR {out_dir}: appeared while importing; it is not replaced, choose another OUT_DIR")
    return result


def _write_sample(folder, sample):
    """Writes one image and its mask into the scratch folder (atomically, file by file)."""
    image_path = os.path.join(folder, "images", sample.split, sample.stem + sample.extension)
    if sample.data is not None:
        write_bytes(image_path, sample.data)  # byte for byte: kseg reads it as it was read here
    else:
        write_png(image_path, sample.image)
    write_png(os.path.join(folder, "masks", sample.split, sample.stem + ".png"), sample.mask)


