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


def read_classes(run_dir):
    """Returns the classes.json of a run directory as a dict, or None when absent."""
    if run_dir is None:
        return None
    path = os.path.join(run_dir, CLASSES_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        raise KsegError(f"{path}: unreadable class description ({error})") from None


def load_model(path, unsafe=False):
    """Loads a `.keras` model in keras' safe mode (no code runs from the file).

    Args:
        path: str. A `.keras` file.
        unsafe: bool. Allow Lambda layers and other deserialized code (trusted files only).
    """

    import kseg.models  # noqa: F401  registers kseg's layers for deserialization
    from kseg.models.saving import load_keras_file

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise KsegError(f"{path}: model file not found")
    code_layers = _code_layers(path)
    if code_layers and not unsafe:
        raise KsegError(_CODE_REFUSED.format(path=path, layers=", ".join(code_layers)))
    try:
        return load_keras_file(path, safe_mode=not unsafe)
    except ValueError as error:
        if "safe_mode" in str(error) or "Lambda" in str(error):
            raise KsegError(_CODE_REFUSED.format(path=path, layers="a Lambda layer")) from None
        raise KsegError(f"{path}: not a loadable keras model ({_one_line(error)})") from None
    except Exception as error:
        raise KsegError(
            f"{path}: not a loadable keras model ({type(error).__name__}: {_one_line(error)})"
        ) from None


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
