"""Errors that are meant for the person running kseg.

Library code raises these with a message that names the file or option and the problem;
the CLI prints the message on one line and exits non-zero, without a traceback.
"""

import errno


class KsegError(Exception):
    """A problem the user can fix: bad input, missing file, impossible option.

    `kind` names the sort of problem in a word or two ("missing", "RGBA", "lossy
    format", ...) so that callers such as `kseg data verify` can tell errors apart
    without reading their messages. A subclass sets it as a class attribute; one
    instance may be given its own with `kind=`.
    """

    kind = "unusable"

    def __init__(self, *args, kind=None):
        super().__init__(*args)
        if kind is not None:
            self.kind = kind


class ArgumentError(KsegError, ValueError):
    """An argument outside what a model builder accepts (a class count, a width, a backbone
    the architecture is not built on); a ValueError too, as keras' own argument checks."""

    kind = "bad argument"


class WeightsError(KsegError):
    """Pretrained weights could not be downloaded, read or matched to the model."""

    kind = "weights"


class DiskFullError(KsegError):
    """A write failed for lack of space; the command stops instead of going on."""

    kind = "disk full"


# By name: the numbers differ between systems (EDQUOT is 122 on Linux, 69 on macOS).
NO_SPACE_ERRNOS = tuple(getattr(errno, name) for name in ("ENOSPC", "EDQUOT") if hasattr(errno, name))


def is_disk_full(error):
    """Whether an exception (OSError, or a library's wrapper of one) means the disk is full."""
    if isinstance(error, OSError) and error.errno in NO_SPACE_ERRNOS:
        return True
    # Libraries (h5py, TensorFlow) wrap the OSError into their own types and keep only
    # its text, so the text is all there is to go on ("Disc quota exceeded" on macOS).
    text = str(error).lower()
    return "no space left on device" in text or "disk quota exceeded" in text or "disc quota exceeded" in text


def is_out_of_memory(error):
    """Whether an exception means memory ran out: MemoryError, or a library's own (TensorFlow's
    ResourceExhaustedError, JAX's RESOURCE_EXHAUSTED), which are told apart by name and text."""
    if isinstance(error, MemoryError):
        return True
    text = f"{type(error).__name__} {str(error)[:2000]}"
    return "ResourceExhausted" in text or "RESOURCE_EXHAUSTED" in text or "OOM when allocating" in text
