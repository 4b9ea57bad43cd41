"""Checking a dataset split before training on it: every pair, every problem listed.

For each (image, mask) pair: the image must be a readable 8-bit RGB file (16-bit, RGBA,
grayscale, truncated and corrupt files are reported), the mask a readable single-channel
8-bit index mask (or, for folder datasets, a colour mask with known colours), both of the
same size, and the mask may hold only the dataset's class values and its void values.
Across the split: byte-identical images are reported as duplicates, and an empty or
missing split, or one where no pixel is labelled, is a problem of its own. Files the
split's listing leaves out (an image without a mask, a mask without an image, two files
claiming one name, an entry listed twice: `kseg.data.spec.PAIRING_PROBLEMS`) are each a
problem too, which training passes over with one warning line.

Every file is read once (the same bytes are hashed and decoded) and through
`kseg.images`' rules: a FIFO, device or folder named like an image, a header claiming
more pixels than kseg decodes, a lossy mask ("mask: lossy format") are each reported by
name, and the report goes on. EXIF orientation: kseg applies it in every verb; where an
image's orientation swaps width and height and its mask has the size of the stored
pixels, that is reported as a problem ("image: EXIF orientation"), and an orientation
that mirrors or turns by 180 degrees (the size stays) gives a warning, since its mask may
have been drawn on the stored pixels.
"""

import collections
import contextlib
import hashlib

import numpy as np

from kseg.data.readers import attempt
from kseg.data.spec import Problem
from kseg.errors import KsegError
from kseg.files import FileError, FileMissingError
from kseg.images import ORIENTATIONS, probe, read_file
from kseg.parallel import ordered_map
from kseg.progress import progress as progress_bar

EXAMPLES_PER_VALUE = 3
# The kind of the problem "this split has no labelled pixel": training refuses such a
# split for itself, so it can tell this problem from the per-file ones.
NO_LABELLED_PIXEL = "split: no labelled pixel"
MISSING_SPLIT = "split: missing or empty"
# A split whose labelled pixels are all of one class: nothing can be learned from it either.
ONE_CLASS = "split: one class only"
# The problems of a split as a whole, which leaving bad pairs out cannot mend.
SPLIT_PROBLEMS = (NO_LABELLED_PIXEL, ONE_CLASS)
# A declared class absent from a split is worth a warning when this share of the pixels is ignored.
IGNORED_SHARE_WARNING = 0.25


class VerifyReport:
    """The outcome of `verify_dataset`.

    Attributes:
        dataset: str. The dataset name.
        split: str. The split checked.
        num_pairs: int. Pairs listed in the split.
        problems: list of Problem. Every problem, in pair order.
        kinds: collections.Counter. Number of problems of each kind.
        unexpected_values: dict. Raw mask value -> {"pixels": int, "files": int,
            "examples": [path, ...]} for values the dataset does not define.
        warnings: list. (path, message) of things worth a look that are not errors
            (e.g. an image whose EXIF orientation mirrors or turns it by 180 degrees: its
            mask may have been drawn on the stored pixels).
        labelled_pixels: int. Pixels over the split's readable masks whose train id is a
            class (not the ignore index). Zero with pairs listed is a problem of its own
            ("split: no labelled pixel"): nothing could be learned or scored.
        masks_read: int. Masks that could be read (and counted in labelled_pixels).
        image_sizes: collections.Counter. (height, width) -> number of readable images.
    """

    def __init__(self, dataset, split):
        self.dataset = dataset
        self.split = split
        self.num_pairs = 0
        self.problems = []
        self.kinds = collections.Counter()
        self.unexpected_values = {}
        self.warnings = []
        self.labelled_pixels = 0
        self.masks_read = 0
        self.class_pixels = np.zeros(256, np.int64)  # per train id; ignore_index: the ignored
        self.image_sizes = collections.Counter()

    @property
    def ok(self):
        """bool. True when no problem was found."""
        return not self.problems

    def add(self, kind, path, message):
        """Records a problem of `kind` about `path`."""
        self.problems.append(Problem(kind, path, message))
        self.kinds[kind] += 1

    def summary(self, max_problems=20):
        """Returns a printable summary: verdict, problem kinds, unexpected values, examples.

        Args:
            max_problems: int. How many individual problems to list (all are in `problems`).
        """
        verdict = "OK" if self.ok else f"{len(self.problems)} problem(s)"
        lines = [f"{self.dataset} / {self.split}: {self.num_pairs} pairs checked, {verdict}"]
        if self.kinds:
            lines += ["", f"  {'problem':<28} {'count':>7}"]
            lines += [f"  {kind:<28} {count:>7}" for kind, count in sorted(self.kinds.items())]
        if self.unexpected_values:
            lines += ["", f"  {'unexpected mask value':<22} {'pixels':>12} {'files':>7}  example"]
            for value, entry in sorted(self.unexpected_values.items()):
                lines.append(f"  {value:<22} {entry['pixels']:>12,} {entry['files']:>7}  {entry['examples'][0]}")
        if self.problems:
            lines.append("")
            problems = [message if message.startswith(path) else f"{path}: {message}"
                        for _, path, message in self.problems]  # fmt: skip
            _list_some(lines, problems, max_problems)
        if self.warnings:
            lines += ["", f"  {len(self.warnings)} warning(s):"]
            _list_some(lines, [f"warning: {message}" for _, message in self.warnings], max_problems)
        return "\n".join(lines)

    def __str__(self):
        return self.summary()


def _list_some(lines, texts, limit):
    """Appends the first `limit` texts to `lines`, and how many more there are."""
    lines += [f"  {text}" for text in texts[:limit]]
    if len(texts) > limit:
        lines.append(f"  ... and {len(texts) - limit} more")


class _PairResult:
    """What `_check_pair` found for one pair."""

    def __init__(self):
        self.problems = []  # Problem
        self.warnings = []  # (path, message)
        self.digest = None
        self.unexpected = {}
        self.class_pixels = None  # None: the mask could not be read
        self.image_size = None

    def add(self, kind, path, message):
        self.problems.append(Problem(kind, path, message))


def _attempt(result, what, path, read):
    """`read(path)`, or None after recording the reader's error under its kind, e.g. "image: RGBA"."""
    value, error = attempt(read, path)
    if error is not None:
        result.add(f"{what}: {error.kind}", path, str(error))
    return value


def _decode(result, what, path, data, reader):
    """`reader(path, data=data)` with its header, or (None, None) after recording why not."""
    return _attempt(result, what, path, lambda path: (reader(path, data=data), probe(data))) or (None, None)


def _orientation_problem(result, image_path, mask_path, image, raw_mask, image_header, mask_header):
    """Reports an EXIF-oriented image whose mask fits the stored (unturned) pixels.

    Returns True when the size mismatch is explained (and reported) by the orientation.
    """
    orientation = image_header.orientation
    if orientation == 1 or (mask_header is not None and mask_header.orientation == orientation):
        return False
    height, width = image.shape[:2]
    what = f"image has EXIF orientation {orientation} ({ORIENTATIONS[orientation]})"
    if image_header.swaps_axes and height != width:
        if raw_mask.shape[:2] == (width, height):
            result.add(
                "image: EXIF orientation", image_path,
                f"{image_path}: {what}, which kseg applies in every verb, making it {width}x{height} "
                f"(WxH); its mask {mask_path} is {height}x{width}, the size of the stored pixels: "
                "rotate the mask to match or strip the orientation tag from the image",
            )
            return True
        return False
    if raw_mask.shape[:2] == (height, width):
        result.warnings.append((
            image_path,
            f"{image_path}: {what}, which kseg applies in every verb; check that its mask "
            f"{mask_path} was drawn on the oriented image, not on the stored pixels",
        ))
    return False


def _check_pair(spec, image_path, mask_path):
    """Checks one pair; returns a _PairResult.

    Each file is read once: the same bytes are hashed (duplicate images) and decoded.
    """
    result = _PairResult()
    image = raw_mask = image_header = mask_header = None
    image_data = _attempt(result, "image", image_path, lambda path: read_file(path, "image file"))
    if image_data is not None:
        result.digest = hashlib.blake2b(image_data, digest_size=16).hexdigest()
        image, image_header = _decode(result, "image", image_path, image_data, spec.read_image)
        if image is not None:
            result.image_size = image.shape[:2]
    del image_data
    mask_data = _attempt(result, "mask", mask_path, lambda path: read_file(path, "mask file"))
    if mask_data is not None:
        raw_mask, mask_header = _decode(result, "mask", mask_path, mask_data, spec.read_raw_mask)
    del mask_data
    if image is not None and raw_mask is not None:
        explained = _orientation_problem(
            result, image_path, mask_path, image, raw_mask, image_header, mask_header
        )
        if not explained and image.shape[:2] != raw_mask.shape[:2]:
            result.add(
                "mask size differs from image",
                mask_path,
                f"{mask_path}: mask is {raw_mask.shape[1]}x{raw_mask.shape[0]} (WxH) but its image "
                f"{image_path} is {image.shape[1]}x{image.shape[0]}",
            )
    if raw_mask is not None:
        _check_values(spec, mask_path, raw_mask, result)
    return result


def _check_values(spec, mask_path, raw_mask, result):
    """Counts a readable mask's labelled pixels and reports values the dataset does not define."""
    counts = np.bincount(raw_mask.ravel(), minlength=256)
    result.class_pixels = spec.class_pixels(raw_mask)
    bad = spec.unexpected_values(raw_mask)
    if bad.size:
        result.unexpected = {int(value): int(counts[value]) for value in bad}
        listed = ", ".join(
            f"{value} ({pixels:,} px)" for value, pixels in list(result.unexpected.items())[:6]
        )
        result.add(
            "mask: unexpected values",
            mask_path,
            f"{mask_path}: mask values {listed} are not {spec.name} labels "
            f"(expected {spec.allowed_values_text()})",
        )


def verify_dataset(spec, split, progress=False):
    """Checks every pair of a split and reports all problems found.

    Args:
        spec: DatasetSpec. The dataset.
        split: str. The split to check.
        progress: bool. Show a progress bar on stderr (`kseg.progress`).

    Returns:
        VerifyReport. `.ok` is False when anything is wrong.
    """
    report = VerifyReport(spec.name, split)
    try:
        for issue in spec.pairing_issues(split):  # each listed here, so `pairs` logs no line
            report.add(*issue)
        pairs = spec.pairs(split)
    except KsegError as error:
        if isinstance(error, FileError) and not isinstance(error, FileMissingError):
            raise  # a split list that cannot be read: one error line, as in every verb
        report.add(MISSING_SPLIT, spec.root, str(error))
        return report
    report.num_pairs = len(pairs)
    with (
        progress_bar(len(pairs), f"verify {spec.name}/{split}", "pair", enabled=progress) as bar,
        contextlib.closing(ordered_map(lambda pair: _check_pair(spec, *pair), pairs)) as results,
    ):
        _collect(report, pairs, results, bar)
    report.labelled_pixels = int(report.class_pixels[: spec.num_classes].sum())
    if report.num_pairs and not report.labelled_pixels:
        unread = report.num_pairs - report.masks_read
        why = (
            f"none of its {report.num_pairs} masks could be read" if not report.masks_read else
            f"every pixel of its {report.masks_read} readable mask(s) is ignored "
            f"({spec.ignore_index} or a void value)" + (f"; {unread} more could not be read" if unread else "")
        )
        report.add(
            NO_LABELLED_PIXEL, spec.root,
            f"{spec.root}: the {spec.name} split '{split}' has no labelled pixel: {why}; "
            "nothing can be learned or scored from it",
        )
    elif report.labelled_pixels:
        _check_classes(spec, split, report)
    return report


def _check_classes(spec, split, report):
    """Reports a split whose labelled pixels are all of one class, and warns of declared
    classes it lacks while much of it is ignored: both are what masks that store a class
    as the ignore value look like (binary masks saved as 0/255, the usual export of
    one-class annotation tools, with classes [background, object])."""
    counts = report.class_pixels[: spec.num_classes]
    ignored = int(report.class_pixels[spec.ignore_index])
    share = ignored / max(ignored + int(counts.sum()), 1)
    missing = [spec.class_names[index] for index in np.flatnonzero(counts == 0)]
    if not missing or (len(missing) < spec.num_classes - 1 and share < IGNORED_SHARE_WARNING):
        return
    present = [spec.class_names[index] for index in np.flatnonzero(counts)]
    cause = (f"{share:.0%} of its pixels are the ignore value {spec.ignore_index}. If your masks store a "
             f"class as {spec.ignore_index} (binary masks saved as 0/255 do), that class is ignored: "
             f"{spec.ignored_class_advice(present, missing)}")  # fmt: skip
    if len(present) == 1:
        others = f" ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})" if ignored else ""
        report.add(
            ONE_CLASS, spec.root,
            f"{spec.root}: every labelled pixel of the {spec.name} split '{split}' is {present[0]}; no other "
            f"class occurs{others}, so nothing can be learned from it" + (f". {cause}" if ignored else ""),
        )  # fmt: skip
        return
    report.warnings.append((spec.root, f"{spec.root}: classes {', '.join(missing[:5])} never occur in the "
                                       f"{spec.name} split '{split}', and {cause}"))  # fmt: skip


def _collect(report, pairs, results, bar):
    """Adds each pair's findings to the report, in pair order."""
    seen_digests = {}
    for (image_path, mask_path), result in zip(pairs, results):
        bar.update(1)
        if result.image_size is not None:
            report.image_sizes[result.image_size] += 1
        for problem in result.problems:
            report.add(*problem)
        report.warnings.extend(result.warnings)
        if result.class_pixels is not None:
            report.masks_read += 1
            report.class_pixels += result.class_pixels
        if result.digest is not None:
            if result.digest in seen_digests:
                report.add("duplicate image", image_path,
                           f"{image_path}: same content as {seen_digests[result.digest]}")
            else:
                seen_digests[result.digest] = image_path
        for value, pixels in result.unexpected.items():
            entry = report.unexpected_values.setdefault(value, {"pixels": 0, "files": 0, "examples": []})
            entry["pixels"] += pixels
            entry["files"] += 1
            if len(entry["examples"]) < EXAMPLES_PER_VALUE:
                entry["examples"].append(mask_path)
