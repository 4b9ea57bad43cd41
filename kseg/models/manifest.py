"""`weights/manifest.yaml`: the pretrained weights kseg knows how to obtain.

Each entry names a file, the address it is downloaded from and its hash (MD5 or SHA-256,
as `keras.utils.get_file` checks them). The manifest lies beside the package, in the
repository's `weights/` folder (found from an editable install, `pip install -e .`).
"""

import dataclasses
import functools
import os

from kseg.errors import WeightsError

MANIFEST_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "weights",
    "manifest.yaml",
)


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


@functools.lru_cache(maxsize=None)
def read_manifest(path=MANIFEST_PATH):
    """Returns {name: WeightsEntry} for every entry of the manifest at `path`."""
    import yaml

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
