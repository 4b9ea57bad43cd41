"""Datasets of colour masks with a colour table: CVAT's "Segmentation mask 1.1" export
(labelmap.txt) and Kaggle's CamVid (class_dict.csv) (docs/importing.md)."""

import csv
import io
import os

import numpy as np
from PIL import Image

from kseg.data.folder import colour_keys, paths_by_stem
from kseg.data.importers.common import (
    DEFAULTS,
    IGNORED,
    IMAGE_LEFT_OUT,
    ClassTable,
    ImportProblem,
    Sample,
    left_out,
    read_image_file,
    require_folder,
    swapped_note,
)
from kseg.data.spec import folder_entries
from kseg.errors import KsegError
from kseg.files import brief, read_text
from kseg.images import ImageError, check_pixels, list_image_files, probe, read_file
from kseg.labels import IGNORE_INDEX


def colours_to_ids(rgb, table, where, what, problems):
    """Maps an RGB mask to train ids through {colour: id}; colours not in the table are
    ignored and named."""
    keys, inverse = np.unique(colour_keys(rgb), return_inverse=True)
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


def read_colour_mask(path, problems):
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
        problems.append(left_out(path, error))
    except Exception:  # noqa: BLE001 - Pillow raises many types for damaged files
        problems.append(ImportProblem(path, "not a readable image (corrupt, truncated or unknown format)",
                                      IMAGE_LEFT_OUT))  # fmt: skip
    return None


def files_by_stem(files, problems, what="images", which="is annotated"):
    """{stem: path} of `files`; files that share a stem are left out, each named, and their
    stem maps to None, so that nothing more is said about it (no "no mask" for its image)."""
    found = paths_by_stem(files)
    for stem, paths in found.items():
        if len(paths) > 1:
            problems.extend(ImportProblem(path, f"{len(paths)} {what} are named {stem}: which one {which} "
                                          "is unknown", IMAGE_LEFT_OUT) for path in paths)  # fmt: skip
    return {stem: paths[0] if len(paths) == 1 else None for stem, paths in found.items()}


def _rgb(values):
    """(r, g, b) of three whole numbers 0..255 written as text; ValueError otherwise."""
    colour = tuple(int(value) for value in values)
    if len(colour) != 3 or not all(0 <= value <= 255 for value in colour):
        raise ValueError(values)
    return colour


class ColourMasks:
    """Shared by CVAT and CamVid: pairs of (image, colour mask) and a colour -> class table."""

    def _set_classes(self, entries, ignore, where):
        names, colours = [name for name, _ in entries], [colour for _, colour in entries]
        if len(set(colours)) != len(colours):
            twice = next(colour for colour in colours if colours.count(colour) > 1)
            raise KsegError(f"{where}: two classes share the colour {list(twice)}, so masks are ambiguous")
        self.classes = ClassTable(names, colours, ignore, where)
        self.table = {colour: self.classes.id[name] for name, colour in entries}

    def convert(self, task):
        split, image_path, mask_path = task
        problems = []
        read = read_image_file(image_path, problems)
        colour = read_colour_mask(mask_path, problems) if read else None
        if colour is not None and colour.shape[:2] != read[0].shape[:2]:
            (height, width), size = read[0].shape[:2], colour.shape[:2]
            problems.append(ImportProblem(mask_path, f"mask is {size[1]}x{size[0]}, its image {image_path} "
                                          f"{width}x{height}{swapped_note(size, (height, width))}", IMAGE_LEFT_OUT))
            colour = None
        if colour is None:
            return None, problems, None
        mask = colours_to_ids(colour, self.table, mask_path, self.colour_file, problems)
        return Sample(image_path, split, *read, mask), problems, None


class Cvat(ColourMasks):
    """A CVAT "Segmentation mask 1.1" export: labelmap.txt (`name:r,g,b:parts:actions`),
    SegmentationClass/*.png colour masks, JPEGImages/, ImageSets/Segmentation/*.txt."""

    def __init__(self, source, options=DEFAULTS):
        self.source = require_folder(os.fspath(source), "CVAT export folder")
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
                colour = _rgb(fields[1].split(","))
            except (IndexError, ValueError):
                raise KsegError(f"{self.colour_file}: line {number}: expected 'name:r,g,b::' with r, g, b in "
                                f"0..255. Received: {brief(line)}") from None  # fmt: skip
            entries.append((fields[0], colour))
        self._set_classes(entries, options.ignore, self.colour_file)
        self.masks_dir = require_folder(os.path.join(self.source, "SegmentationClass"), "SegmentationClass/ folder")
        self.images_dir = require_folder(os.path.join(self.source, "JPEGImages"), "JPEGImages/ folder")
        self.lists_dir = os.path.join(self.source, "ImageSets", "Segmentation")
        self.problems = []
        self.tasks = self._pairs()

    def _pairs(self):
        masks = files_by_stem(list_image_files(self.masks_dir, recursive=False), self.problems, "masks", "to use")
        images = files_by_stem(list_image_files(self.images_dir), self.problems)
        split_of = {}
        lists = sorted(name for name in folder_entries(self.lists_dir) if name.endswith(".txt"))
        for name in lists:
            path = os.path.join(self.lists_dir, name)
            for stem in read_text(path, "split list").split():
                first = split_of.setdefault(stem, name[:-4])  # None: already named as listed twice
                if first not in (name[:-4], None):
                    self.problems.append(ImportProblem(path, f"{stem} is also in {first}.txt", IMAGE_LEFT_OUT))
                    split_of[stem] = None
        pooled = {split for split in split_of.values() if split} <= {"default"}
        tasks = []
        for stem in sorted(set(masks) | set(split_of)):
            split = split_of.get(stem, "") if lists else ""
            if split is None or None in (masks.get(stem, ""), images.get(stem, "")):
                continue  # named already: listed twice, or two masks or two images share its name
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
        for stem in sorted({stem for stem, path in images.items() if path} - set(masks) - set(split_of)):
            self.problems.append(ImportProblem(images[stem], "no mask in SegmentationClass/", IMAGE_LEFT_OUT))
        return tasks


class CamvidKaggle(ColourMasks):
    """Kaggle's CamVid: SPLIT/NAME.png with SPLIT_labels/NAME_L.png colour masks and
    class_dict.csv (name,r,g,b), for the splits train, val and test."""

    def __init__(self, source, options=DEFAULTS):
        self.source = require_folder(os.fspath(source), "CamVid folder")
        self.colour_file = os.path.join(self.source, "class_dict.csv")
        try:
            rows = list(csv.reader(io.StringIO(read_text(self.colour_file, "CamVid class list"))))
        except csv.Error as error:  # e.g. a field past the csv module's size limit
            raise KsegError(f"{self.colour_file}: not a readable CSV file ({error})") from None
        if not rows or [cell.strip().lower() for cell in rows[0]] != ["name", "r", "g", "b"]:
            raise KsegError(f"{self.colour_file}: expected the header 'name,r,g,b'. Received: "
                            f"{brief(','.join(rows[0]) if rows else '')}")  # fmt: skip
        entries = []
        for number, row in enumerate(rows[1:], 2):
            if not row:
                continue
            try:
                colour = _rgb(row[1:])
            except ValueError:
                raise KsegError(f"{self.colour_file}: line {number}: expected name,r,g,b with r, g, b in 0..255. "
                                f"Received: {brief(','.join(row))}") from None  # fmt: skip
            entries.append((row[0].strip(), colour))
        self._set_classes(entries, options.ignore, self.colour_file)
        self.splits = [split for split in ("train", "val", "test") if os.path.isdir(os.path.join(self.source, split))]
        if not self.splits:
            raise KsegError(f"{self.source}: no train/, val/ or test/ folder (Kaggle CamVid holds train/ and "
                            "train_labels/, val/ and val_labels/, test/ and test_labels/)")  # fmt: skip
        self.problems = []
        self.tasks = self._pairs()

    def _pairs(self):
        tasks = []
        for split in self.splits:
            labels_dir = require_folder(os.path.join(self.source, f"{split}_labels"), f"labels folder of {split}/")
            images = files_by_stem(list_image_files(os.path.join(self.source, split)), self.problems)
            labels = files_by_stem(list_image_files(labels_dir, recursive=False), self.problems, "masks", "to use")
            for stem, image_path in sorted(images.items()):
                if f"{stem}_L" not in labels:
                    if image_path:  # None: two images share the name, named already
                        self.problems.append(ImportProblem(image_path, f"no {split}_labels/{stem}_L.png",
                                                           IMAGE_LEFT_OUT))  # fmt: skip
                    continue
                label = labels.pop(f"{stem}_L")
                if image_path and label:
                    tasks.append((split, image_path, label))
            for path in sorted(filter(None, labels.values())):
                self.problems.append(ImportProblem(path, f"no image in {split}/ for this label", IMAGE_LEFT_OUT))
        return tasks
