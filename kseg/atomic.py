"""Writing files and folders so that a kill never leaves a half-written result.

Everything is written under a temporary name beside its destination and renamed into
place at the end; `os.replace` is atomic on one filesystem, so readers see either the
previous complete file or the new complete file. A folder (a SavedModel) replaces an
existing one by an atomic exchange of the two names where Linux offers it. Temporary
names start with a dot, so a kill leaves nothing in plain sight.

A signal received while the result was written (see `kseg.signals`) stops the rename, and
a full disk is reported as one `DiskFullError` naming the destination.
"""

import contextlib
import os
import re
import shutil
import sys
import tempfile

from kseg.errors import DiskFullError, is_disk_full
from kseg.signals import raise_if_interrupted


@contextlib.contextmanager
def atomic_path(path, directory=False):
    """Yields a temporary path to write to; on success it is renamed to `path`.

    On an exception the temporary file or folder is removed and `path` is untouched.

    Args:
        path: str. The final destination.
        directory: bool. Whether the result is a folder (e.g. a SavedModel) or a file.
    """
    path = os.fspath(path)
    parent = _make_parent(path)
    base = os.path.basename(path)
    temporary = _new_temporary(parent, base, directory, destination=path)
    try:
        yield temporary
        raise_if_interrupted()  # a swallowed Ctrl-C or SIGTERM must not complete the write
        if directory and os.path.isdir(path):
            if _exchange(temporary, path):
                shutil.rmtree(temporary, ignore_errors=True)  # now the previous folder
            else:
                # Without an atomic exchange, move the old folder aside first (a kill
                # between the two renames leaves it as .NAME.*.old beside `path`).
                old = tempfile.mkdtemp(prefix=f".{base}.", suffix=".old", dir=parent)
                os.rmdir(old)
                os.replace(path, old)
                os.replace(temporary, path)
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
_TEMPORARY = re.compile(r"\.(?P<base>.+)\.[a-z0-9_]{8}\.(?P<kind>tmp|old)(?P<tail>.*)")


def _make_parent(path):
    """Creates the folder `path` goes in (a full disk is a DiskFullError); returns it."""
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as error:
        if is_disk_full(error):
            raise DiskFullError(f"{parent}: no space left on device") from None
        raise
    return parent


def _new_temporary(parent, base, directory, destination):
    """Creates `.BASE.XXXXXXXX.tmp[SUFFIX]` in `parent`: a folder, or a file that keeps
    `base`'s suffix (some writers, keras' .keras and cv2.imwrite, choose the format by it)."""
    try:
        if directory:
            return tempfile.mkdtemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
        suffix = "".join(base.partition(".")[1:])
        handle, temporary = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{suffix}", dir=parent)
        os.close(handle)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; give a normal file's mode
        return temporary
    except OSError as error:
        if is_disk_full(error):
            raise DiskFullError(f"{destination}: no space left on device") from None
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
def scratch_folder(path):
    """Yields a new hidden folder beside `path`, named like `atomic_path`'s temporaries
    (so a kill leaves it where the next sweep finds it), and removes it on any exit,
    Ctrl-C and SIGTERM included. For intermediate files of a result written to `path`.
    """
    path = os.fspath(path)
    folder = _new_temporary(_make_parent(path), os.path.basename(path), True, destination=path)
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
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange)
    return result == 0


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


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path, data):
    """Writes `data` to `path` atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
