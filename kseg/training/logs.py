"""What a run records per epoch: log.csv, training_curves.png and TensorBoard scalars.

log.csv is kseg's own rather than keras' CSVLogger: it has kseg's columns (the four FCN
scores, learning rate, speed) and is rewritten whole and atomically from the checkpoint's
history, so a resumed run's log matches the checkpoint it resumed from. TensorBoard scalars
go through the tensorboard package's writer rather than keras' TensorBoard callback, which
needs TensorFlow: runs under JAX or PyTorch write the same files without it.
"""

import contextlib
import csv
import io
import math
import os
import sys
import time

import keras
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from kseg.errors import DiskFullError, is_disk_full
from kseg.outputs import write_bytes, writing
from kseg.progress import LOG_INTERVAL, duration, is_terminal

LOG_COLUMNS = (
    "epoch", "loss", "val_loss", "pixel_accuracy", "mean_accuracy", "mean_iou",
    "frequency_weighted_iou", "lr", "seconds", "images_per_second",
)  # fmt: skip
TRAINING_SCALARS = {"loss": "loss", "learning_rate": "lr", "images_per_second": "images_per_second"}
VALIDATION_SCALARS = ("val_loss", "pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou")


def write_log_csv(path, history):
    """Writes the per-epoch history as CSV (whole file, atomically; a missing or None value
    is an empty cell)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({key: f"{value:.6g}" if isinstance(value, float) else value for key, value in row.items()})
    write_bytes(path, buffer.getvalue().encode("utf8"))


def plot_training_curves(path, history):
    """Draws loss and validation metrics per epoch into a PNG (matplotlib, Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    losses, scores = figure.subplots(1, 2)
    losses.plot(epochs, [row["loss"] for row in history], marker="o", label="train loss")
    if any(row.get("val_loss") is not None for row in history):
        losses.plot(epochs, [_nan(row.get("val_loss")) for row in history], marker="o", label="val loss")
    values = [value for row in history for value in (row["loss"], row.get("val_loss")) if value is not None]
    if values and all(math.isfinite(value) and value > 0 for value in values):
        losses.set_yscale("log")  # a loss that explodes does not flatten the rest of the curve
    losses.set_ylabel("loss (log scale)" if losses.get_yscale() == "log" else "loss")
    for key, label in (
        ("mean_iou", "mean IoU"), ("pixel_accuracy", "pixel accuracy"),
        ("mean_accuracy", "mean accuracy"), ("frequency_weighted_iou", "f.w. IoU"),
    ):  # fmt: skip
        scores.plot(epochs, [_nan(row.get(key)) for row in history], marker="o", label=label)
    chance = [_nan(row.get("chance_mean_iou")) for row in history]
    if any(math.isfinite(value) for value in chance):
        scores.plot(epochs, chance, linestyle="--", color="grey", label="mIoU of one class everywhere")
    scores.set_ylabel("validation score")
    scores.set_ylim(0, 1)
    for axes in (losses, scores):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("epoch")
        axes.legend()
        axes.grid(alpha=0.3)
    figure.tight_layout()
    with writing(path) as temporary:
        figure.savefig(temporary, format="png")


def _nan(value):
    return float("nan") if value is None else value


class ScalarWriter:
    """Writes TensorBoard scalars with the tensorboard package's event-file writer (the one
    PyTorch's SummaryWriter uses): the same files under every keras backend, with
    TensorFlow installed or not.

    Args:
        log_dir: str. Folder for the event files (e.g. RUN_DIR/tensorboard/train).
    """

    def __init__(self, log_dir):
        self.log_dir = log_dir
        with self._disk_full():
            self._writer = EventFileWriter(log_dir)

    def write(self, values, step):
        scalars = [Summary.Value(tag=tag, simple_value=float(value)) for tag, value in values.items()
                   if value is not None]  # fmt: skip
        if not scalars:
            return
        with self._disk_full():
            self._writer.add_event(Event(wall_time=time.time(), step=int(step), summary=Summary(value=scalars)))
            self._writer.flush()

    def close(self):
        self._writer.close()

    @contextlib.contextmanager
    def _disk_full(self):
        try:
            yield
        except Exception as error:  # the writer's thread re-raises what it met, wrapped or not
            if is_disk_full(error):
                raise DiskFullError(f"{self.log_dir}: no space left on device") from None
            raise


class RunLogs:
    """The chief's records of a run (`kseg.runs.RunDir` names the files), rewritten per epoch.

    Args:
        run_dir: kseg.runs.RunDir. Where log.csv, training_curves.png and tensorboard/ go.
    """

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self._writers = {}
        try:
            for name in ("train", "validation"):
                self._writers[name] = ScalarWriter(os.path.join(run_dir.tensorboard, name))
        except BaseException:  # the second cannot be made (a full disk): the first is closed again
            self.close()
            raise

    def write(self, history):
        """Records the history (a list of log rows); its last row is the epoch just done."""
        row = history[-1]
        write_log_csv(self.run_dir.log, history)
        plot_training_curves(self.run_dir.curves, history)
        self._writers["train"].write({tag: row[key] for tag, key in TRAINING_SCALARS.items()}, row["epoch"])
        self._writers["validation"].write({key: row.get(key) for key in VALIDATION_SCALARS}, row["epoch"])

    def close(self):
        """Closes every writer, even when one of them fails to (its error is raised after)."""
        with contextlib.ExitStack() as stack:
            for writer in self._writers.values():
                stack.callback(writer.close)


# -- Progress within epochs ------------------------------------------------------------


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
    return 0, [TrainingLog()]


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
        params = self.params or {}
        epoch = f"epoch {self.epoch + 1}" + (f"/{params['epochs']}" if params.get("epochs") else "")
        step = f"step {batch + 1}" + (f"/{params['steps']}" if params.get("steps") else "")
        loss = (logs or {}).get("loss")
        loss = f", loss {float(loss):.4f}" if loss is not None else ""
        stream = sys.stdout if self.stream is None else self.stream
        stream.write(f"{epoch}: {step}{loss}, {duration(now - self.start)}\n")
        stream.flush()
