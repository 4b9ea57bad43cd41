"""Loading `.keras` model files: safely (no code from files, finite weights, a real
segmentation model), and with one copy of the weights in memory.

`keras.saving.load_model` builds the model with its random initializers and then assigns
the stored weights over them. For an FCN on VGG16 (134M parameters, 538 MB) that took a
process from 0.65 GB (TensorFlow alone) to 2.8 GB at its peak and left it at 2.0 GB: the
random draw of fc6 alone needs three times its size, and the initial buffers outlive the
assignment. Here the model is built with its variables left uninitialised (keras'
StatelessScope, fenced in `kseg.models.keras_internals`), and each variable is created
directly from the stored array when keras reads it: the process ends at 1.25 GB, with a
peak of 1.9 GB while fc6 is read.
"""

import os
import zipfile
import zlib

import keras
import numpy as np

from kseg.errors import KsegError
from kseg.files import TEXT_FILE_LIMIT, MalformedFileError, check_regular_file, one_line, parse_json

# bilinear and layers hold every class kseg saves in a model: importing them registers them.
from kseg.models import bilinear, keras_internals, layers  # noqa: F401

CONFIG_MEMBER = "config.json"


def read_keras_config(path):
    """The model config (`config.json`) of a `.keras` archive, as a dict.

    The member is read only up to `kseg.files.TEXT_FILE_LIMIT` bytes and parsed by
    `kseg.files.parse_json`, so a damaged, deeply nested, non-UTF-8 or huge config is one
    `KsegError` naming the model file.
    """
    source = f"{os.fspath(path)}: {CONFIG_MEMBER} inside the model file"
    try:
        with zipfile.ZipFile(path) as archive:
            size = archive.getinfo(CONFIG_MEMBER).file_size
            if size > TEXT_FILE_LIMIT:
                raise MalformedFileError(f"{source} unpacks to {size:,} bytes, more than kseg reads for it")
            with archive.open(CONFIG_MEMBER) as member:
                data = member.read(TEXT_FILE_LIMIT + 1)
    except KeyError:
        raise MalformedFileError(f"{path}: not a loadable keras model (no {CONFIG_MEMBER} inside)") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError, RuntimeError,
            zlib.error) as error:  # RuntimeError: an encrypted member; zlib.error: a damaged deflate stream
        raise MalformedFileError(f"{path}: not a loadable keras model (not a .keras zip archive, or a "
                                 f"damaged one: {one_line(error, 200)})") from None
    except OSError as error:
        raise KsegError(f"{path}: cannot read the model file ({error.strerror or error})") from None
    if len(data) > TEXT_FILE_LIMIT:
        raise MalformedFileError(f"{source} is larger than kseg reads for it")
    config = parse_json(data, source, "the model config")
    if not isinstance(config, dict):
        raise MalformedFileError(f"{source}: the model config is not a JSON object")
    return config


def load_keras_file(path, safe_mode=True, config=None):
    """Loads a `.keras` file like `keras.saving.load_model(path, compile=False,
    safe_mode=safe_mode)`, holding one copy of the weights (see the module).

    `config`: the archive's model config when already read (`read_keras_config`).
    """
    config = dict(config) if config is not None else read_keras_config(path)
    config["compile_config"] = None  # compile=False: no optimizer, as keras does
    model = keras_internals.build_unallocated(
        keras.saving.deserialize_keras_object, config, safe_mode=safe_mode
    )
    try:
        with keras_internals.allocate_on_assign(model.variables):
            model.load_weights(path)
        for variable in model.variables:
            if not keras_internals.is_allocated(variable):  # not stored (e.g. a dropout seed)
                keras_internals.allocate_initial(variable)
    finally:
        keras_internals.forget_pending(model.variables)
    return model


def first_nonfinite_weight(model):
    """The first floating-point weight of `model` holding NaN or inf, as (path, "NaN" or
    "inf"), or None when every weight is finite.

    Checked on the device, one variable at a time: no second copy of the weights.
    """
    for variable in model.weights:
        value = variable.value
        if keras.backend.is_float_dtype(variable.dtype) and not bool(keras.ops.all(keras.ops.isfinite(value))):
            return variable.path, "NaN" if bool(keras.ops.any(keras.ops.isnan(value))) else "inf"
    return None


# -- loading a model file for kseg's verbs ---------------------------------------------


def load_model(path, unsafe=False):
    """Loads a `.keras` model in keras' safe mode (no code runs from the file).

    Every floating-point weight is checked to be finite: a model holding NaN or inf (a
    diverged training, a damaged file) is refused here, naming the first such weight,
    instead of predicting garbage in every verb that uses it.

    Args:
        path: str. A `.keras` file.
        unsafe: bool. Allow Lambda layers and other deserialized code (trusted files only).
    """
    path = os.fspath(path)
    check_regular_file(path, "model file")  # "PATH: model file not found" when missing
    config = read_keras_config(path)
    code_layers = _code_layers(config)
    if code_layers and not unsafe:
        raise KsegError(_CODE_REFUSED.format(path=path, layers=", ".join(code_layers)))
    try:
        model = load_keras_file(path, safe_mode=not unsafe, config=config)
    except RecursionError:
        raise KsegError(f"{path}: the model config is nested too deeply to be a model") from None
    except ValueError as error:
        if "safe_mode" in str(error) or "Lambda" in str(error):
            raise KsegError(_CODE_REFUSED.format(path=path, layers="a Lambda layer")) from None
        raise KsegError(f"{path}: not a loadable keras model ({_one_line(error)})") from None
    except Exception as error:
        raise KsegError(
            f"{path}: not a loadable keras model ({type(error).__name__}: {_one_line(error)})"
        ) from None
    check_finite_weights(model, path)
    return model


def check_finite_weights(model, source):
    """Raises a `KsegError` naming `source` and the first weight holding NaN or inf."""
    found = first_nonfinite_weight(model)
    if found:
        name, kind = found
        raise KsegError(
            f"{source}: weight '{name}' holds {kind}: the model is damaged (a training that "
            "diverged, or a corrupted file); use another checkpoint or train it again"
        )


# A probe image of an odd size: a per-pixel model must return logits of exactly this size.
PROBE_SIZE = (37, 45)


def check_segmentation_model(model, path):
    """Refuses, once, a keras model that is not image -> per-pixel logits; returns its classes.

    kseg's verbs need one input (batch, any height, any width, 3) and one output
    (batch, height, width, classes) of the input's size. A classifier (None, 1000), a
    model fixed to 224x224 images, one with two inputs or grayscale input is refused here
    with the shapes found, not once per image later. A model whose shapes look right is
    run once on a small odd-sized image to see that its logits keep the image size.

    Args:
        model: keras.Model.
        path: str. The model file, for messages.

    Returns:
        int. The number of classes.
    """
    def shapes(tensors):
        return ", ".join(str(tuple(tensor.shape)) for tensor in tensors) or "none"

    try:
        inputs = list(model.inputs or [])
        outputs = keras.tree.flatten(model.outputs or [])
    except (AttributeError, ValueError):
        raise KsegError(f"{path}: not a segmentation model (a model without defined inputs "
                        "and outputs)") from None
    found = f"found input {shapes(inputs)} -> output {shapes(outputs)}"
    need = ("kseg needs one RGB image input (None, None, None, 3) of any size and one per-pixel "
            "logits output (None, None, None, classes)")
    problem = None
    if len(inputs) != 1:
        problem = f"it has {len(inputs)} inputs"
    elif len(outputs) != 1:
        problem = f"it has {len(outputs)} outputs"
    else:
        in_shape, out_shape = tuple(inputs[0].shape), tuple(outputs[0].shape)
        if len(in_shape) != 4 or in_shape[-1] != 3:
            problem = "its input is not a batch of RGB images"
        elif in_shape[1] is not None or in_shape[2] is not None:
            problem = f"its input is fixed to {in_shape[1]}x{in_shape[2]} images"
        elif len(out_shape) != 4 or not isinstance(out_shape[-1], int) or out_shape[-1] < 1:
            problem = "its output is not per-pixel logits"
    if problem:
        raise KsegError(f"{path}: not a segmentation model: {problem} ({found}); {need}")
    num_classes = int(tuple(outputs[0].shape)[-1])
    probe = np.zeros((1,) + PROBE_SIZE + (3,), np.uint8)
    try:
        logits = keras.tree.flatten(model(probe, training=False))[0]
        shape = tuple(int(size) for size in logits.shape)
    except Exception as error:
        raise KsegError(f"{path}: not a segmentation model: it fails on a "
                        f"{PROBE_SIZE[0]}x{PROBE_SIZE[1]} image ({type(error).__name__}: "
                        f"{_one_line(error, 200)})") from None
    if shape != (1,) + PROBE_SIZE + (num_classes,):
        raise KsegError(
            f"{path}: not a segmentation model: a {PROBE_SIZE[0]}x{PROBE_SIZE[1]} image gives "
            f"logits of shape {shape}; {need}, the output the size of the input"
        )
    if not np.isfinite(keras.ops.convert_to_numpy(logits)).all():
        raise KsegError(nonfinite_logits_message(path))
    return num_classes


def nonfinite_logits_message(path, image=None):
    """The one line for a model whose logits hold NaN or inf (finite weights that overflow)."""
    where = f" for {image}" if image else ""
    return (
        f"{path}: the model's logits{where} hold NaN or inf (its weights overflow float32): "
        "the model is damaged; use another checkpoint or train it again"
    )


def load_segmentation_model(path, unsafe=False):
    """`load_model`, then `check_segmentation_model`: returns (model, number of classes)."""
    model = load_model(path, unsafe=unsafe)
    return model, check_segmentation_model(model, path)


_CODE_REFUSED = (
    "{path}: the model contains code ({layers}) that kseg does not run from files; "
    "pass --unsafe only if you trust its source"
)


def config_dicts(config):
    """Every dict in a nested model config (dicts, lists, tuples), in document order.

    The config is walked with a stack, not by recursion: any nesting depth is read.
    """
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list | tuple):
            stack.extend(reversed(node))


def _code_layers(config):
    """Names the Lambda layers in a `.keras` file's model config, without building anything."""
    found = []
    for node in config_dicts(config):
        if node.get("class_name") == "Lambda":
            settings = node.get("config")
            name = settings.get("name", "?") if isinstance(settings, dict) else "?"
            found.append(f"Lambda layer '{name}'")
    return found


def _one_line(error, limit=300):
    """An exception's message on one line, cut to `limit` characters."""
    # keras nests the cause of a failed deserialization after this phrase
    return one_line(str(error).rsplit("Exception encountered:", 1)[-1], limit)
