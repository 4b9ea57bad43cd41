"""What a run records per epoch: log.csv, training_curves.png and TensorBoard scalars.

Hand-written rather than keras' CSVLogger and TensorBoard callbacks: log.csv has kseg's
own columns (the four FCN scores, learning rate, speed) and is rewritten whole and
atomically from the checkpoint's history, so a resumed run's log matches the checkpoint it
resumed from; keras' TensorBoard callback needs the tensorboard package, which kseg does
not depend on (`ScalarWriter` writes the same event records with TensorFlow alone).
"""

import csv
import io
import os

from kseg.atomic import atomic_path, write_bytes_atomic
from kseg.errors import DiskFullError, is_disk_full

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
    write_bytes_atomic(path, buffer.getvalue().encode("utf8"))


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
    losses.set_xlabel("epoch")
    losses.set_ylabel("cross-entropy")
    losses.legend()
    losses.grid(alpha=0.3)
    for key, label in (
        ("mean_iou", "mean IoU"), ("pixel_accuracy", "pixel accuracy"),
        ("mean_accuracy", "mean accuracy"), ("frequency_weighted_iou", "f.w. IoU"),
    ):  # fmt: skip
        scores.plot(epochs, [_nan(row.get(key)) for row in history], marker="o", label=label)
    for axes in (losses, scores):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    scores.set_xlabel("epoch")
    scores.set_ylabel("validation score")
    scores.set_ylim(0, 1)
    scores.legend()
    scores.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_path(path) as temporary:
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




class RunLogs:
    """The chief's records of a run (`kseg.runs.RunDir` names the files), rewritten per epoch.

    Args:
        run_dir: kseg.runs.RunDir. Where log.csv, training_curves.png and tensorboard/ go.
    """

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self._writers = {
            "train": ScalarWriter(os.path.join(run_dir.tensorboard, "train")),
            "validation": ScalarWriter(os.path.join(run_dir.tensorboard, "validation")),
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
