"""One progress display for every long loop: a bar in a terminal, a few lines elsewhere.

In a terminal `progress` is a tqdm bar that redraws in place and clears when done. When
stderr is not a terminal (a log file, CI) a redrawn bar would leave one line per update,
so `progress` then writes a plain line at most every `LOG_INTERVAL` seconds and one when
the loop ends. Training follows the same rule: keras' bar in a terminal, else
`TrainingLog`'s lines (`kseg.training.logs.training_progress`).
"""

import sys
import time

LOG_INTERVAL = 30.0


def is_terminal(stream=None):
    """Whether `stream` (default stderr) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def duration(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class LineProgress:
    """The non-terminal display: "desc: 120/400 images (30%), 1 min 02 s" lines, at most
    one every `interval` seconds, and a last one on `close` if anything was counted.

    Same interface as the tqdm bar kseg uses: `update(n)`, `close()`, a context manager.
    """

    def __init__(self, total=None, desc="", unit="it", enabled=True, interval=LOG_INTERVAL,
                 stream=None, clock=time.monotonic):
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.interval, self.stream, self.clock = interval, stream, clock
        self.count = 0
        self.start = self.last = clock()
        self.closed = False

    def _line(self, done=False):
        count = f"{self.count}/{self.total}" if self.total else f"{self.count}"
        share = f" ({100 * self.count / self.total:.0f}%)" if self.total else ""
        elapsed = duration(self.clock() - self.start)
        state = f"done in {elapsed}" if done else elapsed
        return f"{self.desc}: {count} {self.unit}{share}, {state}"

    def _write(self, text):
        stream = sys.stderr if self.stream is None else self.stream
        stream.write(text + "\n")
        stream.flush()

    def update(self, n=1):
        self.count += n
        now = self.clock()
        if self.enabled and now - self.last >= self.interval:
            self.last = now
            if not (self.total and self.count >= self.total):  # the last line says done
                self._write(self._line())

    def close(self):
        if self.closed:
            return
        self.closed = True
        if self.enabled and self.count and self.clock() - self.start >= self.interval:
            self._write(self._line(done=True))  # short loops stay silent

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def progress(total=None, desc="", unit="it", enabled=True):
    """A progress display on stderr (see the module docstring); `enabled=False` shows
    nothing. Use it as a context manager or call `.update(n)` and `.close()`."""
    if not is_terminal():
        return LineProgress(total, desc, unit, enabled)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr, disable=not enabled,
                mininterval=0.1, dynamic_ncols=True)


def write(message):
    """Prints a line on stderr above any open bar."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)
