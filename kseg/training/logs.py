"""What a run records per epoch: log.csv, training_curves.png and TensorBoard scalars.

Hand-written rather than keras' CSVLogger and TensorBoard callbacks: log.csv has kseg's
own columns (the four FCN scores, learning rate, speed) and is rewritten whole and
atomically from the checkpoint's history, so a resumed run's log matches the checkpoint it
resumed from; keras' TensorBoard callback needs the tensorboard package, which kseg does
not depend on (`ScalarWriter` writes the same event records with TensorFlow alone, and
`EventFileWriter` without TensorFlow, under the JAX and PyTorch backends).
"""

import csv
import io
import math
import os
import socket
import struct
import sys
import time

import keras

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
    """Writes the per-epoch history as CSV (whole file, atomically)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({key: _csv_value(row.get(key)) for key in LOG_COLUMNS})
    write_bytes(path, buffer.getvalue().encode("utf8"))


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


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
    losses.set_xlabel("epoch")
    losses.set_ylabel("loss (log scale)" if losses.get_yscale() == "log" else "loss")
    losses.legend()
    losses.grid(alpha=0.3)
    for key, label in (
        ("mean_iou", "mean IoU"), ("pixel_accuracy", "pixel accuracy"),
        ("mean_accuracy", "mean accuracy"), ("frequency_weighted_iou", "f.w. IoU"),
    ):  # fmt: skip
        scores.plot(epochs, [_nan(row.get(key)) for row in history], marker="o", label=label)
    chance = [_nan(row.get("chance_mean_iou")) for row in history]
    if any(math.isfinite(value) for value in chance):
        scores.plot(epochs, chance, linestyle="--", color="grey", label="mIoU of one class everywhere")
    for axes in (losses, scores):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    scores.set_xlabel("epoch")
    scores.set_ylabel("validation score")
    scores.set_ylim(0, 1)
    scores.legend()
    scores.grid(alpha=0.3)
    figure.tight_layout()
    with writing(path) as temporary:
        figure.savefig(temporary, format="png")


def _nan(value):
    return float("nan") if value is None else value


class ScalarWriter:
    """Writes TensorBoard scalars without needing the tensorboard package installed.

    `tf.summary.scalar` lives in tensorboard; `tf.summary.write` with the scalar plugin's
    metadata writes the same event records with TensorFlow alone.

    Args:
        log_dir: str. Folder for the event files (e.g. RUN_DIR/tensorboard/train).
    """

    def __init__(self, log_dir):
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        self._tf = tf
        self.log_dir = log_dir
        self._writer = tf.summary.create_file_writer(log_dir)
        metadata = summary_pb2.SummaryMetadata()
        metadata.plugin_data.plugin_name = "scalars"
        self._metadata = metadata.SerializeToString()

    def write(self, values, step):
        tf = self._tf
        try:
            with self._writer.as_default():
                for tag, value in values.items():
                    if value is None:
                        continue
                    value = tf.constant(float(value), tf.float32)
                    tf.summary.write(tag, value, step=step, metadata=self._metadata)
            self._writer.flush()
        except Exception as error:
            if is_disk_full(error):
                raise DiskFullError(f"{self.log_dir}: no space left on device") from None
            raise

    def close(self):
        self._writer.close()




def _crc32c_table():
    table = []
    for byte in range(256):
        value = byte
        for _ in range(8):
            value = (value >> 1) ^ 0x82F63B78 if value & 1 else value >> 1
        table.append(value)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data):
    """CRC-32C (Castagnoli) of bytes, as TFRecord framing uses it."""
    value = 0xFFFFFFFF
    for byte in data:
        value = _CRC32C_TABLE[(value ^ byte) & 0xFF] ^ (value >> 8)
    return value ^ 0xFFFFFFFF


def _masked_crc(data):
    value = crc32c(data)
    return ((((value >> 15) | (value << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(number):
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number, wire_type, payload):
    """One protobuf field: key, then the payload (length-prefixed for wire type 2)."""
    key = _varint((number << 3) | wire_type)
    return key + (_varint(len(payload)) + payload if wire_type == 2 else payload)


def event_record(wall_time, step=None, file_version=None, scalars=None):
    """One TFRecord-framed `tensorflow.Event`: wall time, step, and either the file version
    or a Summary of `simple_value` scalars (tag -> float)."""
    event = _field(1, 1, struct.pack("<d", wall_time))
    if step is not None:
        event += _field(2, 0, _varint(int(step) & 0xFFFFFFFFFFFFFFFF))
    if file_version is not None:
        event += _field(3, 2, file_version.encode("utf8"))
    if scalars:
        summary = b"".join(
            _field(1, 2, _field(1, 2, tag.encode("utf8")) + _field(2, 5, struct.pack("<f", float(value))))
            for tag, value in scalars.items()
        )
        event += _field(5, 2, summary)
    length = struct.pack("<Q", len(event))
    return length + struct.pack("<I", _masked_crc(length)) + event + struct.pack("<I", _masked_crc(event))


class EventFileWriter:
    """Writes TensorBoard scalars without TensorFlow (the JAX and PyTorch backends).

    The same event-file format TensorFlow writes (TFRecord framing, `Event` protobufs),
    encoded here by hand; scalars are `simple_value` summaries, which TensorBoard shows
    like those of `ScalarWriter`.

    Args:
        log_dir: str. Folder for the event file.
    """

    def __init__(self, log_dir):
        self.log_dir = log_dir
        now = time.time()
        name = f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}.kseg"
        try:
            os.makedirs(log_dir, exist_ok=True)
            self._file = open(os.path.join(log_dir, name), "ab")  # noqa: SIM115 - open for the writer's life
            self._append(event_record(now, step=0, file_version="brain.Event:2"))
        except OSError as error:
            self._raise(error)

    def _append(self, record):
        self._file.write(record)
        self._file.flush()

    def _raise(self, error):
        if is_disk_full(error):
            raise DiskFullError(f"{self.log_dir}: no space left on device") from None
        raise error

    def write(self, values, step):
        scalars = {tag: value for tag, value in values.items() if value is not None}
        if not scalars:
            return
        try:
            self._append(event_record(time.time(), step=step, scalars=scalars))
        except OSError as error:
            self._raise(error)

    def close(self):
        self._file.close()


def scalar_writer(log_dir):
    """TensorFlow's summary writer under the TensorFlow backend, kseg's own otherwise."""
    import keras

    return ScalarWriter(log_dir) if keras.backend.backend() == "tensorflow" else EventFileWriter(log_dir)


class RunLogs:
    """The chief's records of a run (`kseg.runs.RunDir` names the files), rewritten per epoch.

    Args:
        run_dir: kseg.runs.RunDir. Where log.csv, training_curves.png and tensorboard/ go.
    """

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self._writers = {
            "train": scalar_writer(os.path.join(run_dir.tensorboard, "train")),
            "validation": scalar_writer(os.path.join(run_dir.tensorboard, "validation")),
        }

    def write(self, history):
        """Records the history (a list of log rows); its last row is the epoch just done."""
        row = history[-1]
        write_log_csv(self.run_dir.log, history)
        plot_training_curves(self.run_dir.curves, history)
        self._writers["train"].write({tag: row[key] for tag, key in TRAINING_SCALARS.items()}, row["epoch"])
        self._writers["validation"].write({key: row.get(key) for key in VALIDATION_SCALARS}, row["epoch"])

    def close(self):
        for writer in self._writers.values():
            writer.close()


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
        epochs = (self.params or {}).get("epochs")
        steps = (self.params or {}).get("steps")
        epoch = f"epoch {self.epoch + 1}" + (f"/{epochs}" if epochs else "")
        step = f"step {batch + 1}" + (f"/{steps}" if steps else "")
        loss = (logs or {}).get("loss")
        loss = f", loss {float(loss):.4f}" if loss is not None else ""
        stream = sys.stdout if self.stream is None else self.stream
        stream.write(f"{epoch}: {step}{loss}, {duration(now - self.start)}\n")
        stream.flush()
