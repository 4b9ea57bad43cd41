"""`kseg data import`: annotation-tool exports and Kaggle datasets in kseg's folder layout.

Five sources are read (docs/importing.md says what each one decides):

    labelme             one LabelMe .json per image (shapes drawn as LabelMe's own tools do)
    coco                a COCO instances .json (polygons and RLE, decoded by pycocotools)
    cvat                a CVAT "Segmentation mask 1.1" export (labelmap.txt, colour masks)
    camvid-kaggle       Kaggle's CamVid (train/, train_labels/ *_L.png, class_dict.csv)
    pix2pix-cityscapes  Kaggle's cityscapes-image-pairs (photo | colour label in one JPEG)

One module reads each (labelme.py, coco.py, colour_masks.py for cvat and camvid-kaggle,
pix2pix.py), each as a class built from SOURCE and `ImportOptions` that reads the class
list (`classes`, a `common.ClassTable`), one task per image (`tasks`) and the problems
found on the way (`problems`), and whose `convert(task)` -> (Sample or None, problems,
counts or None) reads one image; `common.py` holds what they share. This module runs the
conversions on reader threads and writes the dataset.

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

import contextlib
import os

import numpy as np
import yaml

from kseg.choices import IMPORT_FORMATS as FORMATS
from kseg.data.folder import CLASSES_FILE, DEFAULT_SPLIT_SEED, DEFAULT_VAL_FRACTION, comment_text
from kseg.data.importers.coco import Coco
from kseg.data.importers.colour_masks import CamvidKaggle, Cvat
from kseg.data.importers.common import (
    DEFAULTS,
    IMAGE_LEFT_OUT,
    REPORT_FILE,
    ImportOptions,
    ImportProblem,
    ImportResult,
)
from kseg.data.importers.labelme import LabelMe
from kseg.data.importers.pix2pix import Pix2pixCityscapes
from kseg.errors import KsegError
from kseg.files import brief
from kseg.images import write_png
from kseg.labels import IGNORE_INDEX
from kseg.outputs import Outputs, case_key, folds_case, missing_folders, write_bytes, writing
from kseg.parallel import ordered_map
from kseg.progress import progress as progress_bar

__all__ = ["FORMATS", "ImportOptions", "ImportProblem", "ImportResult", "Pix2pixCityscapes", "import_dataset"]

IMPORTERS = dict(zip(FORMATS, (LabelMe, Coco, Cvat, CamvidKaggle, Pix2pixCityscapes)))


def _classes_yaml(result, source):
    entries = [{"name": name, "color": list(colour)} for name, colour in zip(result.names, result.colours)]
    text = yaml.safe_dump({"classes": entries}, sort_keys=False, allow_unicode=True, default_flow_style=None,
                          width=1000)  # fmt: skip
    header = [f"# classes.yaml written by `kseg data import {result.format}` from {comment_text(source)}.",
              "# Masks are index PNGs: class k is stored as k, 255 is ignored (void, crowd, unknown).",
              "# The colours are for pictures kseg draws. The format: docs/datasets.md."]
    if "" in result.images:  # one pool
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


def import_dataset(format, source, out_dir, options=DEFAULTS, progress=False, on_problem=None):
    """Imports an annotation export or Kaggle dataset into a new folder dataset.

    Args:
        format: str. One of FORMATS.
        source: str. The folder or file the format reads (see the module docstring).
        out_dir: str. The dataset folder to create; an existing path is never replaced.
        options: ImportOptions. How the source is read.
        progress: bool. Show a progress bar on stderr.
        on_problem: callable or None. Called with each ImportProblem as it is found.

    Returns:
        ImportResult.

    Raises:
        KsegError: an unknown format, an unreadable source, an existing OUT_DIR, nothing
            importable, or (strict) any problem. Nothing is written then.
    """
    out_dir, source = os.fspath(out_dir), os.fspath(source)
    checked = Outputs(inputs=[source, options.images, options.labels])
    checked.add(out_dir, "imported dataset", option="OUT_DIR", folder=True)
    if format not in IMPORTERS:
        raise KsegError(f"unknown import format {brief(format)} (known: {', '.join(FORMATS)})")
    if not os.path.exists(source):
        raise KsegError(f"{source}: not found")
    importer = IMPORTERS[format](source, options)  # reads the class list and the tasks
    result = ImportResult(out_dir, format, importer.classes.names, importer.classes.colours)

    def note(problems):
        for problem in problems:
            result.problems.append(problem)
            if on_problem is not None:
                on_problem(problem)

    note(importer.problems)
    created = missing_folders(os.path.dirname(os.path.abspath(out_dir)))  # removed again on failure
    try:
        with checked, writing(out_dir, directory=True) as temporary:
            _convert_all(importer, temporary, result, note, progress, options.workers)
            if options.strict and result.problems:
                raise KsegError(f"{source}: {len(result.problems)} problem(s) (listed above; first: "
                                f"{result.problems[0]}); nothing was written (without --strict these are left "
                                "out or ignored and the rest is imported)")  # fmt: skip
            write_bytes(os.path.join(temporary, CLASSES_FILE), _classes_yaml(result, source).encode())
            report = _report_text(result, source).encode(errors="backslashreplace")  # file names not in UTF-8
            write_bytes(os.path.join(temporary, REPORT_FILE), report)
            if os.path.lexists(out_dir):  # made meanwhile: never replaced
                raise KsegError(f"OUT_DIR {out_dir}: appeared while importing; it is not replaced, choose "
                                "another OUT_DIR")  # fmt: skip
    except BaseException:
        for folder in created:
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only while empty
        raise
    return result


def _convert_all(importer, folder, result, note, progress, workers):
    """Converts every task on reader threads and writes each sample into `folder`, counting
    into `result`. Where `folder`'s filesystem ignores case, names that differ only in case
    are one name, as that filesystem compares them (`kseg.outputs.case_key`)."""
    stems, fold = {}, folds_case(folder)
    with progress_bar(len(importer.tasks), f"importing {result.format}", "image", enabled=progress) as bar, \
            contextlib.closing(ordered_map(importer.convert, importer.tasks, workers)) as converted:
        for sample, problems, counts in converted:
            bar.update(1)
            note(problems)
            if sample is None:
                continue
            result.counts.update(counts)
            key = (sample.split, case_key(sample.stem) if fold else sample.stem)  # splits are lower case
            if key in stems or not sample.stem or sample.stem.startswith("."):
                note([ImportProblem(sample.origin, f"another image is already imported as {sample.stem!r} (from "
                                    f"{stems.get(key)}); names must differ" if key in stems else
                                    "a file name kseg cannot use", IMAGE_LEFT_OUT)])  # fmt: skip
                continue
            stems[key] = sample.origin
            _write_sample(folder, sample)
            result.images[sample.split] += 1
            pixels = np.bincount(sample.mask.ravel(), minlength=256)
            result.class_pixels += pixels[: len(result.names)]
            result.ignored_pixels += int(pixels[IGNORE_INDEX])
            if isinstance(importer, Pix2pixCityscapes):
                result.uncertain[sample.origin] = (sample.uncertain, sample.void, int(sample.mask.size))
    if not result.images:
        first = f"; first problem: {result.problems[0]}" if result.problems else ""
        raise KsegError(f"{importer.source}: no image could be imported{first}")
    if "" in result.images and len(result.images) > 1:
        raise KsegError(f"{importer.source}: some images belong to a split and some to none")


def _write_sample(folder, sample):
    """Writes one image and its mask into the scratch folder (atomically, file by file)."""
    image_path = os.path.join(folder, "images", sample.split, sample.stem + sample.extension)
    if sample.data is not None:
        write_bytes(image_path, sample.data)  # byte for byte: kseg reads it as it was read here
    else:
        write_png(image_path, sample.image)
    write_png(os.path.join(folder, "masks", sample.split, sample.stem + ".png"), sample.mask)
