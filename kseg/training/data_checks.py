"""Checks of the data before training: the splits, and the class weights asked for.

A split with bad pairs is refused unless `skip_bad`; one in which no pixel is labelled
(every mask value is the ignore label) is refused whatever the options, as is a
validation split without a labelled pixel. Files that cannot be paired (an image without
a mask, ...) are left out with one warning line, and a training crop larger than most
images is said, with the better choice.
"""

import logging
import os

import numpy as np

from kseg.data.spec import PAIRING_PROBLEMS, pairing_warning
from kseg.data.stats import compute_stats
from kseg.data.verify import ONE_CLASS, SPLIT_PROBLEMS, verify_dataset
from kseg.errors import KsegError

logger = logging.getLogger("kseg")


def compute_class_weights(config, spec):
    """Returns the class weights (list of float) the config asks for, or None.

    "median-frequency" reads every training mask once (not the images), with the same
    definition `kseg data stats` prints (kseg.data.stats); "sqrt-median-frequency" takes
    their square roots, a milder balance (fewer false positives around rare classes).
    """
    if isinstance(config.class_weights, list):
        if len(config.class_weights) != spec.num_classes:
            raise KsegError(
                f"--class-weights: {len(config.class_weights)} weights given, but {spec.name} "
                f"has {spec.num_classes} classes"
            )
        return list(config.class_weights)
    if config.class_weights == "none":
        return None
    logger.info("computing %s class weights over the %s split", config.class_weights, config.train_split)
    stats = compute_stats(spec, config.train_split)
    if stats.skipped and not config.skip_bad:
        raise KsegError(stats.skipped[0][1])
    weights = np.asarray(stats.median_frequency_weights(), np.float64)
    if config.class_weights == "sqrt-median-frequency":
        weights = np.sqrt(weights)
    return [round(float(weight), 6) for weight in weights]


def check_dataset(config, spec):
    """Verifies the training split; refuses bad data unless `skip_bad` (then warns).

    A split in which no pixel is labelled (every mask value is the ignore label) is
    refused too: there would be nothing to learn.

    Returns:
        int. The number of problems skipped under `skip_bad`.
    """
    logger.info("verifying the %s split of %s (every pair is read once)", config.train_split, spec.name)
    report = verify_dataset(spec, config.train_split, progress=True)
    # verify counts a split without any labelled pixel as a problem of its own: not one that
    # --skip-bad could leave out, so it is refused below with its own message. Files that
    # cannot be paired are not in the split's pairs: one line says which were left out.
    unpaired = [problem for problem in report.problems if problem.kind in PAIRING_PROBLEMS]
    if unpaired:
        logger.warning("%s", pairing_warning(spec.root, config.train_split, unpaired))
    problems = _dataset_problems(report)
    shown = "; ".join(str(problem) for problem in problems[:3])
    if problems and not config.skip_bad:
        raise KsegError(
            f"{spec.root}: the {config.train_split} split has {len(problems)} problem(s): {shown}"
            f"{' ...' if len(problems) > 3 else ''}; fix them (see `kseg data verify`) or pass "
            "--skip-bad to leave the bad pairs out"
        )
    if report.labelled_pixels == 0 and report.masks_read == 0:
        raise KsegError(
            f"{spec.root}: the {config.train_split} split has no mask that can be read; fix them "
            "(see `kseg data verify`)"
        )
    if report.labelled_pixels == 0:
        raise KsegError(
            f"{spec.root}: the {config.train_split} split has no labelled pixel: every mask value is the "
            f"ignore label {spec.ignore_index} (or maps to it), so there is nothing to learn; check the "
            "masks and the classes file (`kseg data stats` counts the pixels of each class)"
        )
    one_class = [problem for problem in report.problems if problem.kind == ONE_CLASS]
    if one_class:
        raise KsegError(one_class[0].message)
    for path, message in report.warnings:
        if path == spec.root:  # about the split as a whole, e.g. classes that never occur
            logger.warning("%s", message)
    if problems:
        logger.warning(
            "%d bad pair(s) in %s will be skipped (--skip-bad): %s", len(problems), config.train_split, shown
        )
    _check_crop(config, report)
    return len(problems)


def _check_crop(config, report):
    """Warns when the training crop is larger than most training images (read by verify):
    they are padded with ignored pixels, which costs time and teaches nothing."""
    crop = config.crop
    if not crop or not report.image_sizes:
        return
    height, width = crop
    total = sum(report.image_sizes.values())
    padded = sum(count for (h, w), count in report.image_sizes.items() if h < height or w < width)
    if padded * 2 <= total:
        return
    smallest = (min(h for h, _ in report.image_sizes), min(w for _, w in report.image_sizes))
    largest = (max(h for h, _ in report.image_sizes), max(w for _, w in report.image_sizes))
    logger.warning(
        "the training crop %dx%d (HxW) is larger than %d of the %d training images (%s): they are padded with "
        "ignored pixels, which costs time and teaches nothing; pass --crop none (whole images) or a crop of at "
        "most %dx%d", height, width, padded, total,
        f"all {largest[0]}x{largest[1]}" if smallest == largest else
        f"from {smallest[0]}x{smallest[1]} to {largest[0]}x{largest[1]}", *smallest,
    )  # fmt: skip


def check_validation_split(config, spec):
    """Refuses a validation split that is missing or in which no pixel is labelled, says in
    one line which images validation uses (a folder dataset without split folders holds
    out a seeded share of its pool), and warns when it holds training images (its scores
    then measure fit, not generalisation)."""
    note = spec.validation_note(config.val_split, config.train_split)  # a missing split is refused here
    if note:
        logger.info("%s", note)
    if config.val_split.lower() == "none":
        return
    val_images = {os.path.realpath(image) for image, _ in spec.pairs(config.val_split)}
    shared = len(val_images & {os.path.realpath(image) for image, _ in spec.pairs(config.train_split)})
    if shared:
        logger.warning(
            "the validation split '%s' shares %d of its %d images with the training split '%s': its scores "
            "say how well the model fits its training images, not how it does on new ones; give the dataset "
            "separate train and val folders, or pass --val-split none", config.val_split, shared, len(val_images),
            config.train_split,
        )  # fmt: skip
    if not _any_labelled_pixel(spec, config.val_split):
        raise KsegError(
            f"{spec.root}: the {config.val_split} split has no labelled pixel: every mask value is the "
            f"ignore label {spec.ignore_index} (or maps to it), so no validation score can be computed; "
            "fix its masks, or train without validation: --val-split none"
        )


def _any_labelled_pixel(spec, split):
    """Whether a split's masks hold a pixel of a class (not the ignore label), reading them up
    to the first that does. Masks that cannot be read are passed over; True (nothing to
    refuse here) when none can be read."""
    readable = False
    for _, mask_path in spec.pairs(split):
        try:
            mask = np.asarray(spec.to_train_ids(spec.read_raw_mask(mask_path), mask_path))
        except KsegError:
            continue
        readable = True
        if np.any((mask != spec.ignore_index) & (mask < spec.num_classes)):
            return True
    return not readable


def _dataset_problems(report):
    """The problems of a `kseg data verify` report that `--skip-bad` can leave out, one
    message each: all but those of the whole split (refused on their own)."""
    return [
        problem.message if str(problem.path) in problem.message else f"{problem.path}: {problem.message}"
        for problem in report.problems
        if problem.kind not in SPLIT_PROBLEMS and problem.kind not in PAIRING_PROBLEMS
    ]
