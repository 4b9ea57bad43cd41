"""The label vocabulary every part of kseg shares.

A mask or label map holds train ids: 0 .. num_classes - 1 for classes and IGNORE_INDEX
for pixels that count in no class (void, borders, unlabelled). `default_palette` gives
the colours of classes that have none of their own (datasets, predictions, reports).
"""

import unicodedata

from kseg.files import brief

IGNORE_INDEX = 255
MAX_CLASS_NAME = 200  # characters


def holds_control_character(name):
    """Whether a name (a class's, a split's) holds a control character (C0, DEL or C1) or a
    Unicode line or paragraph separator: a line break for a file of one name a line."""
    return any(unicodedata.category(character) in ("Cc", "Zl", "Zp") for character in name)


def class_name_problem(name):
    """What keeps `name` (a str) from being a class name, or None: the one rule for every
    file a class name is read from (classes.yaml, classes.json, an export's description,
    an import's class list)."""
    if not name.strip():
        return "empty class name"
    if len(name) > MAX_CLASS_NAME:
        return f"class name of {len(name):,} characters, more than {MAX_CLASS_NAME} ({brief(name, 40)})"
    if holds_control_character(name):
        return f"class name {brief(name)} holds a control character (a line break?)"
    return None


def is_byte(value):
    """Whether `value` is a whole number 0..255 (a mask value or colour channel; not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255


def default_palette(num_classes):
    """Returns distinct, deterministic colours for classes without given colours.

    The bits of each class index are spread over the high bits of R, G and B (bit b to
    channel b % 3, from the top bit down), so nearby indices get clearly different colours
    (index 0 is black).

    Args:
        num_classes: int. How many colours to make.

    Returns:
        tuple. One (r, g, b) tuple of ints per class.
    """
    colours = []
    for index in range(num_classes):
        channels = [0, 0, 0]
        for bit in range(24):
            channels[bit % 3] |= ((index >> bit) & 1) << (7 - bit // 3)
        colours.append(tuple(channels))
    return tuple(colours)
