"""What the label-map PNGs kseg writes say about their values.

A label map's pixel values mean nothing by themselves: 7 is "road" as a Cityscapes label
id and "traffic sign" as a train id. So every label map `kseg predict` writes carries two
PNG text chunks (tEXt, before the pixels; any PNG reader keeps or ignores them):

    kseg:labels   train-ids | cityscapes-ids
    kseg:classes  the number of classes of the model that wrote it

and `kseg evaluate --predictions` reads them instead of guessing from the values. Pillow
(which kseg's readers already use for palette masks) writes and reads the chunks; OpenCV
cannot write text chunks.
"""

import io

import numpy as np
from PIL import Image, PngImagePlugin

from kseg.errors import KsegError

LABELS_KEY = "kseg:labels"
CLASSES_KEY = "kseg:classes"
TRAIN_IDS = "train-ids"
CITYSCAPES_IDS = "cityscapes-ids"
LABEL_MAP_FORMATS = (TRAIN_IDS, CITYSCAPES_IDS)


def label_map_text(label_format, num_classes):
    """The text chunks of a label map: {keyword: value}.

    Args:
        label_format: str. One of LABEL_MAP_FORMATS.
        num_classes: int. Classes of the model that predicted it.
    """
    if label_format not in LABEL_MAP_FORMATS:
        raise KsegError(f"label map format must be one of {', '.join(LABEL_MAP_FORMATS)}. "
                        f"Received: {label_format!r}")  # fmt: skip
    return {LABELS_KEY: label_format, CLASSES_KEY: str(int(num_classes))}


def encode_png_with_text(array, text):
    """PNG bytes of a 2-D uint8 label map with tEXt chunks `text` ({keyword: value}).

    Compressed at zlib level 1, as OpenCV's default, since label maps are written per image.
    """
    array = np.ascontiguousarray(array, dtype=np.uint8)
    if array.ndim != 2:
        raise KsegError(f"a label map is 2-D; received shape {array.shape}")
    info = PngImagePlugin.PngInfo()
    for keyword, value in text.items():
        info.add_text(keyword, value)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG", pnginfo=info, compress_level=1)
    return buffer.getvalue()


def declared_format(data):
    """What a label map's bytes say it holds: (format, number of classes or None), or None
    when it carries no `kseg:labels` chunk (or is no PNG, or cannot be parsed: what it is
    is for the image reader to say). An unknown format is returned as written."""
    try:
        # The plugin class itself reads the text chunks up to the pixels, without decoding them.
        with PngImagePlugin.PngImageFile(io.BytesIO(data)) as image:
            text = {key: value for key, value in image.info.items() if isinstance(value, str)}
    except Exception:  # noqa: BLE001 - Pillow raises many types for damaged files
        return None
    if LABELS_KEY not in text:
        return None
    classes = text.get(CLASSES_KEY, "")
    return text[LABELS_KEY], int(classes) if classes.isascii() and classes.isdigit() and len(classes) < 6 else None
