"""What an export says about itself, in each format's own place for it.

Every export carries one description (`describe`): the class names, their colours when the
model's classes.json gives them, the dataset, the ignore label, the input (name, dtype,
shape, value range) and the output names. Where it goes:

- SavedModel: `assets.extra/kseg_export.json`, and a `kseg_metadata` signature that returns
  `class_names` (string [C]) and `palette` (uint8 [C, 3]) to any TensorFlow loader.
- TFLite: TFLite metadata written with MediaPipe's metadata writers (input normalization,
  labels.txt on the logits tensor, the ImageSegmenter's softmax option), and
  `kseg_export.json` packed beside labels.txt (a TFLite file with metadata ends in a zip:
  `unzip -l model.tflite` lists both). The tensors are renamed after the signature's keys
  (`images`, `logits`, `classes`) instead of the converter's `StatefulPartitionedCall:0`.
- ONNX: `metadata_props` `kseg_export` (the whole description), `class_names` and
  `palette` (JSON), and named dynamic dimensions (`batch`, `height`, `width`).

`read_metadata` reads the description back from any of the three.

mediapipe 1.2.3's wheel leaves out the compiled helper its metadata writer imports
(`mediapipe.tasks.cc.metadata.python._pywrap_metadata_version`, which returns the oldest
metadata parser that can read a metadata buffer). `_mediapipe_metadata` supplies it, from
the same table of schema members and versions as MediaPipe's C++
(tasks/cc/metadata/metadata_version.cc), only when the import fails.
"""

import json
import os
import sys
import types
import zipfile
import zlib

from kseg.errors import KsegError
from kseg.files import TEXT_FILE_LIMIT
from kseg.labels import IGNORE_INDEX
from kseg.visualize import class_names_from_classes, palette_from_classes

KSEG_FILE = "kseg_export.json"
# Where every SavedModel kseg writes says about itself (`describe`).
MARKER = os.path.join("assets.extra", KSEG_FILE)
METADATA_SIGNATURE = "kseg_metadata"
DIMENSIONS = ("batch", "height", "width")
_VERSION_MODULE = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"


def describe(num_classes, classes=None, export_format="savedmodel", quantize="none",
             input_size=None, batch=None, outputs=("classes", "logits")):
    """The description every export carries.

    Args:
        num_classes: int. Classes the model predicts.
        classes: dict or None. A checked classes.json (`kseg.runs.read_classes`); without
            one the classes are named "class N" and no colours are given.
        export_format: str. "savedmodel", "tflite" or "onnx".
        quantize: str. The TFLite quantization ("none" otherwise).
        input_size: tuple (height, width) or None. A fixed input size.
        batch: int or None. A fixed batch size.
        outputs: tuple of str. Output tensor names, in the order a client sees them (the
            input is always "images").

    Returns:
        dict. JSON-ready.
    """
    classes = classes or {}
    height, width = input_size or (None, None)
    palette = None
    if classes.get("palette"):
        palette = [list(map(int, colour)) for colour in palette_from_classes(classes, num_classes)]
    ignore = classes.get("ignore_index")
    return {
        "written_by": "kseg export",
        "format": export_format,
        "quantize": quantize,
        "inputs": ["images"],
        "outputs": list(outputs),
        "input": {"name": "images", "dtype": "uint8", "shape": [batch, height, width, 3],
                  "channels": "RGB", "range": [0, 255]},
        "num_classes": int(num_classes),
        "class_names": class_names_from_classes(classes, num_classes),
        "palette": palette,
        "ignore_index": int(IGNORE_INDEX if ignore is None else ignore),
        "dataset": classes.get("dataset"),
    }


def encode(description):
    return json.dumps(description, indent=2).encode("utf8")


# -- SavedModel ------------------------------------------------------------------------


def add_metadata_signature(archive, description):
    """Adds the `kseg_metadata` signature (no inputs) to a keras ExportArchive."""
    import tensorflow as tf

    names = list(description["class_names"])
    palette = description["palette"] or []

    @tf.function(input_signature=[])
    def metadata():
        return {
            "class_names": tf.constant(names, tf.string),
            "palette": tf.reshape(tf.constant(palette, tf.uint8), [len(palette), 3]),
        }

    archive.add_endpoint(METADATA_SIGNATURE, metadata)


# -- TFLite ----------------------------------------------------------------------------


def _minimum_parser_version(buffer):
    """The oldest TFLite metadata parser that reads `buffer` (a ModelMetadata flatbuffer):
    each schema member newer than 1.0.0 that the metadata uses raises it, as in
    MediaPipe's metadata_version.cc."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as schema

    metadata = schema.ModelMetadataT.InitFromObj(
        schema.ModelMetadata.GetRootAsModelMetadata(bytearray(buffer), 0))
    needed = [(1, 0, 0), *_file_versions(schema, metadata.associatedFiles)]
    for subgraph in metadata.subgraphMetadata or ():
        for tensor in (subgraph.inputTensorMetadata or []) + (subgraph.outputTensorMetadata or []):
            needed += [*_file_versions(schema, tensor.associatedFiles), *_unit_versions(schema, tensor.processUnits)]
            if tensor.content and tensor.content.contentPropertiesType == schema.ContentProperties.AudioProperties:
                needed.append((1, 3, 0))
        needed += _file_versions(schema, subgraph.associatedFiles)
        for process_units in (subgraph.inputProcessUnits, subgraph.outputProcessUnits):
            if process_units is not None:
                needed += [(1, 1, 0), *_unit_versions(schema, process_units)]
        if subgraph.inputTensorGroups is not None or subgraph.outputTensorGroups is not None:
            needed.append((1, 2, 0))
        if subgraph.customMetadata is not None:
            needed.append((1, 5, 0))
    return ".".join(map(str, max(needed)))


def _file_versions(schema, items):
    """The parser versions that associated files `items` need."""
    for item in items or ():
        if item.type == schema.AssociatedFileType.VOCABULARY:
            yield 1, 0, 1
        if item.type == schema.AssociatedFileType.SCANN_INDEX_FILE:
            yield 1, 4, 0
        if item.version is not None:
            yield 1, 4, 1


def _unit_versions(schema, items):
    """The parser versions that process units `items` need."""
    tokenizers = (schema.ProcessUnitOptions.BertTokenizerOptions,
                  schema.ProcessUnitOptions.SentencePieceTokenizerOptions)
    for unit in items or ():
        if unit.optionsType in tokenizers:
            yield 1, 1, 0
        if unit.optionsType == schema.ProcessUnitOptions.RegexTokenizerOptions:
            yield 1, 2, 1


def _mediapipe_metadata():
    """MediaPipe's metadata modules: (metadata, metadata_writer, image_segmenter, schema)."""
    try:
        from mediapipe.tasks.metadata import metadata_schema_py_generated as schema
    except ImportError as error:
        raise KsegError(
            f"TFLite metadata needs the mediapipe package ({error}); install kseg[export]"
        ) from None
    try:
        __import__(_VERSION_MODULE)
    except ImportError:  # see the module docstring
        parts = _VERSION_MODULE.split(".")
        for depth in range(3, len(parts)):
            package = types.ModuleType(".".join(parts[:depth]))
            package.__path__ = []
            sys.modules.setdefault(package.__name__, package)
        helper = types.ModuleType(_VERSION_MODULE)
        helper.GetMinimumMetadataParserVersion = _minimum_parser_version
        sys.modules[_VERSION_MODULE] = helper
    from mediapipe.tasks.python.metadata import metadata
    from mediapipe.tasks.python.metadata.metadata_writers import image_segmenter, metadata_writer

    return metadata, metadata_writer, image_segmenter, schema


def check_label_names(names, labels_file=True):
    """Refuses a class name an export cannot hold: one holding bytes that were not UTF-8
    (a lone surrogate, "\\udcXX"; TFLite's labels file and a SavedModel's string tensor
    store names as UTF-8), or, for TFLite's labels file (one name a line), a line break."""
    for name in names:
        if labels_file and ("\n" in name or "\r" in name):
            raise KsegError(f"class name {name!r} holds a line break; TFLite's labels file "
                            "holds one name a line: rename the class in classes.json")
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise KsegError(f"class name {name!r} holds bytes that are not UTF-8; the export stores "
                            "names as UTF-8: rename the class in classes.json") from None


def tflite_with_metadata(content, description, mediapipe=True):
    """Returns `content` (a TFLite flatbuffer) with named tensors and metadata.

    Args:
        content: bytes. The converter's output: one signature, input `images`, outputs
            `logits` (and `classes`).
        description: dict. From `describe`.
        mediapipe: bool. Write the metadata of MediaPipe's ImageSegmenter (one output, the
            logits, whose softmax gives the confidence masks). Otherwise the file keeps two
            outputs and gets generic image and feature metadata.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    metadata, metadata_writer, image_segmenter, schema = _mediapipe_metadata()

    # The tensors are named after their signature keys, not the converter's
    # StatefulPartitionedCall:0.
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    subgraph = model.subgraphs[0]
    for signature in model.signatureDefs or ():
        for item in list(signature.inputs or ()) + list(signature.outputs or ()):
            subgraph.tensors[item.tensorIndex].name = item.name
    content = flatbuffer_utils.convert_object_to_bytearray(model)
    outputs = [subgraph.tensors[index].name.decode() for index in subgraph.outputs]
    if mediapipe and outputs != ["logits"]:
        raise KsegError(f"a MediaPipe-ready TFLite file has one output, logits; found {outputs}")
    labels = metadata_writer.Labels().add(list(description["class_names"]))
    writer = _utf8_labels_writer(metadata_writer).create(bytearray(content))
    try:
        title = "ImageSegmenter" if mediapipe else "kseg segmentation"
        writer.add_general_info(title, f"{description['num_classes']}-class semantic segmentation "
                                       "(kseg export): uint8 RGB images in, per-pixel class logits out.")
        # The model takes raw 0..255 values and normalizes inside: mean 0, std 1.
        writer.add_image_input([0.0], [1.0], name="images",
                               description="RGB image, uint8 0..255; the model normalizes it.")
        if mediapipe:
            writer.add_custom_metadata(
                image_segmenter.ImageSegmenterOptionsMd(image_segmenter.Activation.SOFTMAX))
        for name in outputs:
            if name == "logits":
                writer.add_segmentation_output(
                    labels, name="logits",
                    description="Per-pixel class logits [1, height, width, classes]; softmax "
                                "gives confidences, arg-max the class.")
            else:
                writer.add_feature_output(name, "Per-pixel class index (arg-max of the logits).")
        content, _ = writer.populate()
    finally:
        del writer  # its label files live in a temporary folder it removes when deleted
    return _with_kseg_file(content, description, metadata, schema)


def _utf8_labels_writer(metadata_writer):
    """MediaPipe's MetadataWriter with its labels file written as UTF-8: its own writes the
    file in the locale's encoding, which fails on (LC_ALL=C) or garbles a non-ASCII name."""

    class Writer(metadata_writer.MetadataWriter):
        def _export_labels(self, filename, index_to_label):
            path = super()._export_labels(filename, [])  # the empty file, recorded for populate()
            with open(path, "w", encoding="utf-8") as handle:
                handle.write("\n".join(index_to_label))
            return path

    return Writer


def _with_kseg_file(content, description, metadata, schema):
    """`content` with kseg's own description as an associated file of the whole model."""
    import flatbuffers

    buffer = metadata.get_metadata_buffer(content)
    model_metadata = schema.ModelMetadataT.InitFromObj(
        schema.ModelMetadata.GetRootAsModelMetadata(buffer, 0))
    entry = schema.AssociatedFileT()
    entry.name = KSEG_FILE
    entry.description = "kseg's description of the export: classes, colours, input and outputs."
    entry.type = schema.AssociatedFileType.DESCRIPTIONS
    model_metadata.associatedFiles = [*(model_metadata.associatedFiles or []), entry]
    model_metadata.author = "kseg export"
    builder = flatbuffers.Builder(0)
    builder.Finish(model_metadata.Pack(builder), metadata.MetadataPopulator.METADATA_FILE_IDENTIFIER)
    # MediaPipe's populator works on a copy of the model in a temporary file, removed when
    # the populator is deleted.
    populator = metadata.MetadataPopulator.with_model_buffer(content)
    try:
        populator.load_metadata_buffer(builder.Output())
        populator.load_associated_file_buffers({KSEG_FILE: encode(description)})
        populator.populate()
        return bytes(populator.get_model_buffer())
    finally:
        del populator


# -- ONNX ------------------------------------------------------------------------------


def onnx_with_metadata(path, description):
    """Returns the ONNX model at `path` with its dynamic dimensions named (batch, height,
    width, on inputs and outputs) and `description` in its metadata_props; the caller
    saves it (`kseg.exporting.write_onnx`, into the temporary export_model gives)."""
    import onnx

    model = onnx.load(path)
    for value in list(model.graph.input) + list(model.graph.output):
        for dimension, name in zip(value.type.tensor_type.shape.dim, DIMENSIONS):
            if not dimension.HasField("dim_value"):
                dimension.dim_param = name
    properties = {"kseg_export": json.dumps(description),
                  "class_names": json.dumps(description["class_names"]),
                  "palette": json.dumps(description["palette"])}
    kept = {prop.key: prop.value for prop in model.metadata_props if prop.key not in properties}
    onnx.helper.set_model_props(model, {**kept, **properties})
    onnx.checker.check_model(model)
    return model


# -- reading back ----------------------------------------------------------------------


def read_metadata(path, export_format, onnx_properties=None):
    """kseg's description of an export (see `describe`), or None for an export that has
    none (written before kseg put one in).

    Args:
        path: str. The SavedModel folder, `.tflite` or `.onnx` file.
        export_format: str. "savedmodel", "tflite" or "onnx".
        onnx_properties: dict or None. An ONNX file's metadata_props when the caller has
            them (onnxruntime's `get_modelmeta().custom_metadata_map`); read from the file
            otherwise.

    Raises:
        KsegError: the description is there but is not readable JSON.
    """
    path = os.fspath(path)
    try:
        if export_format == "savedmodel":
            marker = os.path.join(path, MARKER)
            if not os.path.isfile(marker):
                return None
            with open(marker, "rb") as handle:
                text = handle.read(TEXT_FILE_LIMIT + 1)
        elif export_format == "tflite":
            if not zipfile.is_zipfile(path):
                return None
            with zipfile.ZipFile(path) as packed:
                if KSEG_FILE not in packed.namelist():
                    return None
                with packed.open(KSEG_FILE) as member:  # read no further than the limit: a zip bomb
                    text = member.read(TEXT_FILE_LIMIT + 1)
        elif export_format == "onnx":
            if onnx_properties is None:
                import onnx

                onnx_properties = {prop.key: prop.value for prop in onnx.load(path).metadata_props}
            if "kseg_export" not in onnx_properties:
                return None
            text = onnx_properties["kseg_export"]
        else:
            raise KsegError(f"unknown export format {export_format!r}")
        if len(text) > TEXT_FILE_LIMIT:
            raise KsegError(f"{path}: its kseg description is larger than kseg reads for it")
        description = json.loads(text)
    # zlib.error: a damaged deflate stream; RuntimeError: an encrypted member, a compression
    # zipfile lacks (NotImplementedError), or JSON nested too deeply (RecursionError)
    except (OSError, ValueError, zipfile.BadZipFile, zlib.error, RuntimeError, EOFError) as error:
        raise KsegError(f"{path}: its kseg description cannot be read ({error})") from None
    if not isinstance(description, dict):
        raise KsegError(f"{path}: its kseg description is not a JSON object")
    if "class_names" not in description:
        return None  # an export written before kseg described its classes
    names = description["class_names"]
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise KsegError(f"{path}: its kseg description's class_names is not a list of names")
    return description
