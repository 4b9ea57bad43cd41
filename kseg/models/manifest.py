"""`weights/manifest.yaml`: the weights and models kseg knows.

Two kinds of entry (the `kind` key; `weights` when absent):

- `weights`: a file downloaded from `url` and checked against its hash (MD5 or SHA-256,
  as `keras.utils.get_file` checks them): ImageNet VGG16, the authors' Caffe FCNs.
- `model`: a trained kseg model shipped in the weights folder itself (`path`, with its
  `classes` file), which `kseg predict`, `evaluate` and `export` use when no model is given
  and no run is under ./runs (`kseg.runs.choose_model`). Its `sha256`, when given, is
  checked before the file is used.

The manifest lies beside the package, in the repository's `weights/` folder (found from an
editable install, `pip install -e .`).
"""

import dataclasses
import functools
import hashlib
import numbers
import os

import yaml

from kseg.errors import KsegError, WeightsError

MANIFEST_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "weights",
    "manifest.yaml",
)
KINDS = ("weights", "model")


@dataclasses.dataclass(frozen=True)
class WeightsEntry:
    """One manifest entry: `file` downloaded from `url`, checked against `file_hash`."""

    name: str
    file: str
    url: str
    md5: str = None
    sha256: str = None

    @property
    def file_hash(self):
        """The hash `keras.utils.get_file` checks: SHA-256 when known, else MD5."""
        return self.sha256 or self.md5


@dataclasses.dataclass(frozen=True)
class ShippedModel:
    """A manifest entry of kind `model`: a trained model in the weights folder.

    Args:
        name: str. The entry's name (e.g. "camvid-fcn8s").
        path: str. The absolute path of the `.keras` file.
        classes: str. The absolute path of its classes.json (the format of run folders).
        sha256: str or None. The file's SHA-256; checked by `check` when given.
        model: str or None. The registered model it is (e.g. "fcn8s_vgg16bn").
        recipe: str or None. The `kseg train --recipe` that trained it.
        dataset: str or None. What it was trained on, for people.
        val_miou: float or None. Its measured validation mIoU (0..1), None until measured.
        licence: str or None. The terms it comes under, for people.
    """

    name: str
    path: str
    classes: str
    sha256: str = None
    model: str = None
    recipe: str = None
    dataset: str = None
    val_miou: float = None
    licence: str = None

    @property
    def folder(self):
        """The folder of its classes.json, which predict/evaluate/export read as a run's."""
        return os.path.dirname(self.classes)

    def check(self, way_out):
        """Raises a `KsegError` naming the file when it is missing or not the file the
        manifest describes (its SHA-256 differs); `way_out` ends the message."""
        if not os.path.isfile(self.path):
            raise KsegError(f"{self.path}: kseg's shipped model {self.name} is not installed; {way_out}",
                            kind="missing")
        if self.sha256:
            actual = file_sha256(self.path)
            if actual != self.sha256.lower():
                raise WeightsError(
                    f"{self.path}: damaged or replaced: its SHA-256 is {actual}, the weights manifest "
                    f"expects {self.sha256}; reinstall kseg, or {way_out}"
                )


def file_sha256(path, chunk=1 << 20):
    """The SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def load_entries(path):
    """The manifest's entries as a list of dicts, each with a name and a known kind."""
    try:
        with open(path, encoding="utf8") as stream:
            entries = yaml.safe_load(stream)
    except OSError as error:
        raise WeightsError(
            f"{path}: kseg's weights manifest is missing ({error.strerror}); reinstall kseg "
            "from its repository (pip install -e .)"
        ) from None
    except yaml.YAMLError as error:
        raise WeightsError(f"{path}: kseg's weights manifest is not valid YAML ({error})") from None
    if not isinstance(entries, list) or not all(isinstance(entry, dict) and "name" in entry
                                                for entry in entries):
        raise WeightsError(f"{path}: kseg's weights manifest needs a list of entries with name, file and url "
                           "(missing 'name')")
    for entry in entries:
        if entry.get("kind", "weights") not in KINDS:
            raise WeightsError(f"{path}: weights entry '{entry['name']}' has kind {entry['kind']!r}; "
                               f"expected one of {', '.join(KINDS)}")
    return entries


@functools.cache
def read_manifest(path=MANIFEST_PATH):
    """Returns {name: WeightsEntry} for every downloadable entry (kind `weights`) at `path`."""
    entries = [entry for entry in load_entries(path) if entry.get("kind", "weights") == "weights"]
    try:
        return {
            entry["name"]: WeightsEntry(
                entry["name"], entry["file"], entry["url"], entry.get("md5"), entry.get("sha256")
            )
            for entry in entries
        }
    except (TypeError, KeyError) as error:
        raise WeightsError(
            f"{path}: kseg's weights manifest needs a list of entries with name, file and url "
            f"(missing {error})"
        ) from None


def manifest_entry(name, path=MANIFEST_PATH):
    """Returns the `WeightsEntry` called `name`, or raises a `WeightsError` naming the manifest."""
    entries = read_manifest(path)
    if name not in entries:
        raise WeightsError(f"{path}: no weights entry named '{name}'")
    return entries[name]


def read_shipped_models(path=None):
    """Returns {name: ShippedModel} for every entry of kind `model` of the manifest at
    `path` (default: `MANIFEST_PATH`, read when called). Paths are relative to the
    manifest's folder."""
    path = os.fspath(path or MANIFEST_PATH)
    folder = os.path.dirname(os.path.abspath(path))
    models = {}
    for entry in load_entries(path):
        if entry.get("kind") != "model":
            continue
        name = entry["name"]
        classes = _model_field(path, entry, "classes", required=True)
        if os.path.basename(classes) != "classes.json":
            raise WeightsError(f"{path}: model entry '{name}': 'classes' must name a classes.json file, "
                               f"found {classes!r}")
        file = _model_field(path, entry, "path", required=True)
        optional = {key: _model_field(path, entry, key, fraction=key == "val_miou")
                    for key in ("sha256", "model", "recipe", "dataset", "val_miou", "licence")}
        models[name] = ShippedModel(name, os.path.normpath(os.path.join(folder, file)),
                                    os.path.normpath(os.path.join(folder, classes)), **optional)
    return models


def _model_field(path, entry, key, required=False, fraction=False):
    """One field of a model entry: a non-empty string, or with `fraction` a number 0..1;
    None when absent unless `required`."""
    value = entry.get(key)
    if value is None and not required:
        return None
    if fraction:
        valid = isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value <= 1
    else:
        valid = isinstance(value, str) and bool(value.strip())
    if not valid:
        expected = "a number from 0 to 1" if fraction else "a non-empty string"
        raise WeightsError(f"{path}: model entry '{entry['name']}': '{key}' must be {expected}, found {value!r}")
    return value


def shipped_model(name, path=None):
    """Returns the `ShippedModel` called `name`, or raises a `WeightsError` naming the manifest."""
    models = read_shipped_models(path)
    if name not in models:
        raise WeightsError(f"{os.fspath(path or MANIFEST_PATH)}: no model entry named '{name}'")
    return models[name]
