"""Errors that are meant for the person running kseg.

Library code raises these with a message that names the file or option and the problem;
the CLI prints the message on one line and exits non-zero, without a traceback.
"""


class KsegError(Exception):
    """A problem the user can fix: bad input, missing file, impossible option."""


class WeightsError(KsegError):
    """Pretrained weights could not be downloaded, read or matched to the model."""
