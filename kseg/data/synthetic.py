"""A generated dataset for demos and smoke tests: shapes on textured backgrounds.

Each scene has a noisy, striped, shaded background and a few shapes: circle, rectangle,
triangle, ring and cross. The class is the *shape*: every shape takes a random colour from
one shared range (and the background uses the same range), so a model must learn shape and
context, not colour. Shapes may overlap; later ones are drawn on top, in mask and image.

Scenes depend only on the seed and their index, so a dataset is reproducible and its
train and val images never repeat. It is written in the `folder` layout:

    OUT/images/{train,val}/NNNNN.png  OUT/masks/{train,val}/NNNNN.png  OUT/classes.yaml
"""

import logging
import os

import cv2
import numpy as np

from kseg.data.folder import FolderSpec
from kseg.errors import KsegError
from kseg.files import brief
from kseg.outputs import Outputs, seal_folder, writing
from kseg.validation import check_number

logger = logging.getLogger("kseg")

SYNTHETIC_CLASSES = ("background", "circle", "rectangle", "triangle", "ring", "cross")
SYNTHETIC_PALETTE = (
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
)
DEFAULT_ROOT = os.path.join("data", "synthetic")
DEFAULT_SIZE = (96, 128)
DEFAULT_NUM_TRAIN = 300
DEFAULT_NUM_VAL = 60
VAL_INDEX_OFFSET = 1_000_000  # val scene i is scene VAL_INDEX_OFFSET + i: never a train scene
MIN_SIDE, MAX_SIDE = 32, 4096  # pixels per side of a scene
MAX_SCENES = VAL_INDEX_OFFSET  # per split: train indices must stay below the val offset
MAX_SEED = 2**63 - 1


def _random_colour(rng):
    return tuple(int(c) for c in rng.integers(30, 226, size=3))


def _background(rng, height, width):
    """A shaded, striped, noisy background with colours from the shapes' range."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    start = np.array(_random_colour(rng), np.float32)
    end = np.array(_random_colour(rng), np.float32)
    angle = rng.uniform(0, np.pi)
    ramp = (np.cos(angle) * xs / width + np.sin(angle) * ys / height)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    image = start + ramp[:, :, None] * (end - start)
    period = rng.uniform(6, 24)
    stripes = np.sin((xs * np.cos(angle + 1) + ys * np.sin(angle + 1)) * 2 * np.pi / period)
    image += stripes[:, :, None] * rng.uniform(5, 25)
    image += rng.normal(0, rng.uniform(4, 14), size=(height, width, 3))
    return image


def _draw_shape(rng, kind, canvas, height, width, value):
    """Draws one shape with `value` (a colour or a class id) on `canvas`; returns canvas."""
    short = min(height, width)
    size = rng.uniform(0.12, 0.3) * short
    cy, cx = rng.uniform(0.1, 0.9) * height, rng.uniform(0.1, 0.9) * width
    if kind in ("circle", "ring"):  # a filled circle, or one drawn as a thick line
        thickness = -1 if kind == "circle" else max(2, int(size * rng.uniform(0.25, 0.45)))
        cv2.circle(canvas, (int(cx), int(cy)), int(size), value, thickness, cv2.LINE_8)
    elif kind == "rectangle":
        half_h, half_w = size * rng.uniform(0.6, 1.2), size * rng.uniform(0.6, 1.2)
        corners = np.array([[-half_w, -half_h], [half_w, -half_h], [half_w, half_h], [-half_w, half_h]])
        angle = rng.uniform(0, np.pi / 2)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        points = corners @ rotation.T + [cx, cy]
        cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], value, cv2.LINE_8)
    elif kind == "triangle":
        angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
        angles += rng.uniform(-0.3, 0.3, size=3)
        points = np.stack([cx + size * 1.2 * np.cos(angles), cy + size * 1.2 * np.sin(angles)], axis=1)
        cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], value, cv2.LINE_8)
    elif kind == "cross":
        arm = max(2, int(size * rng.uniform(0.25, 0.4)))
        length = size * 1.2
        angle = rng.uniform(0, np.pi / 2)
        for theta in (angle, angle + np.pi / 2):
            dx, dy = length * np.cos(theta), length * np.sin(theta)
            cv2.line(canvas, (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy)), value, arm, cv2.LINE_8)
    else:
        raise ValueError(f"unknown shape {kind!r}")
    return canvas


def make_scene(seed, index, size=DEFAULT_SIZE):
    """Generates one scene.

    Args:
        seed: int. The dataset seed.
        index: int. The scene number; (seed, index) fixes the scene.
        size: tuple. (height, width) in pixels.

    Returns:
        tuple. (image uint8 RGB (H, W, 3), mask uint8 (H, W) of class indices).
    """
    height, width = size
    rng = np.random.default_rng([seed, index])
    image = _background(rng, height, width)
    mask = np.zeros((height, width), np.uint8)
    for _ in range(int(rng.integers(1, 5))):
        class_id = int(rng.integers(1, len(SYNTHETIC_CLASSES)))
        kind = SYNTHETIC_CLASSES[class_id]
        shape_seed = int(rng.integers(0, 2**31))
        blank = np.zeros((height, width), np.uint8)
        region = _draw_shape(np.random.default_rng(shape_seed), kind, blank, height, width, 1).astype(bool)
        colour = np.array(_random_colour(rng), np.float32)
        texture = rng.normal(0, rng.uniform(4, 14), size=(height, width, 3))
        image[region] = colour + texture[region]
        mask[region] = class_id
    return np.clip(image, 0, 255).astype(np.uint8), mask


def _classes_yaml():
    lines = ["# Generated by `kseg data synth`: classes in train-id order.", "classes:"]
    for name, (r, g, b) in zip(SYNTHETIC_CLASSES, SYNTHETIC_PALETTE):
        lines.append(f"  - {{name: {name}, color: [{r}, {g}, {b}]}}")
    return "\n".join(lines) + "\n"


def write_synthetic_dataset(out_dir, num_train=DEFAULT_NUM_TRAIN, num_val=DEFAULT_NUM_VAL, size=DEFAULT_SIZE,
                            seed=0, progress=None, replace=False):
    """Writes a synthetic dataset in the `folder` layout.

    The dataset is built in a temporary folder beside `out_dir` and renamed into place,
    so an interrupted run leaves no half-written dataset. Where it may go is kseg's output
    policy (`kseg.outputs`): an existing `out_dir` is replaced only with `replace=True`, and
    only if it is a synthetic dataset kseg wrote, with nothing added since.

    Args:
        out_dir: str. Destination folder.
        num_train: int. Number of training scenes.
        num_val: int. Number of validation scenes.
        size: tuple. (height, width) of every scene, each side 32..4096.
        seed: int. Fixes every scene (0 .. 2**63 - 1).
        progress: callable or None. Called with 1 after each scene (e.g. tqdm's update).
        replace: bool. Replace an existing synthetic dataset at `out_dir`.

    Returns:
        str. `out_dir`.
    """
    checked = Outputs(force=replace)
    checked.add(out_dir, "synthetic dataset", option="OUT", folder=True)
    try:
        height, width = size
    except (TypeError, ValueError):
        raise KsegError(f"size must be (height, width). Received: size={brief(size)}") from None
    try:
        height = check_number(height, "height", MIN_SIDE, MAX_SIDE, integer=True)
        width = check_number(width, "width", MIN_SIDE, MAX_SIDE, integer=True)
    except KsegError:
        raise KsegError(
            f"synthetic scenes must be at least {MIN_SIDE}x{MIN_SIDE} and at most {MAX_SIDE}x{MAX_SIDE} "
            f"whole pixels. Received: size={brief(size)}"
        ) from None
    num_train = check_number(num_train, "num_train", 1, MAX_SCENES, integer=True)
    num_val = check_number(num_val, "num_val", 1, MAX_SCENES, integer=True)
    seed = check_number(seed, "seed", 0, MAX_SEED, integer=True)
    out_dir = os.fspath(out_dir)
    with checked, writing(out_dir, directory=True) as temporary:
        for split, count, offset in (("train", num_train, 0), ("val", num_val, VAL_INDEX_OFFSET)):
            for index in range(count):
                image, mask = make_scene(seed, offset + index, (height, width))
                name = f"{index:05d}.png"
                _write_png_plain(os.path.join(temporary, "images", split, name), image)
                _write_png_plain(os.path.join(temporary, "masks", split, name), mask)
                if progress is not None:
                    progress(1)
        with open(os.path.join(temporary, "classes.yaml"), "w", encoding="utf8") as handle:
            handle.write(_classes_yaml())
        seal_folder(temporary, "synthetic dataset")
    return out_dir


def _write_png_plain(path, array):
    # Inside a fresh temporary folder each file needs no atomic rename of its own.
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if array.ndim == 3:
        array = array[:, :, ::-1]
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(array), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise KsegError(f"{path}: could not encode PNG")
    encoded.tofile(path)


class SyntheticSpec(FolderSpec):
    """The synthetic dataset, read through the folder layout.

    With no root, ./data/synthetic is used, and generated there (300 train + 60 val
    scenes, seed 0) if it does not exist yet.

    Args:
        root: str or None. A folder written by `kseg data synth` / write_synthetic_dataset.
        classes_file: str or None. Default ROOT/classes.yaml.
    """

    name = "synthetic"

    def __init__(self, root=None, classes_file=None):
        if root is None:
            root = DEFAULT_ROOT
            if not os.path.isdir(root):
                logger.info("generating the synthetic dataset in %s (kseg data synth)", root)
                write_synthetic_dataset(root, num_train=DEFAULT_NUM_TRAIN, num_val=DEFAULT_NUM_VAL)
        elif not os.path.isdir(root):
            raise KsegError(f"{root}: no synthetic dataset here; create it with `kseg data synth {root}`")
        super().__init__(root, classes_file)

