"""Released FCN weights -> kseg `.keras` models (`kseg weights convert`).

Two sources hold the authors' FCNs:

- Caffe `.caffemodel` files (fcn.berkeleyvision.org). They are protobuf `NetParameter`
  messages; this module decodes the protobuf wire format itself (varints and
  length-delimited fields), so neither Caffe nor a compiled schema is needed. Only these
  fields are read: NetParameter.layer = 100 (LayerParameter: name = 1, type = 2,
  blobs = 7), the legacy NetParameter.layers = 2 (V1LayerParameter: name = 4, blobs = 6),
  BlobProto: shape = 7 (BlobShape: dim = 1), data = 5, double_data = 8 and the legacy
  num, channels, height, width = 1..4.
- PyTorch `.pth` state dicts (wkentaro/pytorch-fcn's conversions), read through torch.

Every blob is matched to the kseg layer of the same name (the Caffe layer names, see
`kseg.models.caffe_fcn`) and shape; a blob no layer takes, a layer no blob fills, a wrong
shape or a wrong class count is refused with one line naming it - nothing is skipped.

Layouts: Caffe and PyTorch convolutions are (out, in, kh, kw) cross-correlations like
keras' (kh, kw, in, out); Caffe Deconvolution and PyTorch ConvTranspose2d blobs are
(in, out, kh, kw), scattered without flipping as keras' Conv2DTranspose (kh, kw, out, in)
does.
"""

import json
import math
import os

import numpy as np

from kseg.data.voc import VOC_CLASSES
from kseg.errors import WeightsError
from kseg.files import check_regular_file, load_json, one_line, read_bytes, read_text
from kseg.labels import default_palette
from kseg.models.layers import ConstantScale
from kseg.models.registry import MODEL_PRESETS, create_model
from kseg.models.saving import check_segmentation_model
from kseg.models.vgg16 import VGG16_BLOCKS
from kseg.outputs import Outputs, bytes_writer, write_together
from kseg.runs import check_classes

CLASSES_FILE = "classes.json"  # beside a bare model file, as in a run folder (kseg.runs)

WEIGHTS_FILE_LIMIT = 4 << 30  # the released FCNs are about 0.5 GB

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
FIXED_SIZES = {FIXED64: 8, FIXED32: 4}


class WireError(ValueError):
    """The bytes are not (complete) protobuf wire format."""


def _varint(data, position):
    result = shift = 0
    while True:
        if position >= len(data):
            raise WireError("ends inside a number")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
        if shift > 63:
            raise WireError("a number longer than 10 bytes")


def decode_fields(data):
    """Yields (field number, wire type, value) of a protobuf message's bytes.

    `value` is an int for varints, a memoryview for length-delimited fields and fixed
    fields (their raw little-endian bytes).
    """
    data = memoryview(data)
    position, end = 0, len(data)
    while position < end:
        key, position = _varint(data, position)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise WireError("field number 0")
        if wire == VARINT:
            value, position = _varint(data, position)
        else:
            if wire == LENGTH:
                size, position = _varint(data, position)
            elif wire in FIXED_SIZES:
                size = FIXED_SIZES[wire]
            else:
                raise WireError(f"wire type {wire} (groups or invalid)")
            if position + size > end:
                raise WireError("a field runs past the end")
            value, position = data[position:position + size], position + size
        yield field, wire, value


def decode_blob(data):
    """A BlobProto's bytes -> float32 array of its shape."""
    dims, legacy, chunks = None, {}, []
    for field, wire, value in decode_fields(data):
        if field == 7 and wire == LENGTH:
            dims = []
            for sub, sub_wire, sub_value in decode_fields(value):
                if sub == 1 and sub_wire == VARINT:
                    dims.append(sub_value)
                elif sub == 1:  # packed dims
                    position = 0
                    while position < len(sub_value):
                        number, position = _varint(sub_value, position)
                        dims.append(number)
        elif field in (1, 2, 3, 4) and wire == VARINT:
            legacy[field] = value
        elif field in (5, 8) and wire in (LENGTH, FIXED32 if field == 5 else FIXED64):
            # packed numbers, or one unpacked fixed32 (data) / fixed64 (double_data) value
            dtype = np.dtype("<f4" if field == 5 else "<f8")
            if len(value) % dtype.itemsize:
                raise WireError("packed numbers of a partial length")
            chunks.append(np.frombuffer(value, dtype))
    if dims is None:
        dims = [legacy.get(field, 1) for field in (1, 2, 3, 4)] if legacy else [0]
    values = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if values.size != math.prod(dims) or max(dims, default=0) >= 1 << 63:  # NumPy's largest dimension
        raise WireError(f"a blob of shape {tuple(dims)} holds {values.size} values")
    return values.reshape(dims)


def read_caffemodel(path):
    """Returns {layer name: [float32 arrays]} of the layers of a `.caffemodel` with blobs.

    Raises:
        WeightsError: one line for a truncated, damaged or foreign file.
    """
    data = read_bytes(path, "weights file", limit=WEIGHTS_FILE_LIMIT)
    foreign = f"{path}: not a Caffe .caffemodel (no protobuf NetParameter layers)"
    layers, seen_layer = {}, False
    try:
        for field, wire, value in decode_fields(data):
            if wire != LENGTH or field not in (100, 2):
                continue
            name_field, blobs_field = (1, 7) if field == 100 else (4, 6)
            name, blobs = None, []
            for sub, sub_wire, sub_value in decode_fields(value):
                if sub == name_field and sub_wire == LENGTH:
                    try:
                        name = bytes(sub_value).decode("utf8")
                    except UnicodeDecodeError:
                        raise WireError("a layer name that is not UTF-8") from None
                elif sub == blobs_field and sub_wire == LENGTH:
                    blobs.append(decode_blob(sub_value))
            if name is None:
                raise WireError("a layer without a name")
            seen_layer = True  # one whole layer read: a Caffe file, not a foreign one
            if blobs:
                if name in layers:
                    raise WeightsError(f"{path}: layer '{name}' appears twice")
                layers[name] = blobs
    except WireError as error:
        if not seen_layer:
            raise WeightsError(foreign) from None
        raise WeightsError(f"{path}: truncated or damaged .caffemodel ({error})") from None
    if not layers:
        raise WeightsError(foreign)
    return layers


def read_pth(path):
    """Returns {layer name: [arrays]} of a PyTorch FCN state dict (`name.weight`, `name.bias`)."""
    try:
        import torch
    except ImportError:
        raise WeightsError(f"{path}: reading .pth files needs PyTorch (pip install torch)") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # runs no pickled code
    except TypeError as error:
        if "weights_only" not in str(error):
            raise WeightsError(f"{path}: not a readable PyTorch .pth file ({error})") from None
        raise WeightsError(f"{path}: reading .pth files safely needs torch >= 1.13 "
                           "(pip install -U torch)") from None
    except Exception as error:  # torch raises many kinds for a damaged or foreign file
        raise WeightsError(f"{path}: not a readable PyTorch .pth file ({type(error).__name__}: "
                           f"{one_line(error, 200)})") from None
    if isinstance(state, dict) and isinstance(state.get("model_state_dict"), dict):
        state = state["model_state_dict"]
    if not isinstance(state, dict) or not state:
        raise WeightsError(f"{path}: not a PyTorch state dict (found {type(state).__name__})")
    layers = {}
    for key, tensor in state.items():
        name, _, kind = str(key).rpartition(".")
        if kind not in ("weight", "bias") or not hasattr(tensor, "numpy"):
            raise WeightsError(f"{path}: tensor '{key}' matches no kseg layer")
        layers.setdefault(name, {})[kind] = tensor.detach().cpu().float().numpy()
    return {name: [parts[kind] for kind in ("weight", "bias") if kind in parts]
            for name, parts in layers.items()}


def read_released_weights(path):
    """{layer name: [arrays]} of a `.caffemodel` or `.pth` file, and which format it was."""
    path = os.fspath(path)
    check_regular_file(path, "weights file", limit=WEIGHTS_FILE_LIMIT)
    with open(path, "rb") as stream:  # a regular file (checked above)
        head = stream.read(4)
    if path.endswith((".pth", ".pt")) or head.startswith(b"PK") or head[:1] == b"\x80":
        return read_pth(path), "pth"
    return read_caffemodel(path), "caffemodel"


def expected_blobs(model, source_format):
    """{Caffe layer name: [Caffe blob shapes]} of every weighted layer,
    plus the at-once Scale layers (their fixed factors) for `.caffemodel` files."""
    import keras

    expected, scales = {}, {}
    for layer in model.layers:
        if isinstance(layer, ConstantScale):
            scales[layer.name] = layer.scale
            continue
        if not layer.weights:
            continue
        if isinstance(layer, keras.layers.Conv2DTranspose):
            kh, kw, out, inp = layer.kernel.shape
            expected[layer.name] = [(inp, out, kh, kw)]
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw, inp, out = layer.kernel.shape
            expected[layer.name] = [(out, inp, kh, kw), (out,)]
        else:
            raise WeightsError(f"layer '{layer.name}' of {model.name} has no Caffe counterpart")
    return expected, (scales if source_format == "caffemodel" else {})


def assign_released_weights(model, blobs, source, source_format="caffemodel"):
    """Fills `model` (a `kseg.models.caffe_fcn` model) from `blobs` ({name: [arrays]}) read
    from a `source_format` ("caffemodel" or "pth") file."""
    expected, scales = expected_blobs(model, source_format)
    for name in blobs:
        if name not in expected and name not in scales:
            raise WeightsError(f"{source}: blob '{name}' matches no layer of {model.name} "
                               f"(is it another model? try --model)")
    for name in expected:
        if name not in blobs:
            raise WeightsError(f"{source}: no blob for layer '{name}' of {model.name} "
                               "(a different model, or an incomplete file; try --model)")
    for name, factor in scales.items():
        if name not in blobs:
            raise WeightsError(f"{source}: no blob for the at-once Scale layer '{name}'")
        values = np.concatenate([np.ravel(blob) for blob in blobs[name]])
        if values.size == 0 or not np.allclose(values, factor, rtol=1e-5, atol=0):
            raise WeightsError(f"{source}: blob '{name}' holds factors other than {factor:g}; "
                               "kseg's at-once FCN-8s scales its skips by the released constants")
    num_classes = model.output_shape[-1]
    for name, shapes in expected.items():
        arrays = blobs[name]
        if len(arrays) != len(shapes):
            raise WeightsError(f"{source}: layer '{name}' has {len(arrays)} blobs, "
                               f"{model.name} needs {len(shapes)}")
        converted = []
        for index, (array, shape) in enumerate(zip(arrays, shapes)):
            if tuple(d for d in array.shape if d != 1) == tuple(d for d in shape if d != 1):
                array = array.reshape(shape)  # legacy (num, channels, height, width) blobs
            if array.shape != shape:
                scores = name.startswith(("score", "upscore"))
                if scores and array.ndim == len(shape) and array.shape[0] != num_classes \
                        and (array.ndim == 1 or array.shape[2:] == shape[2:]):
                    raise WeightsError(
                        f"{source}: layer '{name}' scores {array.shape[0]} classes, the model "
                        f"{num_classes}; pass --classes with {array.shape[0]} class names")
                raise WeightsError(f"{source}: blob {index} of layer '{name}' has shape "
                                   f"{array.shape}, {model.name} needs {shape}")
            if not np.isfinite(array).all():
                raise WeightsError(f"{source}: blob {index} of layer '{name}' holds NaN or inf")
            converted.append(np.transpose(array, (2, 3, 1, 0)) if array.ndim == 4 else array)
        # (out, in, kh, kw) -> (kh, kw, in, out) for convolutions, and the same transpose
        # takes deconvolutions' (in, out, kh, kw) to keras' (kh, kw, out, in).
        model.get_layer(name).set_weights([np.ascontiguousarray(array, np.float32) for array in converted])


def convert_released_weights(source, model_name="fcn8s_caffe", num_classes=21):
    """Reads `source` (.caffemodel or .pth) into a new `model_name` model; returns the model."""
    caffe_models = [preset.name for preset in MODEL_PRESETS if preset.architecture == "caffe_fcn"]
    if model_name not in caffe_models:
        raise WeightsError(f"--model {model_name}: released weights convert into {', '.join(caffe_models)}")
    blobs, source_format = read_released_weights(source)
    first = blobs.get("conv1_1")
    if not first or first[0].ndim != 4:
        raise WeightsError(f"{source}: no blob for layer 'conv1_1' (not an FCN's weights)")
    width = first[0].shape[0] / VGG16_BLOCKS[0][2]  # the VGG16's channel multiplier: 1 when released
    if not 0 < width <= 1:
        raise WeightsError(f"{source}: conv1_1 has {first[0].shape[0]} filters; the FCNs have 64")
    model = create_model(model_name, num_classes=num_classes, width=width)
    assign_released_weights(model, blobs, source, source_format)
    return model


def read_class_names(spec):
    """--classes: "voc" (VOC's 21 classes), a classes.json, or a text file of one class name a line."""
    path = None if spec in (None, "voc") else os.fspath(spec)
    if path is None:
        classes = {"dataset": "voc", "class_names": list(VOC_CLASSES)}
    elif not os.path.lexists(path):
        raise WeightsError(f"--classes {path}: expected 'voc' or a file of class names")
    elif path.lower().endswith(".json"):
        classes = check_classes(load_json(path, "classes file"), path)
        if not classes.get("class_names"):
            raise WeightsError(f"--classes {path}: lists no class_names")
    else:
        names = [line.strip() for line in read_text(path, "classes file").splitlines() if line.strip()]
        if not names:
            raise WeightsError(f"--classes {path}: lists no class names")
        stem = os.path.splitext(os.path.basename(path))[0]
        classes = {"dataset": stem, "class_names": names}
    if not classes.get("palette"):
        classes["palette"] = [list(map(int, c)) for c in default_palette(len(classes["class_names"]))]
    return classes


def check_output(source, out, classes, force=False):
    """Checks --out (a .keras name) and the classes.json beside it against kseg's output
    policy (`kseg.outputs`): never the source, never a file kseg did not write, a
    conversion kseg wrote only with --force. A classes.json that already holds these very
    classes is kept as it is.

    Returns:
        kseg.outputs.Outputs. Pass it to `save_converted`.
    """
    out = os.fspath(out)
    if not out.endswith(".keras"):
        raise WeightsError(f"--out {out}: expected a .keras file name")
    checked = Outputs([source], force)
    checked.add(out, "converted weights")
    classes_path, payload = _classes_json(out, classes)
    if payload is not None:
        checked.add(classes_path, "converted weights", option=None, choose="another --out folder")
    return checked


def _classes_json(out, classes):
    """The path of the classes.json beside `out`, and the bytes to write there (None when
    it holds these very classes already)."""
    path = os.path.join(os.path.dirname(os.path.abspath(out)), CLASSES_FILE)
    payload = json.dumps({**classes, "ignore_index": 255}, indent=2).encode()
    if not os.path.islink(path) and os.path.isfile(path):
        with open(path, "rb") as stream:
            if stream.read() == payload:
                return path, None
    return path, payload


def save_converted(model, out, classes, checked):
    """Saves `model` at `out` and, unless it already holds them, `classes` in the
    classes.json beside it (what predict, evaluate and export read for a bare model file's
    class names and colours), all or none.

    Args:
        checked: kseg.outputs.Outputs. From `check_output`.
    """
    out = os.fspath(out)
    classes_path, payload = _classes_json(out, classes)
    check_segmentation_model(model, out)
    writers = [(out, model.save)]
    if payload is not None:
        writers.append((classes_path, bytes_writer(payload)))
    with checked:
        write_together(writers)
    return classes_path
