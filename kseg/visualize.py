"""Colours for label maps and score maps: palettes, colour maps, overlays.

A run's classes.json names the palette its dataset uses (Cityscapes, Pascal VOC, ...);
without one, `kseg.labels.default_palette` gives the Pascal VOC colour scheme, which has distinct
colours for any number of classes up to 256 and black for class 0.
All images here are uint8 RGB arrays of shape (H, W, 3).
"""

import cv2
import numpy as np

from kseg.errors import KsegError
from kseg.labels import IGNORE_INDEX, default_palette

IGNORE_COLOR = (0, 0, 0)


def palette_from_classes(classes, num_classes):
    """Returns a (num_classes, 3) palette from a run's classes.json, else the default one.

    Classes beyond those listed in classes.json get default-palette colours.

    Args:
        classes: dict or None. What `kseg.runs.read_classes` returned.
        num_classes: int. Number of classes the model predicts.
    """
    if not 1 <= num_classes <= 256:
        raise KsegError(f"cannot colour {num_classes} classes; 1 to 256 are supported")
    palette = np.asarray(default_palette(num_classes), dtype=np.uint8)
    listed = (classes or {}).get("palette") or []
    try:
        listed = np.asarray(listed, dtype=np.int64).reshape(-1, 3)
    except ValueError:
        raise KsegError(
            "classes.json: 'palette' must be a list of [R, G, B] triples"
        ) from None
    if listed.size and (listed.min() < 0 or listed.max() > 255):
        raise KsegError("classes.json: palette colours must be in 0..255")
    count = min(len(listed), num_classes)
    palette[:count] = listed[:count]
    return palette


def class_names_from_classes(classes, num_classes):
    """Class names from a run's classes.json; classes it does not name are "class N"."""
    listed = list((classes or {}).get("class_names") or [])[:num_classes]
    return listed + [f"class {index}" for index in range(len(listed), num_classes)]


def colorize(labels, palette):
    """Maps a label map to colours; ignored pixels (`IGNORE_INDEX`, 255 as everywhere in
    kseg) and labels beyond the palette are `IGNORE_COLOR`.

    Args:
        labels: integer array (H, W). Class indices.
        palette: uint8 array (N, 3). Colour of each class.

    Returns:
        uint8 array (H, W, 3).
    """
    table = np.full((max(256, len(palette)), 3), IGNORE_COLOR, np.uint8)
    table[: len(palette)] = palette
    table[IGNORE_INDEX] = IGNORE_COLOR
    return table[np.clip(np.asarray(labels), 0, len(table) - 1)]


def overlay(image, colors, alpha=0.5):
    """Blends a colour map over an image: (1 - alpha) * image + alpha * colors.

    Args:
        image: uint8 array (H, W, 3).
        colors: uint8 array (H, W, 3), e.g. from `colorize` or `score_colors`.
        alpha: float. Weight of the colours, in [0, 1].
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"`alpha` must be in [0, 1]. Received: alpha={alpha}")
    if image.shape != colors.shape:
        raise ValueError(
            f"image and colours differ in shape. Received: {image.shape} and {colors.shape}"
        )
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colors.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def score_colors(scores, low=None, high=None):
    """Colours a score map with the "jet" colour map (blue low, red high).

    Args:
        scores: float array (H, W).
        low: float or None. Score drawn blue; the minimum of `scores` when None.
        high: float or None. Score drawn red; the maximum of `scores` when None.

    Returns:
        uint8 RGB array (H, W, 3).
    """
    scores = np.asarray(scores, dtype=np.float32)
    low = float(scores.min()) if low is None else float(low)
    high = float(scores.max()) if high is None else float(high)
    scaled = (scores - low) / (high - low) if high > low else np.zeros_like(scores)
    levels = np.clip(np.rint(scaled * 255), 0, 255).astype(np.uint8)
    return cv2.applyColorMap(levels, cv2.COLORMAP_JET)[:, :, ::-1].copy()  # BGR -> RGB


def drawable_text(text):
    """`text` as OpenCV and matplotlib can draw it: a lone surrogate (a "\\udcff" escape in
    classes.json or classes.yaml, a name not in UTF-8; OpenCV crashes on it, matplotlib
    fails) is shown as \\udcXX, as on a terminal."""
    return text.encode("utf8", "backslashreplace").decode("utf8")


LEGEND_FONT = cv2.FONT_HERSHEY_SIMPLEX
LEGEND_SCALE = 0.4
LEGEND_ROW = 18  # pixels per legend row
LEGEND_SWATCH = 12


def legend(class_names, palette, width=None, classes=None):
    """Draws a class legend: a colour swatch and the name of each class, in rows.

    Args:
        class_names: list of str. Names by class index.
        palette: uint8 array (N, 3). Colour of each class.
        width: int or None. Width of the legend in pixels: entries flow into as many
            columns as fit (at least one). None: one column, as wide as the longest entry.
        classes: iterable of int or None. The classes to list (e.g. those present in a
            prediction), in index order; None lists every class.

    Returns:
        uint8 RGB array (rows * LEGEND_ROW + padding, width, 3), white background.
    """
    palette = np.asarray(palette, dtype=np.uint8)
    indices = range(len(class_names)) if classes is None else sorted({int(c) for c in classes})
    indices = [index for index in indices if 0 <= index < len(class_names)]
    entries = [(index, drawable_text(f"{index} {class_names[index]}")) for index in indices]
    pad = 6
    text_widths = [cv2.getTextSize(text, LEGEND_FONT, LEGEND_SCALE, 1)[0][0] for _, text in entries]
    entry_width = LEGEND_SWATCH + 6 + max(text_widths or [0]) + 12
    if width is None:
        width = entry_width + 2 * pad
    columns = max(1, (width - 2 * pad) // entry_width)
    rows = max(1, -(-len(entries) // columns))
    sheet = np.full((rows * LEGEND_ROW + 2 * pad, width, 3), 255, np.uint8)
    for slot, (index, text) in enumerate(entries):
        row, column = divmod(slot, columns)
        x, y = pad + column * entry_width, pad + row * LEGEND_ROW
        colour = tuple(int(c) for c in palette[index]) if index < len(palette) else IGNORE_COLOR
        top = y + (LEGEND_ROW - LEGEND_SWATCH) // 2
        cv2.rectangle(sheet, (x, top), (x + LEGEND_SWATCH - 1, top + LEGEND_SWATCH - 1), colour, -1)
        cv2.rectangle(sheet, (x, top), (x + LEGEND_SWATCH - 1, top + LEGEND_SWATCH - 1), (96, 96, 96), 1)
        baseline = y + LEGEND_ROW - 5
        cv2.putText(sheet, text, (x + LEGEND_SWATCH + 6, baseline), LEGEND_FONT, LEGEND_SCALE,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return sheet


def contact_sheet(rows, legend_image=None, gap=4):
    """Tiles rows of equally tall RGB images into one sheet, under the column titles
    "image", "ground truth" and "prediction", with an optional legend below.

    Args:
        rows: list of lists of uint8 RGB arrays; every image of a row has the same height,
            and every row the same number of images with the same widths.
        legend_image: uint8 RGB array or None. Drawn under the last row (e.g. `legend`).
        gap: int. White pixels between images.
    """
    if not rows:
        raise ValueError("`rows` must hold at least one row of images")
    widths = [image.shape[1] for image in rows[0]]
    if any([image.shape[1] for image in row] != widths for row in rows):
        raise ValueError("every row must hold images of the same widths")
    width = sum(widths) + gap * (len(widths) + 1)
    starts = [gap * (column + 1) + sum(widths[:column]) for column in range(len(widths))]
    title_height = LEGEND_ROW + gap
    parts = [np.full((title_height, width, 3), 255, np.uint8)]
    for title, x in zip(("image", "ground truth", "prediction"), starts):
        cv2.putText(parts[0], title, (x, title_height - 6), LEGEND_FONT, LEGEND_SCALE + 0.05,
                    (0, 0, 0), 1, cv2.LINE_AA)
    for row in rows:
        band = np.full((max(image.shape[0] for image in row) + gap, width, 3), 255, np.uint8)
        for image, x in zip(row, starts):
            band[: image.shape[0], x : x + image.shape[1]] = image
        parts.append(band)
    if legend_image is not None:
        strip = np.full((legend_image.shape[0], width, 3), 255, np.uint8)
        strip[:, : legend_image.shape[1]] = legend_image[:, :width]  # cropped to the sheet
        parts.append(strip)
    return np.concatenate(parts, axis=0)
