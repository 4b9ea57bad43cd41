"""Run directories: where `kseg train` writes, and how other verbs find a model in one.

A run directory holds:

    config.yaml            the resolved training configuration
    classes.json           {"dataset", "class_names", "palette", "ignore_index"}
    checkpoints/best.keras the model with the best validation mIoU
    checkpoints/last.keras the model (with optimizer state) after the latest epoch

`resolve_model_path` accepts a run directory or a `.keras` file; with neither given it
takes the most recently modified run under ./runs.
"""

import json
import os

from kseg.atomic import write_bytes_atomic
from kseg.errors import KsegError
from kseg.files import brief, check_regular_file, load_json

DEFAULT_RUNS_ROOT = "runs"
CLASSES_FILE = "classes.json"
CHECKPOINTS = "checkpoints"
BEST = "best.keras"
LAST = "last.keras"


def checkpoint_path(run_dir, which=BEST):
    return os.path.join(run_dir, CHECKPOINTS, which)


def is_run_dir(path):
    return os.path.isdir(path) and any(
        os.path.isfile(checkpoint_path(path, which)) for which in (BEST, LAST)
    )


def latest_run(root=DEFAULT_RUNS_ROOT):
    """Returns the most recently modified run directory under `root`, or None."""
    if not os.path.isdir(root):
        return None
    runs = [os.path.join(root, name) for name in os.listdir(root)]
    runs = [path for path in runs if is_run_dir(path)]
    if not runs:
        return None
    return max(runs, key=lambda path: os.path.getmtime(_newest_checkpoint(path)))


def _newest_checkpoint(run_dir):
    paths = [checkpoint_path(run_dir, which) for which in (BEST, LAST)]
    return max((p for p in paths if os.path.isfile(p)), key=os.path.getmtime)


def resolve_model_path(path=None, runs_root=DEFAULT_RUNS_ROOT):
    """Returns (model file, run directory or None) for a run directory or a model file.

    Without `path`, the latest run under `runs_root` is used.
    """
    if path is None:
        run_dir = latest_run(runs_root)
        if run_dir is None:
            raise KsegError(
                f"no trained model found under ./{runs_root}; train one with `kseg train` or "
                "pass --model RUN_DIR|MODEL.keras"
            )
        path = run_dir
    path = os.fspath(path)
    if os.path.isdir(path):
        for which in (BEST, LAST):
            candidate = checkpoint_path(path, which)
            if os.path.isfile(candidate):
                return candidate, path
        raise KsegError(f"{path}: not a run directory (no {CHECKPOINTS}/{BEST} or {LAST})")
    if not os.path.isfile(path):
        raise KsegError(f"{path}: no such model file or run directory")
    if not path.endswith(".keras"):
        raise KsegError(f"{path}: expected a .keras model file or a run directory")
    run_dir = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    return path, (run_dir if os.path.isfile(os.path.join(run_dir, CLASSES_FILE)) else None)


def write_classes(run_dir, dataset, class_names, palette, ignore_index=255):
    """Writes classes.json, which predict/evaluate/export use to name and colour classes."""
    payload = {
        "dataset": dataset,
        "class_names": list(class_names),
        "palette": [list(map(int, colour)) for colour in palette],
        "ignore_index": int(ignore_index),
    }
    write_bytes_atomic(
        os.path.join(run_dir, CLASSES_FILE), json.dumps(payload, indent=2).encode()
    )


def read_classes(run_dir, num_classes=None, model_path=None):
    """Returns the classes.json of a run directory as a checked dict, or None when absent.

    The file is read with `kseg.files.load_json` (regular file, bounded size) and its
    structure checked (`check_classes`), so a damaged file is one error naming it, never
    an AttributeError later.

    Args:
        run_dir: str or None. The run directory.
        num_classes: int or None. Classes the model predicts; the file must list as many.
        model_path: str or None. The model, for the message about a class-count mismatch.
    """
    if run_dir is None:
        return None
    path = os.path.join(run_dir, CLASSES_FILE)
    if not os.path.lexists(path):
        return None
    return check_classes(load_json(path, "class description"), path, num_classes, model_path)


def check_classes(classes, path=CLASSES_FILE, num_classes=None, model_path=None):
    """Checks the structure of a classes.json payload; returns it.

    Expected: {"dataset": str, "class_names": [str, ...], "palette": [[r, g, b], ...]
    (one colour per class, or empty), "ignore_index": int 0..255}; every key optional.

    Raises:
        KsegError: one line naming `path`, what is wrong, and the way out.
    """
    way_out = "fix or delete it (kseg then uses default names and colours)"

    def refuse(problem):
        raise KsegError(f"{path}: {problem}; {way_out}")

    if not isinstance(classes, dict):
        refuse(f"expected a JSON object with class_names and palette, found {type(classes).__name__}")
    names = classes.get("class_names")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            refuse(f"'class_names' must be a list of strings, found {brief(names)}")
        if not names:
            refuse("'class_names' is empty")
    palette = classes.get("palette")
    if palette is not None:
        if not isinstance(palette, list):
            refuse(f"'palette' must be a list of [R, G, B] colours, found {brief(palette)}")
        for index, colour in enumerate(palette):
            if not (isinstance(colour, list) and len(colour) == 3 and all(
                    isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255
                    for value in colour)):
                refuse(f"palette entry {index} is {brief(colour)}, expected [R, G, B] with whole "
                       "numbers 0..255")
        if names is not None and palette and len(palette) != len(names):
            refuse(f"'palette' has {len(palette)} colours for {len(names)} class names")
    ignore = classes.get("ignore_index")
    if ignore is not None and (isinstance(ignore, bool) or not isinstance(ignore, int)
                               or not 0 <= ignore <= 255):
        refuse(f"'ignore_index' must be a whole number 0..255, found {brief(ignore)}")
    dataset = classes.get("dataset")
    if dataset is not None and not isinstance(dataset, str):
        refuse(f"'dataset' must be a name, found {brief(dataset)}")
    if num_classes is not None:
        listed = len(names) if names is not None else len(palette or [])
        if listed and listed != num_classes:
            model = f"{model_path} predicts" if model_path else "the model predicts"
            raise KsegError(
                f"{path}: lists {listed} classes but {model} {num_classes}; the model and "
                "classes.json do not belong together (pass the model file of this run, or fix "
                "classes.json)"
            )
    return classes


def load_model(path, unsafe=False):
    """Loads a `.keras` model in keras' safe mode (no code runs from the file).

    Every floating-point weight is checked to be finite: a model holding NaN or inf (a
    diverged training, a damaged file) is refused here, naming the first such weight,
    instead of predicting garbage in every verb that uses it.

    Args:
        path: str. A `.keras` file.
        unsafe: bool. Allow Lambda layers and other deserialized code (trusted files only).
    """

    import kseg.models  # noqa: F401  registers kseg's layers for deserialization
    from kseg.models.saving import load_keras_file

    path = os.fspath(path)
    if not os.path.lexists(path):
        raise KsegError(f"{path}: model file not found")
    check_regular_file(path, "model file")
    code_layers = _code_layers(path)
    if code_layers and not unsafe:
        raise KsegError(_CODE_REFUSED.format(path=path, layers=", ".join(code_layers)))
    try:
        model = load_keras_file(path, safe_mode=not unsafe)
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
    from kseg.models.saving import first_nonfinite_weight

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
    import keras
    import numpy as np

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


def _code_layers(path):
    """Names the Lambda layers in a `.keras` file's config, without building anything.

    Returns [] for a file that is not a readable `.keras` archive (keras reports that).
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return []
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("class_name") == "Lambda":
                name = (node.get("config") or {}).get("name", "?")
                found.append(f"Lambda layer '{name}'")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found


def _one_line(error, limit=300):
    """An exception's message on one line, cut to `limit` characters."""
    text = " ".join(str(error).split())
    # keras nests the cause of a failed deserialization after this phrase
    text = text.rsplit("Exception encountered:", 1)[-1].strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."
