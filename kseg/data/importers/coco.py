"""COCO instances files: polygons and RLE decoded by pycocotools, crowd regions ignored or
drawn as their class (docs/importing.md#coco)."""

import collections
import os

import numpy as np
from pycocotools import mask as coco_mask

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
    read_image_file,
    require_folder,
    split_folders,
    swapped_note,
)
from kseg.errors import KsegError
from kseg.files import IMAGE_FILE_LIMIT, brief, parse_json, read_bytes
from kseg.labels import IGNORE_INDEX

COCO_FILE_LIMIT = IMAGE_FILE_LIMIT  # COCO train2017's instances file alone is 450 MB


class Coco:
    """COCO instances files: `images`, `annotations` (polygons, RLE, `iscrowd`) and
    `categories`. Category ids become train ids 1..K in id order after `background` (0);
    crowd regions are ignored (`crowd="ignore"`) or drawn as their category ("class").

    SOURCE is one .json (images in `--images`, default its folder: one pool), or a folder
    of split folders (train/, valid/ or val/, test/) each holding one .json and its images,
    the layout of Roboflow's COCO exports; their categories must be the same.
    """

    def __init__(self, source, options=DEFAULTS):
        self.source, images_dir = os.fspath(source), options.images
        if os.path.isdir(self.source):
            if images_dir:
                raise KsegError(f"--images {images_dir}: with a folder SOURCE each split's images lie beside its "
                                ".json; give --images with one .json file")  # fmt: skip
            parts = [(split, _one_json(folder), folder) for split, folder in split_folders(self.source).items()]
            if not parts:
                raise KsegError(f"{self.source}: a folder SOURCE needs train/, valid/ (or val/) or test/ folders, "
                                "each with one COCO .json; or give the .json itself")  # fmt: skip
        else:
            folder = os.fspath(images_dir) if images_dir else os.path.dirname(os.path.abspath(self.source))
            parts = [("", self.source, require_folder(folder, "images folder (--images)"))]
        self.problems, self.tasks, categories = [], [], None
        for split, path, folder in parts:
            document = _load(path)
            found = {key: category["name"] for key, category in _by_id(document, "categories", path).items()}
            if categories is not None and found != categories:
                raise KsegError(f"{path}: its categories differ from those of {parts[0][1]}; the splits of one "
                                "dataset need the same categories (ids and names)")  # fmt: skip
            categories = found
            self.tasks += [(split, path, folder, image, annotations)
                           for image, annotations in self._images(document, path)]
        order = sorted(categories)
        names = ([BACKGROUND] if options.unlabelled == BACKGROUND else []) + [categories[key] for key in order]
        self.classes = ClassTable(names, None, options.ignore, parts[0][1])
        self.category = {key: self.classes.id[categories[key]] for key in order}
        self.background = self.classes.id[BACKGROUND] if options.unlabelled == BACKGROUND else IGNORE_INDEX
        self.crowd = options.crowd

    def _images(self, document, path):
        """[(image, [(number, annotation), ...]), ...] of one file; annotations of no image are named."""
        images = {key: (image, []) for key, image in _by_id(document, "images", path).items()}
        for number, annotation in enumerate(document["annotations"]):
            if not isinstance(annotation, dict):
                self.problems.append(ImportProblem(path, f"annotations[{number}] is not an object: "
                                                   f"{brief(annotation)}", SHAPE_LEFT_OUT))  # fmt: skip
                continue
            owner = annotation.get("image_id")
            if not _is_int(owner) or owner not in images:  # a list or object id: not hashable
                where = f"annotations[{number}] (id {brief(annotation.get('id'))})"
                self.problems.append(ImportProblem(path, f"{where}: image_id {brief(owner)} is not in "
                                                   "'images'", SHAPE_LEFT_OUT))  # fmt: skip
                continue
            images[owner][1].append((number, annotation))
        return list(images.values())

    def convert(self, task):
        split, source, folder, image, annotations = task
        path = os.path.join(folder, image["file_name"])
        problems = []
        if not os.path.exists(path):
            return None, [ImportProblem(source, f"image id {image['id']}: image missing ({path})",
                                        IMAGE_LEFT_OUT)], None
        read = read_image_file(path, problems)
        if read is None:
            return None, problems, None
        rgb, data, extension = read
        height, width = rgb.shape[:2]
        if (image["height"], image["width"]) != (height, width):
            return None, [ImportProblem(source, f"image id {image['id']} is {image['width']}x{image['height']} "
                                        f"here, the file {path} {width}x{height}"
                                        f"{swapped_note((image['height'], image['width']), (height, width))}",
                                        IMAGE_LEFT_OUT)], None  # fmt: skip
        mask = np.full((height, width), self.background, np.uint8)
        counts = collections.Counter()
        if not annotations:
            counts["images without annotations"] += 1
        # crowd regions first: single objects stay on top
        for number, annotation in sorted(annotations, key=lambda item: item[1].get("iscrowd") != 1):
            where = f"annotations[{number}] (id {brief(annotation.get('id'))}, image {image['file_name']})"
            region = _region(annotation, where, height, width, source, problems)
            if region is None:
                continue
            category = annotation.get("category_id")
            if not _is_int(category) or category not in self.category:
                problems.append(ImportProblem(source, f"{where}: category_id {brief(category)} is not in "
                                              "'categories'", IGNORED))  # fmt: skip
                value = IGNORE_INDEX
            else:
                crowd = annotation.get("iscrowd") == 1
                value = IGNORE_INDEX if crowd and self.crowd == "ignore" else self.category[category]
                counts["crowd regions" if crowd else "objects drawn"] += 1
            mask[region] = value
        return Sample(path, split, rgb, data, extension, mask), problems, counts


def _one_json(folder):
    found = sorted(name for name in os.listdir(folder) if name.lower().endswith(".json"))
    if len(found) != 1:
        raise KsegError(f"{folder}: {'no' if not found else len(found)} .json files; a split folder holds one "
                        f"COCO .json{' (found: ' + ', '.join(found[:4]) + ')' if found else ''}")  # fmt: skip
    return os.path.join(folder, found[0])


def _load(path):
    document = parse_json(read_bytes(path, "COCO annotation file", COCO_FILE_LIMIT), path, "COCO annotation file")
    if not isinstance(document, dict) or not all(isinstance(document.get(key), list)
                                                  for key in ("images", "annotations", "categories")):
        raise KsegError(f"{path}: not a COCO instances file (it needs 'images', 'annotations' and "
                        "'categories' lists)")  # fmt: skip
    if any(isinstance(a, dict) and "segments_info" in a for a in document["annotations"][:1]):
        raise KsegError(f"{path}: a COCO panoptic file; kseg imports instances files "
                        "(instances_*.json with polygons or RLE)")  # fmt: skip
    return document


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


# What an entry of `images` and of `categories` holds besides an integer 'id': its name in
# messages, a test of the other keys, and the test in words.
ENTRIES = {
    "images": ("image", lambda image: isinstance(image.get("file_name"), str) and all(
        _is_int(image.get(key)) and image[key] > 0 for key in ("width", "height")),
        "an integer 'id', a 'file_name' and a positive 'width' and 'height'"),
    "categories": ("category", lambda category: isinstance(category.get("name"), str), "an integer 'id' and a 'name'"),
}  # fmt: skip


def _by_id(document, key, path):
    """{id: entry} of the list `document[key]` ("images" or "categories"); a malformed entry
    or an id given twice is an error."""
    what, valid, needs = ENTRIES[key]
    found = {}
    for number, entry in enumerate(document[key]):
        if not isinstance(entry, dict) or not _is_int(entry.get("id")) or not valid(entry):
            raise KsegError(f"{path}: {key}[{number}] needs {needs}. Received: {brief(entry)}")
        if entry["id"] in found:
            raise KsegError(f"{path}: {what} id {entry['id']} is given twice")
        found[entry["id"]] = entry
    return found


# The largest coordinate kseg reads: far beyond any image, and within pycocotools' doubles.
COORDINATE_LIMIT = 1 << 31
RLE_STRING_LIMIT = 1 << 26


def compressed_rle_counts(text):
    """The run lengths a COCO compressed RLE string holds, or None when it is not one.

    By hand because pycocotools reads them only inside its C decoder, which fills the mask
    with whatever memory held when the runs do not cover the image exactly. Each run is a
    little-endian group of 5-bit digits (characters 48..111, bit 5: more digits, bit 4 of
    the last: negative); from the fourth run on, each is stored as a difference to the
    run two before it.
    """
    if len(text) > RLE_STRING_LIMIT:
        return None
    runs, value, shift = [], 0, 0
    for character in text:
        digit = ord(character) - 48
        if not 0 <= digit < 64:
            return None
        value |= (digit & 0x1F) << shift
        shift += 5
        if digit & 0x20:
            continue
        if digit & 0x10:
            value -= 1 << shift
        runs.append(value + (runs[-2] if len(runs) > 2 else 0))
        value, shift = 0, 0
    return runs if shift == 0 else None


def _polygon_problem(polygon):
    """Why `polygon` is no COCO polygon ([x1, y1, x2, y2, ...], 3 points or more), or None."""
    if not isinstance(polygon, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                and abs(v) < COORDINATE_LIMIT for v in polygon):  # NaN fails too
        return f"a polygon must be a list of numbers [x1, y1, x2, y2, ...]. Received: {brief(polygon)}"
    if len(polygon) % 2:
        return f"a polygon with an odd count of coordinates ({len(polygon)})"
    if len(polygon) < 6:
        return f"a polygon with {len(polygon) // 2} point(s); a polygon needs at least 3"
    return None


def _region(annotation, where, height, width, source, problems):
    """The bool mask of one annotation (pycocotools decodes it), or None and a problem."""
    segmentation = annotation.get("segmentation")

    def bad(message):
        problems.append(ImportProblem(source, f"{where}: {message}", SHAPE_LEFT_OUT))

    if isinstance(segmentation, list):
        for polygon in segmentation:
            problem = _polygon_problem(polygon)
            if problem:
                return bad(problem)
            points = np.reshape(polygon, (-1, 2))
            if (points < 0).any() or (points > (width, height)).any():
                problems.append(ImportProblem(source, f"{where}: points outside the {width}x{height} image", KEPT))
        if not segmentation:
            return bad("an empty segmentation")
        rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
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
            runs = compressed_rle_counts(counts)
            if runs is None or min(runs, default=0) < 0 or sum(runs) != height * width:
                return bad(f"its RLE counts do not add up to the image's {height * width} pixels "
                           "(or are not a valid compressed RLE string)")  # fmt: skip
            rle = {"size": [height, width], "counts": counts.encode("ascii")}
        else:
            return bad(f"RLE counts are neither a list nor a string. Received: {brief(counts)}")
    else:
        return bad(f"segmentation is neither polygons nor RLE. Received: {brief(segmentation)}")
    try:
        decoded = coco_mask.decode(rle)
    except Exception as error:  # noqa: BLE001 - the codec's own errors on broken data
        return bad(f"its RLE cannot be decoded ({brief(str(error), 80)})")
    return decoded.astype(bool)


