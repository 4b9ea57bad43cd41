"""Reading user files without hanging and without unbounded memory, and YAML without bombs.

Every file kseg reads on a user's behalf goes through `read_bytes` or `read_text`:

- the path is opened without blocking (`O_NONBLOCK`) and checked with `fstat` to be a
  regular file *before* anything is read, so a FIFO, a socket, a terminal or a device such
  as /dev/zero (directly or through a symlink) is refused by name instead of blocking
  forever or being read until memory runs out;
- at most `limit` bytes are accepted: a bigger file is refused, naming its size.

`check_regular_file` does the same check for files another library opens itself
(keras model archives, HDF5 weights).

`load_yaml` parses YAML with the safe loader and refuses aliases (`&a` / `*a`), so an
alias bomb ("billion laughs") cannot expand; nesting deeper than `MAX_YAML_DEPTH` is
refused too. `load_json` (and `parse_json`, for JSON read from elsewhere, such as a
member of a model archive) turns every failure of the parser, deep nesting included, into
one `MalformedFileError` naming the file. Text that is not UTF-8 (UTF-16 with its
byte-order mark, Latin-1, binary data) is a `NotTextError`. `brief` shortens user data
before it goes into an error message.
"""

import errno
import json
import os
import stat

import yaml

from kseg.errors import KsegError

MiB = 1 << 20
# Limits on what one file may hold. Images: a 16384x16384 16-bit RGBA PNG stored raw is
# 2 GiB; anything larger is not a photograph. Text: configs, class lists, split lists.
IMAGE_FILE_LIMIT = 2048 * MiB
TEXT_FILE_LIMIT = 64 * MiB
MAX_YAML_DEPTH = 64
BRIEF_LIMIT = 80


class FileError(KsegError):
    """A file kseg cannot use as it is; the classes below say why."""


class FileKindError(FileError):
    """A path that exists but is not a regular file (folder, FIFO, device, socket)."""

    kind = "not a regular file"


class FileTooLargeError(FileError):
    """A file larger than kseg accepts for its purpose."""

    kind = "file too large"


class FileMissingError(FileError):
    """A path that does not exist."""

    kind = "missing"


class UnreadableFileError(FileError):
    """A regular file the operating system refuses to read (permissions, I/O error)."""

    kind = "unreadable"


class NotTextError(FileError):
    """A file read as text that is not UTF-8 (another encoding, or binary data)."""

    kind = "not UTF-8 text"


class MalformedFileError(FileError):
    """A structured file (YAML, JSON) its parser refuses: syntax, nesting, values."""

    kind = "malformed"


_KIND_NAMES = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device",
               stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def _check_stat(path, info, what, limit):
    """Refuses what `info` (`path`'s stat result) shows is not a regular file, or too large."""
    if not stat.S_ISREG(info.st_mode):
        kind = _KIND_NAMES.get(stat.S_IFMT(info.st_mode), "not a regular file")
        link = " (through a symbolic link)" if os.path.islink(path) else ""
        raise FileKindError(f"{path}: {what} is {kind}{link}, not a regular file")
    _check_size(path, info.st_size, what, limit)


def _os_error(path, what, error):
    """The `FileError` for an OSError met opening or reading `path`."""
    if isinstance(error, FileNotFoundError):
        return FileMissingError(f"{path}: {what} not found")
    return UnreadableFileError(f"{path}: cannot read {what} ({error.strerror or error})")


def check_regular_file(path, what="file", limit=None):
    """Raises a `KsegError` unless `path` is an existing regular file (symlinks followed).

    Args:
        path: str. The file.
        what: str. What the file is for, in messages ("image", "model file", ...).
        limit: int or None. Largest size accepted, in bytes.

    Returns:
        int. The file's size in bytes.
    """
    path = os.fspath(path)
    try:
        info = os.stat(path)
    except OSError as error:
        raise _os_error(path, what, error) from None
    _check_stat(path, info, what, limit)
    return info.st_size


def _check_size(path, size, what, limit):
    if limit is not None and size > limit:
        raise FileTooLargeError(
            f"{path}: {what} is {_format_size(size)}, more than the {_format_size(limit)} "
            "kseg reads for it"
        )


def _format_size(size):
    for unit, scale in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def read_bytes(path, what="file", limit=IMAGE_FILE_LIMIT):
    """Returns the content of a regular file, refusing anything else before reading.

    Args:
        path: str. The file (symlinks are followed, then checked).
        what: str. What the file is, for messages.
        limit: int. Largest size accepted, in bytes.

    Raises:
        FileMissingError, FileKindError, FileTooLargeError, UnreadableFileError.
    """
    path = os.fspath(path)
    try:
        # O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever. Windows has
        # neither FIFOs nor that flag, and needs O_BINARY, or reads turn "\r\n" into "\n".
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        descriptor = os.open(path, flags | getattr(os, "O_BINARY", 0))
    except IsADirectoryError:
        raise FileKindError(f"{path}: {what} is a folder, not a regular file") from None
    except OSError as error:
        if error.errno == errno.ENXIO:  # a socket, or a FIFO opened for writing only
            raise FileKindError(f"{path}: {what} is not a regular file") from None
        raise _os_error(path, what, error) from None
    try:
        _check_stat(path, os.fstat(descriptor), what, limit)
        chunks, total = [], 0
        while chunk := os.read(descriptor, min(16 * MiB, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            _check_size(path, total, what, limit)  # the file may grow while being read
        return b"".join(chunks)
    except OSError as error:
        raise _os_error(path, what, error) from None
    finally:
        os.close(descriptor)


# Byte-order marks of the encodings a text editor may save in instead of UTF-8.
_OTHER_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
               (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))


def decode_text(data, source, what="file"):
    """`data` decoded as UTF-8 (a UTF-8 byte-order mark is dropped); anything else is a
    `NotTextError` naming `source`: UTF-16 and UTF-32 by their byte-order mark, else the
    first byte that is not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        for mark, encoding in _OTHER_BOMS:
            if data.startswith(mark):
                raise NotTextError(f"{source}: {what} is {encoding} text, not UTF-8; save it as UTF-8") from None
        raise NotTextError(
            f"{source}: {what} is not UTF-8 text (byte {error.start} is 0x{data[error.start]:02x})"
        ) from None


def read_text(path, what="file", limit=TEXT_FILE_LIMIT):
    """Returns the UTF-8 text of a regular file (see `read_bytes`); other text is refused
    (`decode_text`)."""
    return decode_text(read_bytes(path, what, limit), os.fspath(path), what)


def one_line(message, limit=300):
    """A message (an exception's, often several lines) as one line of at most `limit`
    characters: what kseg quotes from libraries in its own one-line errors."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 4] + " ..."


def brief(value, limit=BRIEF_LIMIT):
    """`repr(value)`, cut to `limit` characters: user data in messages stays one short line."""
    try:
        text = repr(value)
    except Exception:  # a repr that fails must not hide the real error
        text = f"<{type(value).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 5] + " ...>"


def unexpected_error_message(path, error):
    """One line for an exception no reader turned into a `KsegError` (a bug or an odd
    file), for reports that must go on past it (`kseg data verify`, `stats`)."""
    return f"{path}: cannot be read ({type(error).__name__}: {brief(str(error), 120)})"


# -- paths ---------------------------------------------------------------------------


def lies_in(path, folder):
    """Whether `path` is `folder` or lies below it. Both are compared as given: pass
    `os.path.realpath`s to see through symbolic links."""
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # different drives
        return False


# -- YAML -----------------------------------------------------------------------------


class _NoAliasLoader(yaml.SafeLoader):
    """The safe loader, without aliases and with a bound on nesting."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not accepted", event.start_mark
            )
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_YAML_DEPTH} levels deep",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        # PyYAML keeps the last of two equal keys; one value would be dropped unseen.
        first_nodes = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = first_nodes.setdefault(key, key_node)
            except TypeError:  # an unhashable key, which the safe loader refuses itself
                continue
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{brief(key, 60)} is given twice (first at line {first.start_mark.line + 1}); "
                    "keep one", key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text, source):
    """Parses YAML text with the safe loader, refusing aliases and deep nesting.

    Args:
        text: str. The YAML document.
        source: str. Where it came from (a path), for messages.
    """
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise MalformedFileError(f"{source}: not valid YAML{where}: {one_line(problem, 200)}") from None
    except RecursionError:
        raise MalformedFileError(f"{source}: YAML nested too deeply") from None
    except (ValueError, OverflowError) as error:  # e.g. a 5000-digit integer, !!float abc
        raise MalformedFileError(f"{source}: not valid YAML: {_value_problem(error)}") from None
    except (TypeError, AttributeError):  # PyYAML's constructors fail so on malformed tagged values
        raise MalformedFileError(f"{source}: not valid YAML: a tagged value (!!...) is malformed") from None


def _value_problem(error):
    """What a parser's ValueError says, in one line."""
    text = one_line(error, 200)
    # Python's int() says so only in its message (a plain ValueError).
    if "integer string conversion" in text:  # Python's own limit on int("9" * 5000)
        text = "an integer has more than 4300 digits"
    return text


def load_yaml(path, what="YAML file", limit=TEXT_FILE_LIMIT):
    """Reads and parses a YAML file safely (see `read_text` and `parse_yaml`)."""
    return parse_yaml(read_text(path, what, limit), os.fspath(path))


def parse_json(text, source, what="JSON file"):
    """Parses JSON text (str, or bytes that `decode_text` accepts); every failure of the
    parser is one `MalformedFileError` naming `source`.

    Args:
        text: str or bytes. The document.
        source: str. Where it came from (a path), for messages.
        what: str. What the file is, for messages.
    """
    if isinstance(text, (bytes, bytearray)):
        text = decode_text(bytes(text), source, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise MalformedFileError(
            f"{source}: {what} is not valid JSON (line {error.lineno}, column {error.colno}: "
            f"{error.msg})"
        ) from None
    except RecursionError:
        raise MalformedFileError(f"{source}: {what} is nested too deeply") from None
    except ValueError as error:  # a number Python will not convert (5000 digits)
        raise MalformedFileError(f"{source}: {what} is not valid JSON: {_value_problem(error)}") from None


def load_json(path, what="JSON file", limit=TEXT_FILE_LIMIT):
    """Reads and parses a JSON file (see `read_text` and `parse_json`)."""
    return parse_json(read_text(path, what, limit), os.fspath(path), what)
