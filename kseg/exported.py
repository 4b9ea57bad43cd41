"""Exported files in place of a Keras model: `kseg evaluate` and `kseg predict` on a
SavedModel folder, a `.tflite` or an `.onnx` file written by `kseg export`.

`ExportedPredictor` puts an export behind the one call kseg's evaluation and prediction
make on a Keras model, `predict_on_batch(images) -> logits`, so the same metrics, tables,
tiling, test-time augmentation and writers serve both. The file itself is run by
`kseg.exporting.ExportedModel` (the reader `kseg export --check` uses), which feeds it
uint8 images and reads the logits by the names `kseg export` gives them (input `images`,
output `logits` of the `serving_default` signature; for ONNX, the first input and the
output `logits` or else the 4-D one); nothing here depends on output names.

What kind of file a path is comes from the path alone (`export_format`): a `.tflite` or
`.onnx` suffix, or a folder holding `saved_model.pb`. Anything else is left to the Keras
model resolution (`kseg.runs`), or refused with one line (`choose_model`).

Image size. An export made without `--input-size` runs at each image's own size. A file
with a fixed input size (`kseg export --input-size HxW`, or a MediaPipe-ready TFLite
file) takes images of that size only; other sizes are fitted to it (`FITS`):

- "resize" (default): the image is resized to the file's size (bilinear, as its int8
  calibration images were) and the logits back to the image's size (bilinear) before the
  arg-max. This is what MediaPipe's ImageSegmenter does, so the scores are those a phone
  client gets.
- "tile": the image is cut into tiles of the file's size (`kseg.inference.iter_tiled_logits`,
  centre blend); a tile (or image) smaller than the file's size is padded by reflection
  and its logits cropped. Every pixel is seen at its own scale, as by the Keras model,
  so the scores measure the export (its quantization) rather than the resizing.

Class names and colours, first found wins (`export_classes`):

1. inside the file (`embedded_classes`: the description `kseg export` writes into it,
   `kseg.export_metadata`), unless that only numbers the classes;
2. a `classes.json` beside the file (or beside the SavedModel folder), or that of the run
   directory whose `export/` folder holds it (where `kseg export` writes by default);
3. for evaluate, the dataset's names; for predict, "class N" in default colours.
"""

import logging
import os
import types

import numpy as np

from kseg import runs
from kseg.choices import FITS
from kseg.errors import KsegError, is_out_of_memory
from kseg.exporting import ExportedModel
from kseg.inference import resize, tiled_logits
from kseg.progress import write
from kseg.visualize import class_names_from_classes

logger = logging.getLogger("kseg")

SUFFIXES = {".tflite": "tflite", ".onnx": "onnx"}
SAVEDMODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
FORMAT_NAMES = {"savedmodel": "SavedModel folder", "tflite": "TFLite file", "onnx": "ONNX file"}
# What each format needs installed, for the message when it is missing.
RUNTIMES = {"savedmodel": "tensorflow", "tflite": "ai-edge-litert", "onnx": "onnxruntime"}
ACCEPTED = ("a run directory, a .keras file, an exported .tflite or .onnx file, or a "
            "SavedModel folder")
PROBE_SIZE = (32, 32)  # the image run once to learn a size-free export's class count
TILE_OVERLAP = 64  # pixels shared by neighbouring tiles with fit="tile" (at most a quarter tile)


def export_format(path):
    """The export format of `path` ("savedmodel", "tflite", "onnx"), or None.

    Only the path is looked at (its suffix, or a folder's saved_model.pb): a `.tflite`
    path that does not exist is still a TFLite path, reported missing when opened.
    """
    if path is None:
        return None
    path = os.fspath(path)
    if os.path.isdir(path):
        found = any(os.path.isfile(os.path.join(path, name)) for name in SAVEDMODEL_FILES)
        return "savedmodel" if found else None
    return SUFFIXES.get(os.path.splitext(path)[1].lower())


class ExportedPredictor:
    """An exported file that answers `predict_on_batch` like a Keras model.

    Args:
        path: str. A SavedModel folder, `.tflite` or `.onnx` file.
        format: str or None. One of kseg.choices.EXPORT_FORMATS; from the path when None.
        fit: str. How a fixed-size file takes an image of another size: one of FITS
            (see the module docstring).

    Attributes:
        input_size: tuple (height, width) or None. The file's fixed input size.
        num_classes: int. Classes its logits hold.
        metadata: dict or None. What the file says about itself (`kseg.export_metadata`);
            None for an export written before kseg described its classes.

    Raises:
        KsegError: one line naming the file: missing, unknown kind, unreadable, its
            runtime not installed, or its output not logits of the image's size.
    """

    def __init__(self, path, format=None, fit="resize"):
        if fit not in FITS:
            raise KsegError(f"--fit: expected one of {', '.join(FITS)}. Received: {fit!r}")
        self.path, self.fit = os.fspath(path), fit
        self.format = format or export_format(self.path)
        if self.format not in FORMAT_NAMES:
            raise KsegError(f"{self.path}: not an exported model kseg can run (expected {ACCEPTED})")
        self.what = FORMAT_NAMES[self.format]
        if not os.path.exists(self.path):
            raise KsegError(f"{self.path}: no such {self.what}")
        if self.format != "savedmodel" and not os.path.isfile(self.path):  # a FIFO: the runtime would wait
            raise KsegError(f"{self.path}: not a regular file; a {self.what} must be one")
        try:
            self._exported = ExportedModel(self.path, self.format)
        except KsegError:
            raise
        except ImportError as error:
            raise KsegError(f"{self.path}: running a {self.what} needs {RUNTIMES[self.format]} ({error}); "
                            "install kseg[export]") from None  # fmt: skip
        except Exception as error:  # noqa: BLE001 - each runtime fails on a bad file its own way
            if is_out_of_memory(error):
                raise
            raise KsegError(f"{self.path}: cannot be read as a {self.what} ({_brief(error)}); "
                            "export it again with `kseg export`") from None  # fmt: skip
        self.input_size = self._exported.input_size
        self.metadata = self._exported.metadata
        probe = np.zeros(tuple(self.input_size or PROBE_SIZE) + (3,), np.uint8)
        self.num_classes = int(self._run(probe).shape[-1])

    def __repr__(self):
        return f"ExportedPredictor({self.path!r}, {self.format!r})"

    def describe(self):
        """One line for the user: the file, its kind and its input size."""
        size = "any input size"
        if self.input_size:
            how = ("resized to it, the logits back" if self.fit == "resize" else
                   "tiled at it, small tiles padded")  # fmt: skip
            size = f"fixed input {self.input_size[0]}x{self.input_size[1]} (HxW): other sizes are {how}"
        return f"{self.path} ({self.what}, {self.num_classes} classes, {size})"

    def _run(self, image):
        """Logits (H, W, C) float32 of one uint8 image of the size the file takes."""
        try:
            logits = np.asarray(self._exported(image), dtype=np.float32)
        except KsegError:
            raise
        except Exception as error:  # noqa: BLE001 - the runtimes raise their own types
            if is_out_of_memory(error):
                raise
            height, width = image.shape[:2]
            raise KsegError(f"{self.path}: failed on a {height}x{width} (HxW) image: {_brief(error)}") from None
        if logits.ndim != 3 or logits.shape[:2] != image.shape[:2]:
            raise KsegError(
                f"{self.path}: returned an output of shape {logits.shape} for a {image.shape[0]}x"
                f"{image.shape[1]} image; expected logits (height, width, classes): is it a kseg export?"
            )
        return logits

    def logits(self, image):
        """Logits (H, W, C) of one RGB image (H, W, 3), resized through a fixed input size."""
        image = np.asarray(image)
        if image.dtype != np.uint8:  # tf.data batches may be float; values are whole 0..255
            image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        size = tuple(image.shape[:2])
        if not self.input_size or size == self.input_size:
            return self._run(np.ascontiguousarray(image))
        if self.fit == "resize":
            return resize(self._run(resize(image, self.input_size)), size)
        overlap = min(TILE_OVERLAP, min(self.input_size) // 4)
        # the tiling code sees a model whose tiles, none larger than the input size, are padded to it
        padding = types.SimpleNamespace(predict_on_batch=lambda tiles: np.stack([self._padded(t) for t in tiles]))
        return tiled_logits(padding, image, self.input_size, overlap)

    def _padded(self, image):
        """Logits of an image no larger than the input size: padded by reflection at the
        bottom and right, run, and cropped back."""
        height, width = image.shape[:2]
        padding = ((0, self.input_size[0] - height), (0, self.input_size[1] - width), (0, 0))
        return self._run(np.pad(image, padding, mode="reflect"))[:height, :width]

    def predict_on_batch(self, images):
        """Logits (N, H, W, C) of a batch of same-sized RGB images (N, H, W, 3)."""
        return np.stack([self.logits(image) for image in np.asarray(images)])


def _brief(error):
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


# -- which model a verb uses -----------------------------------------------------------


def choose_model(path=None, option="--model", precision="fp32"):
    """`kseg.runs.choose_model`, also taking an exported file. The choice's note, when kseg
    chose the model itself, is written on stderr.

    Args:
        path: str or None. What the user gave (None: the latest run, else kseg's model).
        option: str. How the verb takes its model, for messages.
        precision: str. The --precision asked for; an export computes in the precision it
            was exported in, so one other than fp32 is refused for it.

    Returns:
        tuple. (kseg.runs.ModelChoice, export format or None). For an export, the
        choice's `run_dir` is the folder of the classes.json found for it (or None).

    Raises:
        KsegError: a path that is none of what kseg runs (one line listing what is).
    """
    if path is not None:
        path = os.fspath(path)
        format = export_format(path)
        if format:
            if not os.path.exists(path):
                raise KsegError(f"{path}: no such {FORMAT_NAMES[format]}")
            if precision != "fp32":
                raise KsegError(f"--precision {precision} applies to Keras models; {path} computes in the "
                                "precision it was exported in")  # fmt: skip
            found = classes_file(path)
            return runs.ModelChoice(path, os.path.dirname(found) if found else None), format
        if os.path.isfile(path) and not path.endswith(".keras"):
            raise KsegError(f"{path}: not a model kseg can run; {option} takes {ACCEPTED}")
        if os.path.isdir(path) and not runs.is_run_dir(path):
            raise KsegError(f"{path}: neither a run directory (no {runs.CHECKPOINTS}/{runs.BEST} or "
                            f"{runs.LAST}) nor a SavedModel folder (no saved_model.pb)")  # fmt: skip
    chosen = runs.choose_model(path, option=f"{option} RUN_DIR|MODEL.keras|MODEL.tflite")
    if chosen.note:
        write(chosen.note)
    return chosen, None


# -- class names and colours -----------------------------------------------------------


def embedded_classes(predictor):
    """The class names (and colours) an export carries inside it, as a classes.json dict,
    or None when it carries none, or only numbers its classes ("class 0", ...; what
    `kseg export` writes for a model without classes.json, where a classes.json beside the
    file knows better).

    Args:
        predictor: ExportedPredictor. Its `metadata` is `kseg.export_metadata`'s
            description ({"class_names", "palette", "dataset", "ignore_index", ...}).
    """
    metadata = predictor.metadata
    if not isinstance(metadata, dict) or not metadata.get("class_names"):
        return None
    names, palette = metadata["class_names"], metadata.get("palette")
    if not palette and list(names) == class_names_from_classes(None, len(names)):
        return None
    optional = {"palette": palette or None, "dataset": metadata.get("dataset"),
                "ignore_index": metadata.get("ignore_index")}
    return {"class_names": names, **{key: value for key, value in optional.items() if value is not None}}


def classes_file(path):
    """The classes.json that names an export's classes, or None: beside the file (or the
    SavedModel folder), else that of the run directory holding the file's folder."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    candidates = [folder]
    if runs.is_run_dir(os.path.dirname(folder)):  # RUN/export/model.tflite
        candidates.append(os.path.dirname(folder))
    for candidate in candidates:
        if os.path.lexists(os.path.join(candidate, runs.CLASSES_FILE)):  # not a file: refused when read
            return os.path.join(candidate, runs.CLASSES_FILE)
    return None


def export_classes(predictor):
    """Class names and colours of an export (see the module docstring), checked against
    its class count.

    Returns:
        tuple. (classes dict or None, where they came from: "inside the file", the path
        of a classes.json, or None).
    """
    embedded = embedded_classes(predictor)
    if embedded is not None:
        return runs.check_classes(embedded, f"{predictor.path} (its class names)", predictor.num_classes,
                                  predictor.path), "inside the file"  # fmt: skip
    found = classes_file(predictor.path)
    if found is None:
        return None, None
    return runs.read_classes(os.path.dirname(found), predictor.num_classes, predictor.path), found


def check_dataset_classes(predictor, spec):
    """Refuses an export whose class count differs from the dataset's; warns when its
    class names (inside it or in its classes.json) differ from the dataset's."""
    if predictor.num_classes != spec.num_classes:
        raise KsegError(f"{predictor.path}: the exported model predicts {predictor.num_classes} classes but "
                        f"{spec.name} has {spec.num_classes}")  # fmt: skip
    classes, source = export_classes(predictor)
    names = (classes or {}).get("class_names")
    if names is not None and list(names) != list(spec.class_names):
        logger.warning("%s: class names (%s) differ from %s's; scoring by index", predictor.path, source,
                       spec.name)  # fmt: skip
