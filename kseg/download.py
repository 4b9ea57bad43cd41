"""Downloads that end: every network wait of kseg has a deadline and says what it waits for.

kseg downloads through `keras.utils.get_file` (keras' cache folder, ~/.keras/models/, and
its hash check), directly for the VGG16 weights and `kseg weights download`, and inside
keras.applications for the MobileNetV3 and ResNet50 backbones. `network_deadline` bounds
such a call twice:

- no data for `KSEG_DOWNLOAD_STALL_TIMEOUT` seconds (default 20; the connection, and
  each read) ends it: a socket timeout, set while the call runs;
- the whole call ends after `KSEG_DOWNLOAD_TIMEOUT` seconds (default 1800), however
  slowly the data trickles in: a timer signal (SIGALRM) interrupts the wait. The main
  thread only; elsewhere the stall timeout alone applies.

A line on stderr says what is awaited once the call has lasted a few seconds, and a
failure is one `WeightsError` naming the address, what timed out, and the way out
(`get_file`). A partial file is removed by keras, so nothing half-downloaded stays
in the cache under the real name.
"""

import contextlib
import os
import signal
import socket
import threading

from kseg.errors import KsegError, WeightsError
from kseg.files import one_line
from kseg.progress import write
from kseg.validation import seconds_from_environment

TIMEOUT_VARIABLE = "KSEG_DOWNLOAD_TIMEOUT"
STALL_VARIABLE = "KSEG_DOWNLOAD_STALL_TIMEOUT"
DEFAULT_TIMEOUT = 1800.0  # the 528 MB VGG16 file at 300 KB/s
DEFAULT_STALL = 20.0  # without a network, a connection is refused at once or ends here
NOTICE_AFTER = 2.0  # seconds before the "waiting for" line


class DownloadTimeout(Exception):
    """A download passed its deadline (raised in the main thread by the timer signal)."""


def download_timeouts():
    """(whole download, longest wait without data) in seconds, from the environment."""
    return (seconds_from_environment(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT),
            seconds_from_environment(STALL_VARIABLE, DEFAULT_STALL))


def keras_models_folder():
    """The folder keras.utils.get_file caches models in (what `cache_subdir="models"` gives)."""
    home = os.environ.get("KERAS_HOME")
    if home is None:  # keras' home: ~/.keras, or /tmp/.keras when ~ cannot be written to
        user = os.path.expanduser("~")
        home = os.path.join(user if os.access(user, os.W_OK) else "/tmp", ".keras")
    home = os.path.expanduser(home)
    if not home or (os.path.isdir(home) and not os.access(home, os.W_OK)):
        home = os.path.join("/tmp", ".keras")  # where keras goes when it cannot write there
    return os.path.join(home, "models")


def shown_folder(folder):
    """`folder` with a trailing slash, the home folder written as ~ (for messages)."""
    home = os.path.expanduser("~")
    if home not in ("", "/", "~") and (folder == home or folder.startswith(home + os.sep)):
        folder = "~" + folder[len(home):]
    return folder.rstrip(os.sep) + os.sep


class _Wait:
    """What `network_deadline` yields: whether and how the wait ended early."""

    def __init__(self, total, stall):
        self.total, self.stall = total, stall
        self.expired = False

    def timed_out(self, error):
        """Why `error` ended the wait, when a deadline did: a phrase, else None."""
        if self.expired or isinstance(error, DownloadTimeout):
            return (f"the download did not finish within {self.total:g} s ({TIMEOUT_VARIABLE}; set "
                    "it higher for a slow connection)")
        seen = set()
        while error is not None and id(error) not in seen:
            seen.add(id(error))
            if isinstance(error, TimeoutError) or isinstance(getattr(error, "reason", None), TimeoutError):
                return (f"no answer for {self.stall:g} s ({STALL_VARIABLE}): no network, or the server "
                        "does not respond")
            error = error.__cause__ or error.__context__
        return None


@contextlib.contextmanager
def network_deadline(what, url="", notify=True):
    """Bounds the network waits of the block (see the module docstring).

    Args:
        what: str. What is downloaded, for the "waiting for" line ("the ImageNet VGG16 weights").
        url: str. Where from, for the line.
        notify: bool. Print the line once the block has lasted `NOTICE_AFTER` seconds.

    Yields:
        An object whose `timed_out(error)` tells whether a deadline ended the block.
    """
    total, stall = download_timeouts()
    wait = _Wait(total, stall)
    source = f" from {url}" if url else ""
    notice = threading.Timer(NOTICE_AFTER, write, [
        f"waiting for {what}{source} (gives up after {stall:g} s without data or {total:g} s in "
        f"all: {STALL_VARIABLE}, {TIMEOUT_VARIABLE})"
    ])
    notice.daemon = True
    if notify:
        notice.start()

    def expire(signum, frame):
        wait.expired = True
        raise DownloadTimeout(f"{what}: no complete download within {total:g} s")

    previous_timeout = socket.getdefaulttimeout()
    previous_handler = None
    use_alarm = (hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
                 and signal.getitimer(signal.ITIMER_REAL)[0] == 0)
    socket.setdefaulttimeout(stall)
    try:
        if use_alarm:
            previous_handler = signal.signal(signal.SIGALRM, expire)
            signal.setitimer(signal.ITIMER_REAL, total)
        yield wait
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            # None is a handler not set from Python, which cannot be put back: the default can
            signal.signal(signal.SIGALRM, signal.SIG_DFL if previous_handler is None else previous_handler)
        socket.setdefaulttimeout(previous_timeout)
        notice.cancel()


def get_file(file, url, file_hash, what, way_out):
    """`keras.utils.get_file(file, url, cache_subdir="models", file_hash=...)` within
    `network_deadline`; returns the cached path.

    Args:
        file, url, file_hash: str. The file's name in keras' cache, its address and hash.
        what: str. What it is, for messages.
        way_out: str. What the user may do instead, ending the error message.

    Raises:
        WeightsError: the download failed or passed a deadline; nothing is left in the cache.
    """
    import keras

    cached = os.path.isfile(os.path.join(keras_models_folder(), file))
    try:
        with network_deadline(what, url, notify=not cached) as wait:
            return keras.utils.get_file(file, url, cache_subdir="models", file_hash=file_hash)
    except (KeyboardInterrupt, KsegError):
        raise
    except Exception as error:  # keras raises a bare Exception for fetch failures
        reason = wait.timed_out(error) or f"{type(error).__name__}: {one_line(error, 200)}"
        raise WeightsError(f"could not download {what} from {url}: {reason}; {way_out}") from None
