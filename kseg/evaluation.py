"""Scoring a model, or label maps already written, on a dataset split.

Both paths (a model, or label maps already written) accumulate one confusion matrix over
the whole split (`kseg.metrics`; pixels whose ground truth is the ignore label 255 left
out) and report the four FCN-paper metrics with a per-class table. The same matrix and
scores serve as the validation metric during training (`kseg.metrics.ConfusionMatrixMetric`).
A model is a Keras model or an exported file (SavedModel, TFLite, ONNX: `kseg.exported`),
scored by the same code.

Prediction files are matched to the split's images by file stem (`kseg predict` writes
`<image stem>.png`). For Cityscapes, files holding official label ids (0..33, as the
benchmark expects) are accepted as well as train ids (0..18) and mapped with
`cityscapesscripts.helpers.labels`, and kseg's mean IoU then equals the official script's
average class IoU:

The official `evalPixelLevelSemanticLabeling` builds a confusion matrix over label ids and,
for each of the 19 evaluated classes l, computes IoU_l = TP / (TP + FP + FN) with TP = n_ll,
FN = all pixels of ground truth l predicted as anything else (void ids included), and FP =
pixels predicted l whose ground truth is another *evaluated* class (void ground truth
excluded); the class score is the mean of the 19 IoUs, NaN ones (class in neither) left
out. kseg maps ground truth and predictions to train ids with the same table: the 19
evaluated label ids become train ids 0..18 one to one, void ground truth becomes 255 and is
dropped (so never a false positive), and a void prediction lands in the "no class" column,
where it still counts in t_l (a false negative) but as no class's false positive. The two
matrices are the same counts relabelled, so every per-class IoU, and their mean, agree.
"""

import contextlib
import dataclasses
import json
import logging
import math
import os

import cv2
import numpy as np

from kseg import runs
from kseg.choices import LABEL_FORMATS
from kseg.data import get_dataset_spec, make_dataset
from kseg.data.cityscapes import label_id_to_train_id_table
from kseg.data.pipeline import DatasetOptions, data_errors
from kseg.data.readers import read_index_mask
from kseg.errors import KsegError
from kseg.exported import ExportedPredictor, check_dataset_classes, choose_model, export_format
from kseg.files import brief
from kseg.images import read_file
from kseg.label_maps import LABELS_KEY, declared_format
from kseg.labels import IGNORE_INDEX
from kseg.metrics import METRIC_NAMES, at_chance_level, chance_mean_iou, confusion_matrix, segmentation_scores
from kseg.models.inference import inference_model, slow_precision_warning
from kseg.models.saving import load_segmentation_model, nonfinite_logits_message
from kseg.outputs import Outputs, bytes_writer, write_together
from kseg.prediction import encode_png
from kseg.progress import progress as progress_bar
from kseg.progress import write
from kseg.visualize import colorize, contact_sheet, drawable_text, legend, palette_from_classes

logger = logging.getLogger("kseg")

ABSENT_NOTE = (
    "classes absent from both ground truth and prediction have IoU NaN (null in JSON) "
    "and are left out of the means"
)


@dataclasses.dataclass
class EvaluationResult:
    """A confusion matrix over a split and the scores computed from it.

    Args:
        confusion: np.ndarray. (C, C + 1) int64, rows ground truth, columns prediction,
            last column predictions that are no class.
        class_names: list of str. The C class names.
        num_images: int. Number of images scored.
        dataset: str. Dataset name.
        split: str. Split name.
        source: str. The model file or prediction folder scored.
        palette: (C, 3) colours of the dataset, for pictures.
        precision: str. What the model computed in ("fp32", "bf16"); "" for prediction
            PNGs and exported files.
        examples: list of (image, ground truth, prediction) arrays kept for a contact
            sheet (`evaluate_model(examples=N)`).
        written: list of (what, path). The reports `evaluate` wrote, e.g.
            [("metrics", "m.json")].
    """

    confusion: np.ndarray
    class_names: list
    num_images: int
    dataset: str = ""
    split: str = ""
    source: str = ""
    palette: tuple = ()
    precision: str = ""
    examples: list = dataclasses.field(default_factory=list, repr=False)
    written: list = dataclasses.field(default_factory=list)

    @property
    def scores(self):
        return segmentation_scores(self.confusion)

    def to_dict(self):
        """A JSON-ready summary (NaN written as null)."""
        scores = self.scores
        chance = chance_mean_iou(self.confusion)[1]
        classes = [
            {"name": name, "iou": _json_float(iou), "accuracy": _json_float(accuracy), "pixels": pixels}
            for name, iou, accuracy, pixels in zip(
                self.class_names, scores["class_iou"], scores["class_accuracy"], scores["class_pixels"]
            )
        ]
        return {
            "source": self.source,
            "dataset": self.dataset,
            "split": self.split,
            "num_images": self.num_images,
            **({"precision": self.precision} if self.precision else {}),
            **{name: _json_float(scores[name]) for name in METRIC_NAMES},
            "classes": classes,
            "absent_classes": [self.class_names[index] for index in scores["absent_classes"]],
            "note": ABSENT_NOTE,
            "chance_mean_iou": _json_float(chance),
            "at_chance_level": at_chance_level(scores["mean_iou"], chance),
            "confusion_matrix": self.confusion.tolist(),
            "confusion_matrix_columns": list(self.class_names) + ["(no class)"],
        }

    def report_lines(self):
        """The per-class table and the four metrics, as lines of text."""
        scores = self.scores
        width = max([len(name) for name in self.class_names] + [5])
        lines = [f"{'class':<{width}}  {'IoU':>7}  {'acc':>7}  {'pixels':>12}"]
        for name, iou, accuracy, pixels in zip(
            self.class_names, scores["class_iou"], scores["class_accuracy"], scores["class_pixels"]
        ):
            lines.append(f"{name:<{width}}  {_percent(iou):>7}  {_percent(accuracy):>7}  {pixels:>12,}")
        lines.append("")
        lines.append(f"images scored           {self.num_images}")
        for name, label in (
            ("pixel_accuracy", "pixel accuracy"), ("mean_accuracy", "mean class accuracy"),
            ("mean_iou", "mean IoU"), ("frequency_weighted_iou", "frequency weighted IoU"),
        ):  # fmt: skip
            lines.append(f"{label:<23} {_percent(scores[name])}")
        absent = [self.class_names[index] for index in scores["absent_classes"]]
        if absent:
            lines.append(f"NaN: {', '.join(absent)} ({ABSENT_NOTE})")
        majority, chance = chance_mean_iou(self.confusion)
        if at_chance_level(scores["mean_iou"], chance):
            lines.append(f"this is chance level: predicting {self.class_names[majority]} on every pixel scores "
                         f"{_percent(chance)} mean IoU")  # fmt: skip
        invalid = int(self.confusion[:, -1].sum())
        if invalid:
            lines.append(f"{invalid:,} labelled pixels were predicted as no class (counted as errors)")
        return lines


def _json_float(value):
    return None if value is None or math.isnan(value) else float(value)


def _percent(value):
    return "nan" if value is None or math.isnan(value) else f"{100 * value:.2f}"


# -- a model ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EvaluateOptions:
    """What `evaluate` scores and writes besides the model and the split; each field is the
    `kseg evaluate` option of its name (`kseg evaluate --help`).

    Args:
        predictions: str or None. Score the label-map PNGs of this folder instead of a model.
        classes_file: str or None. Classes file of a folder/synthetic dataset.
        batch_size: int. Images per forward pass.
        max_images: int or None. Score only the first N images.
        label_format: str. With `predictions` on Cityscapes: "auto", "train-ids", "label-ids".
        out, confusion_png, sheet: str or None. Where the metrics JSON, the confusion-matrix
            image and the contact sheet go (a run's model: RUN_DIR/metrics-SPLIT.json and the
            confusion matrix beside it by default).
        sheet_images: int. Images on the contact sheet.
        precision: str. "fp32" or "bf16": what a Keras model computes in.
        fit: str. An export of a fixed size on other sizes: "resize" or "tile".
        unsafe: bool. Allow Keras models containing code (trusted files only).
    """

    predictions: str = None
    classes_file: str = None
    batch_size: int = 1
    max_images: int = None
    label_format: str = "auto"
    out: str = None
    confusion_png: str = None
    sheet: str = None
    sheet_images: int = 6
    precision: str = "fp32"
    fit: str = "resize"
    unsafe: bool = False


def evaluate_model(model, spec, split="val", options=None, examples=0, progress=True):
    """Runs a model over a split and accumulates its confusion matrix.

    Args:
        model: keras.Model, `kseg.exported.ExportedPredictor`, or str: a run directory, a
            `.keras` file, or an exported file (SavedModel folder, `.tflite`, `.onnx`;
            scored through `kseg.exported`, in the precision it was exported in).
        spec: DatasetSpec. From `kseg.data.get_dataset_spec`.
        split: str. The split to score.
        options: EvaluateOptions or None. What is used of it: `batch_size` (only images of
            one size share a batch, so results do not depend on it), `max_images`,
            `unsafe`, and `precision` ("fp32" or "bf16": a Keras model computes in it
            whatever policy it was trained under, as in `kseg predict`; an exported file
            computes as it was exported).
        examples: int. Keep `examples` (image, ground truth, prediction) triples, spread
            evenly over the images scored, in the result, for a contact sheet.
        progress: bool. Show a progress bar (tqdm, on stderr).

    Returns:
        EvaluationResult.
    """
    options = EvaluateOptions() if options is None else options
    model, source, precision = _scoring_model(model, spec, options)
    # the split's first N pairs: batches hold images of one size, so not its first batches
    dataset = make_dataset(spec, split, training=False, batch_size=options.batch_size,
                           options=DatasetOptions(max_pairs=options.max_images))  # fmt: skip
    total = dataset.num_pairs
    confusion = np.zeros((spec.num_classes, spec.num_classes + 1), np.int64)
    seen, kept = 0, []
    # examples spread evenly over the split: its first images are often one scene's frames
    wanted = set(np.linspace(0, total - 1, min(examples, total)).round().astype(int).tolist()) if examples else set()
    # the bar is cleared before an error message is printed
    with progress_bar(total, f"evaluating {split}", "img", enabled=progress) as bar, data_errors():
        for images, masks in dataset:
            images, masks = np.asarray(images), np.asarray(masks)  # tf.data or numpy batches
            logits = np.asarray(model.predict_on_batch(images))
            if not np.isfinite(logits).all():  # argmax would score NaN as class 0
                raise KsegError(nonfinite_logits_message(source) + "; no metrics computed")
            predictions = logits.argmax(axis=-1)
            confusion += confusion_matrix(masks, predictions, spec.num_classes, spec.ignore_index)
            kept.extend(example for index, example in enumerate(zip(images, masks, predictions), seen)
                        if index in wanted)  # fmt: skip
            seen += len(images)
            bar.update(len(images))
    return EvaluationResult(confusion, list(spec.class_names), seen, spec.name, split, source,
                            tuple(spec.palette), precision, kept)


def _scoring_model(model, spec, options):
    """The model `evaluate_model` runs, the source it names and the precision it computes
    in, its class count checked against the dataset's."""
    if not hasattr(model, "predict_on_batch") and export_format(model):
        model = ExportedPredictor(model)
    if isinstance(model, ExportedPredictor):
        check_dataset_classes(model, spec)
        return model, model.path, ""
    source = "model"
    if not hasattr(model, "predict_on_batch"):
        source, run_dir = runs.resolve_model_path(model)
        check_run_classes(run_dir, spec)
        model, _ = load_segmentation_model(source, unsafe=options.unsafe)
    model = inference_model(model, options.precision)
    outputs = model.outputs[0].shape[-1] if getattr(model, "outputs", None) else None
    if outputs is not None and outputs != spec.num_classes:
        raise KsegError(f"{source}: the model predicts {outputs} classes but {spec.name} has {spec.num_classes}")
    return model, source, options.precision


def check_run_classes(run_dir, spec):
    """Refuses a run trained on other classes than the dataset's."""
    classes = runs.read_classes(run_dir)
    if not classes or classes.get("class_names") is None:
        return
    trained = list(classes["class_names"])
    if len(trained) != spec.num_classes:
        dataset = f" ({classes['dataset']})" if classes.get("dataset") else ""  # every key is optional
        raise KsegError(
            f"{run_dir}: trained on {len(trained)} classes{dataset}, but {spec.name} has {spec.num_classes}"
        )
    if trained != list(spec.class_names):
        logger.warning("%s: class names differ from %s's; scoring by index", run_dir, spec.name)


# -- label maps already written -----------------------------------------------------------


def _index_predictions(folder):
    """Maps file stem -> path for every PNG under `folder` (recursively)."""
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            if name.lower().endswith(".png") and not name.startswith("."):
                stem = os.path.splitext(name)[0]
                if stem in found:
                    raise KsegError(
                        f"{folder}: two prediction files named {stem}.png "
                        f"({found[stem]}, {os.path.join(parent, name)})"
                    )
                found[stem] = os.path.join(parent, name)
    return found


def _cityscapes_key(stem):
    """city_sequence_frame, e.g. frankfurt_000000_000294, the id the benchmark matches on."""
    parts = stem.split("_")
    return "_".join(parts[:3]) if len(parts) >= 3 else None


def find_prediction(stem, predictions, cityscapes=False):
    """Returns the prediction file for an image stem, or None; several files matching a
    Cityscapes image's id are an error naming two of them, as in the official script."""
    key = _cityscapes_key(stem) if cityscapes else None
    if stem in predictions or key is None:  # a stem of fewer than three parts has no id to match on
        return predictions.get(stem)
    matches = [path for other, path in predictions.items() if _cityscapes_key(other) == key]
    if len(matches) > 1:
        raise KsegError(f"{stem}: {len(matches)} prediction files match its id {key} ({matches[0]}, {matches[1]}); "
                        "keep one, or name it <image stem>.png")  # fmt: skip
    return matches[0] if matches else None


# The --label-format choice each `kseg:labels` value of a label map stands for.
DECLARED_FORMATS = {"train-ids": "train-ids", "cityscapes-ids": "label-ids"}


def _label_format(matched, spec, label_format, folder):
    """The --label-format the matched prediction files are read in: what they declare
    (`kseg.label_maps`), else the option given, else for Cityscapes what their values prove.

    Raises:
        KsegError: files declaring different formats, a declaration the option or the
            dataset contradicts, or Cityscapes files that carry nothing and whose values
            fit both train ids and label ids (the line names --label-format).
    """
    declared, untagged = {}, []
    for path, _ in matched:
        try:  # a file that cannot be read says nothing here; scoring it names what is wrong
            found = declared_format(read_file(path, "prediction file"))
        except KsegError:
            found = None
        if found is None:
            untagged.append(path)
            continue
        written, classes = found
        if written not in DECLARED_FORMATS:
            raise KsegError(f"{path}: its {LABELS_KEY} text says {brief(written)}, not a label format kseg knows "
                            f"({', '.join(DECLARED_FORMATS)})")  # fmt: skip
        if written == "train-ids" and classes is not None and classes != spec.num_classes:
            raise KsegError(
                f"{path}: label map of a model with {classes} classes, but {spec.name} has {spec.num_classes}; "
                "score it against the dataset the model was trained on"
            )
        declared.setdefault(written, path)
    if len(declared) > 1:
        kinds = " and ".join(f"{written} ({path})" for written, path in declared.items())
        raise KsegError(f"{folder}: holds label maps of two kinds, {kinds}; score each kind from a folder of its own")
    if declared:
        written, path = next(iter(declared.items()))
        option = DECLARED_FORMATS[written]
        if label_format not in ("auto", option):
            raise KsegError(
                f"{path}: written as {written} (its {LABELS_KEY} text), but --label-format {label_format} was "
                f"given; leave --label-format at auto, or give --label-format {option}"
            )
        if option == "label-ids" and spec.name != "cityscapes":
            raise KsegError(
                f"{path}: holds Cityscapes label ids (`kseg predict --format cityscapes-ids`); score it with "
                f"--data cityscapes, or predict with --format labels to score it on {spec.name}"
            )
        if untagged and label_format == "auto":
            raise KsegError(
                f"{untagged[0]}: says nothing of what its values are, while {path} says {written}; pass "
                "--label-format train-ids or --label-format label-ids to say what all the files hold"
            )
        return option
    if label_format != "auto" or spec.name != "cityscapes":
        return "train-ids" if label_format == "auto" else label_format
    # values 19..254 (above the 19 train ids, below ignore) are no train id: no guess
    if any(((mask >= 19) & (mask < 255)).any() for mask in map(read_index_mask, untagged)):
        return "label-ids"
    raise KsegError(
        f"{folder}: the prediction files do not say what their values are, and every value fits both "
        "Cityscapes train ids (0..18) and label ids; pass --label-format train-ids or --label-format "
        "label-ids (`kseg predict` writes what its label maps hold into them)"
    )


def evaluate_predictions(folder, spec, split="val", label_format="auto", progress=True, max_images=None):
    """Scores label-map PNGs already written, matched to the split's images by file stem.

    Each ground-truth image of the split needs a prediction `<stem>.png` somewhere under
    `folder` (for Cityscapes, any file whose name starts with the image's
    city_sequence_frame id also matches, as in the official script); a missing one is an
    error. Predicted values that are no class (e.g. 255) count as errors of the true class.

    Cityscapes label ids are scored as the official script scores them (module docstring).

    Args:
        folder: str. Where the prediction PNGs are.
        spec: DatasetSpec. The dataset whose ground truth is used.
        split: str. The split scored.
        label_format: str. "auto", "train-ids" or "label-ids" (Cityscapes only). "auto"
            reads what the files declare (`kseg.label_maps`: every label map `kseg
            predict` writes says it); for Cityscapes files declaring nothing, label ids
            when a file holds a value from 19 to 254, and an error when every value fits
            both. A declaration that contradicts the option, the dataset or another
            file's is an error.
        progress: bool. Show a progress bar.
        max_images: int or None. Score only the first N images of the split (only they
            need a prediction).

    Returns:
        EvaluationResult.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise KsegError(f"{folder}: prediction folder not found")
    if label_format not in LABEL_FORMATS:
        raise KsegError(
            f"--label-format: expected one of {', '.join(LABEL_FORMATS)}. Received: {label_format!r}"
        )
    cityscapes = spec.name == "cityscapes"
    if label_format == "label-ids" and not cityscapes:
        raise KsegError(f"--label-format label-ids applies to Cityscapes only, not {spec.name}")
    predictions = _index_predictions(folder)
    if not predictions:
        raise KsegError(f"{folder}: no prediction PNGs found")
    pairs = spec.pairs(split)[:max_images]
    matched, missing = [], []
    for image_path, mask_path in pairs:
        stem = os.path.splitext(os.path.basename(image_path))[0]
        path = find_prediction(stem, predictions, cityscapes)
        (matched.append((path, mask_path)) if path else missing.append(stem))
    if missing:
        raise KsegError(
            f"{folder}: no prediction for {len(missing)} of {len(pairs)} {split} images "
            f"(first: {missing[0]}.png); predictions are matched by image file stem"
        )
    table = None
    if _label_format(matched, spec, label_format, folder) == "label-ids":
        table = label_id_to_train_id_table()
        logger.info("%s: predictions hold Cityscapes label ids; mapping them to train ids", folder)

    confusion = _score_predictions(matched, spec, table, split, progress)
    return EvaluationResult(confusion, list(spec.class_names), len(matched), spec.name, split, folder)


def _score_predictions(matched, spec, table, split, progress):
    """The confusion matrix of (prediction PNG, ground-truth mask) pairs; `table` maps
    stored prediction values to train ids (or None)."""
    num_classes = spec.num_classes
    confusion = np.zeros((num_classes, num_classes + 1), np.int64)
    with progress_bar(len(matched), f"scoring {split}", "img", enabled=progress) as bar:
        for prediction_path, mask_path in matched:
            truth = spec.to_train_ids(spec.read_raw_mask(mask_path), mask_path)
            prediction = read_index_mask(prediction_path)
            if prediction.shape != truth.shape:
                raise KsegError(
                    f"{prediction_path}: prediction is {prediction.shape[1]}x{prediction.shape[0]} "
                    f"(WxH) but the ground truth {mask_path} is {truth.shape[1]}x{truth.shape[0]}"
                )
            if table is not None:
                prediction = table[prediction]
            confusion += confusion_matrix(truth, prediction, num_classes, spec.ignore_index)
            bar.update(1)
    return confusion


# -- outputs ------------------------------------------------------------------------------


def plot_confusion_matrix(result, path):
    """Draws the row-normalised confusion matrix (recall per class) as a PNG.

    The "no class" column is drawn only when some prediction fell there.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    confusion = result.confusion.astype(np.float64)
    names = [drawable_text(name) for name in result.class_names]
    columns = list(names)
    if confusion[:, -1].sum() > 0:
        columns.append("(no class)")
    else:
        confusion = confusion[:, :-1]
    rows = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, rows, out=np.zeros_like(confusion), where=rows > 0)
    # About half an inch per class, so 19-21 classes keep legible names and numbers.
    size = max(4.0, 0.5 * len(columns) + 2.5)
    figure = Figure(figsize=(size + 1, size), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    image = axes.imshow(normalised * 100, cmap="Blues", vmin=0, vmax=100)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="% of the true class's pixels")
    # parse_math=False: names are text, and "$" in one is no formula (two of them would not parse)
    axes.set_xticks(range(len(columns)), columns, rotation=60, ha="right", rotation_mode="anchor", parse_math=False)
    axes.set_yticks(range(len(names)), names, parse_math=False)
    axes.set_xticks(np.arange(len(columns) + 1) - 0.5, minor=True)
    axes.set_yticks(np.arange(len(names) + 1) - 0.5, minor=True)
    axes.grid(which="minor", color="#d0d0d0", linewidth=0.5)
    axes.tick_params(which="minor", length=0)
    axes.set(xlabel="predicted", ylabel="ground truth")
    axes.set_title(f"{result.dataset} {drawable_text(result.split)}: mean IoU {_percent(result.scores['mean_iou'])} "
                   "(each row: % of that class's pixels)", parse_math=False)  # fmt: skip
    if len(columns) <= 40:
        fontsize = 8 if len(columns) <= 25 else 6
        for (row, column), value in np.ndenumerate(normalised):
            percent = round(value * 100)
            if percent >= 1:
                axes.text(column, row, str(percent), ha="center", va="center", fontsize=fontsize,
                          color="white" if percent > 50 else "black")  # fmt: skip
    figure.tight_layout()
    figure.savefig(path, format="png")


def _report_outputs(split, chosen, exported, spec, options):
    """Where `evaluate` writes its reports, checked against kseg's output policy
    (`kseg.outputs`): none may be one of its inputs (the model, its classes, a class list,
    the dataset, the predictions folder) or lie in one, nor a file kseg did not write.

    Without --out a run's .keras model writes RUN_DIR/metrics-SPLIT.json. The shipped
    model's folder is kseg's own, and a run's metrics file is its .keras model's, not an
    export's: for those two the metrics are written only with --out. The confusion matrix
    goes beside the metrics (`<out stem>-confusion.png`) unless --confusion-png says where.

    Returns:
        tuple. (out, confusion_png, kseg.outputs.Outputs for `write_reports`); out and
        confusion_png are None when not written.
    """
    out, confusion_png = options.out, options.confusion_png
    if out is None and chosen and not exported and chosen.output_dir:
        out = os.path.join(chosen.output_dir, f"metrics-{split}.json")
    if out and confusion_png is None:
        confusion_png = os.path.splitext(out)[0] + "-confusion.png"
    run_dir = chosen and chosen.run_dir
    classes = run_dir and os.path.join(run_dir, runs.CLASSES_FILE)
    checked = Outputs([chosen and chosen.path, options.classes_file, classes, spec.root, options.predictions])
    if out:
        checked.add(out, "metrics", **_named_by(options.out, "--out"))
    for option, path, given in (("--confusion-png", confusion_png, options.confusion_png),
                                ("--sheet", options.sheet, options.sheet)):  # fmt: skip
        if path:
            checked.add(path, "evaluation image", **_named_by(given, option))
    return out, confusion_png, checked


def _named_by(given, option):
    """How messages name an output: by `option` where the user gave it; a path chosen by
    default is named as it is, not as an option the user did not give."""
    return {"option": option} if given else {"option": None, "choose": f"a path with {option}"}


def contact_sheet_png(result, path):
    """PNG bytes of image | ground truth | prediction for `result.examples`, one row each,
    with the legend of the classes that appear in them (`path`: where it goes, for messages)."""
    if not result.examples:
        raise KsegError(f"{path}: no images were evaluated, so there is no contact sheet to write")
    num_classes = len(result.class_names)
    palette = palette_from_classes({"palette": [list(c) for c in result.palette]}, num_classes)
    rows, present = [], set()
    for image, truth, prediction in result.examples:
        truth, prediction = np.asarray(truth), np.asarray(prediction)
        present.update(np.unique(truth[truth != IGNORE_INDEX]).tolist(), np.unique(prediction).tolist())
        rows.append([np.asarray(image, np.uint8), colorize(truth, palette), colorize(prediction, palette)])
    heights = {row[0].shape[:2] for row in rows}
    if len(heights) > 1:  # images of several sizes: scale each row to the first's height
        height = rows[0][0].shape[0]
        rows = [[_scale_to_height(part, height) for part in row] for row in rows]
        widest = max(row[0].shape[1] for row in rows)
        rows = [[np.pad(part, ((0, 0), (0, widest - part.shape[1]), (0, 0)), constant_values=255) for part in row]
                for row in rows]  # fmt: skip
    width = sum(part.shape[1] for part in rows[0]) + 16
    key = legend(result.class_names, palette, width=width, classes=sorted(present))
    return encode_png(contact_sheet(rows, legend_image=key))


def _scale_to_height(image, height):
    scale = height / image.shape[0]
    size = (max(1, round(image.shape[1] * scale)), height)
    return cv2.resize(image, size, interpolation=cv2.INTER_NEAREST)


def write_reports(result, out=None, confusion_png=None, sheet_png=None, checked=None):
    """Writes the metrics JSON, the confusion-matrix image and the contact sheet where asked,
    all or none (`kseg.outputs.write_together`).

    Args:
        checked: kseg.outputs.Outputs or None. From `_report_outputs`; records what
            is written in the folders' lists of kseg's outputs.

    Returns:
        list of (what, path) written, e.g. [("metrics", "m.json")].
    """
    reports = []  # (what, path, writer)
    if out:
        reports.append(("metrics", out, bytes_writer((json.dumps(result.to_dict(), indent=2) + "\n").encode("utf8"))))
    if confusion_png:
        reports.append(("confusion matrix", confusion_png, lambda temporary: plot_confusion_matrix(result, temporary)))
    if sheet_png:
        reports.append(("contact sheet", sheet_png, bytes_writer(contact_sheet_png(result, sheet_png))))
    with checked if checked is not None else contextlib.nullcontext():
        write_together([(path, writer) for _, path, writer in reports])
    return [(what, path) for what, path, _ in reports]


def _announced(path, exported, options):
    """The model `evaluate` scores (a path, or an `ExportedPredictor` for an export), once
    a "model: ..." line has said what it is and how it computes."""
    if exported:
        scored = ExportedPredictor(path, exported, fit=options.fit)
        write(f"model: {scored.describe()}")
        return scored
    write(f"model: {path} (computed in {options.precision})")
    warning = slow_precision_warning(options.precision)
    if warning:
        write(f"warning: {warning}")
    return path


def evaluate(model=None, *, data, data_dir=None, split="val", options=None):
    """Scores a model (or label maps already written) on a dataset split and writes the
    reports: what `kseg evaluate` does.

    Args:
        model: str or None. A run folder, a .keras file or an export (.tflite, .onnx, a
            SavedModel folder); None with no `options.predictions`: the latest run under
            ./runs, else the model kseg ships (`kseg.exported.choose_model` says which).
        data: str. The dataset holding the ground truth (`kseg.data.DATASET_NAMES`).
        data_dir: str or None. Its root folder.
        split: str. The split scored.
        options: EvaluateOptions or None (the defaults).

    Returns:
        EvaluationResult. Its `written` lists the reports written.
    """
    options = EvaluateOptions() if options is None else options
    if options.predictions and model:
        raise KsegError("give either MODEL or --predictions DIR, not both")
    if options.sheet and options.predictions:
        raise KsegError("--sheet needs a MODEL: it shows the model's predictions beside the images")
    spec = get_dataset_spec(data, data_dir, options.classes_file)
    chosen = exported = None
    if not options.predictions:
        chosen, exported = choose_model(model, "MODEL or --predictions DIR", options.precision)
    out, confusion_png, checked = _report_outputs(split, chosen, exported, spec, options)
    if options.predictions:
        result = evaluate_predictions(options.predictions, spec, split, options.label_format,
                                      max_images=options.max_images)  # fmt: skip
    else:
        result = evaluate_model(_announced(chosen.path, exported, options), spec, split, options,
                                examples=options.sheet_images if options.sheet else 0)  # fmt: skip
    result.written = write_reports(result, out, confusion_png, options.sheet, checked)
    return result
