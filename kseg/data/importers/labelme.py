"""LabelMe: one .json per image, its shapes drawn the way LabelMe's own `shape_to_mask`
draws them (docs/importing.md#labelme)."""

import base64
import collections
import contextlib
import io
import math
import os

import numpy as np
from PIL import Image, ImageDraw

from kseg.data.importers.common import (
    BACKGROUND,
    DEFAULTS,
    IGNORED,
    IMAGE_LEFT_OUT,
    KEPT,
    SHAPE_LEFT_OUT,
    ClassTable,
    ImportProblem,
    Sample,
    left_out,
    read_image_file,
    require_folder,
    split_folders,
    swapped_note,
)
from kseg.errors import KsegError
from kseg.files import brief, load_json, read_text
from kseg.images import check_pixels, probe
from kseg.labels import IGNORE_INDEX

# LabelMe's own conventions (labelme2voc, labels.txt): these names are not classes.
LABELME_IGNORE = "__ignore__"
LABELME_BACKGROUND = ("_background_", "background")
# How LabelMe's shape_to_mask draws shapes without an area (pixels).
LINE_WIDTH, POINT_RADIUS = 10, 5
# LabelMe's shape types: the points each needs, and whether it takes more.
LABELME_SHAPES = {"polygon": (3, True), "rectangle": (2, False), "circle": (2, False), "line": (2, False),
                  "linestrip": (2, True), "point": (1, False), "mask": (2, False)}  # fmt: skip


class _LeftOut(Exception):
    """A shape that cannot be drawn; the message says why."""


def _points(shape, where):
    """A shape's points as an (N, 2) float array."""
    points = shape.get("points")
    if not isinstance(points, list):
        raise _LeftOut(f"{where}: 'points' is {brief(points)}, not a list of [x, y]")
    try:
        array = np.array(points, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise _LeftOut(f"{where}: 'points' holds something other than [x, y] numbers: {brief(points)}") from None
    if array.ndim != 2 or array.shape[1] != 2 or not np.isfinite(array).all() or (
            array.size and np.abs(array).max() > 1e7):
        raise _LeftOut(f"{where}: 'points' must be [x, y] pairs of finite numbers. Received: {brief(points)}")
    return array


def _labelme_region(shape, where, size, path, problems):
    """The bool mask of one LabelMe shape, drawn the way LabelMe's own `shape_to_mask` draws
    it (points outside the image are a problem, the shape kept); _LeftOut when it cannot be."""
    height, width = size
    kind = shape.get("shape_type") or "polygon"  # files of LabelMe 3 have no shape_type
    if not isinstance(kind, str) or kind not in LABELME_SHAPES:  # a list is not even hashable
        raise _LeftOut(f"{where}: unknown shape_type {brief(kind)} (LabelMe's: {', '.join(LABELME_SHAPES)})")
    points = _points(shape, where)
    least, more = LABELME_SHAPES[kind]
    if len(points) < least or (len(points) > least and not more):
        raise _LeftOut(f"{where}: a {kind} needs {'at least ' if more else ''}{least} point(s), this one has "
                       f"{len(points)}")  # fmt: skip
    outside = (points[:, 0] < 0) | (points[:, 0] > width) | (points[:, 1] < 0) | (points[:, 1] > height)
    if outside.any():
        x, y = points[np.argmax(outside)]
        problems.append(ImportProblem(path, f"{where}: {int(outside.sum())} point(s) outside the {width}x{height} "
                                      f"image (e.g. [{x:g}, {y:g}])", KEPT))  # fmt: skip
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    xy = [tuple(point) for point in points.tolist()]
    if kind == "mask":
        (x1, y1), (x2, y2) = points.astype(int)
        mask = _mask_of(shape, where)
        if (y2 - y1 + 1, x2 - x1 + 1) != mask.shape:
            raise _LeftOut(f"{where}: its mask is {mask.shape[1]}x{mask.shape[0]} but its points span "
                           f"{x2 - x1 + 1}x{y2 - y1 + 1}")  # fmt: skip
        canvas.paste(Image.fromarray(mask.astype(np.uint8)), (int(x1), int(y1)))  # Pillow clips it to the image
    elif kind in ("circle", "point"):
        radius = math.dist(*xy) if kind == "circle" else POINT_RADIUS
        draw.circle(xy[0], radius, outline=1, fill=1)
    elif kind == "rectangle":
        (x1, y1), (x2, y2) = xy
        draw.rectangle([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)], outline=1, fill=1)
    elif kind in ("line", "linestrip"):
        draw.line(xy, fill=1, width=LINE_WIDTH)
    else:
        draw.polygon(xy, outline=1, fill=1)
    return np.asarray(canvas, dtype=bool)


def _mask_of(shape, where):
    """The bool array of a 'mask' shape's base64 PNG."""
    encoded = shape.get("mask")
    if not isinstance(encoded, str):
        raise _LeftOut(f"{where}: a mask shape without its 'mask' (base64 PNG)")
    try:
        data = base64.b64decode(encoded, validate=True)
        check_pixels(probe(data), where, "mask")
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("L")) > 0
    except ValueError:  # binascii.Error is a ValueError
        raise _LeftOut(f"{where}: 'mask' is not base64 data") from None
    except KsegError as error:
        raise _LeftOut(str(error)) from None
    except Exception:  # noqa: BLE001 - Pillow raises many types for damaged files
        raise _LeftOut(f"{where}: 'mask' is not a readable PNG") from None


def _json_files(folder):
    return sorted(os.path.join(parent, name) for parent, _, names in os.walk(folder)
                  for name in names if name.lower().endswith(".json") and not name.startswith("."))


def _image_of(document, path, problems):
    """The image of a LabelMe file (`read_image_file`'s answer): its imageData, else its imagePath."""
    encoded = document.get("imageData")
    if isinstance(encoded, str) and encoded:
        try:
            data = base64.b64decode(encoded, validate=True)
        except ValueError:  # binascii.Error is a ValueError
            problems.append(ImportProblem(path, "imageData is not base64 data", IMAGE_LEFT_OUT))
            return None
        return read_image_file(f"{path} (imageData)", problems, data)
    name = document.get("imagePath")
    if not isinstance(name, str) or not name:
        problems.append(ImportProblem(path, "no imagePath and no imageData: image missing", IMAGE_LEFT_OUT))
        return None
    image_path = os.path.join(os.path.dirname(path), name.replace("\\", "/"))  # Windows-made files
    if not os.path.exists(image_path):
        problems.append(ImportProblem(path, f"image missing: imagePath {brief(name)} is not there "
                                      f"({image_path}) and there is no imageData", IMAGE_LEFT_OUT))  # fmt: skip
        return None
    return read_image_file(image_path, problems)


class LabelMe:
    """LabelMe: SOURCE is a folder of .json files (searched recursively) or one .json.

    Split folders: when SOURCE holds train/, val/ (or valid/, validation/), test/ with
    .json files in them, each is a split, and a .json outside them is left out and named.

    Classes: `background` (unlabelled pixels), then the labels in the order of `--labels`
    (a LabelMe labels.txt, one name a line; `__ignore__` and `_background_` lines are
    LabelMe's conventions, not classes) or, without one, every label found, sorted.
    """

    def __init__(self, source, options=DEFAULTS):
        self.source, labels_file = os.fspath(source), options.labels
        self.problems = []
        if os.path.isfile(self.source):
            self.tasks = [("", self.source)]
        else:
            require_folder(self.source, "LabelMe folder")
            files = _json_files(self.source)
            if not files:
                raise KsegError(f"{self.source}: no LabelMe .json file found (searched every folder inside)")
            splits = {split: _json_files(folder) for split, folder in split_folders(self.source).items()}
            splits = {split: paths for split, paths in splits.items() if paths} or {"": files}
            self.tasks = [(split, path) for split, paths in splits.items() for path in paths]
            for path in sorted(set(files) - {path for _, path in self.tasks}):
                self.problems.append(ImportProblem(path, f"not in a split folder ({', '.join(sorted(splits))}) "
                                                   "while the others are", IMAGE_LEFT_OUT))  # fmt: skip
        if labels_file:
            listed = [line.strip() for line in read_text(labels_file, "labels file").splitlines()]
            listed = [name for name in listed if name and name != LABELME_IGNORE]
        else:
            found = set()
            for _, path in self.tasks:  # a first pass for the class list; problems are named later
                with contextlib.suppress(KsegError):
                    document = load_json(path, "LabelMe file")
                    for shape in document.get("shapes") or () if isinstance(document, dict) else ():
                        if isinstance(shape, dict) and isinstance(shape.get("label"), str):
                            found.add(shape["label"])
            listed = sorted(found - {LABELME_IGNORE})
        background = [name for name in listed if name in LABELME_BACKGROUND]
        others = [name for name in listed if name not in LABELME_BACKGROUND]
        where = labels_file or self.source  # the labels came from the labels file, or from the shapes
        if len(background) > 1:
            raise KsegError(f"{where}: lists both {background[0]} and {background[1]}: which is background?")
        first = background[:1] or ([BACKGROUND] if options.unlabelled == BACKGROUND else [])
        self.classes = ClassTable(first + others, None, options.ignore, where)
        self.labelled = set(listed)
        self.background = self.classes.id.get(first[0], IGNORE_INDEX) if first else IGNORE_INDEX
        self.labels_file = labels_file

    def convert(self, task):
        split, path = task
        problems = []
        try:
            document = load_json(path, "LabelMe file")
        except KsegError as error:
            return None, [left_out(path, error)], None
        if not isinstance(document, dict) or not isinstance(document.get("shapes"), list):
            return None, [ImportProblem(path, "not a LabelMe file (no 'shapes' list)", IMAGE_LEFT_OUT)], None
        image = _image_of(document, path, problems)
        if image is None:
            return None, problems, None
        rgb, data, extension = image
        height, width = rgb.shape[:2]
        claimed = document.get("imageHeight"), document.get("imageWidth")
        if all(isinstance(value, int) for value in claimed) and claimed != (height, width):
            message = (f"imageWidth x imageHeight is {claimed[1]}x{claimed[0]}, the image {width}x{height}"
                       f"{swapped_note(claimed, (height, width))}")
            return None, problems + [ImportProblem(path, message, IMAGE_LEFT_OUT)], None
        mask = np.full((height, width), self.background, np.uint8)
        counts = collections.Counter()
        for number, shape in enumerate(document["shapes"]):
            where = f"shape {number}"
            if not isinstance(shape, dict) or not isinstance(shape.get("label"), str):
                problems.append(ImportProblem(path, f"{where}: no text 'label': {brief(shape)}", SHAPE_LEFT_OUT))
                continue
            label = shape["label"]
            where = f"shape {number} ({brief(label, 40)})"
            try:
                region = _labelme_region(shape, where, (height, width), path, problems)
            except _LeftOut as error:
                problems.append(ImportProblem(path, str(error), SHAPE_LEFT_OUT))
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
        return Sample(path, split, rgb, data, extension, mask), problems, counts
