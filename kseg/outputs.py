"""Where kseg may write: one policy for every file and folder kseg writes.

The rules, checked before anything is written:

1. Never over an input: an output may not be one of the command's inputs, lie inside an
   input folder, or (a folder output) hold an input. Paths are compared after resolving
   symbolic links; an input reached through a hard link is caught by its inode.
2. Never over a file kseg did not write. What kseg writes into a folder is listed in that
   folder's ledger, `.kseg-outputs.json`, with its kind. An existing path that the ledger
   does not list (or lists as another kind) is refused, `--force` or not.
3. A kseg output of the same kind is replaced when the kind is refreshed by a rerun
   (predictions, metrics, statistics: `replace="rerun"`), otherwise only with `--force`
   (exports, converted weights, datasets, heatmaps), and a dataset's classes.yaml never.
4. Writes are atomic (`writing`, below): a reader sees the previous complete file or the new
   one, never a half; a temporary never outlives the process, Ctrl-C and SIGTERM included.

`KINDS` is the table of everything kseg writes; docs/outputs.md is made from it and a test
checks that every writer in the code names one of its kinds.

A command collects its outputs in an `Outputs`, which checks each as it is added, lists
them in their ledgers before the first is written (`start`), and at the end (`finish`)
drops from the ledgers what was never written and removes the folders it created that
stayed empty, so a failed command leaves the tree as it found it.

Run folders are the exception to the ledger: `kseg train` creates the folder or resumes a
folder that is a run, and everything inside it is kseg's (`KINDS["run"]`).
"""

import contextlib
import ctypes
import dataclasses
import json
import os
import re
import shutil
import sys
import tempfile

from kseg.errors import DiskFullError, KsegError, is_disk_full
from kseg.files import lies_in, load_json
from kseg.signals import raise_if_interrupted

LEDGER = ".kseg-outputs.json"
LEDGER_LIMIT = 64 << 20


@dataclasses.dataclass(frozen=True)
class Kind:
    """One kind of output.

    Attributes:
        name: str. The key of `KINDS`, recorded in the ledger.
        verb: str. Which command writes it.
        paths: str. Where, by default and with which option.
        replace: str. "rerun" (a rerun replaces kseg's own file of this kind), "force"
            (only with --force), "never" (an existing file is always kept), "run" (inside a
            run folder, which kseg owns whole) or "keras" (keras' own download cache).
    """

    name: str
    verb: str
    paths: str
    replace: str


KINDS = {kind.name: kind for kind in (
    Kind("predictions", "kseg predict", "--out/<name>.png, <name>_color.png, "
         "<name>_overlay.png, legend.png", "rerun"),
    Kind("metrics", "kseg evaluate", "--out (default RUN/metrics-SPLIT.json)", "rerun"),
    Kind("evaluation image", "kseg evaluate", "--confusion-png (default beside --out), --sheet",
         "rerun"),
    Kind("tflite export", "kseg export --format tflite", "--out (default RUN/export/<model>.tflite)",
         "force"),
    Kind("onnx export", "kseg export --format onnx", "--out (default RUN/export/<model>.onnx)",
         "force"),
    Kind("savedmodel export", "kseg export --format savedmodel",
         "--out (default RUN/export/<model>_savedmodel/, a folder)", "force"),
    Kind("heatmap", "kseg heatmap", "--out (default ./<image>_heatmap_<class>.png)", "force"),
    Kind("dataset statistics", "kseg data stats", "--json", "rerun"),
    Kind("synthetic dataset", "kseg data synth", "OUT/ (a folder)", "force"),
    Kind("dataset classes", "kseg data init", "FOLDER/classes.yaml (inside the dataset it "
         "describes: the one output that goes there)", "never"),
    Kind("imported dataset", "kseg data import", "OUT_DIR/ (a folder: images/, masks/, classes.yaml, "
         "import-report.txt)", "never"),
    Kind("converted weights", "kseg weights convert", "--out MODEL.keras and classes.json beside it",
         "force"),
    Kind("benchmark report", "benchmarks/*.py", "--out REPORT.json", "rerun"),
    Kind("downloaded weights", "kseg weights download, --weights imagenet, kseg heatmap",
         "keras' cache (~/.keras/models/), written by keras.utils.get_file", "keras"),
    Kind("run", "kseg train", "--run-dir (default runs/<model>-<data>-<time>/): config.yaml, "
         "classes.json, log.csv, curves.png, checkpoints/, tensorboard/", "run"),
)}


def read_ledger(folder):
    """({name relative to `folder`: kind}, {name: [size, time]}) of what kseg wrote there
    (both empty without a ledger; the second only in a folder output's own ledger).

    Raises:
        KsegError: the ledger is a link, not a file kseg wrote, or damaged.
    """
    path = os.path.join(folder, LEDGER)
    if not os.path.lexists(path):
        return {}, {}
    if os.path.islink(path):
        raise KsegError(f"{path}: kseg's list of its outputs is a symbolic link; delete it or "
                        "write elsewhere")
    data = load_json(path, "kseg output list", limit=LEDGER_LIMIT)
    files = data.get("files") if isinstance(data, dict) and data.get("written_by") == "kseg" else None
    if not isinstance(files, dict) or not all(isinstance(value, str) for value in files.values()):
        raise KsegError(f"{path}: not a list of kseg's outputs; delete it, or write elsewhere")
    files = {os.path.normpath(name): kind for name, kind in files.items()
             if name and not os.path.isabs(name) and os.path.normpath(name).split(os.sep)[0] != ".."}
    return files, data.get("stamps", {})


def _write_ledger(folder, files, stamps=None):
    path = os.path.join(folder, LEDGER)
    if not files:
        if os.path.lexists(path):
            os.remove(path)
        return
    payload = {"written_by": "kseg", "files": dict(sorted(files.items()))}
    if stamps:
        payload["stamps"] = stamps
    write_bytes(path, (json.dumps(payload, indent=1) + "\n").encode())


def _check_parents(named, path, way_out):
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(parent) and os.path.dirname(parent) != parent:  # a drive that is not there
        parent = os.path.dirname(parent)
    if os.path.lexists(parent) and not os.path.isdir(parent):
        raise KsegError(f"{named}: {parent} exists and is not a folder; {way_out}")


def _stamp(path):
    info = os.stat(path)
    return [info.st_size, info.st_mtime_ns]


def seal_folder(folder, kind):
    """Lists every file of a folder output, with its size and time, in the folder's own
    ledger (call it on the complete folder before it is renamed into place), so that
    replacing the folder later can check that nothing was added or changed since."""
    files, stamps = {}, {}
    for parent, _, names in os.walk(folder):
        for name in names:
            relative = os.path.relpath(os.path.join(parent, name), folder)
            if relative != LEDGER:
                files[relative] = kind
                stamps[relative] = _stamp(os.path.join(parent, name))
    _write_ledger(folder, files, stamps)


def _foreign_file(folder):
    """The first entry inside a folder output that kseg did not write there, or changed
    since (as its own ledger says); None when the folder is as kseg left it."""
    try:
        listed, stamps = read_ledger(folder)
    except KsegError:
        return LEDGER
    if not isinstance(stamps, dict):
        return LEDGER
    for parent, folders, names in os.walk(folder):
        for name in sorted(folders):
            if os.path.islink(os.path.join(parent, name)):
                return os.path.relpath(os.path.join(parent, name), folder)
        for name in sorted(names):
            path = os.path.join(parent, name)
            relative = os.path.normpath(os.path.relpath(path, folder))
            if relative == LEDGER:
                continue
            if relative not in listed or os.path.islink(path) or not os.path.isfile(path):
                return relative
            if stamps.get(relative) != _stamp(path):
                return f"{relative} (changed since)"
    return None


def _file_id(path):
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


class Outputs:
    """The outputs of one command, checked as they are added and recorded in ledgers.

    Args:
        inputs: paths (files or folders) the command reads; None entries are skipped.
        force: bool. --force: replace kseg's own outputs of the same kind.
    """

    def __init__(self, inputs=(), force=False):
        self.force = force
        given = [os.fspath(source) for source in inputs if source is not None]
        self.inputs = [(source, os.path.realpath(source), _file_id(source))  # (as given, real path, file id)
                       for source in given if os.path.lexists(source)]
        self.planned = {}  # ledger folder -> {relative name: kind}
        self.ledgers = {}  # ledger folder -> what its ledger listed when first read
        self.paths = {}  # normalised real output path -> how it was named (option and path)
        self.created = []  # folders `start` made, innermost first

    def add(self, path, kind, option="--out", folder=False, root=None, choose=None):
        """Checks that `path` may be written as a `kind` output; returns the `Outputs`.

        Args:
            path: str. The file (or, with `folder`, the folder) to write.
            kind: str. A key of `KINDS`.
            option: str. How the user named it, for messages ("--out", "OUT").
            folder: bool. Whether the output is a folder.
            root: str or None. The folder whose ledger lists it (default: its parent);
                predict lists the files of its subfolders in --out's ledger.
            choose: str or None. What the user should choose instead, in messages
                (default "another " + option).

        Raises:
            KsegError: one line naming the option, the path, what it would destroy and
                the way out. Nothing has been written then.
        """
        rule = KINDS[kind]
        path = os.fspath(path)
        named = f"{option} {path}" if option else path
        way_out = f"choose {choose or (f'another {option}' if option else 'another path')}"
        real = os.path.realpath(path)
        key = os.path.normcase(real)
        if key in self.paths:
            raise KsegError(f"{named}: also given as {self.paths[key]}; give each output a path "
                            "of its own")
        self._check_inputs(named, path, real, folder, way_out)
        if root is None:
            root = os.path.dirname(os.path.abspath(path))
        elif not lies_in(real, os.path.realpath(root)):
            raise KsegError(f"{named}: leads out of {root} (through a symbolic link); remove "
                            f"the link or {way_out}")
        name = os.path.normpath(os.path.relpath(os.path.abspath(path), os.path.abspath(root)))
        if os.path.basename(path) == LEDGER or is_temporary_name(os.path.basename(path)):
            raise KsegError(f"{named}: that name is kept for kseg's own bookkeeping; {way_out}")
        _check_parents(named, path, way_out)
        root = os.path.abspath(root)
        if root not in self.ledgers:
            self.ledgers[root] = read_ledger(root)[0] if os.path.isdir(root) else {}
        if os.path.lexists(path):
            self._check_replaceable(named, path, rule, root, name, folder, way_out)
        if rule.replace != "never":  # nothing to recognise later: no ledger needed
            self.planned.setdefault(root, {})[name] = kind
        self.paths[key] = named
        return self

    def check_folder(self, path, option="--out"):
        """Checks a folder that outputs go into (predict's --out): not an input, not inside
        an input folder, holding no input, and a folder if it exists."""
        path = os.fspath(path)
        named, way_out = f"{option} {path}", f"choose another {option}"
        self._check_inputs(named, path, os.path.realpath(path), True, way_out)
        if os.path.lexists(path) and not os.path.isdir(path):
            raise KsegError(f"{named}: exists and is not a folder; {way_out}")
        _check_parents(named, path, way_out)

    def _check_inputs(self, named, path, real, folder, way_out):
        file_id = _file_id(path)
        for source, source_real, source_id in self.inputs:
            if real == source_real or (file_id and file_id == source_id):
                raise KsegError(f"{named}: is the input {source}; writing there would destroy "
                                f"it; {way_out}")
            if os.path.isdir(source_real) and lies_in(real, source_real):
                raise KsegError(f"{named}: lies inside the input folder {source}; outputs are "
                                f"never written among the inputs; {way_out} outside it")
            if folder and lies_in(source_real, real):
                raise KsegError(f"{named}: holds the input {source}; {way_out}")

    def _check_replaceable(self, named, path, rule, root, name, folder, way_out):
        if rule.replace == "never":
            raise KsegError(f"{named}: exists; `{rule.verb}` never replaces it (edit it, or move "
                            f"it away and run `{rule.verb}` again)")
        if os.path.islink(path):
            raise KsegError(f"{named}: exists and is a symbolic link kseg did not write; delete "
                            f"it or {way_out}")
        written = self.ledgers[root].get(name)
        if written is None:
            raise KsegError(f"{named}: exists and was not written by kseg (not listed in "
                            f"{os.path.join(root, LEDGER)}); {way_out}, or move it away yourself")
        if written != rule.name:
            raise KsegError(f"{named}: exists and kseg wrote it as {written}, not as {rule.name}, "
                            f"so it is not replaced; {way_out}")
        if folder != os.path.isdir(path):
            what = "a folder" if os.path.isdir(path) else "not a folder"
            raise KsegError(f"{named}: exists and is {what}; {way_out}")
        if not folder and not os.path.isfile(path):
            raise KsegError(f"{named}: exists and is not a regular file; {way_out}")
        foreign = folder and _foreign_file(path)
        if foreign:
            raise KsegError(f"{named}: holds {foreign}, which kseg did not write there, so the "
                            f"folder is not replaced; {way_out}, or move it away yourself")
        if rule.replace == "force" and not self.force:
            raise KsegError(f"{named}: exists; pass --force to replace the {rule.name} kseg "
                            f"wrote there, or {way_out}")

    def start(self):
        """Lists every added output in its folder's ledger before any is written, so that
        a command killed halfway can be repeated into the same place. If one ledger cannot
        be written, those written before it are undone (`finish`)."""
        try:
            for root, names in self.planned.items():
                for name in names:
                    for folder in missing_folders(os.path.dirname(os.path.join(root, name))):
                        if folder not in self.created:
                            self.created.append(folder)
                files = read_ledger(root)[0]
                if all(files.get(name) == kind for name, kind in names.items()):
                    continue
                files.update(names)
                _write_ledger(root, files)
        except OSError as error:  # a full disk is a DiskFullError (a KsegError) already
            self.finish()
            raise KsegError(f"{root}: cannot write there ({error.strerror or error})") from None
        except BaseException:
            self.finish()
            raise
        return self

    def finish(self):
        """Drops from the ledgers the planned outputs that were never written, and removes
        the folders `start` created that stayed empty."""
        for root, names in self.planned.items():
            try:
                files = read_ledger(root)[0]
            except KsegError:
                continue
            missing = {name for name in names if not os.path.lexists(os.path.join(root, name))}
            if missing & files.keys():
                with contextlib.suppress(OSError, KsegError):  # a longer list does no harm
                    _write_ledger(root, {n: k for n, k in files.items() if n not in missing})
        for folder in sorted(self.created, key=len, reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only while empty

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.finish()


def check(path, kind, inputs=(), force=False, option="--out", folder=False):
    """`Outputs(inputs, force).add(path, kind, ...)` for a command with one output."""
    return Outputs(inputs, force).add(path, kind, option=option, folder=folder)


# -- atomic writes ------------------------------------------------------------------------
# Every file is written under a hidden temporary name beside its destination and renamed
# into place; `os.replace` is atomic on one filesystem, so readers see the previous complete
# file or the new one. A folder replaces an existing one by an atomic exchange of the two
# names where Linux offers it. A signal received meanwhile (`kseg.signals`) stops the
# rename; a full disk is one `DiskFullError` naming the destination.


@contextlib.contextmanager
def writing(path, directory=False):
    """Yields a temporary path to write to; on success it is renamed to `path`.

    On an exception the temporary file or folder is removed and `path` is untouched.

    Args:
        path: str. The final destination.
        directory: bool. Whether the result is a folder (e.g. a SavedModel) or a file.
    """
    path = os.fspath(path)
    temporary = _new_temporary(path, directory)
    try:
        yield temporary
        raise_if_interrupted()  # a swallowed Ctrl-C or SIGTERM must not complete the write
        if directory and os.path.isdir(path):
            if _exchange(temporary, path):
                shutil.rmtree(temporary, ignore_errors=True)  # now the previous folder
            else:
                # Without an atomic exchange, move the old folder aside first (a kill
                # between the two renames leaves it as .NAME.*.old beside `path`; an
                # interruption or error there moves it back).
                old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".old",
                                       dir=os.path.dirname(temporary))
                os.rmdir(old)
                os.replace(path, old)
                try:
                    os.replace(temporary, path)
                except BaseException:
                    os.replace(old, path)
                    raise
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temporary, path)
    except BaseException as error:
        if os.path.isdir(temporary):
            shutil.rmtree(temporary, ignore_errors=True)
        elif os.path.exists(temporary):
            os.remove(temporary)
        if not isinstance(error, DiskFullError) and is_disk_full(error):
            raise DiskFullError(f"{path}: no space left on device (the file was not written)") from None
        raise


# tempfile's random part: 8 characters of "abcdefghijklmnopqrstuvwxyz0123456789_".
_TEMPORARY = re.compile(r"\.(?P<base>.+)\.[a-z0-9_]{8}\.(?P<kind>tmp|old)(?P<tail>.*)", re.DOTALL)


def _new_temporary(path, directory):
    """Creates `.NAME.XXXXXXXX.tmp[SUFFIX]` beside `path` (and the folders it goes in): a
    folder, or a file that keeps NAME's suffix (some writers, keras' .keras and cv2.imwrite,
    choose the format by it)."""
    parent, base = os.path.split(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
        if directory:  # mkdtemp makes 0700; give a normal folder's mode
            folder = tempfile.mkdtemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
            os.chmod(folder, 0o777 & ~_umask())
            return folder
        suffix = "".join(base.partition(".")[1:])
        handle, temporary = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{suffix}", dir=parent)
        os.close(handle)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; give a normal file's mode
        return temporary
    except OSError as error:
        if is_disk_full(error):
            raise DiskFullError(f"{path}: no space left on device") from None
        raise


def is_temporary_name(name):
    """Whether `name` is exactly a temporary name this module makes (what a kill leaves)."""
    match = _TEMPORARY.fullmatch(name)
    if not match:
        return False
    base, kind, tail = match.group("base", "kind", "tail")
    if kind == "old":  # a folder moved aside while being replaced
        return tail == ""
    # files keep their suffix ("last.keras" -> ".tmp.keras"); folders have none
    return tail in ("", "".join(base.partition(".")[1:]))


@contextlib.contextmanager
def scratch_beside(path):
    """Yields a new hidden folder beside `path`, named like `writing`'s temporaries
    (so a kill leaves it where the next sweep finds it), and removes it on any exit,
    Ctrl-C and SIGTERM included. For intermediate files of a result written to `path`.
    """
    folder = _new_temporary(os.fspath(path), True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _exchange(first, second):
    """Swaps two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE).

    Returns False where the system or filesystem does not offer it.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0


def missing_folders(folder):
    """The folders `os.makedirs(folder)` would create, innermost first (absolute paths).

    A command that fails can remove exactly these, leaving the tree as it found it.
    """
    missing = []
    folder = os.path.abspath(folder)
    while not os.path.lexists(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return missing


def folds_case(folder):
    """Whether the filesystem holding `folder` (or its nearest existing parent) ignores
    the case of names, as on macOS and Windows by default."""
    base = os.path.abspath(folder)
    while not os.path.isdir(base) and os.path.dirname(base) != base:
        base = os.path.dirname(base)
    try:
        names = sorted(os.listdir(base))[:20]
    except OSError:
        names = []
    for path in [base] + [os.path.join(base, name) for name in names]:
        name = os.path.basename(path)
        swapped = name.swapcase()
        if swapped != name and swapped.swapcase() == name:  # not with ß or ı: "ı" -> "I" -> "i"
            try:
                return os.path.samefile(path, os.path.join(os.path.dirname(path), swapped))
            except OSError:
                return False
    return False


def case_key(name):
    """`name` as a filesystem that ignores case compares it (NTFS, APFS): each character
    mapped on its own, so "straße" is not "STRASSE" (as under str.casefold) and "Σ" is
    "σ" wherever it stands (str.lower makes a final one "ς")."""
    upper = (char.upper() if len(char.upper()) == 1 else char for char in name)
    return "".join(char.lower() if len(char.lower()) == 1 else char for char in upper)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path, data):
    """Writes `data` to `path` atomically."""
    with writing(path) as temporary, open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_together(writers):
    """Writes several files so that either all of them replace their destinations or none
    does (a full disk or an interrupt while writing any leaves every destination as it
    was).

    Args:
        writers: list of (path, write) where `write(temporary)` writes the file.
    """
    with contextlib.ExitStack() as stack:
        for path, write in writers:
            write(stack.enter_context(writing(path)))


def bytes_writer(data):
    """A `write_together` writer of `data`."""
    def write(temporary):
        with open(temporary, "wb") as handle:
            handle.write(data)
    return write


def write_json(path, payload):
    """Writes `payload` as indented JSON, atomically."""
    write_bytes(path, (json.dumps(payload, indent=2) + "\n").encode("utf8"))


def markdown_table():
    """The table of docs/outputs.md: every kind kseg writes, by whom, where and how it is
    replaced."""
    rules = {
        "rerun": "rerun replaces kseg's own file of this kind; nothing else",
        "force": "replaced only with --force, and only if kseg wrote it as this kind",
        "never": "never replaced",
        "run": "inside a run folder kseg created; --resume only into a run folder",
        "keras": "keras checks the hash and keeps a good file",
    }
    lines = ["| kind | written by | path | existing path |", "|---|---|---|---|"]
    for kind in KINDS.values():
        lines.append(f"| {kind.name} | `{kind.verb}` | {kind.paths} | {rules[kind.replace]} |")
    return "\n".join(lines) + "\n"
