"""Strict readers for training data: what a dataset holds must be what the model learns.

`kseg.images.read_image` converts whatever it is given (for prediction that is kind).
For training and evaluation data a 16-bit, RGBA or grayscale image usually means a wrong
file or a conversion gone astray, so these readers refuse it with a message naming the
file and the fix, and `kseg data verify` lists every such file at once.

They share `kseg.images`' rules (see there): regular files only, a pixel limit checked on
the header before decoding, masks read as their stored indices (palette and 1/2/4-bit
PNGs included), lossy masks refused, and the EXIF orientation applied in every verb, so
the image trained on is the image predict shows. A mask drawn on the stored pixels of an
image with an orientation tag no longer fits it; `kseg data verify` reports that case.
"""

import os

import numpy as np

from kseg.errors import KsegError
from kseg.files import unexpected_error_message
from kseg.images import (
    ImageError,
    load,
    load_mask,
    read_mask,
)

__all__ = [
    "ImageError", "attempt", "read_colour_or_index_mask", "read_index_mask", "read_rgb_image",
]


def read_rgb_image(path, data=None):
    """Reads an 8-bit, 3-channel image as uint8 RGB (H, W, 3), EXIF orientation applied.

    Args:
        path: str. An image file (PNG, JPEG, ...).
        data: bytes or None. The file's content if already read.

    Returns:
        np.ndarray. uint8 array of shape (H, W, 3), RGB order.

    Raises:
        KsegError: not a regular file, unreadable or truncated file, too many pixels,
            16-bit samples, alpha channel, grayscale.
    """
    path = os.fspath(path)
    array, _ = load(path, "image", data)
    if array.dtype != np.uint8:
        raise ImageError(
            f"{path}: image has {array.dtype} samples (e.g. 16-bit), expected 8-bit RGB; "
            "convert it to 8 bits",
            kind="16-bit",
        )
    channels = 1 if array.ndim == 2 else array.shape[2]
    if channels == 4:
        raise ImageError(f"{path}: image is RGBA (has an alpha channel), expected 8-bit RGB", kind="RGBA")
    if channels != 3:
        raise ImageError(
            f"{path}: image is grayscale ({channels} channel), expected 8-bit RGB", kind="grayscale"
        )
    return np.ascontiguousarray(array[:, :, ::-1])


# A single-channel 8-bit index mask as a 2-D uint8 array of stored values: palette PNGs
# give their palette indices (the VOC convention), 1/2/4-bit PNGs their stored indices;
# a colour mask is refused.
read_index_mask = read_mask


def read_colour_or_index_mask(path, data=None):
    """Reads a mask that may be an index mask or an RGB colour mask.

    Args:
        path: str. A mask file.
        data: bytes or None. The file's content if already read.

    Returns:
        np.ndarray. (H, W) uint8 for single-channel and palette masks, (H, W, 3) uint8
        RGB for 3- or 4-channel masks (alpha dropped), which the caller interprets.

    Raises:
        KsegError: unreadable or lossy file, 16-bit samples, or an unexpected channel count.
    """
    array, _ = load_mask(path, data)
    path = os.fspath(path)
    if array.dtype != np.uint8:
        raise ImageError(f"{path}: mask has {array.dtype} samples, expected 8 bits", kind="not 8-bit")
    if array.ndim == 2 or array.shape[2] == 1:
        return np.ascontiguousarray(array.reshape(array.shape[:2]))
    if array.shape[2] not in (3, 4):
        raise ImageError(f"{path}: mask has {array.shape[2]} channels, expected 1 or 3")
    return np.ascontiguousarray(array[:, :, 2::-1])


def attempt(read, path):
    """`(read(path), None)`, or `(None, error)`: a KsegError naming the file, also for an
    exception no reader foresaw, so that one bad file never ends a report (`kseg data
    verify`, `stats`, `init`)."""
    try:
        return read(path), None
    except KsegError as error:
        return None, error
    except Exception as error:  # noqa: BLE001 - one bad file never ends a report
        return None, KsegError(unexpected_error_message(path, error))
