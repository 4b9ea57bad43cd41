"""SIGTERM handled like Ctrl-C, and an interruption that cannot be lost.

`install()` (called by the CLI) makes SIGTERM and SIGHUP raise `Interrupted`, a
`KeyboardInterrupt`, in the main thread, as Ctrl-C raises `KeyboardInterrupt`: every
`kseg.outputs.writing` then removes its temporary file or folder, and the CLI exits with one line
and status 128 + the signal number.

Python can lose such an exception: one raised while a garbage-collector callback or a
`__del__` method runs is printed and dropped. So the signal is also remembered (and the
dropped exception's traceback is not printed), and `raise_if_interrupted()` raises it
again; `kseg.outputs.writing` calls it before it renames a result into place, so an interrupted
command never finishes a write.

Third-party steps (keras' SavedModel writer, the TFLite converter, tf2onnx) may catch the
interruption and go on, or turn it into an error of their own (an exception raised in a
Python callback of C++ code comes out as another type). `phase` runs such a step so that
neither can happen unseen: the interruption is raised as soon as the step returns or fails.
"""

import contextlib
import signal
import sys

_received = []  # signal numbers received since install()


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when kseg receives SIGTERM or SIGHUP."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self):
        return signal.Signals(self.signum).name


def _interruption(signum):
    """What a signal raises: KeyboardInterrupt for Ctrl-C, else `Interrupted`."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Interrupted(signum)


def _handler(signum, frame):
    _received.append(signum)
    raise _interruption(signum)


def _unraisable(hook):
    """An unraisable-exception hook that stays silent about dropped interruptions."""

    def report(unraisable):
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and interrupted() is not None:
            return  # remembered; raise_if_interrupted() raises it where it can be handled
        hook(unraisable)

    report.kseg = True
    return report


def install():
    """Makes SIGTERM, SIGHUP and SIGINT interrupt kseg cleanly (main thread only)."""
    if not getattr(sys.unraisablehook, "kseg", False):
        sys.unraisablehook = _unraisable(sys.unraisablehook)
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _handler)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _handler)


def interrupted():
    """The number of the first signal received since `install()`, or None."""
    return _received[0] if _received else None


def raise_if_interrupted():
    """Raises the interruption again if a signal arrived (it may have been swallowed)."""
    if interrupted() is not None:
        raise _interruption(interrupted())


@contextlib.contextmanager
def phase():
    """Runs one step of a longer job so that an interruption inside it is never lost.

    After the step, a signal received meanwhile is raised (`raise_if_interrupted`) even
    if the step swallowed its exception; an error the step raised instead of the
    interruption (a converter that reports it as its own failure) gives way to it.
    """
    try:
        yield
    except KeyboardInterrupt:
        raise
    except BaseException:
        raise_if_interrupted()
        raise
    raise_if_interrupted()


def exit_status(error=None):
    """128 + the signal number (130 for Ctrl-C, 143 for SIGTERM)."""
    signum = getattr(error, "signum", None) or interrupted() or signal.SIGINT
    return 128 + int(signum)
