"""ImageNet class-score heatmaps from the convolutionalized VGG16 classifier.

`kseg.models.imagenet_heatmap_model` turns VGG16's fc1/fc2/predictions into convolutions,
so an image of any size gives a grid of 1000-class probabilities, one cell per 32x32
pixels. Here one class's grid is upsampled to the image and drawn over it.

ImageNet class names come from keras' `imagenet_class_index.json` (`{"0": ["n01440764",
"tench"], ...}`); it is only read from a file given or from keras' cache, never
downloaded, so without it classes are given by index (0-999).
"""

import os

import numpy as np

from kseg.errors import KsegError
from kseg.files import load_json
from kseg.inference import resize, run_model
from kseg.visualize import overlay, score_colors

IMAGENET_CLASSES = 1000
CLASS_INDEX_FILE = "imagenet_class_index.json"
STRIDE = 32
CLASS_INDEX_LIMIT = 1 << 20  # keras' file is 35 KB


def cached_class_index_path():
    """Returns keras' cached imagenet_class_index.json, or None when it is not there."""
    roots = [os.environ.get("KERAS_HOME"), os.path.expanduser("~/.keras"), "/tmp/.keras"]
    paths = [os.path.join(root, "models", CLASS_INDEX_FILE) for root in roots if root]
    return next((path for path in paths if os.path.isfile(path)), None)


def load_class_index(path):
    """Reads an imagenet_class_index.json into a list of (wordnet id, name) by index.

    Args:
        path: str. The JSON file, as keras publishes it.
    """
    table = load_json(path, "class index", limit=CLASS_INDEX_LIMIT)  # regular file, bounded, parsed
    try:
        entries = [table[str(index)] for index in range(IMAGENET_CLASSES)]
    except (ValueError, KeyError, TypeError) as error:
        raise KsegError(
            f"{path}: not an ImageNet class index ({type(error).__name__}: {error}); expected "
            'keras\' imagenet_class_index.json, {"0": ["n01440764", "tench"], ...}'
        ) from None
    # a list, not any pair of things: the string "ab" or {"a": 0, "b": 1} are two things too
    if not all(isinstance(entry, list) and len(entry) == 2 and all(isinstance(part, str) for part in entry)
               for entry in entries):  # fmt: skip
        raise KsegError(f"{path}: entries must be [wordnet id, name] pairs of strings")
    return [tuple(entry) for entry in entries]


def _normalise(name):
    return name.strip().lower().replace("_", " ").replace("-", " ")


def resolve_class(spec, class_index_path=None):
    """Maps a class given by index or by name to (index, name or None).

    Args:
        spec: str or int. An index 0-999, an ImageNet class name ("tabby", "golden
            retriever") or a WordNet id ("n02123045").
        class_index_path: str or None. imagenet_class_index.json; keras' cache when None.
    """
    text = str(spec).strip()
    path = class_index_path or cached_class_index_path()
    entries = load_class_index(path) if path else None
    if text.removeprefix("-").isdecimal():  # what int() reads: not "--5", nor a superscript "²"
        index = int(text)
        if not 0 <= index < IMAGENET_CLASSES:
            raise KsegError(f"--class {text}: ImageNet class indices are 0 to {IMAGENET_CLASSES - 1}")
        return index, (entries[index][1] if entries else None)
    if entries is None:
        raise KsegError(
            f"--class {text!r}: class names need keras' {CLASS_INDEX_FILE}, which is not in "
            "keras' cache and cannot be downloaded here; pass --class-index FILE or give the "
            "class as an index (0-999)"
        )
    wanted = _normalise(text)
    matches = [i for i, (wnid, name) in enumerate(entries)
               if _normalise(name) == wanted or wnid.lower() == wanted]
    if not matches:
        close = [name for _, name in entries if wanted in _normalise(name)][:5]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise KsegError(f"--class {text!r}: no ImageNet class of that name in {path}{hint}")
    if len(matches) > 1:
        listed = ", ".join(f"{i} ({entries[i][0]})" for i in matches)
        raise KsegError(f"--class {text!r}: several ImageNet classes share that name: {listed}; "
                        "give the index or the WordNet id")
    return matches[0], entries[matches[0]][1]


def class_scores(model, image, class_index, source="the VGG16 weights"):
    """Probability of one class at every pixel of an image.

    Args:
        model: keras.Model. From `kseg.models.imagenet_heatmap_model`.
        image: uint8 array (H, W, 3). RGB, any size.
        class_index: int. ImageNet class 0-999.
        source: str. Where the weights came from, for the message about NaN or inf.

    Returns:
        (scores, grid): float32 (H, W), bilinearly upsampled from the model's grid, and
        the grid itself (ceil(H/32), ceil(W/32)).
    """
    height, width = image.shape[:2]
    grid = run_model(model, image[None])[0][:, :, class_index]
    if not np.isfinite(grid).all():
        raise KsegError(
            f"{source}: the classifier's probabilities hold NaN or inf (its weights overflow "
            "float32): the weights are damaged; use another weights file"
        )
    # Grid cell (i, j) is centred on pixel (32 i + 16, 32 j + 16) of the padded image.
    padded = (grid.shape[0] * STRIDE, grid.shape[1] * STRIDE)
    scores = resize(grid[:, :, None], padded)[:height, :width, 0]
    return scores.astype(np.float32), grid


def render_heatmap(image, scores, alpha=0.5, absolute=False):
    """Draws scores over an image with the jet colour map.

    Args:
        image: uint8 array (H, W, 3).
        scores: float array (H, W). Probabilities.
        alpha: float. Opacity of the colours.
        absolute: bool. Colour 0 as blue and 1 as red; else the lowest and highest score.
    """
    colors = score_colors(scores, 0.0, 1.0) if absolute else score_colors(scores)
    return overlay(image, colors, alpha)


def peak(grid, image_shape):
    """Where the class is most probable: (probability, row, column) of the image pixel at
    the centre of the best cell of the score `grid` (one cell per `STRIDE` pixels),
    clipped to the image."""
    row, column = np.unravel_index(int(np.argmax(grid)), grid.shape)
    return (float(grid.max()), min(row * STRIDE + STRIDE // 2, image_shape[0] - 1),
            min(column * STRIDE + STRIDE // 2, image_shape[1] - 1))
