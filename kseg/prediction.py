"""`kseg predict` as a library call: image files, folders and patterns in, label maps,
colour maps and overlays out.

    collect_images -> plan_outputs (every output path checked before the model loads)
      -> load_predictor (a Keras model) or load_exported_predictor (an export): a Predictor
      -> predict_files -> write_outputs per image (kseg.inference: whole, tiled, TTA)

`predict` does all of it, as the CLI verb does.
"""

import dataclasses
import glob
import itertools
import os

import cv2
import numpy as np

from kseg import runs
from kseg.data.cityscapes import train_ids_to_label_ids
from kseg.errors import DiskFullError, KsegError
from kseg.exported import ExportedPredictor, choose_model, export_classes
from kseg.images import IMAGE_EXTENSIONS, list_image_files, read_image
from kseg.inference import TTA, NonFiniteLogitsError, predict_labels, validate_tiling
from kseg.label_maps import CITYSCAPES_IDS, TRAIN_IDS, encode_png_with_text, label_map_text
from kseg.models.inference import inference_model, slow_precision_warning
from kseg.models.saving import load_segmentation_model, nonfinite_logits_message
from kseg.outputs import Outputs, bytes_writer, case_key, folds_case, write_bytes, write_together
from kseg.progress import progress, write
from kseg.validation import check_number
from kseg.visualize import class_names_from_classes, colorize, legend, overlay, palette_from_classes


def collect_images(inputs):
    """Expands files, folders (searched recursively) and glob patterns into image files.

    Args:
        inputs: iterable of str.

    Returns:
        (items, problems): items are (path, output name without extension) pairs; a file
        inside a folder keeps its path relative to that folder, so equal names in different
        subfolders do not collide. Problems are one-line messages for inputs that matched
        nothing.
    """
    items, problems = [], []
    for text in inputs:
        if os.path.isdir(text):
            found = list_image_files(text)
            if not found:
                problems.append(f"{text}: folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            for path in found:
                relative = os.path.relpath(path, text)
                items.append((path, os.path.splitext(relative)[0]))
        elif os.path.exists(text):
            items.append((text, os.path.splitext(os.path.basename(text))[0]))
        elif glob.has_magic(text):
            matches = sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p))
            if not matches:
                problems.append(f"{text}: pattern matches no files")
            items += [(p, os.path.splitext(os.path.basename(p))[0]) for p in matches]
        else:
            problems.append(f"{text}: file not found")
    unique = {}  # the first of the items naming the same file
    for path, name in items:
        unique.setdefault(os.path.abspath(path), (path, name))
    names = {}
    for path, name in unique.values():
        names.setdefault(name, []).append(path)
    for name, paths in names.items():  # a.png and a.jpg: only those two are left out
        for path in paths if len(paths) > 1 else ():
            others = ", ".join(other for other in paths if other != path)
            problems.append(f"{path}: skipped: its outputs would take the name '{name}' like those of "
                            f"{others}; rename one of them, or predict it into another --out")
    return [(path, name) for path, name in unique.values() if len(names[name]) == 1], problems


# -- where the outputs go ---------------------------------------------------------------

# The outputs `--format` names, in the order messages list them, and each one's file name suffix.
SUFFIXES = {"labels": ".png", "color": "_color.png", "overlay": "_overlay.png", "cityscapes-ids": ".png"}
OUTPUTS = tuple(SUFFIXES)


LEGEND_FILE = "legend.png"  # in --out, with color or overlay outputs: names and colours
COLOURED = ("color", "overlay")


@dataclasses.dataclass
class OutputPlan:
    """Every output path of a predict run, checked before any model is loaded.

    The checks are kseg's output policy (`kseg.outputs`): no output is an input or lies
    in a searched input folder, and an existing file in --out is replaced only if kseg
    predict wrote it (listed in --out's `.kseg-outputs.json`). Two images whose outputs
    would share a path are refused, naming both.

    Attributes:
        outputs: list of (image path, {kind: output path}), in input order.
        checked: kseg.outputs.Outputs. Records them in --out's ledger (a context manager).
        legend: str or None. The class legend's path.
        skipped: list of str. One line per image left out because its outputs would share
            a path with another image's.
    """

    outputs: list
    checked: object
    legend: str = None
    skipped: list = dataclasses.field(default_factory=list)


def plan_outputs(items, inputs, out_dir, formats):
    """Checks where a predict run would write and returns its `OutputPlan`.

    Args:
        items: list of (image path, output name) from `collect_images`.
        inputs: list of str. The inputs as given (files, folders, patterns).
        out_dir: str. --out.
        formats: tuple of str. Output kinds (keys of SUFFIXES).

    Raises:
        KsegError: one line naming the output and the input (or other output) it would
            destroy, and the way out. Nothing has been written then.
    """
    out_dir = os.fspath(out_dir)
    checked = Outputs([*inputs, *(image for image, _ in items)])
    checked.check_folder(out_dir, "--out")
    fold = folds_case(out_dir)
    planned = [(image, {kind: os.path.join(out_dir, name + SUFFIXES[kind]) for kind in formats})
               for image, name in items]  # fmt: skip
    owners = {}
    for image, paths in planned:
        for path in paths.values():
            key = os.path.normpath(os.path.abspath(path))
            owners.setdefault(case_key(key) if fold else key, []).append((image, path))
    clashes = {}  # image -> (other image, path): photo.png's photo_color.png is photo_color.png's label map
    for sharing in owners.values():  # one image's outputs never share a path: their suffixes differ
        for (image, path), (other, _) in itertools.permutations(sharing, 2):
            clashes.setdefault(image, (other, path))
    outputs, skipped = [], []
    for image, paths in planned:
        if image in clashes:
            other, path = clashes[image]
            skipped.append(f"{image}: skipped: it and {other} would both be written to {path}; rename "
                           "one of them, or predict it into another --out")
            continue
        for path in paths.values():
            checked.add(path, "predictions", option=None, root=out_dir, choose="another --out")
        outputs.append((image, paths))
    legend = None
    if any(kind in formats for kind in COLOURED):
        legend = os.path.join(out_dir, LEGEND_FILE)
        key = os.path.normpath(os.path.abspath(legend))
        if (case_key(key) if fold else key) in owners:
            legend = None  # an image's own output takes the name: that image wins
        else:
            checked.add(legend, "predictions", option=None, root=out_dir, choose="another --out")
    return OutputPlan(outputs, checked, legend, skipped)


def encode_png(array, text=None):
    """PNG bytes of a uint8 array (H, W) or RGB (H, W, 3).

    Args:
        array: np.ndarray. The picture or label map.
        text: dict or None. PNG text chunks {keyword: value}: a label map says what its
            values are (`kseg.label_maps.label_map_text`), so evaluating it needs no guess.
    """
    array = np.asarray(array)
    if text:
        return encode_png_with_text(array, text)
    if array.ndim == 3:
        array = array[:, :, ::-1]  # RGB -> BGR for OpenCV
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:
        raise KsegError("could not encode a PNG")
    return encoded.tobytes()


def write_outputs(predictor, image_path, paths, options):
    """Predicts one image file and writes the outputs `paths` ({kind: path}) atomically.

    The image's files are written all or none (`kseg.outputs.write_together`); a full disk raises
    `DiskFullError`, NaN or inf logits `NonFiniteLogitsError`: both end the run.

    Args:
        predictor: Predictor. The model and its classes' colours.
        image_path: str.
        paths: dict. {output kind: path}.
        options: PredictOptions. Tiling, TTA and the overlay's opacity.

    Returns:
        list of str. The paths written.
    """
    image = read_image(image_path)
    labels = predict_labels(predictor.model, image, options.tile, options.overlap, options.tta, options.blend)
    files = []  # (path, array, PNG text: what a label map's values are)
    if "labels" in paths:
        files.append((paths["labels"], labels, label_map_text(TRAIN_IDS, predictor.num_classes)))
    if "cityscapes-ids" in paths:
        files.append((paths["cityscapes-ids"], train_ids_to_label_ids(labels, strict=True),
                      label_map_text(CITYSCAPES_IDS, predictor.num_classes)))  # fmt: skip
    colors = colorize(labels, predictor.palette) if "color" in paths or "overlay" in paths else None
    if "color" in paths:
        files.append((paths["color"], colors, None))
    if "overlay" in paths:
        files.append((paths["overlay"], overlay(image, colors, options.alpha), None))
    # All of an image's outputs or none: a full disk leaves its previous files as they were.
    write_together([(path, bytes_writer(encode_png(array, text))) for path, array, text in files])
    return [path for path, *_ in files]


def write_legend(path, class_names, palette):
    """Writes the legend of every class (colour swatch, index and name) as a PNG."""
    write_bytes(path, encode_png(legend(class_names, palette)))


@dataclasses.dataclass
class PredictCounts:
    """How a `predict_files` run went: images written, inputs that failed."""

    written: int = 0
    failed: int = 0


def parse_formats(text):
    """Parses outputs written as "labels,color,overlay" into a tuple of `OUTPUTS`."""
    return check_formats([item.strip().lower() for item in text.split(",") if item.strip()], text)


def check_formats(formats, text=None):
    """`formats` as a tuple of `OUTPUTS`, each once, or a `KsegError`: an unknown output,
    none, or two that share a file name (`text`: the --format as written, for messages)."""
    formats = tuple(dict.fromkeys(formats))
    unknown = [item for item in formats if item not in OUTPUTS]
    if unknown or not formats:
        shown = text if text is not None else ",".join(map(str, formats))
        raise KsegError(f"--format {shown!r}: unknown output {', '.join(map(str, unknown)) or '(none)'}; choose "
                        f"from {', '.join(OUTPUTS)}")  # fmt: skip
    if "labels" in formats and "cityscapes-ids" in formats:
        raise KsegError("--format: labels and cityscapes-ids are both written as <stem>.png; choose one")
    return formats


@dataclasses.dataclass(frozen=True)
class PredictOptions:
    """How `predict` runs and what it writes; each field is the `kseg predict` option of its
    name (`kseg predict --help`).

    Args:
        formats: tuple of str. Outputs, from `OUTPUTS` (`parse_formats` reads "labels,color").
        tile: (int, int) or None. Sliding-window inference with tiles of this size.
        overlap: int. Pixels shared by neighbouring tiles.
        blend: str. "center" or "mean" (the module docstring).
        tta: TTA. Test-time augmentation.
        fit: str. An export of a fixed size on other sizes: "resize" or "tile".
        alpha: float. Opacity of the colours in the overlay.
        precision: str. "fp32" or "bf16" (Keras models).
        unsafe: bool. Allow Keras models containing code (trusted files only).
    """

    formats: tuple = ("labels", "color", "overlay")
    tile: tuple = None
    overlap: int = 64
    blend: str = "center"
    tta: TTA = TTA()
    fit: str = "resize"
    alpha: float = 0.5
    precision: str = "fp32"
    unsafe: bool = False

    def __post_init__(self):
        object.__setattr__(self, "formats", check_formats(self.formats))  # each output once, as a tuple
        if self.tile is not None:
            validate_tiling(self.tile, self.overlap, self.blend)
        check_number(self.alpha, "--alpha", low=0, high=1)


@dataclasses.dataclass
class Predictor:
    """A model loaded for `predict_files`, with what its outputs need.

    Attributes:
        model: a callable on a uint8 batch (the Keras inference model or an
            `kseg.exported.ExportedPredictor`).
        num_classes: int.
        palette: array (num_classes, 3). The colours of colour maps and overlays.
        class_names: list of str. Names for the legend ("class N" where none are known).
        path: str. The model file, named in messages.
        warnings: list of str. For the user (missing class names, a slow precision).
    """

    model: object
    num_classes: int
    palette: object
    class_names: list
    path: str
    warnings: list = dataclasses.field(default_factory=list)


def check_output_formats(num_classes, formats, path):
    """Checks that a model of `num_classes` classes can write the outputs `formats`.

    Returns:
        list of str. Warnings for the user.

    Raises:
        KsegError: more classes than a label map holds, or Cityscapes ids from a model
            that is not a 19-class Cityscapes one.
    """
    if num_classes > 256:
        raise KsegError(f"{path}: predicts {num_classes} classes; label maps hold at most 256")
    if "cityscapes-ids" in formats and num_classes != 19:
        raise KsegError(
            f"--format cityscapes-ids needs a Cityscapes model with 19 classes; {path} "
            f"predicts {num_classes}"
        )
    if "cityscapes-ids" in formats and len(formats) > 1:
        return ["the Cityscapes evaluation script expects one PNG per image in its "
                "results folder; write cityscapes-ids to a folder of its own"]
    return []


def load_predictor(path, run_dir, formats, precision="fp32", unsafe=False):
    """Loads a Keras model for `predict_files` and checks it fits the outputs asked for.

    Args:
        path: str. The .keras file (`kseg.runs.resolve_model_path`).
        run_dir: str or None. Its run folder (for classes.json and its palette).
        formats: tuple of str. Output kinds (keys of SUFFIXES).
        precision: str. "fp32" or "bf16" (`kseg.models.inference.inference_model`).
        unsafe: bool. Allow models containing code.

    Returns:
        Predictor.
    """
    warning = slow_precision_warning(precision)
    loaded, num_classes = load_segmentation_model(path, unsafe=unsafe)
    warnings = ([warning] if warning else []) + check_output_formats(num_classes, formats, path)
    classes = runs.read_classes(run_dir, num_classes, path)
    return _named(inference_model(loaded, precision), num_classes, classes, path, warnings,
                  f"no {runs.CLASSES_FILE} beside it")  # fmt: skip


def load_exported_predictor(path, formats=(), format=None, fit="resize"):
    """`load_predictor` for an exported file (`fit`: see ExportedPredictor).

    Returns:
        Predictor. Its model is an `ExportedPredictor`.
    """
    predictor = ExportedPredictor(path, format, fit=fit)
    warnings = check_output_formats(predictor.num_classes, formats, path)
    classes, _ = export_classes(predictor)
    return _named(predictor, predictor.num_classes, classes, path, warnings,
                  f"no class names inside it and no {runs.CLASSES_FILE} beside it")  # fmt: skip


def _named(model, num_classes, classes, path, warnings, unnamed):
    """The `Predictor` of a loaded model with its classes' names and colours; without
    `classes` (`unnamed` says why none were found) "class N" in default colours, and a
    warning saying so."""
    if classes is None:
        warnings.append(f"{path}: {unnamed}, so its {num_classes} classes are named class 0 .. class "
                        f"{num_classes - 1}, in default colours")  # fmt: skip
    return Predictor(model, num_classes, palette_from_classes(classes, num_classes),
                     class_names_from_classes(classes, num_classes), path, warnings)  # fmt: skip


def predict_files(predictor, plan, options, counts=None):
    """Predicts every image of an `OutputPlan` and writes its outputs (`write_outputs`).

    An image that cannot be read or predicted is reported on stderr and counted as
    failed; the others go on. A full disk and NaN/inf logits end the run (the next image
    would fail the same way); --out's list of kseg's outputs is kept up to date.

    Args:
        predictor: Predictor. From `load_predictor` (`load_exported_predictor` for an export).
        plan: OutputPlan. From `plan_outputs`.
        options: PredictOptions.
        counts: PredictCounts or None. Filled as the run goes (so a caller knows how many
            images were written when an error ends it).

    Returns:
        PredictCounts.

    Raises:
        DiskFullError, KsegError: the run cannot go on.
    """
    counts = PredictCounts() if counts is None else counts
    # the bar is cleared before an error is printed
    with plan.checked, progress(len(plan.outputs), "predict", "image", enabled=len(plan.outputs) >= 2) as bar:
        for image_path, paths in plan.outputs:
            try:
                write_outputs(predictor, image_path, paths, options)
                counts.written += 1
            except (DiskFullError, KeyboardInterrupt):
                raise
            except NonFiniteLogitsError:
                raise KsegError(nonfinite_logits_message(predictor.path, image_path)) from None
            except KsegError as error:
                counts.failed += 1
                write(f"error: {error}")
            except Exception as error:  # noqa: BLE001 - one odd file must not stop the others
                counts.failed += 1
                write(f"error: {image_path}: {type(error).__name__}: {error}")
            else:
                if plan.legend and counts.written == 1:  # a run that writes nothing leaves nothing
                    try:
                        write_legend(plan.legend, predictor.class_names, predictor.palette)
                    except OSError as error:  # the legend's failure, not the image's just written
                        raise KsegError(f"{plan.legend}: cannot write the class legend: "
                                        f"{error.strerror or error}") from None
            bar.update(1)
    return counts


def predict(inputs, model=None, out="predictions", options=None):
    """Segments image files, folders or glob patterns and writes the outputs into `out`:
    what `kseg predict` does (its --help describes the outputs).

    Every output path is checked before the model loads (`plan_outputs`: nothing kseg did
    not write is replaced). An input that cannot be read is reported on stderr
    ("error: ...") and counted as failed; the others go on.

    Args:
        inputs: str or list of str (or paths). Image files, folders, glob patterns.
        model: str or None. A run folder, a .keras file or an export (.tflite, .onnx, a
            SavedModel folder); None: the latest run under ./runs, else the model kseg
            ships (`kseg.exported.choose_model` says which on stderr).
        out: str. The output folder.
        options: PredictOptions or None (the defaults).

    Returns:
        PredictCounts. Images written, inputs that failed.

    Raises:
        KsegError: no image to predict, a model or an output that cannot be used, a full
            disk (after the images already written).
    """
    options = PredictOptions() if options is None else options
    inputs = [os.fspath(item) for item in ([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)]
    items, problems = collect_images(inputs)
    plan = plan_outputs(items, inputs, out, options.formats) if items else None  # before the model loads
    problems += plan.skipped if plan else []
    if not (plan and plan.outputs) and len(problems) == 1:
        raise KsegError(problems[0])  # one input, one line
    for problem in problems:
        write(f"error: {problem}")
    if not (plan and plan.outputs):
        raise KsegError("no images to predict")
    chosen, exported = choose_model(model, precision=options.precision)
    if exported:
        predictor = load_exported_predictor(chosen.path, options.formats, exported, options.fit)
        write(f"model: {predictor.model.describe()}")
    else:
        predictor = load_predictor(chosen.path, chosen.run_dir, options.formats, options.precision, options.unsafe)
    for warning in predictor.warnings:
        write(f"warning: {warning}")
    counts = PredictCounts(failed=len(problems))
    try:
        predict_files(predictor, plan, options, counts)
    finally:
        write(f"wrote predictions of {counts.written} image(s) to {out}")
    if plan.legend and counts.written:
        write(f"class colours: {plan.legend}")
    return counts
