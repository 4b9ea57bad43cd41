"""One progress display for every long loop: a bar in a terminal, a few lines elsewhere.

In a terminal `progress` is a tqdm bar that redraws in place and clears when done. When
stderr is not a terminal (a log file, CI) a redrawn bar would leave one line per update,
so `progress` then writes a plain line at most every `LOG_INTERVAL` seconds and one when
the loop ends. Training follows the same rule: keras' bar in a terminal, else
`TrainingLog`'s lines (see `training_progress`).
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


def _duration(seconds):
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
        elapsed = _duration(self.clock() - self.start)
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


def progress(total=None, desc="", unit="it", enabled=True, leave=False):
    """A progress display on stderr (see the module docstring); `enabled=False` shows
    nothing. Use it as a context manager or call `.update(n)` and `.close()`."""
    if not is_terminal():
        return LineProgress(total, desc, unit, enabled)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr, disable=not enabled,
                mininterval=0.1, dynamic_ncols=True)


def write(message):
    """Prints a line on stderr above any open bar."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def training_progress(verbose):
    """How `kseg train` shows progress: (keras `verbose`, extra callbacks).

    `verbose`: 1 for progress within epochs, 2 (--quiet) or 0 for none. kseg logs its own
    line at the end of every epoch (loss, val mIoU, speed), so keras prints no epoch lines
    of its own. In a terminal, keras' bar shows the progress within an epoch (verbose 1).
    Elsewhere keras would print one line per batch, so a `TrainingLog` callback adds a line
    about every `LOG_INTERVAL` seconds within long epochs instead.
    """
    if verbose != 1:
        return 0, []
    if is_terminal(sys.stdout):
        return 1, []
    return 0, [training_log_callback()()]


def training_log_callback():
    """The `TrainingLog` keras callback class (defined on first use: keras is imported
    only by verbs that train)."""
    import keras

    class TrainingLog(keras.callbacks.Callback):
        """Writes "epoch 3/10: step 120/375, loss 0.8123, 1 min 02 s" every `interval` s."""

        def __init__(self, interval=LOG_INTERVAL, stream=None, clock=time.monotonic):
            super().__init__()
            self.interval, self.stream, self.clock = interval, stream, clock
            self.epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            self.start = self.last = self.clock()

        def on_train_batch_end(self, batch, logs=None):
            now = self.clock()
            if now - self.last < self.interval:
                return
            self.last = now
            epochs = (self.params or {}).get("epochs")
            steps = (self.params or {}).get("steps")
            epoch = f"epoch {self.epoch + 1}" + (f"/{epochs}" if epochs else "")
            step = f"step {batch + 1}" + (f"/{steps}" if steps else "")
            loss = (logs or {}).get("loss")
            loss = f", loss {float(loss):.4f}" if loss is not None else ""
            stream = sys.stdout if self.stream is None else self.stream
            stream.write(f"{epoch}: {step}{loss}, {_duration(now - self.start)}\n")
            stream.flush()

    return TrainingLog
