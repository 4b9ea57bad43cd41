"""Reading images and label masks with one clear error per bad file, and writing PNGs.

Every image and mask kseg reads (predict, heatmap, export calibration, training,
evaluation, `kseg evaluate --predictions`, `kseg data verify` and `stats`) goes through
this module, so one set of rules holds for every verb:

- Files are read with `kseg.files.read_bytes`: a FIFO, socket, device (also behind a
  symbolic link) or a folder named like an image is refused by name, never read or waited
  on.
- The image size is read from the file's header before anything is decoded; an image
  claiming more than `MAX_IMAGE_PIXELS` pixels is refused (a few bytes of PNG or JPEG can
  claim 100000x100000 pixels, 30 GB once decoded). Decoder failures (including OpenCV's
  internal errors) become one `ImageError` naming the file.
- Pillow (`Image.open` reads headers only) gives the size of TIFF, JPEG 2000, AVIF and any
  other format it knows, and parses every EXIF block. PNG, JPEG, WebP, BMP and GIF headers
  are read here, by fixed fields or a bounded walk, where Pillow would be unsafe or silent
  (each reader says why): a size Pillow cannot read is a size left unchecked.
- EXIF orientation is applied, always, by kseg itself: the tag is read from the bytes
  (JPEG APP1, PNG eXIf, WebP EXIF, TIFF IFD0), the pixels are decoded as stored
  (`cv2.IMREAD_UNCHANGED`, which never rotates) and turned with numpy. So an image looks
  the same to predict as to training and evaluation, whatever OpenCV does per format.
  A mask that carries an orientation tag (rare) is turned by its own tag. (TIFF only:
  libtiff inside OpenCV turns the pixels itself, so kseg does not turn them twice.)

Images come back as uint8 RGB (H, W, 3) from `read_image`, whatever is on disk: grayscale
is repeated to three channels, an alpha channel is dropped, 16-bit samples are scaled to 8
bits. Masks come back from `read_mask` as 2-D uint8 arrays of the *stored* values: palette
PNGs give their palette indices and 1-, 2- and 4-bit grayscale PNGs their stored indices
(not OpenCV's scaling to 0..255). A mask must be a lossless single-channel 8-bit file:
16-bit and colour masks are reported, and lossy files (JPEG content whatever the
extension, lossy WebP, JPEG 2000, AVIF) are refused, since their compression changes
class values along every edge.
"""

import io
import os
import re
import struct
import warnings
import zlib

import cv2
import numpy as np
from PIL import Image, PngImagePlugin

from kseg.errors import KsegError
from kseg.files import IMAGE_FILE_LIMIT, read_bytes
from kseg.outputs import write_bytes


def quiet_decoder_warnings():
    """Keeps OpenCV's decoder warnings (e.g. "PNG input buffer is incomplete") off the
    terminal: kseg reports each bad file itself, with its name. For the command line."""
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
# The most pixels kseg decodes from one file: enough for large tiled aerial images
# (16384x16384), while one decoded image stays below 2 GiB even at 16-bit RGBA.
MAX_IMAGE_PIXELS = 1 << 28
ORIENTATION_TAG = 0x0112
LOSSY_MASK_HINT = "store masks as PNG: JPEG-style compression changes class values along every edge"
# What each EXIF orientation asks for (the stored pixels -> the displayed image).
ORIENTATIONS = {
    2: "mirrored left-right", 3: "rotated 180 degrees", 4: "mirrored top-bottom",
    5: "transposed", 6: "rotated 90 degrees clockwise", 7: "transversed",
    8: "rotated 90 degrees counter-clockwise",
}
# The same, done to stored pixels (H, W[, C]) to give the image the orientation asks to show.
_TURNS = {
    2: lambda array: array[:, ::-1],
    3: lambda array: array[::-1, ::-1],
    4: lambda array: array[::-1],
    5: lambda array: array.swapaxes(0, 1),
    6: lambda array: np.rot90(array, -1),
    7: lambda array: array[::-1, ::-1].swapaxes(0, 1),
    8: lambda array: np.rot90(array, 1),
}

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_PALETTE_COLOUR_TYPE = 3
PNG_GRAY_COLOUR_TYPE = 0
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
J2K_SIGNATURE = b"\xff\x4f\xff\x51"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class ImageError(KsegError):
    """An image or mask file that cannot be used; the message names the file.

    Its `kind` says why, in the words `kseg data verify` counts: "unreadable", "too many
    pixels", "lossy format", "colour mask", "not 8-bit", "16-bit", "RGBA", "grayscale",
    or "unusable" for anything else.
    """


def list_image_files(folder, recursive=True):
    """Returns the image files (by extension) in `folder` (and its subfolders), sorted.

    Hidden files and subfolders are left out: among them the temporary files and folders
    of an interrupted write (a killed `kseg data synthetic` leaves `.NAME.XXXXXXXX.tmp/`).
    Entries that are not regular files (a FIFO or socket named like an image, and without
    `recursive` a folder named like one) are listed too: reading them is refused with a
    message naming them, so they are reported, not silently dropped, and never waited on.

    Args:
        folder: str. Where to look.
        recursive: bool. Also list the subfolders (predict, export calibration); dataset
            adapters list one folder of a split only.
    """
    found = []
    walk = os.walk(folder, onerror=_unreadable) if recursive else [(folder, [], os.listdir(folder))]
    for root, folders, names in walk:
        folders[:] = [name for name in folders if not name.startswith(".")]  # not walked into
        found += [os.path.join(root, name) for name in names
                  if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")]  # fmt: skip
    return sorted(found)


def _unreadable(error):
    """A folder that cannot be listed is named, not passed over as if it held no images."""
    raise KsegError(f"{error.filename}: folder cannot be read ({error.strerror})")


# -- headers ---------------------------------------------------------------------------


class ImageHeader:
    """What a file's header says, read without decoding the pixels.

    Attributes:
        format: str or None. "png", "jpeg", "webp", "bmp", "gif", "tiff", "jpeg2000",
            "avif", or None when not recognised here (OpenCV may still decode it).
        width, height: int or None. The claimed size.
        pixels: int or None. width * height, or the count Pillow named when it refused
            the size itself (its own limit is lower than kseg's).
        bit_depth, colour_type: int or None. From a PNG's IHDR.
        lossy: str or None. The lossy format's name ("JPEG", "lossy WebP", ...).
        orientation: int. The EXIF orientation, 1 (none) to 8.
    """

    def __init__(self, format=None, width=None, height=None, bit_depth=None, colour_type=None,
                 lossy=None, orientation=1):
        self.format = format
        self.width = width
        self.height = height
        self.pixels = width * height if width is not None and height is not None else None
        self.bit_depth = bit_depth
        self.colour_type = colour_type
        self.lossy = lossy
        self.orientation = orientation

    @property
    def swaps_axes(self):
        """bool. Whether the orientation turns the image by 90 degrees (W and H swap)."""
        return self.orientation in (5, 6, 7, 8)


def _jpeg_segments(data):
    """Yields (marker, payload) of a JPEG's header segments, up to the scan (by hand:
    Pillow walks padding byte by byte in Python, minutes for a hostile 2 GiB file)."""
    position = 2
    end = len(data)
    for _ in range(1 << 16):  # a real header has a few dozen segments; never loop for long
        if position + 4 > end or data[position] != 0xFF:
            return
        marker = data[position + 1]
        if marker == 0xFF:  # fill bytes: skip the whole run at once (a run of 64 ends the walk)
            window = data[position: position + 64]
            run = len(window) - len(window.lstrip(b"\xff"))
            if run >= 64:
                return
            position += run - 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            position += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan
            return
        length = struct.unpack_from(">H", data, position + 2)[0]
        if length < 2:
            return
        yield marker, data[position + 4: position + 2 + length]
        position += 2 + length


def _jpeg_header(data):
    exif = width = height = None
    for marker, payload in _jpeg_segments(data):
        if marker == 0xE1 and exif is None and payload.startswith(b"Exif\x00\x00"):
            exif = payload[6:]
        elif marker in _JPEG_SOF and len(payload) >= 5:
            height, width = struct.unpack_from(">HH", payload, 1)
            break
    return ImageHeader("jpeg", width, height, lossy="JPEG", orientation=_orientation_from_exif(exif))


def _png_exif(data):
    """The payload of a PNG's eXIf chunk (found by its CRC, before or after IDAT; by hand:
    Pillow reaches one after IDAT only by decoding the pixels)."""
    start = 8
    for _ in range(16):
        index = data.find(b"eXIf", start)
        if index < 12:
            return None
        length = struct.unpack_from(">I", data, index - 4)[0]
        payload = data[index + 4: index + 4 + length]
        crc = data[index + 4 + length: index + 8 + length]
        expected = zlib.crc32(data[index: index + 4 + length])
        if len(payload) == length and len(crc) == 4 and struct.unpack(">I", crc)[0] == expected:
            return payload
        start = index + 4
    return None


def _png_header(data):
    # IHDR by hand: Pillow gives neither bit depth nor colour type; the size is in the same bytes.
    if len(data) < 26 or data[12:16] != b"IHDR":
        return ImageHeader("png")
    width, height = struct.unpack_from(">II", data, 16)
    return ImageHeader("png", width, height, bit_depth=data[24], colour_type=data[25],
                       orientation=_orientation_from_exif(_png_exif(data)))


def _webp_header(data):
    # By hand: Pillow hides whether a frame is lossy, and gives libwebp the file before the size.
    width = height = exif = None
    position = 12
    lossy = False
    for _ in range(100000):
        if position + 8 > len(data):
            break
        fourcc = data[position: position + 4]
        size = struct.unpack_from("<I", data, position + 4)[0]
        payload = data[position + 8: position + 8 + size]
        if fourcc == b"VP8X" and len(payload) >= 10:
            width = 1 + int.from_bytes(payload[4:7], "little")
            height = 1 + int.from_bytes(payload[7:10], "little")
        elif fourcc == b"VP8 ":
            lossy = True
            if width is None and len(payload) >= 10 and payload[3:6] == b"\x9d\x01\x2a":
                width = struct.unpack_from("<H", payload, 6)[0] & 0x3FFF
                height = struct.unpack_from("<H", payload, 8)[0] & 0x3FFF
        elif fourcc == b"VP8L":
            if width is None and len(payload) >= 5 and payload[0] == 0x2F:
                bits = struct.unpack_from("<I", payload, 1)[0]
                width = (bits & 0x3FFF) + 1
                height = ((bits >> 14) & 0x3FFF) + 1
        elif fourcc == b"ANMF" and b"VP8 " in payload[16:64]:
            lossy = True
        elif fourcc == b"EXIF" and exif is None:
            exif = payload[6:] if payload.startswith(b"Exif\x00\x00") else payload
        position += 8 + size + (size & 1)
    return ImageHeader("webp", width, height, lossy="WebP (lossy VP8)" if lossy else None,
                       orientation=_orientation_from_exif(exif))


def _bmp_header(data):
    # By hand: Pillow refuses info-header sizes it does not list (48 bytes, say) that OpenCV decodes.
    if len(data) < 26:
        return ImageHeader("bmp")
    info_size = struct.unpack_from("<I", data, 14)[0]
    # An OS/2 header (12 bytes) stores the size as two unsigned 16-bit fields, the others as signed 32-bit.
    width, height = struct.unpack_from("<HH" if info_size == 12 else "<ii", data, 18)
    return ImageHeader("bmp", abs(width), abs(height))


def _pillow_header(data, format=None, lossy=None):
    """The size Pillow reads from the header (TIFF, JPEG 2000, AVIF and the rest)."""
    header = ImageHeader(format, lossy=lossy)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                return ImageHeader(format or (image.format or "").lower() or None, *image.size, lossy=lossy)
    except Image.DecompressionBombError as error:
        # Pillow gives the claimed size only in its message.
        match = re.search(r"\((\d+) pixels\)", str(error))
        header.pixels = int(match.group(1)) if match else 2 * (Image.MAX_IMAGE_PIXELS or MAX_IMAGE_PIXELS)
    except Exception:  # noqa: BLE001 - not a format Pillow knows; OpenCV decides
        pass
    return header


def probe(data):
    """Reads format, claimed size, PNG depth, lossiness and EXIF orientation from bytes.

    Nothing is decoded: this is how a decompression bomb is refused before it expands.

    Args:
        data: bytes. The whole file.

    Returns:
        ImageHeader.
    """
    data = memoryview(data).tobytes() if not isinstance(data, bytes) else data
    try:
        if data.startswith(PNG_SIGNATURE):
            return _png_header(data)
        if data.startswith(b"\xff\xd8\xff"):
            return _jpeg_header(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_header(data)
        if data.startswith(b"BM"):
            return _bmp_header(data)
        if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:  # Pillow wants a first frame too
            width, height = struct.unpack_from("<HH", data, 6)
            return ImageHeader("gif", width, height)
        if data.startswith(JP2_SIGNATURE) or data.startswith(J2K_SIGNATURE):
            return _pillow_header(data, "jpeg2000", lossy="JPEG 2000")
        if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis", b"heic", b"heix", b"mif1"):
            return _pillow_header(data, "avif", lossy="AVIF/HEIF")  # HEIF: Pillow cannot open it, no size
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            header = _pillow_header(data, "tiff")
            header.orientation = _orientation_from_exif(data)
            return header
    except struct.error:  # a header cut short: the decoder reports the file
        return ImageHeader()
    return _pillow_header(data)


def _orientation_from_exif(exif):
    """The orientation tag (1..8) of an EXIF/TIFF block; 1 when absent or malformed."""
    if not exif:
        return 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about damaged EXIF blocks
            tags = Image.Exif()
            tags.load(exif)
            value = tags.get(ORIENTATION_TAG)
    except Exception:  # noqa: BLE001 - a damaged EXIF block does not make the image unusable
        return 1
    if isinstance(value, (tuple, list)) and value:
        value = value[0]
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _orient(array, header):
    """Applies the header's orientation to pixels decoded as stored.

    TIFF is the exception: libtiff, inside OpenCV's decoder, already turns TIFF images by
    their orientation tag (even with IMREAD_UNCHANGED), so they are not turned twice.
    """
    turn = None if header.format == "tiff" else _TURNS.get(header.orientation)
    return array if turn is None else np.ascontiguousarray(turn(array))


# -- reading ---------------------------------------------------------------------------


def read_file(path, what="image file"):
    """The bytes of an image or mask file (regular files only, size-bounded)."""
    try:
        return read_bytes(path, what, IMAGE_FILE_LIMIT)
    except ValueError:  # e.g. a NUL byte in the path
        raise ImageError(f"{os.fspath(path)!a}: not a usable file name") from None


def check_pixels(header, path, what="image"):
    """Refuses an image whose header claims more than `MAX_IMAGE_PIXELS` pixels."""
    if header.pixels is None or header.pixels <= MAX_IMAGE_PIXELS:
        return
    if header.width is not None and header.height is not None:
        claim = f"{header.width}x{header.height} pixels ({header.pixels / 1e6:.0f} Mpx)"
    else:
        claim = f"at least {header.pixels / 1e6:.0f} Mpx"
    raise ImageError(
        f"{path}: {what} claims {claim}, more than kseg's limit of {MAX_IMAGE_PIXELS / 1e6:.0f} Mpx "
        "(a damaged header or a decompression bomb; split real images into tiles)",
        kind="too many pixels",
    )


def _decode(data, path):
    if not data:
        raise ImageError(f"{path}: empty file", kind="unreadable")
    try:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        array = None
    except MemoryError:
        raise ImageError(f"{path}: not enough memory to decode the image") from None
    if array is None or array.size == 0:
        raise ImageError(f"{path}: not a readable image (corrupt, truncated or unknown format)",
                         kind="unreadable")
    return array


def load(path, what="image", data=None):
    """Reads, checks and decodes a file as stored, then applies its EXIF orientation.

    Args:
        path: str. The file (named in every message).
        what: str. "image" or "mask", for messages.
        data: bytes or None. The file's content when already read (read once, e.g. to
            hash it too); read from `path` otherwise.

    Returns:
        tuple. (array as OpenCV decodes it with IMREAD_UNCHANGED: BGR(A) channel order,
        any sample type; ImageHeader).
    """
    path = os.fspath(path)
    if data is None:
        data = read_file(path, f"{what} file")
    header = probe(data)
    check_pixels(header, path, what)
    array = _decode(data, path)
    return _orient(array, header), header


def read_image(path, data=None):
    """Reads an image file as uint8 RGB of shape (H, W, 3), EXIF orientation applied."""
    path = os.fspath(path)
    array, _ = load(path, "image", data)
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
    elif array.shape[2] != 3:
        raise ImageError(f"{path}: image has {array.shape[2]} channels, expected 1, 3 or 4")
    return np.ascontiguousarray(array[:, :, ::-1])


def _palette_indices(data, path):
    """A palette PNG's indices (OpenCV would turn them into colours)."""
    try:
        # The plugin class itself: Pillow's own pixel limit (lower than kseg's, already
        # checked) is applied by Image.open only.
        with PngImagePlugin.PngImageFile(io.BytesIO(data)) as image:
            if image.mode not in ("P", "L"):
                raise ImageError(f"{path}: expected a palette or grayscale PNG, found mode {image.mode}")
            return np.array(image, dtype=np.uint8)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(f"{path}: not enough memory to decode the mask") from None
    except Exception:  # noqa: BLE001 - Pillow raises many types for damaged files
        raise ImageError(f"{path}: not a readable image (corrupt, truncated or unknown format)",
                         kind="unreadable") from None


def load_mask(path, data=None):
    """A mask's stored values as decoded (2-D, or (H, W, C) BGR(A) for colour files).

    Palette PNGs give indices, 1/2/4-bit grayscale PNGs their stored values, lossy files
    are refused, the mask's own EXIF orientation is applied.

    Returns:
        tuple. (array, ImageHeader).
    """
    path = os.fspath(path)
    if data is None:
        data = read_file(path, "mask file")
    header = probe(data)
    if header.lossy:
        raise ImageError(
            f"{path}: mask is stored as {header.lossy}, a lossy format (whatever its file name); "
            f"{LOSSY_MASK_HINT}",
            kind="lossy format",
        )
    check_pixels(header, path, "mask")
    if header.format == "png" and header.colour_type == PNG_PALETTE_COLOUR_TYPE:
        array = _palette_indices(data, path)
    else:
        array = _decode(data, path)
        if header.format == "png" and header.colour_type == PNG_GRAY_COLOUR_TYPE and header.bit_depth in (1, 2, 4):
            # libpng scales 1/2/4-bit gray to 0..255 (index 1 of a 1-bit mask becomes
            # 255); the stored value is exactly v / (255 / (2**depth - 1)).
            array = array // (255 // (2 ** header.bit_depth - 1))
    return _orient(array, header), header


def equal_channels(array):
    """The first channel of an (H, W, C) array whose colour channels are all equal (a gray
    image stored as colour), else None."""
    channels = array[:, :, :3]
    if (channels == channels[:, :, :1]).all():
        return np.ascontiguousarray(channels[:, :, 0])
    return None


def read_mask(path, data=None):
    """Reads a label mask as a 2-D uint8 array of the stored values.

    Raises:
        ImageError: unreadable or lossy file, 16-bit samples, or several channels (a
            colour mask).
    """
    array, _ = load_mask(path, data)
    path = os.fspath(path)
    if array.dtype != np.uint8:
        raise ImageError(f"{path}: mask has {array.dtype} samples, expected 8-bit class indices",
                         kind="not 8-bit")
    if array.ndim == 3:
        gray = equal_channels(array)
        if gray is not None:
            return gray
        raise ImageError(
            f"{path}: mask has {array.shape[2]} colour channels, expected a single-channel "
            "index mask (is this a colour visualisation of the labels?)",
            kind="colour mask",
        )
    return array


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
    write_bytes(path, encoded.tobytes())
