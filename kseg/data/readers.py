"""Strict readers for training data: what a dataset holds must be what the model learns.

`kseg.images.read_image` converts whatever it is given (for prediction that is kind).
For training and evaluation data a 16-bit, RGBA or grayscale image usually means a wrong
file or a conversion gone astray, so these readers refuse it with a message naming the
file and the fix, and `kseg data verify` lists every such file at once.
"""

import os

import cv2
import numpy as np

from kseg.images import ImageError, _read_raw, read_mask, read_palette_mask

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_PALETTE_COLOUR_TYPE = 3


def read_rgb_image(path):
    """Reads an 8-bit, 3-channel image as uint8 RGB (H, W, 3).

    The file is decoded as stored (no EXIF rotation), so its pixels line up with its mask.

    Args:
        path: str. An image file (PNG, JPEG, ...).

    Returns:
        np.ndarray. uint8 array of shape (H, W, 3), RGB order.

    Raises:
        ImageError: unreadable or truncated file, 16-bit samples, alpha channel, grayscale.
    """
    array = _read_raw(path, cv2.IMREAD_UNCHANGED)
    path = os.fspath(path)
    if array.dtype != np.uint8:
        raise ImageError(
            f"{path}: image has {array.dtype} samples (e.g. 16-bit), expected 8-bit RGB; "
            "convert it to 8 bits"
        )
    channels = 1 if array.ndim == 2 else array.shape[2]
    if channels == 4:
        raise ImageError(f"{path}: image is RGBA (has an alpha channel), expected 8-bit RGB")
    if channels != 3:
        raise ImageError(
            f"{path}: image is grayscale ({channels} channel), expected 8-bit RGB"
        )
    return np.ascontiguousarray(array[:, :, ::-1])


def is_palette_png(path):
    """Returns whether `path` is a PNG stored with a colour palette (PNG colour type 3).

    Args:
        path: str. Any file; non-PNG files give False.
    """
    try:
        with open(path, "rb") as handle:
            header = handle.read(26)
    except OSError:
        return False
    return (
        len(header) == 26
        and header[:8] == PNG_SIGNATURE
        and header[12:16] == b"IHDR"
        and header[25] == PNG_PALETTE_COLOUR_TYPE
    )


def read_index_mask(path):
    """Reads a single-channel 8-bit index mask as a 2-D uint8 array of stored values.

    Palette PNGs give their palette indices (the VOC convention), not their colours.

    Args:
        path: str. A mask file.

    Raises:
        ImageError: unreadable file, 16-bit samples, or a colour (multi-channel) mask.
    """
    if is_palette_png(path):
        return read_palette_mask(path)
    return read_mask(path)


def read_colour_or_index_mask(path):
    """Reads a mask that may be an index mask or an RGB colour mask.

    Args:
        path: str. A mask file.

    Returns:
        np.ndarray. (H, W) uint8 for single-channel and palette masks, (H, W, 3) uint8
        RGB for 3- or 4-channel masks (alpha dropped), which the caller interprets.

    Raises:
        ImageError: unreadable file, 16-bit samples, or an unexpected channel count.
    """
    if is_palette_png(path):
        return read_palette_mask(path)
    array = _read_raw(path, cv2.IMREAD_UNCHANGED)
    path = os.fspath(path)
    if array.dtype != np.uint8:
        raise ImageError(f"{path}: mask has {array.dtype} samples, expected 8 bits")
    if array.ndim == 2:
        return array
    if array.shape[2] == 1:
        return array[:, :, 0]
    if array.shape[2] not in (3, 4):
        raise ImageError(f"{path}: mask has {array.shape[2]} channels, expected 1 or 3")
    return np.ascontiguousarray(array[:, :, 2::-1])
