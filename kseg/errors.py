"""Errors that are meant for the person running kseg.

Library code raises these with a message that names the file or option and the problem;
the CLI prints the message on one line and exits non-zero, without a traceback.
"""


class KsegError(Exception):
    """A problem the user can fix: bad input, missing file, impossible option."""


class WeightsError(KsegError):
    """Pretrained weights could not be downloaded, read or matched to the model."""


class DiskFullError(KsegError):
    """A write failed for lack of space; the command stops instead of going on."""


NO_SPACE_ERRNOS = (28, 122)  # ENOSPC, EDQUOT


def is_disk_full(error):
    """Whether an exception (OSError, or a library's wrapper of one) means the disk is full."""
    if isinstance(error, OSError) and error.errno in NO_SPACE_ERRNOS:
        return True
    return "no space left on device" in str(error).lower() or "disk quota exceeded" in str(error).lower()
