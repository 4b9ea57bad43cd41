"""The dataset description every adapter provides, and what they share.

A `DatasetSpec` knows where a dataset lives, its classes and colours, how to list the
(image, mask) pairs of a split, and how to turn a stored mask into train ids: 0 to
num_classes - 1 for classes and 255 (`kseg.labels.IGNORE_INDEX`) for everything to be ignored.

Adapters describe a mask by two 256-entry tables over its raw 8-bit values:
`raw_to_train` (value -> train id) and `valid_raw` (whether a value may occur at all).
A value outside `valid_raw` is an error naming the file, never silently ignored.

Listing a split is honest about what it leaves out: files that cannot be paired (an image
listed twice; for folder datasets an image without a mask, a mask without an image, two
files that claim one name) are not used, and each is a `PairingIssue` (`pairing_issues`;
`kseg data verify` lists them, every other reader logs one warning line per split).
"""

import collections
import logging
import os

import numpy as np

from kseg.data.readers import read_index_mask, read_rgb_image
from kseg.errors import KsegError
from kseg.files import MalformedFileError, brief
from kseg.labels import IGNORE_INDEX, holds_control_character

logger = logging.getLogger("kseg")


class Problem(collections.namedtuple("Problem", "kind path message")):
    """A problem with a file (or a dataset root), as `kseg data verify` reports it.

    Attributes:
        kind: str. Its sort, as counted in verify's summary ("image: RGBA", a key of
            PAIRING_PROBLEMS, ...).
        path: str. The file (or dataset root) it is about.
        message: str. One line for the user, naming the file.
    """

    __slots__ = ()

    def __str__(self):
        return self.message


PairingIssue = Problem  # one file a split listing leaves out: its kind is a key of PAIRING_PROBLEMS
LISTED_TWICE = "pairing: listed twice"
IMAGE_WITHOUT_MASK = "pairing: image without mask"
MASK_WITHOUT_IMAGE = "pairing: mask without image"
IMAGES_SHARE_A_NAME = "pairing: images share a name"
MASKS_SHARE_A_NAME = "pairing: masks share a name"
# kind -> the few words a warning line gives each file
PAIRING_PROBLEMS = {
    LISTED_TWICE: "listed twice", IMAGE_WITHOUT_MASK: "no mask", MASK_WITHOUT_IMAGE: "no image",
    IMAGES_SHARE_A_NAME: "another image has its name", MASKS_SHARE_A_NAME: "two masks",
}
PAIRING_EXAMPLES = 3  # files named in a warning line


def pairing_warning(where, split, issues):
    """The one warning line about the files a split leaves out: their count and the first few.

    Args:
        where: str. The dataset root (or name) the line begins with.
        split: str. The split listed.
        issues: list of PairingIssue.
    """
    named = ", ".join(
        f"{os.path.basename(issue.path)} ({PAIRING_PROBLEMS.get(issue.kind, issue.kind)})"
        for issue in issues[:PAIRING_EXAMPLES]
    )
    more = f" and {len(issues) - PAIRING_EXAMPLES} more" if len(issues) > PAIRING_EXAMPLES else ""
    return (f"{where}: {len(issues)} file(s) of the split '{split}' cannot be paired and are left out: "
            f"{named}{more} (`kseg data verify` lists each with what to do)")  # fmt: skip


def value_tables(num_classes, values=None, ignore_values=()):
    """`raw_to_train` and `valid_raw` of index masks.

    Args:
        num_classes: int. Number of classes.
        values: tuple or None. Per class, the mask values storing it; None: its index.
        ignore_values: iterable of int. Values meaning "ignore"; 255 is one too unless a
            class's value.

    Returns:
        tuple. (raw_to_train uint8[256], valid_raw bool[256]).
    """
    if values is None:
        values = tuple((index,) for index in range(num_classes))
    raw_to_train = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for class_id, class_values in enumerate(values):
        raw_to_train[list(class_values)] = class_id
    valid_raw = raw_to_train != IGNORE_INDEX  # the classes' values (train ids are below 255)
    valid_raw[[IGNORE_INDEX, *ignore_values]] = True  # 255: a class's value, or ignored
    return raw_to_train, valid_raw


def describe_values(values, limit=8):
    """Formats a list of mask values for a message, e.g. '12, 40, 77 (+3 more)'."""
    text = ", ".join(str(int(value)) for value in values[:limit])
    if len(values) > limit:
        text += f" (+{len(values) - limit} more)"
    return text


def folder_entries(folder):
    """The names in `folder` (as `os.listdir` gives them); none when it is not a folder."""
    return os.listdir(folder) if os.path.isdir(folder) else []


MAX_LISTED_PATH = 4096  # characters: PATH_MAX on Linux


def check_listed_path(entry, list_file, number):
    """Returns a path or id read from line `number` of a split list, or raises KsegError.

    A NUL byte or an entry longer than any real path is refused, so a damaged list gives
    one short line naming the list file.
    """
    if "\x00" in entry:
        raise MalformedFileError(f"{list_file}:{number}: entry holds a NUL byte (is this a text file?)")
    if len(entry) > MAX_LISTED_PATH:
        raise MalformedFileError(
            f"{list_file}:{number}: entry of {len(entry):,} characters is not a path ({brief(entry, 40)})"
        )
    return entry


class DatasetSpec:
    """A dataset: its classes, colours, files and mask encoding.

    Subclasses set `name`, `class_names`, `palette`, `raw_to_train` and `valid_raw`,
    and implement `_list_pairs(split)`; they may override `read_raw_mask` for masks
    stored another way (palette or colour PNGs).

    Args:
        root: str. The dataset's root folder.
    """

    name = None
    ignore_index = IGNORE_INDEX

    def __init__(self, root):
        self.root = os.fspath(root)
        self.class_names = ()
        self.palette = ()
        self.raw_to_train = None
        self.valid_raw = None
        self._reported = set()  # splits whose pairing issues were reported already

    @property
    def num_classes(self):
        """int. Number of classes learned (the ignore label not counted)."""
        return len(self.class_names)

    def __repr__(self):
        return f"{type(self).__name__}(root={self.root!r}, num_classes={self.num_classes})"

    # -- files -------------------------------------------------------------------------

    def splits(self):
        """Returns the split names found on disk (e.g. ('train', 'val'))."""
        raise NotImplementedError

    def pairs(self, split):
        """Lists the (image_path, mask_path) pairs of a split, sorted by image path.

        Files that cannot be paired are left out (see `pairing_issues`); the first listing
        of a split with such files logs one warning line naming the first few.

        Args:
            split: str. A split name such as "train" or "val".

        Raises:
            KsegError: missing root, unexpected layout, unknown or empty split.
        """
        pairs, issues = self._checked_listing(split)
        if issues and self._listing_key(split) not in self._reported:
            self._reported.add(self._listing_key(split))
            logger.warning("%s", pairing_warning(self.root, split, issues))
        return pairs

    def pairing_issues(self, split):
        """The files of a split that `pairs` leaves out, each a PairingIssue.

        A caller that reports them itself (`kseg data verify`) asks for them first, and
        `pairs` then logs no warning line for that split.

        Raises:
            KsegError: as `pairs`.
        """
        self._reported.add(self._listing_key(split))
        return self._checked_listing(split)[1]

    def _listing_key(self, split):
        """Splits listed from the same files share a key (their issues are said once)."""
        return split

    def _checked_listing(self, split):
        if not isinstance(split, str) or not split:
            raise KsegError(f"{self.name}: split must be a non-empty name. Received: split={brief(split)}")
        if len(split) > 255 or holds_control_character(split):
            raise KsegError(
                f"{self.name}: split must be a folder or list name (no control characters, "
                f"at most 255 characters). Received: split={brief(split)}"
            )
        if not os.path.isdir(self.root):
            raise KsegError(f"{self.root}: {self.name} dataset root not found")
        pairs, issues = self._pairs_and_issues(split)
        if not pairs:
            left = f" ({len(issues)} file(s) cannot be paired; first: {issues[0].message})" if issues else ""
            raise KsegError(f"{self.root}: the {self.name} split '{split}' has no image/mask pairs{left}")
        return sorted(pairs), issues

    def _pairs_and_issues(self, split):
        """(pairs, issues) of a split: `_list_pairs` with an image listed again left out."""
        listed = self._list_pairs(split)
        counts = collections.Counter(image for image, _ in listed)
        issues = [PairingIssue(
            LISTED_TWICE, image,
            f"{image}: listed {count} times in the {self.name} split '{split}'; it is used "
            "once (remove the repeated lines from the split list)",
        ) for image, count in counts.items() if count > 1]  # fmt: skip
        first = dict(reversed(listed))  # each image with the first mask listed for it
        return list(first.items()), issues

    def validation_note(self, split, train_split="train"):
        """One line saying which images validation uses (`kseg train` logs it), or None.

        Args:
            split: str. The validation split, or "none".
            train_split: str. The split trained on.
        """
        if split.lower() == "none":
            return None
        return f"validation: the {self.name} split '{split}' ({len(self.pairs(split))} images)"

    def ignored_class_advice(self, present, missing):
        """What to do when a split's masks seem to store a class as the ignore value.

        Args:
            present: list of str. Classes that occur.
            missing: list of str. Declared classes that never occur.
        """
        return "store that class as its index in the masks instead"

    def _list_pairs(self, split):
        raise NotImplementedError

    def _require_dir(self, path, what):
        if not os.path.isdir(path):
            raise KsegError(
                f"{path}: missing {what}; is {self.root} a {self.name} dataset root? "
                f"(expected layout: {self.layout})"
            )
        return path

    layout = ""

    # -- reading -----------------------------------------------------------------------

    def read_image(self, path, data=None):
        """Reads an image as uint8 RGB (H, W, 3); see `kseg.data.readers.read_rgb_image`.

        Args:
            path: str. The image file.
            data: bytes or None. Its content when already read (verify hashes it too).
        """
        return read_rgb_image(path, data)

    def read_raw_mask(self, path, data=None):
        """Reads a mask's stored 8-bit values as a 2-D uint8 array.

        Args:
            path: str. The mask file.
            data: bytes or None. Its content when already read.
        """
        return read_index_mask(path, data)

    def class_pixels(self, raw_mask):
        """Pixels of `raw_mask` per train id: an int64 array of 256 (values the dataset does
        not define are left out; `ignore_index` counts the ignored ones)."""
        counts = np.bincount(raw_mask.ravel(), minlength=256)[:256]
        valid = np.flatnonzero(self.valid_raw & (counts > 0))
        return np.bincount(self.raw_to_train[valid], weights=counts[valid], minlength=256).astype(np.int64)

    def unexpected_values(self, raw_mask):
        """Returns the sorted raw values of `raw_mask` that this dataset does not define."""
        present = np.flatnonzero(np.bincount(raw_mask.ravel(), minlength=256))
        return present[~self.valid_raw[present]]

    def allowed_values_text(self):
        """Describes the raw mask values this dataset accepts, for error messages."""
        return f"0..{self.num_classes - 1} and {IGNORE_INDEX} (ignore)"

    def to_train_ids(self, raw_mask, mask_path="mask"):
        """Maps stored mask values to train ids, refusing values the dataset does not define.

        Args:
            raw_mask: np.ndarray. 2-D uint8 stored values.
            mask_path: str. Named in the error message.

        Raises:
            KsegError: the mask holds values outside the dataset's classes and void values.
        """
        bad = self.unexpected_values(raw_mask)
        if bad.size:
            raise KsegError(
                f"{mask_path}: mask values {describe_values(bad)} are not {self.name} labels "
                f"(expected {self.allowed_values_text()})"
            )
        return self.raw_to_train[raw_mask]

    def read_pair(self, image_path, mask_path):
        """Reads one training pair.

        Args:
            image_path: str. The image file.
            mask_path: str. Its mask.

        Returns:
            tuple. (image uint8 RGB (H, W, 3), mask uint8 (H, W) of train ids or 255).

        Raises:
            KsegError: unreadable or unsuitable file, size mismatch, undefined mask values;
                the message names the file.
        """
        image = self.read_image(image_path)
        raw_mask = self.read_raw_mask(mask_path)
        if raw_mask.shape[:2] != image.shape[:2]:
            raise KsegError(
                f"{mask_path}: mask is {raw_mask.shape[1]}x{raw_mask.shape[0]} (WxH) but its "
                f"image {image_path} is {image.shape[1]}x{image.shape[0]}"
            )
        return image, self.to_train_ids(raw_mask, mask_path)
