"""Inference on images of any size: whole-image, tiled sliding-window, test-time augmentation.

Models take uint8 RGB images of any size and return float32 logits of that size, so
whole-image prediction is one call. For images too large for memory, `tiled_logits`
runs the model on overlapping tiles and blends their logits; it works strip by strip, so
apart from the image and its label map, memory grows with the tile size and the image
width, never with the image height.

Blending the overlap between tiles (`blend`):

- "center" (default): each pixel takes the logits of the tile(s) in which it lies at
  least `overlap // 2` pixels from every edge that is not an image border. For a model
  whose receptive field reaches at most `overlap // 2` pixels from a pixel (and that
  treats every position alike), this equals whole-image inference exactly. An FCN on
  VGG16 sees hundreds of pixels, so for it the result is close to, not equal to,
  whole-image inference; a larger overlap brings it closer.
- "mean": every tile counts equally wherever it covers a pixel (as in mmsegmentation's
  sliding-window inference); tile edges, where context is missing, are averaged in.

Test-time augmentation (`TTA`) averages the logits of a horizontally flipped copy and/or
of rescaled copies (resized back to the image size) with those of the image itself.
"""

import dataclasses

import cv2
import numpy as np

from kseg.choices import BLENDS
from kseg.errors import KsegError
from kseg.validation import check_number

MAX_TTA_SCALE = 8.0  # an image scaled by more holds 64x the pixels
MAX_TTA_SCALES = 16


class NonFiniteLogitsError(KsegError):
    """The model returned NaN or inf logits: the model is at fault, not one image."""


@dataclasses.dataclass(frozen=True)
class TTA:
    """Test-time augmentation: which views of an image have their logits averaged.

    Args:
        flip: bool. Also predict the horizontally flipped image (flipped back).
        scales: tuple of float. Scale factors the image is resized by; 1.0 is the image.
    """

    flip: bool = False
    scales: tuple = (1.0,)

    def __post_init__(self):
        if not isinstance(self.flip, bool):
            raise KsegError(f"TTA flip must be True or False; got {self.flip!r}")
        if not isinstance(self.scales, (tuple, list)) or not self.scales:
            raise KsegError(f"TTA scales must be a list of positive numbers; got {self.scales!r}")
        if len(self.scales) > MAX_TTA_SCALES:
            raise KsegError(
                f"--tta scales: {len(self.scales)} scales, at most {MAX_TTA_SCALES} are accepted"
            )
        scales = tuple(
            check_number(scale, "--tta scales", 0, MAX_TTA_SCALE, min_open=True)
            for scale in self.scales
        )
        object.__setattr__(self, "scales", scales)

    @property
    def views(self):
        """Number of model runs per image."""
        return len(self.scales) * (2 if self.flip else 1)


def parse_tta(values):
    """Parses `--tta` values such as "flip", "scales=0.75,1,1.25" or "none" into a `TTA`.

    Args:
        values: iterable of str. Each may hold several items joined by "+" or ";".
    """
    flip, scales = False, (1.0,)
    for value in values or ():
        for item in value.replace(";", "+").split("+"):
            item = item.strip().lower()
            if item in ("", "none"):
                continue
            if item == "flip":
                flip = True
            elif item.startswith("scales="):
                texts = tuple(text for text in item[len("scales="):].split(",") if text.strip())
                if not texts:
                    raise KsegError(f"--tta {value!r}: scales= needs numbers, e.g. scales=0.75,1,1.25")
                scales = TTA(scales=texts).scales  # checked as it is read: a later --tta does not hide it
            else:
                raise KsegError(
                    f"--tta {value!r}: unknown augmentation {item!r}; use flip, "
                    "scales=0.75,1,1.25 or none"
                )
    return TTA(flip=flip, scales=scales)


def run_model(model, batch):
    """Runs `model` on a batch (N, H, W, 3) and returns float32 NumPy logits.

    keras' compiled predict step is used (traced again for new image sizes until it
    generalises): about 5% faster than calling the model eagerly at 512x1024.
    """
    logits = model.predict_on_batch(np.ascontiguousarray(batch))
    return np.asarray(logits, dtype=np.float32)


def resize(array, size):
    """Resizes an (H, W, C) array bilinearly to `size` = (height, width), any number of channels."""
    height, width = size
    if array.shape[:2] == (height, width):
        return array
    # OpenCV resizes at most 512 channels at once (bilinear by default), and returns one channel as (H, W).
    pieces = [cv2.resize(array[:, :, start:start + 512], (width, height)) for start in range(0, array.shape[2], 512)]
    return np.concatenate([piece.reshape(height, width, -1) for piece in pieces], axis=2)


def batch_logits(model, images, tta=TTA()):
    """Logits of same-sized images (N, H, W, 3), averaged over the TTA views.

    The model sees one image at a time: on a CPU one image (or tile) is already enough work
    to keep every core busy, and each image more in a batch holds its activations too (about
    100 MB per 512x512 tile for VGG16).

    Args:
        model: keras.Model. RGB images -> logits of the same height and width.
        images: array (N, H, W, 3). uint8 RGB.
        tta: TTA. Which views to average.

    Returns:
        float32 array (N, H, W, num_classes).
    """
    images = np.asarray(images)
    height, width = images.shape[1:3]
    total = None
    for scale in tta.scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        for index, image in enumerate(images):
            scaled = resize(image, size)
            for view, flipped in [(scaled, False)] + ([(scaled[:, ::-1], True)] if tta.flip else []):
                logits = run_model(model, view[None])[0]
                logits = resize(logits[:, ::-1] if flipped else logits, (height, width))
                if total is None:
                    total = np.zeros((len(images),) + logits.shape, dtype=np.float32)
                total[index] += logits
    return total / tta.views


def predict_logits(model, image, tta=TTA()):
    """Whole-image logits (H, W, num_classes) of one uint8 RGB image (H, W, 3)."""
    return batch_logits(model, np.asarray(image)[None], tta)[0]


def tile_starts(length, tile, overlap):
    """Start offsets of tiles of size `tile` covering [0, length) with at least `overlap`.

    The last tile ends at the border (it may overlap its neighbour more than `overlap`).
    """
    if tile >= length:
        return [0]
    return [*range(0, length - tile, tile - overlap), length - tile]


def tile_window(start, tile, length, overlap, blend):
    """1-D weights of one tile's pixels for `blend` (see the module docstring)."""
    weights = np.ones(tile, dtype=np.float32)
    if blend == "center":
        if start > 0:
            weights[: overlap // 2] = 0
        if start + tile < length:
            weights[tile - (overlap - overlap // 2):] = 0
    return weights


def validate_tiling(tile, overlap, blend):
    if blend not in BLENDS:
        raise KsegError(f"unknown blend {blend!r}; use one of {', '.join(BLENDS)}")
    if overlap < 0 or overlap >= min(tile):
        raise KsegError(
            f"--overlap {overlap}: must be at least 0 and smaller than the tile "
            f"({tile[0]}x{tile[1]})"
        )


def iter_tiled_logits(model, image, tile, overlap=64, tta=TTA(), blend="center"):
    """Sliding-window logits of one image, yielded as finished horizontal strips.

    Args:
        model: keras.Model. RGB images -> logits of the same height and width.
        image: uint8 array (H, W, 3).
        tile: tuple (height, width). Tile size; clipped to the image size.
        overlap: int. Pixels shared by neighbouring tiles, in both directions.
        tta: TTA. Test-time augmentation applied to each tile.
        blend: str. "center" or "mean" (see the module docstring).

    Yields:
        (top, logits) with logits of shape (rows, W, num_classes) for image rows
        top .. top + rows - 1, from the top of the image to the bottom.
    """
    validate_tiling(tile, overlap, blend)
    image = np.asarray(image)
    height, width = image.shape[:2]
    tile_h, tile_w = min(tile[0], height), min(tile[1], width)
    rows = tile_starts(height, tile_h, overlap)
    columns = tile_starts(width, tile_w, overlap)
    column_weights = [tile_window(x, tile_w, width, overlap, blend) for x in columns]

    sums = weights = None  # image rows from y on: what the tiles above left in them, then this row's
    for index, y in enumerate(rows):
        strip = image[y:y + tile_h]
        tiles = np.stack([strip[:, x:x + tile_w] for x in columns])
        logits = batch_logits(model, tiles, tta)  # one tile at a time
        if sums is None:
            sums = np.zeros((0, width, logits.shape[-1]), dtype=np.float32)
            weights = np.zeros((0, width), dtype=np.float32)
        # Grow the buffer down to the bottom of this row of tiles (tile starts only increase).
        grow = tile_h - len(sums)
        sums = np.concatenate([sums, np.zeros((grow,) + sums.shape[1:], np.float32)])
        weights = np.concatenate([weights, np.zeros((grow, width), np.float32)])
        row_weights = tile_window(y, tile_h, height, overlap, blend)
        for x, tile_logits, x_weights in zip(columns, logits, column_weights):
            window = row_weights[:, None] * x_weights[None, :]
            sums[:, x:x + tile_w] += tile_logits * window[:, :, None]
            weights[:, x:x + tile_w] += window
        # Rows above the next row of tiles receive nothing more: hand them out.
        done = (rows[index + 1] if index + 1 < len(rows) else height) - y
        if not (weights[:done] > 0).all():  # a bug in the windows, never the user's
            raise AssertionError("tiling left pixels without any logits")
        yield y, sums[:done] / weights[:done, :, None]
        sums, weights = sums[done:], weights[done:]


def tiled_logits(model, image, tile, overlap=64, tta=TTA(), blend="center"):
    """Sliding-window logits (H, W, num_classes) of one image. See `iter_tiled_logits`."""
    return np.concatenate([logits for _, logits in iter_tiled_logits(model, image, tile, overlap, tta, blend)])


def predict_labels(model, image, tile=None, overlap=64, tta=TTA(), blend="center"):
    """Class map (H, W) uint8 of one uint8 RGB image: whole-image, or tiled if `tile`.

    Raises `NonFiniteLogitsError` when any logit is NaN or inf: an arg-max over NaN picks
    class 0 everywhere, so a damaged model would write all-zero label maps that look like
    predictions.
    """
    if tile is None:
        strips = [(0, predict_logits(model, image, tta))]
    else:
        strips = iter_tiled_logits(model, image, tile, overlap, tta, blend)
    labels = []
    for _, logits in strips:
        if not np.isfinite(logits).all():
            raise NonFiniteLogitsError("the model's logits hold NaN or inf")
        if logits.shape[-1] > 256:
            raise KsegError(f"label maps hold at most 256 classes; the model has {logits.shape[-1]}")
        labels.append(np.argmax(logits, axis=-1).astype(np.uint8))
    return np.concatenate(labels, axis=0)
