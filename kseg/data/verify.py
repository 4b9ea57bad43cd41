"""Checking a dataset split before training on it: every pair, every problem listed.

For each (image, mask) pair: the image must be a readable 8-bit RGB file (16-bit, RGBA,
grayscale, truncated and corrupt files are reported), the mask a readable single-channel
8-bit index mask (or, for folder datasets, a colour mask with known colours), both of the
same size, and the mask may hold only the dataset's class values and its void values.
Across the split: byte-identical images are reported as duplicates, and an empty or
missing split is a problem of its own.
"""

import collections
import concurrent.futures
import hashlib
import os

import numpy as np

from kseg.errors import KsegError

EXAMPLES_PER_VALUE = 3


class VerifyReport:
    """The outcome of `verify_dataset`.

    Attributes:
        dataset: str. The dataset name.
        split: str. The split checked.
        num_pairs: int. Pairs listed in the split.
        problems: list. (path, message) per problem, in pair order.
        kinds: collections.Counter. Number of problems of each kind.
        unexpected_values: dict. Raw mask value -> {"pixels": int, "files": int,
            "examples": [path, ...]} for values the dataset does not define.
    """

    def __init__(self, dataset, split):
        self.dataset = dataset
        self.split = split
        self.num_pairs = 0
        self.problems = []
        self.kinds = collections.Counter()
        self.unexpected_values = {}

    @property
    def ok(self):
        """bool. True when no problem was found."""
        return not self.problems

    def add(self, kind, path, message):
        self.problems.append((path, message))
        self.kinds[kind] += 1

    def summary(self, max_problems=20):
        """Returns a printable summary: verdict, problem kinds, unexpected values, examples.

        Args:
            max_problems: int. How many individual problems to list (all are in `problems`).
        """
        verdict = "OK" if self.ok else f"{len(self.problems)} problem(s)"
        lines = [f"{self.dataset} / {self.split}: {self.num_pairs} pairs checked, {verdict}"]
        if self.kinds:
            lines.append("")
            lines.append(f"  {'problem':<28} {'count':>7}")
            for kind, count in sorted(self.kinds.items()):
                lines.append(f"  {kind:<28} {count:>7}")
        if self.unexpected_values:
            lines.append("")
            lines.append(f"  {'unexpected mask value':<22} {'pixels':>12} {'files':>7}  example")
            for value in sorted(self.unexpected_values):
                entry = self.unexpected_values[value]
                lines.append(
                    f"  {value:<22} {entry['pixels']:>12,} {entry['files']:>7}  {entry['examples'][0]}"
                )
        if self.problems:
            lines.append("")
            for path, message in self.problems[:max_problems]:
                lines.append(f"  {message}" if message.startswith(path) else f"  {path}: {message}")
            if len(self.problems) > max_problems:
                lines.append(f"  ... and {len(self.problems) - max_problems} more")
        return "\n".join(lines)

    def __str__(self):
        return self.summary()


def _check_pair(spec, image_path, mask_path):
    """Checks one pair; returns (problems [(kind, path, message)], image digest, values)."""
    problems = []
    digest = None
    unexpected = {}
    image = raw_mask = None
    try:
        with open(image_path, "rb") as handle:
            digest = hashlib.blake2b(handle.read(), digest_size=16).hexdigest()
    except OSError:
        pass  # read_image below reports missing and unreadable files
    try:
        image = spec.read_image(image_path)
    except KsegError as error:
        problems.append(("image: " + _kind(str(error), IMAGE_KINDS), image_path, str(error)))
    try:
        raw_mask = spec.read_raw_mask(mask_path)
    except KsegError as error:
        problems.append(("mask: " + _kind(str(error), MASK_KINDS), mask_path, str(error)))
    if image is not None and raw_mask is not None and image.shape[:2] != raw_mask.shape[:2]:
        problems.append((
            "mask size differs from image",
            mask_path,
            f"{mask_path}: mask is {raw_mask.shape[1]}x{raw_mask.shape[0]} (WxH) but its image "
            f"{image_path} is {image.shape[1]}x{image.shape[0]}",
        ))
    if raw_mask is not None:
        counts = np.bincount(raw_mask.ravel(), minlength=256)
        bad = spec.unexpected_values(raw_mask)
        if bad.size:
            unexpected = {int(value): int(counts[value]) for value in bad}
            listed = ", ".join(f"{value} ({pixels:,} px)" for value, pixels in list(unexpected.items())[:6])
            problems.append((
                "mask: unexpected values",
                mask_path,
                f"{mask_path}: mask values {listed} are not {spec.name} labels "
                f"(expected {spec.allowed_values_text()})",
            ))
    return problems, digest, unexpected


IMAGE_KINDS = (("not found", "missing"), ("RGBA", "RGBA"), ("grayscale", "grayscale"),
               ("16-bit", "16-bit"), ("not a readable", "unreadable"), ("empty", "unreadable"))
MASK_KINDS = (("not found", "missing"), ("colour", "colour mask"), ("color", "colour mask"),
              ("samples", "not 8-bit"), ("not a readable", "unreadable"), ("empty", "unreadable"))


def _kind(message, kinds):
    """The kind of problem a reader's message names: the first (word, kind) whose word is
    in it, else "unusable"."""
    return next((kind for word, kind in kinds if word in message), "unusable")


def verify_dataset(spec, split, progress=False, workers=None):
    """Checks every pair of a split and reports all problems found.

    Args:
        spec: DatasetSpec. The dataset.
        split: str. The split to check.
        progress: bool. Show a tqdm progress bar on stderr.
        workers: int or None. Reader threads; default: the number of CPU cores.

    Returns:
        VerifyReport. `.ok` is False when anything is wrong.
    """
    report = VerifyReport(spec.name, split)
    try:
        pairs = spec.pairs(split)
    except KsegError as error:
        report.add("split: missing or empty", spec.root, str(error))
        return report
    report.num_pairs = len(pairs)
    workers = workers or min(8, os.cpu_count() or 1)
    seen_paths = {}
    seen_digests = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(pairs), desc=f"verify {spec.name}/{split}", unit="pair", leave=False)
    try:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            results = pool.map(lambda pair: _check_pair(spec, *pair), pairs)
            for (image_path, mask_path), (problems, digest, unexpected) in zip(pairs, results):
                if bar is not None:
                    bar.update(1)
                if image_path in seen_paths:
                    report.add("duplicate pair", image_path, f"{image_path}: listed twice in the split")
                    continue
                seen_paths[image_path] = mask_path
                for kind, path, message in problems:
                    report.add(kind, path, message)
                if digest is not None:
                    if digest in seen_digests:
                        report.add(
                            "duplicate image", image_path,
                            f"{image_path}: same content as {seen_digests[digest]}",
                        )
                    else:
                        seen_digests[digest] = image_path
                for value, pixels in unexpected.items():
                    entry = report.unexpected_values.setdefault(value, {"pixels": 0, "files": 0, "examples": []})
                    entry["pixels"] += pixels
                    entry["files"] += 1
                    if len(entry["examples"]) < EXAMPLES_PER_VALUE:
                        entry["examples"].append(mask_path)
    finally:
        if bar is not None:
            bar.close()
    return report
