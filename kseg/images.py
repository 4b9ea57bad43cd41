"""Reading images and label masks with one clear error per bad file, and writing PNGs.

Images come back as uint8 RGB (H, W, 3) whatever is on disk: grayscale is repeated to
three channels, an alpha channel is dropped, 16-bit samples are scaled to 8 bits, and the
EXIF orientation of JPEGs is applied. Masks come back as 2-D uint8 arrays of raw values,
and must be single-channel 8-bit files (a colour mask is reported, not guessed at).
"""

import os

import cv2
import numpy as np

from kseg.atomic import atomic_path
from kseg.errors import KsegError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class ImageError(KsegError):
    """An image or mask file that cannot be used; the message names the file."""


def list_image_files(folder):
    """Returns the image files (by extension) in `folder` and its subfolders, sorted.

    Hidden files are left out: among them the temporary files of an interrupted write.
    """
    found = []
    for root, _, names in os.walk(folder):
        found += [os.path.join(root, name) for name in names
                  if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")]
    return sorted(found)


def _read_raw(path, flags):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageError(f"{path}: file not found")
    if not os.path.isfile(path):
        raise ImageError(f"{path}: not a file")
    try:
        data = np.fromfile(path, dtype=np.uint8)  # works for non-ASCII paths, unlike imread
    except OSError as error:
        raise ImageError(f"{path}: cannot read ({error.strerror or error})") from None
    if data.size == 0:
        raise ImageError(f"{path}: empty file")
    array = cv2.imdecode(data, flags)
    if array is None or array.size == 0:
        raise ImageError(f"{path}: not a readable image (corrupt, truncated or unknown format)")
    return array


def read_image(path):
    """Reads an image file as uint8 RGB of shape (H, W, 3)."""
    path = os.fspath(path)
    if path.lower().endswith((".jpg", ".jpeg")):
        # JPEGs are 8-bit without alpha; IMREAD_COLOR applies their EXIF orientation.
        array = _read_raw(path, cv2.IMREAD_COLOR)
    else:
        # UNCHANGED keeps 16-bit depth and alpha so they are converted deliberately.
        array = _read_raw(path, cv2.IMREAD_UNCHANGED)
    if array.dtype == np.uint16:
        array = (array // 257).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ImageError(f"{path}: unsupported sample type {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    if array.shape[2] == 4:
        array = array[:, :, :3]
    return np.ascontiguousarray(array[:, :, ::-1])


def read_mask(path):
    """Reads a label mask as a 2-D uint8 array of the stored values.

    Raises:
        ImageError: unreadable file, 16-bit samples, or several channels (a colour mask).
    """
    array = _read_raw(path, cv2.IMREAD_UNCHANGED)
    path = os.fspath(path)
    if array.dtype != np.uint8:
        raise ImageError(f"{path}: mask has {array.dtype} samples, expected 8-bit class indices")
    if array.ndim == 3:
        channels = array[:, :, :3]
        if (channels == channels[:, :, :1]).all():
            return np.ascontiguousarray(channels[:, :, 0])
        raise ImageError(
            f"{path}: mask has {array.shape[2]} colour channels, expected a single-channel "
            "index mask (is this a colour visualisation of the labels?)"
        )
    return array


def read_palette_mask(path):
    """Reads a palette ("P" mode) PNG such as Pascal VOC's as its palette indices.

    OpenCV converts palette PNGs to colour, so Pillow reads the indices themselves.
    """
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageError(f"{path}: file not found")
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise ImageError(f"{path}: expected a palette or grayscale PNG, found mode {image.mode}")
            return np.array(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ImageError(f"{path}: not a readable image ({error})") from None


def write_png(path, array):
    """Writes a uint8 array (H, W) or RGB (H, W, 3) as a PNG, atomically."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"write_png expects uint8. Received: dtype={array.dtype}")
    if array.ndim == 3:
        array = array[:, :, ::-1]  # RGB -> BGR for OpenCV
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:
        raise ImageError(f"{os.fspath(path)}: could not encode PNG")
    with atomic_path(path) as temporary:
        encoded.tofile(temporary)
