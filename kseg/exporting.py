"""Exporting a trained FCN to SavedModel, TFLite or ONNX, and checking the export.

Every export takes uint8 RGB images `images` `[batch, height, width, 3]` (0..255, no
normalization: the preprocessing stays inside, as in the Keras model) and returns
`logits` (float32, `[batch, height, width, classes]`) and, except the MediaPipe-ready
TFLite file, `classes` (int32 class map, `[batch, height, width]`). Every export carries
its class names (and colours, when the model's classes.json has them): see
`kseg.export_metadata`.

- SavedModel: a `serving_default` signature for any image size (or the fixed
  `input_size`), written with keras' `ExportArchive`, and a `kseg_metadata` signature.
- TFLite: converted from that SavedModel. By default (`mediapipe=True`) the file is what
  MediaPipe's ImageSegmenter runs: a fixed input size (`input_size`, else
  DEFAULT_TFLITE_SIZE), batch 1, one output `logits` [1, H, W, classes], and MediaPipe's
  metadata (labels, normalization, softmax). With `mediapipe=False` it is a plain LiteRT
  file: any size unless `input_size` (LiteRT resizes the input per image), outputs
  `classes` and `logits`. `quantize` is "none" (float32), "fp16" (float16 weights),
  "dynamic" (int8 weights, float activations) or "int8" (full-integer: weights and
  activations int8, calibrated on real images; only the uint8 image input and the float
  logits stay outside).
- ONNX: through keras' exporter (tf2onnx), checked with onnxruntime; dynamic dimensions
  are named batch, height and width.

`check_export` runs the exported file and the Keras model on the same images and reports
the largest logit difference and the fraction of pixels whose class agrees.
"""

import contextlib
import dataclasses
import logging
import math
import os
import pathlib
import tempfile

import keras
import numpy as np

from kseg.choices import EXPORT_FORMATS, QUANTIZATIONS
from kseg.data import get_dataset_spec
from kseg.data.registry import DATASET_NAMES
from kseg.errors import DiskFullError, KsegError, is_disk_full
from kseg.export_metadata import (
    MARKER,
    add_metadata_signature,
    check_label_names,
    describe,
    encode,
    onnx_with_metadata,
    read_metadata,
    tflite_with_metadata,
)
from kseg.images import IMAGE_EXTENSIONS, list_image_files, read_image
from kseg.inference import predict_logits, resize
from kseg.models.inference import inference_model
from kseg.models.saving import load_segmentation_model
from kseg.outputs import check, scratch_beside, seal_folder, writing
from kseg.progress import write
from kseg.runs import SHIPPED_MODEL, choose_model, read_classes
from kseg.signals import phase

SIGNATURE = "serving_default"
INPUT_NAME = "images"
OUTPUT_NAMES = ("classes", "logits")
MEDIAPIPE_OUTPUTS = ("logits",)
# The input size of a MediaPipe-ready TFLite file without --input-size: MediaPipe resizes
# every image to the model's fixed input and the mask back to the image.
DEFAULT_TFLITE_SIZE = (512, 512)
DEFAULT_CALIBRATION_IMAGES = 100
# An unquantized export is a conversion, not an approximation: logits may differ only by
# float rounding, within FLOAT_TOLERANCE of the largest logit. One exception passes
# --check too: at most MAX_OFF_PIXELS of the pixels beyond it, with the classes agreeing
# on MIN_PIXEL_AGREEMENT of them. Where a max pooling window holds two almost equal values,
# rounding may pick the other one, and SegNet's unpooling then puts a value one pixel off,
# which the decoder spreads (a SegNet after one epoch: 0.52% of the pixels beyond the
# tolerance at 512x512 under LiteRT's XNNPACK, the classes agreeing on 99.96%).
FLOAT_TOLERANCE = 1e-3
MAX_OFF_PIXELS = 0.01
MIN_PIXEL_AGREEMENT = 0.999


@keras.saving.register_keras_serializable(package="kseg")
class ClassMap(keras.layers.Layer):
    """Logits (N, H, W, C) -> int32 class map (N, H, W): the arg-max over classes."""

    def call(self, logits):
        import tensorflow as tf  # keras.ops.argmax adds bit tricks TFLite cannot run

        return tf.argmax(logits, axis=-1, output_type=tf.int32)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])


def serving_model(model, names=OUTPUT_NAMES):
    """Returns a model around `model` (the same layers) with outputs {logits, classes}.

    Args:
        model: keras.Model. RGB images -> logits, as built by kseg's builders.
        names: tuple of str. OUTPUT_NAMES, or MEDIAPIPE_OUTPUTS for the logits alone.
    """
    images = keras.Input((None, None, 3), dtype="uint8", name=INPUT_NAME)
    outputs = keras.tree.flatten(model(images))
    if len(outputs) != 1:
        raise KsegError(
            f"cannot export model '{model.name}': expected one output (the logits), found {len(outputs)}"
        )
    logits = outputs[0]
    classes = ClassMap(name="classes")(logits)
    logits = keras.layers.Identity(name="logits", dtype="float32")(logits)
    served = {"logits": logits, "classes": classes}
    return keras.Model(images, {name: served[name] for name in names}, name=f"{model.name}_serving")


def num_classes_of(model):
    """The number of classes `model` predicts (the last dimension of its logits), from a
    symbolic call (a Sequential model that was never called has no `output`)."""
    return int(keras.tree.flatten(model(keras.Input((None, None, 3))))[0].shape[-1])


def input_spec(input_size=None, batch=None):
    import tensorflow as tf

    height, width = input_size if input_size else (None, None)
    return tf.TensorSpec([batch, height, width, 3], tf.uint8, name=INPUT_NAME)


def write_savedmodel(model, path, input_size=None, batch=None, description=None,
                     outputs=OUTPUT_NAMES):
    """Writes a SavedModel with a `serving_default` signature (see the module docstring).

    Not atomic by itself; `export_model` wraps it.

    Args:
        description: dict or None. `kseg.export_metadata.describe`'s, written to MARKER and
            served by a `kseg_metadata` signature; None for the intermediate SavedModel of
            a TFLite conversion, which gets neither.
        outputs: tuple of str. The outputs of `serving_model`.
    """
    served = serving_model(model, outputs)
    archive = keras.export.ExportArchive()
    archive.track(served)
    archive.add_endpoint(
        SIGNATURE, lambda images: served(images, training=False),
        input_signature=[input_spec(input_size, batch)],
    )  # fmt: skip
    if description is not None:
        add_metadata_signature(archive, description)
    tensorflow_log = logging.getLogger("tensorflow")  # it logs "Assets written to: <temporary>"
    level = tensorflow_log.level
    tensorflow_log.setLevel(max(level, logging.WARNING))
    try:
        with phase():  # keras' writer may swallow or rename an interruption
            archive.write_out(os.fspath(path), verbose=False)
    finally:
        tensorflow_log.setLevel(level)
    if description is not None:
        marker = pathlib.Path(path, MARKER)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_bytes(encode(description))


@dataclasses.dataclass(frozen=True)
class ExportTarget:
    """What `export_model` writes: the format and how the file is made.

    Args:
        format: str. One of EXPORT_FORMATS.
        quantize: str. TFLite only: one of QUANTIZATIONS.
        input_size: tuple (height, width) or None. Fixed input shape, else any size (a
            MediaPipe-ready TFLite file: DEFAULT_TFLITE_SIZE).
        calibration: list of uint8 RGB images or None. For TFLite "int8"; resized to
            `input_size` when it is given.
        classes: dict or None. The model's checked classes.json (`kseg.runs.read_classes`):
            its class names and colours go into the export; without one the classes are
            named "class 0" .. "class N-1".
        mediapipe: bool. TFLite only: a MediaPipe-ready file (fixed size, one output
            `logits`), else a plain LiteRT file with outputs `classes` and `logits`.
    """

    format: str = "tflite"
    quantize: str = "none"
    input_size: tuple = None
    calibration: list = dataclasses.field(default=None, compare=False, repr=False)
    classes: dict = None
    mediapipe: bool = True


def tflite_bytes(model, target=ExportTarget(), workdir=None, name="kseg-export"):
    """Converts `model` to a TFLite flatbuffer with metadata (`kseg.export_metadata`).

    The conversion goes through a SavedModel written to a hidden temporary folder
    `.<name>.XXXXXXXX.tmp` in `workdir` (beside the output, not in $TMPDIR: a killed
    export leaves nothing hundreds of megabytes large out of sight); it is removed on any
    exception, Ctrl-C and SIGTERM included.

    Args:
        model: keras.Model. RGB images -> logits.
        target: ExportTarget. Its quantization, input size, calibration images, classes
            and MediaPipe choice (its format is not read).
        workdir: str or None. Folder for the temporary SavedModel.
        name: str. Base of the temporary folder's name (the output's file name).
    """
    quantize = target.quantize
    if quantize not in QUANTIZATIONS:
        raise KsegError(f"unknown quantization {quantize!r}; choose one of {', '.join(QUANTIZATIONS)}")
    if quantize == "int8" and not target.calibration:
        raise KsegError(
            "int8 quantization needs calibration images: pass --calibration-data with a "
            "folder of images or a dataset name"
        )
    # MediaPipe needs a fixed input size; a plain LiteRT file takes any size by default.
    input_size = target.input_size or (DEFAULT_TFLITE_SIZE if target.mediapipe else None)
    input_size = tuple(input_size) if input_size else None
    outputs = MEDIAPIPE_OUTPUTS if target.mediapipe else OUTPUT_NAMES
    description = describe(num_classes_of(model), target.classes, "tflite", quantize, input_size,
                           batch=1, outputs=outputs)
    check_label_names(description["class_names"])  # before the conversion, not after
    destination = os.path.abspath(os.path.join(workdir or tempfile.gettempdir(), name))
    with scratch_beside(destination) as folder, _disk_full(destination):
        content = _convert(model, os.path.join(folder, "savedmodel"), target, input_size, outputs)
        return tflite_with_metadata(content, description, target.mediapipe)


def _convert(model, saved, target, input_size, outputs):
    """Writes the SavedModel `saved` and converts it (see `tflite_bytes`)."""
    import tensorflow as tf

    write_savedmodel(model, saved, input_size, batch=1, outputs=outputs)
    with phase():
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=[SIGNATURE])
    quantize = target.quantize
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        def representative():
            for image in target.calibration:
                image = resize(image, input_size) if input_size else image
                yield {INPUT_NAME: np.ascontiguousarray(image[None], dtype=np.uint8)}

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # The input is uint8 already and stays a plain uint8 tensor either way; saying so
        # keeps the converter from logging "input_inference_type: FLOAT32".
        converter.inference_input_type = tf.uint8
    try:
        with phase():  # the converter may swallow an interruption, or report it as its failure
            return converter.convert()
    except Exception as error:
        if is_disk_full(error):
            raise
        # The TFLite converter names the ops it cannot convert only in its message.
        detail = next((line.strip() for line in str(error).splitlines() if "ops:" in line), str(error).strip()[:300])
        raise KsegError(
            f"TFLite conversion ({quantize}) failed: {type(error).__name__}: {detail}"
        ) from None


def write_onnx(model, path, input_size, description):
    """Writes an ONNX file (keras' exporter, via tf2onnx) with outputs logits and classes,
    named dynamic dimensions and `description` (`kseg.export_metadata.describe`) in its
    metadata_props."""
    served = serving_model(model)
    try:
        with phase():  # tf2onnx catches every exception in places, an interruption too
            served.export(os.fspath(path), format="onnx", input_signature=[input_spec(input_size)],
                          verbose=False)
        import onnx
    except ImportError as error:
        raise KsegError(
            f"ONNX export needs tf2onnx and onnx ({error}); install kseg[export]"
        ) from None
    onnx.save(onnx_with_metadata(os.fspath(path), description), os.fspath(path))


def float32_model(model):
    """`model` with every layer computing in float32: a model trained under a mixed policy
    (mixed_bfloat16 on a CPU, mixed_float16 on a GPU) keeps float32 variables but computes
    in 16 bits; LiteRT's builtin kernels have no bfloat16 ops, and every export is float32
    whatever the training policy. Returns `model` itself when it already computes in
    float32."""
    policies = sorted({layer.dtype_policy.name for layer in model.layers
                       if layer.dtype_policy.name not in ("float32", "int32", "uint8")})  # fmt: skip
    if policies:
        logging.getLogger("kseg").info("exporting in float32 (the model computed in %s)", ", ".join(policies))
    return inference_model(model, "fp32")


def export_model(model, out, target, verify=None):
    """Exports `model` to `out`, atomically (a kill leaves any previous export intact).

    Args:
        model: keras.Model. RGB images -> logits.
        out: str. Destination: a folder for "savedmodel", a file otherwise.
        target: ExportTarget. The format, quantization, input size, calibration images,
            classes and MediaPipe choice.
        verify: callable or None. Called with the path of the complete export under its
            temporary name, before it replaces `out`; an exception it raises (a failed
            --check) leaves `out` as it was and removes the new export.

    Returns:
        str. The path written.

    Raises:
        DiskFullError: one line naming `out`; nothing is left behind.
    """
    format, quantize, input_size = target.format, target.quantize, target.input_size
    if format not in EXPORT_FORMATS:
        raise KsegError(f"unknown export format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    if quantize != "none" and format != "tflite":
        raise KsegError(f"--quantize {quantize} applies to TFLite exports, not {format}")
    model = float32_model(model)
    out = os.fspath(out)
    if format == "savedmodel" and os.path.isfile(out):
        raise KsegError(f"{out}: exists and is a file; a SavedModel is a folder")
    if format != "savedmodel" and os.path.isdir(out):  # checked before the conversion, not at the rename
        raise KsegError(f"{out}: exists and is a folder; the {format} export is a file")
    if format == "tflite":
        content = tflite_bytes(model, target, *os.path.split(os.path.abspath(out)))
    else:
        description = describe(num_classes_of(model), target.classes, format, quantize, input_size)
        if format == "savedmodel":  # its names go into a string tensor; ONNX's stay JSON
            check_label_names(description["class_names"], labels_file=False)
    with writing(out, directory=format == "savedmodel") as temporary:
        if format == "savedmodel":
            os.rmdir(temporary)  # the SavedModel writer creates the folder itself
            with _disk_full(out):
                write_savedmodel(model, temporary, input_size, description=description)
            seal_folder(temporary, "savedmodel export")
        elif format == "tflite":
            with open(temporary, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
        else:
            with _disk_full(out):
                write_onnx(model, temporary, input_size, description)
        if verify:
            verify(temporary)
    return out


@contextlib.contextmanager
def _disk_full(out):
    """Reports a full disk as one line naming `out`: TensorFlow and tf2onnx wrap the
    OSError in their own errors."""
    try:
        yield
    except KsegError:
        raise
    except Exception as error:
        if is_disk_full(error):
            raise DiskFullError(f"{out}: no space left on device (nothing was written)") from None
        raise


# -- where an export may go ------------------------------------------------------------


def check_destination(out, format, model_path, run_dir=None, inputs=(), force=False):
    """Checks an export destination against kseg's output policy (`kseg.outputs`): never
    the model `model_path`, its run's classes.json or one of `inputs` (the --calibration-data
    and --check-images folders), nor inside or holding them; an existing `out` is replaced
    only with `force`, and only if kseg wrote it as a `format` export. Returns the
    `kseg.outputs.Outputs` to use around `export_model` (`with checked:`).

    Raises:
        KsegError: one line naming `out`, what it is, and the way out.
    """
    classes = os.path.join(run_dir, "classes.json") if run_dir else None
    return check(out, f"{format} export", [model_path, classes, *inputs], force, folder=format == "savedmodel")


def default_output_path(model_path, run_dir, format, quantize="none"):
    """Where `kseg export` writes without --out: beside the model, named by format."""
    base = os.path.join(run_dir, "export") if run_dir else os.path.dirname(os.path.abspath(model_path))
    stem = os.path.splitext(os.path.basename(model_path))[0]
    if format == "tflite" and quantize != "none":
        stem += f"_{quantize}"
    return os.path.join(base, stem + {"savedmodel": "_savedmodel", "tflite": ".tflite"}.get(format, ".onnx"))


# -- reading exports back --------------------------------------------------------------


class ExportedModel:
    """Runs an exported file on one image: `exported(image) -> logits (H, W, classes)`.

    Reads any kseg export: a MediaPipe-ready TFLite file (output `logits` only) as well as
    one with outputs `classes` and `logits`. A file with a fixed input size takes images
    of that size only (see `input_size`); another size is refused with one line.

    Args:
        path: str. A SavedModel folder, `.tflite` or `.onnx` file.
        format: str. One of EXPORT_FORMATS.
        threads: int or None. CPU threads for TFLite; None lets LiteRT choose.
        name: str or None. What messages call the export (its final path while `path` is
            still its temporary name); `path` by default.

    Attributes:
        input_size: tuple (height, width) or None. The fixed input size, if any.
        metadata: dict or None. kseg's description of the export
            (`kseg.export_metadata.describe`); None for an export written before kseg
            described its classes.
        class_names: list of str or None. From `metadata`.
        palette: list of [r, g, b] or None. From `metadata`, when the model had colours.
    """

    def __init__(self, path, format, threads=None, name=None):
        self.path, self.format = os.fspath(path), format
        self.name = name or self.path  # what messages call it (its final path)
        if not os.path.exists(self.path):
            raise KsegError(f"{self.path}: exported model not found")
        properties = None
        if format == "savedmodel":
            import tensorflow as tf

            self._loaded = tf.saved_model.load(self.path)
            function = self._loaded.signatures[SIGNATURE]
            shape = function.structured_input_signature[1][INPUT_NAME].shape
            self._logits = lambda batch: function(**{INPUT_NAME: tf.constant(batch)})["logits"].numpy()
        elif format == "tflite":
            from ai_edge_litert.interpreter import Interpreter

            interpreter = Interpreter(model_path=self.path, num_threads=threads)
            runner = interpreter.get_signature_runner(SIGNATURE)
            shape = interpreter.get_input_details()[0]["shape_signature"]
            self._logits = lambda batch: runner(**{INPUT_NAME: batch})["logits"]
        elif format == "onnx":
            import onnxruntime

            session = onnxruntime.InferenceSession(self.path, providers=["CPUExecutionProvider"])
            image_input, outputs = session.get_inputs()[0], session.get_outputs()
            names = [output.name for output in outputs]
            # tf2onnx keeps the outputs in the order of the signature's sorted keys
            logits = "logits" if "logits" in names else names[[len(output.shape) for output in outputs].index(4)]
            shape = image_input.shape
            self._logits = lambda batch: session.run([logits], {image_input.name: batch})[0]
            properties = session.get_modelmeta().custom_metadata_map
        else:
            raise KsegError(f"unknown export format {format!r}")
        height, width = shape[1], shape[2]  # a fixed size is two positive ints; else None, -1 or a name
        fixed = all(isinstance(size, (int, np.integer)) and size > 0 for size in (height, width))
        self.input_size = (int(height), int(width)) if fixed else None
        self.metadata = read_metadata(self.path, format, properties)
        self.class_names = self.metadata["class_names"] if self.metadata else None
        self.palette = self.metadata.get("palette") if self.metadata else None

    def __call__(self, image):
        image = np.asarray(image, dtype=np.uint8)
        if self.input_size and tuple(image.shape[:2]) != self.input_size:
            height, width = self.input_size
            raise KsegError(
                f"{self.name}: takes {height}x{width} images only (its fixed input size); this "
                f"image is {image.shape[0]}x{image.shape[1]}: resize it first, or export "
                "with another --input-size"
            )
        return self._logits(np.ascontiguousarray(image[None]))[0]


@dataclasses.dataclass
class Parity:
    """How closely an export reproduces the Keras model.

    Args:
        max_logit_diff: float. Largest absolute logit difference over all images; inf
            when either side has a non-finite logit.
        pixel_agreement: float. Fraction of pixels with the same predicted class (a pixel
            with a NaN or inf logit on either side never agrees).
        images: int. Number of images compared.
        max_logit: float. Largest absolute finite Keras logit, for scale.
        keras_nonfinite: int. NaN or inf values among the Keras model's logits.
        export_nonfinite: int. NaN or inf values among the export's logits.
        off_pixels: float. Fraction of pixels whose logits differ by more than
            FLOAT_TOLERANCE of `max_logit` (or are not finite on either side).
    """

    max_logit_diff: float
    pixel_agreement: float
    images: int
    max_logit: float
    keras_nonfinite: int = 0
    export_nonfinite: int = 0
    off_pixels: float = 0.0

    def __str__(self):
        text = (
            f"max |logit difference| {self.max_logit_diff:.3g} (logits up to "
            f"{self.max_logit:.3g}; beyond {FLOAT_TOLERANCE:g} of that at {100 * self.off_pixels:.3f}% of "
            f"pixels), class agreement {100 * self.pixel_agreement:.2f}% of pixels, over {self.images} image(s)"
        )
        if self.keras_nonfinite or self.export_nonfinite:
            text += (f"; NaN/inf logits: {self.export_nonfinite} in the export, "
                     f"{self.keras_nonfinite} in the Keras model")
        return text


def check_export(model, exported, images):
    """Compares an `ExportedModel` with the Keras model on uint8 RGB images.

    Images are resized to the export's fixed input size when it has one. NaN and inf
    are counted, never compared: `nan > tolerance` is false, so a NaN difference would
    otherwise pass for agreement.
    """
    largest, agree, total = 0.0, 0, 0
    keras_bad = export_bad = 0
    pixel_diffs = []  # per image, each pixel's largest logit difference (inf: not finite)
    for image in images:
        if exported.input_size:
            image = resize(image, exported.input_size)
        expected = predict_logits(model, image)
        actual = np.asarray(exported(image), dtype=np.float32)
        if actual.shape != expected.shape:
            raise KsegError(
                f"{exported.name}: returned logits of shape {actual.shape}, expected "
                f"{expected.shape}"
            )
        expected_ok, actual_ok = np.isfinite(expected), np.isfinite(actual)
        keras_bad += int(expected.size - expected_ok.sum())
        export_bad += int(actual.size - actual_ok.sum())
        both = expected_ok & actual_ok
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: masked by `both` anyway
            pixel_diffs.append(np.where(both, np.abs(actual - expected), np.inf).max(-1))
        largest = max(largest, float(np.abs(np.where(expected_ok, expected, 0)).max(initial=0.0)))
        same = (actual.argmax(-1) == expected.argmax(-1)) & both.all(-1)
        agree += int(same.sum())
        total += expected.shape[0] * expected.shape[1]
    worst = max((float(diffs.max(initial=0.0)) for diffs in pixel_diffs), default=0.0)
    tolerance = FLOAT_TOLERANCE * max(1.0, largest)
    off = sum(int((diffs > tolerance).sum()) for diffs in pixel_diffs)
    return Parity(worst, agree / max(total, 1), len(images), largest, keras_bad, export_bad, off / max(total, 1))


def parity_problem(parity, out, quantize="none", model_path="the Keras model"):
    """The one-line reason an export fails --check, or None when it passes.

    Any NaN or inf logit fails, in the export or in the Keras model; an unquantized
    export must also match the Keras logits within FLOAT_TOLERANCE of the largest logit,
    or at all but MAX_OFF_PIXELS of the pixels with the classes agreeing on
    MIN_PIXEL_AGREEMENT of them.
    """
    if parity.keras_nonfinite:
        return (f"{model_path}: the model's logits hold NaN or inf on the check images "
                f"({parity.keras_nonfinite} values): the model is damaged")
    if parity.export_nonfinite:
        return (f"{out}: the export's logits hold NaN or inf ({parity.export_nonfinite} values) "
                "where the Keras model's are finite: the export is broken")
    within = parity.max_logit_diff <= FLOAT_TOLERANCE * max(1.0, parity.max_logit)
    nearly = parity.off_pixels <= MAX_OFF_PIXELS and parity.pixel_agreement >= MIN_PIXEL_AGREEMENT
    if quantize == "none" and (math.isnan(parity.max_logit_diff) or not (within or nearly)):
        return (f"{out}: the export differs from the Keras model (max logit difference "
                f"{parity.max_logit_diff:.3g}, at {100 * parity.off_pixels:.2f}% of the pixels; classes agree on "
                f"{100 * parity.pixel_agreement:.2f}%)")
    return None


# -- images for checks and calibration -------------------------------------------------


def sample_images(count=4, sizes=((96, 128), (75, 61)), seed=0):
    """Generated RGB test images: smooth colour gradients with shapes and some noise.

    Used by `--check` when no --check-images are given; sizes alternate so both a
    multiple of 32 and an odd size go through the export.
    """
    rng = np.random.default_rng(seed)
    images = []
    for index in range(count):
        height, width = sizes[index % len(sizes)]
        rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
        image = np.zeros((height, width, 3), np.float32)
        for channel in range(3):
            angle = rng.uniform(0, 2 * np.pi)
            image[:, :, channel] = 127 + 100 * np.sin(
                (np.cos(angle) * rows + np.sin(angle) * columns) / rng.uniform(8, 30)
            )
        for _ in range(3):  # a few solid rectangles
            top, left = rng.integers(0, height), rng.integers(0, width)
            image[top:top + height // 3, left:left + width // 3] = rng.integers(0, 256, 3)
        image += rng.normal(0, 8, image.shape)
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return images


def load_images(source, data_dir=None, limit=DEFAULT_CALIBRATION_IMAGES, option="--calibration-data"):
    """Reads up to `limit` images from a folder or from a dataset named by kseg.data.

    A name is taken as a dataset only when it is one of kseg's dataset names and no such
    path exists; a missing folder is reported as missing, a file as not a folder.

    Args:
        source: str. A folder of images, or a dataset name ("cityscapes", "voc", ...).
        data_dir: str or None. The dataset root, for a dataset name.
        limit: int. Most images read (spread evenly over what is there).
        option: str. The option that gave `source`, for messages; only --calibration-data
            takes a dataset name (whose training split is read, else its first).
    """
    source = os.fspath(source)
    datasets = option == "--calibration-data"
    if os.path.isdir(source):
        paths = list_image_files(source)
        if not paths:
            raise KsegError(f"{source}: folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    elif os.path.lexists(source):
        raise KsegError(f"{option} {source}: is a file; it must be a folder of images"
                        + (" or a dataset name" if datasets else ""))
    elif source in DATASET_NAMES and datasets:
        spec = get_dataset_spec(source, data_dir)
        splits = list(spec.splits())
        if not splits:
            raise KsegError(f"{source}: dataset has no splits on disk")
        paths = [image for image, _ in spec.pairs("train" if "train" in splits else splits[0])]
    else:
        names = f" (nor a dataset name: {', '.join(DATASET_NAMES)})" if datasets else ""
        raise KsegError(f"{option} {source}: no such folder{names}")
    if len(paths) > limit:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).round().astype(int)]
    return [read_image(path) for path in paths]


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """How `export` writes, quantizes and checks; each field is the `kseg export` option of
    its name (`kseg export --help`).

    Args:
        quantize: str. TFLite: "none", "fp16", "dynamic" or "int8".
        calibration_data: str or None. int8 calibration images: a folder or a dataset name.
        data_dir: str or None. The dataset root for a dataset name.
        calibration_images: int. Most calibration images used.
        input_size: (int, int) or None. A fixed input size (default: any; a MediaPipe-ready
            TFLite file DEFAULT_TFLITE_SIZE).
        mediapipe: bool or None. TFLite: the file MediaPipe's ImageSegmenter runs (None: yes).
        check: bool. Compare the export with the Keras model before it is kept.
        check_images: str or None. A folder of images for the check (implies it).
        force: bool. Replace an existing export kseg wrote.
        unsafe: bool. Allow models containing code (trusted files only).
    """

    quantize: str = "none"
    calibration_data: str = None
    data_dir: str = None
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES
    input_size: tuple = None
    mediapipe: bool = None
    check: bool = False
    check_images: str = None
    force: bool = False
    unsafe: bool = False

    def problem(self, format):
        """Why these options do not go with `format` ("" when they do)."""
        if format not in EXPORT_FORMATS:
            return f"--format {format!r}: choose one of {', '.join(EXPORT_FORMATS)}"
        if self.quantize not in QUANTIZATIONS:
            return f"--quantize {self.quantize!r}: choose one of {', '.join(QUANTIZATIONS)}"
        if self.quantize != "none" and format != "tflite":
            return f"--quantize {self.quantize} applies to --format tflite only"
        if self.mediapipe is not None and format != "tflite":
            return f"--{'' if self.mediapipe else 'no-'}mediapipe applies to --format tflite only"
        if self.calibration_data and self.quantize != "int8":
            return "--calibration-data is used by --quantize int8 only"
        if self.quantize == "int8" and not self.calibration_data:
            return "--quantize int8 needs --calibration-data: a folder of representative images or a dataset name"
        return ""


def export(model=None, format="tflite", out=None, options=None):
    """Exports a trained model as `kseg export` does and returns the path written.

    Args:
        model: str or None. A run folder or a .keras file; None: the latest run under
            ./runs, else the model kseg ships (`kseg.runs.choose_model` says which).
        format: str. "savedmodel", "tflite" or "onnx".
        out: str or None. The destination; default RUN_DIR/export/best_<format>, beside a
            model file, or for the shipped model in the current folder.
        options: ExportOptions or None (the defaults).

    Raises:
        KsegError: options that do not fit, an output kseg may not replace, a failed check
            (nothing is written then).
    """
    options = ExportOptions() if options is None else options
    if problem := options.problem(format):
        raise KsegError(problem)
    chosen = choose_model(model, option="RUN_DIR|MODEL.keras")
    if chosen.note:
        write(chosen.note)
    if not out and chosen.shipped:  # never into kseg's weights folder: the current one
        out = os.path.basename(default_output_path(SHIPPED_MODEL + ".keras", None, format, options.quantize))
    out = os.fspath(out) if out else default_output_path(chosen.path, chosen.run_dir, format, options.quantize)
    checked = check_destination(out, format, chosen.path, chosen.run_dir,
                                [options.calibration_data, options.data_dir, options.check_images], options.force)
    # A run trained under a mixed policy is exported, and checked, in float32.
    loaded, num_classes = load_segmentation_model(chosen.path, unsafe=options.unsafe)
    model = float32_model(loaded)
    classes = read_classes(chosen.run_dir, num_classes, chosen.path)
    if classes is None:
        write(f"warning: {chosen.path}: no classes.json beside it, so the export names its {num_classes} classes "
              f"class 0 .. class {num_classes - 1}, without colours")  # fmt: skip
    mediapipe = options.mediapipe is not False
    if format == "tflite" and mediapipe and not options.input_size:
        height, width = DEFAULT_TFLITE_SIZE
        write(f"MediaPipe-ready TFLite: fixed input {height}x{width} (MediaPipe resizes each image to it); "
              "choose another with --input-size")  # fmt: skip
    calibration = None
    if options.quantize == "int8":
        calibration = load_images(options.calibration_data, options.data_dir, limit=options.calibration_images)
        write(f"calibrating int8 on {len(calibration)} image(s) from {options.calibration_data}")
    verify = None
    if options.check or options.check_images:
        verify = _export_check(model, format, out, options, chosen.path)
    with checked:  # lists it among kseg's outputs; a failed export leaves no trace
        target = ExportTarget(format, options.quantize, options.input_size, calibration, classes, mediapipe)
        export_model(model, out, target, verify=verify)
    return out


def _export_check(model, format, out, options, model_path):
    """The `verify` of `export_model` that `export` passes with --check: compares the file
    written under a temporary name with the Keras model, and refuses it if they differ."""
    images = load_images(options.check_images, option="--check-images") if options.check_images else sample_images()

    def verify(temporary):
        parity = check_export(model, ExportedModel(temporary, format, name=out), images)
        write(f"check: {parity}")
        problem = parity_problem(parity, out, options.quantize, model_path)
        if problem:
            raise KsegError(f"{problem}; nothing was written")

    return verify
