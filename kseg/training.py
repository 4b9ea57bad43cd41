"""Training an FCN: `train(config) -> run_dir`, used by `kseg train` and from Python.

One epoch at a time:

    fresh training pipeline (seed derived from config.seed and the epoch number)
      -> model.fit for that epoch (keras progress bar; validation pass at its end)
      -> validation confusion matrix -> the four FCN metrics (kseg.metrics)
      -> checkpoints/best.keras if val mIoU improved, checkpoints/last.keras (always)
      -> log.csv, TensorBoard scalars, training_curves.png

`checkpoints/last.keras` holds the model, the optimizer state (so the learning rate
schedule, which is a function of the optimizer's step count, continues where it stopped)
and, as an extra `kseg_state.json` member of the zip, the epoch count, the best score, the
history and the dropout random-generator states. Each checkpoint is written under a
temporary name and renamed, so a kill (even SIGKILL) leaves the previous one whole;
`train(config, resume=True)` continues from it with the same result an uninterrupted run
would have had.

Training stops with a `KsegError` when the loss becomes NaN or infinite; the checkpoints
of the last good epoch are kept.
"""

import csv
import dataclasses
import io
import json
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
import zipfile

import numpy as np

from kseg import runs
from kseg.atomic import atomic_path, write_bytes_atomic
from kseg.config import DEFAULT_CROPS, WHOLE_IMAGES, TrainConfig
from kseg.errors import KsegError

logger = logging.getLogger("kseg")

STATE_MEMBER = "kseg_state.json"
LOG_FILE = "log.csv"
CURVES_FILE = "training_curves.png"
TENSORBOARD_DIR = "tensorboard"
LOG_COLUMNS = (
    "epoch", "loss", "val_loss", "pixel_accuracy", "mean_accuracy", "mean_iou",
    "frequency_weighted_iou", "lr", "seconds", "images_per_second",
)  # fmt: skip
# Options a checkpoint's weights or optimizer state depend on.
FIXED_ON_RESUME = ("model", "data", "classes_file", "width", "optimizer", "mixed_precision",
                   "learn_upsampling", "class_weights")  # fmt: skip
PRECISION_POLICIES = {"off": "float32", "fp16": "mixed_float16", "bf16": "mixed_bfloat16"}


# -- dtype policy, distribution -----------------------------------------------------------


def resolve_precision(mode):
    """Returns the keras dtype policy name for a `--mixed-precision` mode.

    Args:
        mode: str. "auto" (mixed_float16 when a GPU is visible, float32 otherwise), "off",
            "fp16" or "bf16".
    """
    if mode == "auto":
        import tensorflow as tf

        return "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"
    if mode not in PRECISION_POLICIES:
        raise KsegError(f"--mixed-precision: expected auto, off, fp16 or bf16. Received: {mode!r}")
    return PRECISION_POLICIES[mode]


class dtype_policy:
    """Context manager that sets keras' global dtype policy and restores the previous one.

    Args:
        name: str. A keras dtype policy name such as "mixed_bfloat16".
    """

    def __init__(self, name):
        self.name = name
        self._previous = None

    def __enter__(self):
        import keras

        self._previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.name)
        return self

    def __exit__(self, *exc_info):
        import keras

        keras.config.set_dtype_policy(self._previous)


def make_strategy(name):
    """Returns a tf.distribute strategy for a `--strategy` choice.

    Args:
        name: str. "auto" (MirroredStrategy over the local GPUs when there are several, else
            the default strategy), "none", "mirrored" (all local GPUs, or all logical CPU
            devices when there is no GPU) or "multiworker" (MultiWorkerMirroredStrategy;
            the cluster comes from the TF_CONFIG environment variable).
    """
    import tensorflow as tf

    if name == "multiworker":
        # Must come before anything initialises TensorFlow's runtime (even listing
        # logical devices does).
        if not os.environ.get("TF_CONFIG"):
            raise KsegError(
                "--strategy multiworker needs the TF_CONFIG environment variable describing "
                "the cluster and this worker's task"
            )
        try:
            json.loads(os.environ["TF_CONFIG"])
        except ValueError as error:
            raise KsegError(f"TF_CONFIG: not valid JSON ({error})") from None
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as error:
            raise KsegError(f"--strategy multiworker: {error}") from None
    gpus = tf.config.list_physical_devices("GPU")
    if name == "none" or (name == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    if name in ("auto", "mirrored"):
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy(devices=[device.name for device in devices])
    raise KsegError(f"--strategy: expected auto, none, mirrored or multiworker. Received: {name!r}")


def is_chief():
    """Whether this process writes the run directory (always, except non-chief workers)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return True
    task = json.loads(raw).get("task", {})
    return task.get("type", "chief") == "chief" or (
        task.get("type") == "worker" and int(task.get("index", 0)) == 0
        and "chief" not in json.loads(raw).get("cluster", {})
    )  # fmt: skip


# -- configuration helpers ----------------------------------------------------------------


def default_run_dir(config):
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join(runs.DEFAULT_RUNS_ROOT, f"{config.model}-{config.data}-{stamp}")


def _same_setting(key, requested, saved):
    """Whether a requested option equals the saved one, which config.yaml holds resolved
    (auto precision as the mode used, median-frequency as the computed weights)."""
    if key == "mixed_precision":
        return resolve_precision(requested) == resolve_precision(saved)
    if key == "class_weights" and requested == "median-frequency":
        return isinstance(saved, list)
    return requested == saved


def resume_config(run_dir, overrides=None):
    """Reads the config of an existing run for `--resume`; `overrides` (e.g. epochs) win.

    Args:
        run_dir: str. A run directory written by `train`.
        overrides: dict or None. Field values that replace the saved ones (None: keep).
    """
    path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(path):
        raise KsegError(f"{run_dir}: cannot resume, no config.yaml (not a kseg run directory)")
    saved = TrainConfig.from_yaml(path)
    for key, value in (overrides or {}).items():
        if key in FIXED_ON_RESUME and value is not None and not _same_setting(key, value, getattr(saved, key)):
            raise KsegError(
                f"--{key.replace('_', '-')}: cannot change on --resume (the run was trained with "
                f"{key}={getattr(saved, key)!r}); start a new run, e.g. with --init-from {run_dir}"
            )
    # Options that cannot change were just found equal; the saved (resolved) values stay.
    changes = {key: value for key, value in (overrides or {}).items() if key not in FIXED_ON_RESUME}
    return saved.replace(**dict(changes, run_dir=os.fspath(run_dir)))


def compute_class_weights(config, spec):
    """Returns the class weights (list of float) the config asks for, or None.

    "median-frequency" reads every training mask once (not the images), with the same
    definition `kseg data stats` prints (kseg.data.stats).
    """
    if isinstance(config.class_weights, list):
        if len(config.class_weights) != spec.num_classes:
            raise KsegError(
                f"--class-weights: {len(config.class_weights)} weights given, but {spec.name} "
                f"has {spec.num_classes} classes"
            )
        return list(config.class_weights)
    if config.class_weights == "none":
        return None

    from kseg.data.stats import compute_stats

    logger.info("computing median-frequency class weights over the %s split", config.train_split)
    stats = compute_stats(spec, config.train_split)
    if stats.skipped and not config.skip_bad:
        raise KsegError(stats.skipped[0][1])
    return [round(float(weight), 6) for weight in stats.median_frequency_weights()]


def check_dataset(config, spec):
    """Verifies the training split; refuses bad data unless `skip_bad` (then warns)."""
    problems = _dataset_problems(spec, config.train_split)
    if not problems:
        return 0
    shown = "; ".join(str(problem) for problem in problems[:3])
    if not config.skip_bad:
        raise KsegError(
            f"{spec.root}: the {config.train_split} split has {len(problems)} problem(s): {shown}"
            f"{' ...' if len(problems) > 3 else ''}; fix them (see `kseg data verify`) or pass "
            "--skip-bad to leave the bad pairs out"
        )
    logger.warning(
        "%d bad pair(s) in %s will be skipped (--skip-bad): %s", len(problems), config.train_split, shown
    )
    return len(problems)


def _dataset_problems(spec, split):
    """Every problem `kseg data verify` finds in a split, as one message each."""
    from kseg.data.verify import verify_dataset

    logger.info("verifying the %s split of %s (every pair is read once)", split, spec.name)
    report = verify_dataset(spec, split, progress=True)
    problems = []
    for problem in report.problems:
        path, message = problem if isinstance(problem, tuple) else ("", str(problem))
        problems.append(message if str(path) in message else f"{path}: {message}")
    return problems


# -- building ----------------------------------------------------------------------------


def build_optimizer(config, total_steps):
    """The optimizer with its learning-rate schedule over `total_steps` steps."""
    import keras

    total_steps = max(int(total_steps), 1)
    if config.schedule == "poly":
        learning_rate = keras.optimizers.schedules.PolynomialDecay(
            config.lr, decay_steps=total_steps, end_learning_rate=0.0, power=0.9
        )
    elif config.schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(config.lr, decay_steps=total_steps)
    else:
        learning_rate = config.lr
    weight_decay = config.weight_decay or None
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=config.momentum, weight_decay=weight_decay)
    return keras.optimizers.Adam(learning_rate, weight_decay=weight_decay)


def resolve_init_from(path):
    """A run directory or `.keras` file -> the model file to initialise from."""
    model_path, _ = runs.resolve_model_path(path)
    return model_path


def build_model(config, num_classes, initialise=True, unsafe=False):
    """Creates the registered model of the config (weights, width, dropout, init_from).

    `unsafe` allows an init_from model file that contains code (Lambda layers).
    """
    from kseg.models import create_model, transfer_weights

    source_model = None
    if initialise and config.init_from:  # a bad file is reported before the model is built
        source = resolve_init_from(config.init_from)
        source_model = runs.load_model(source, unsafe=unsafe)
    model = create_model(
        config.model, num_classes=num_classes, weights=config.model_weights if initialise else None,
        width=config.width, dropout=config.dropout, learn_upsampling=config.learn_upsampling,
    )  # fmt: skip
    if source_model is not None:
        report = transfer_weights(source_model, model)
        logger.info(
            "initialised from %s: %d layers copied, %d not copied",
            source, len(report.copied), len(report.skipped),
        )  # fmt: skip
    return model


def seed_generator_variables(model):
    """The random-generator state variables (dropout) that `.keras` files do not keep."""
    return [v for v in model.variables if "seed_generator_state" in v.path]


# -- checkpoints -------------------------------------------------------------------------


def save_checkpoint(model, path, state=None):
    """Saves `model` to the `.keras` file `path` atomically, with `state` inside the zip.

    Args:
        model: keras.Model. Saved with its optimizer state when compiled.
        path: str. Destination `.keras` file.
        state: dict or None. JSON-serialisable training state, stored as kseg_state.json.
    """
    with atomic_path(path) as temporary:
        model.save(temporary)
        if state is not None:
            with zipfile.ZipFile(temporary, "a") as archive:
                archive.writestr(STATE_MEMBER, json.dumps(state))
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())


def read_checkpoint_state(path):
    """Returns the training state stored in a `last.keras` checkpoint."""
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read(STATE_MEMBER))
    except KeyError:
        raise KsegError(f"{path}: no training state inside; it cannot be resumed from") from None
    except (OSError, zipfile.BadZipFile, ValueError) as error:
        raise KsegError(f"{path}: unreadable checkpoint ({error})") from None


def remove_stale_temporaries(folder):
    """Deletes temporary files a killed run left beside its checkpoints."""
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        if name.startswith(".") and ".tmp" in name:
            path = os.path.join(folder, name)
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)


# -- logs ---------------------------------------------------------------------------------


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
        self._writer = tf.summary.create_file_writer(log_dir)
        metadata = summary_pb2.SummaryMetadata()
        metadata.plugin_data.plugin_name = "scalars"
        self._metadata = metadata.SerializeToString()

    def write(self, values, step):
        tf = self._tf
        with self._writer.as_default():
            for tag, value in values.items():
                if value is None:
                    continue
                value = tf.constant(float(value), tf.float32)
                tf.summary.write(tag, value, step=step, metadata=self._metadata)
        self._writer.flush()

    def close(self):
        self._writer.close()


def _multi_worker_model_class():
    """A functional model whose step logs have shape (1,) instead of ().

    Under MultiWorkerMirroredStrategy keras 3.15 combines each step's logs across workers
    with a mean over axis 0, which fails for scalars (every loss and metric). Epoch-end
    results are read from the metrics themselves and come out as scalars as usual.
    """
    import keras

    class MultiWorkerModel(keras.Model):
        def train_step(self, data):
            return _as_vectors(super().train_step(data))

        def test_step(self, data):
            return _as_vectors(super().test_step(data))

    return MultiWorkerModel


def _as_vectors(logs):
    from keras import ops

    return {key: ops.reshape(value, (1,)) for key, value in logs.items()}


def _keras_callbacks():
    """Callbacks defined lazily so this module imports without TensorFlow."""
    import keras

    class OneEpoch(keras.callbacks.Callback):
        """Runs exactly one epoch per `fit` call, watching the loss and the speed.

        The speed is measured from the end of the first step to the end of the last, so
        the first step's tracing and graph building (seconds) do not count; with a single
        step the whole step is timed.
        """

        def __init__(self):
            super().__init__()
            self.bad_loss = None
            self.batches = 0
            self.train_seconds = 0.0
            self.timed_batches = 0
            self.timed_seconds = 0.0
            self._start = None
            self._first_step_end = None

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()
            self.batches = 0

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1
            now = time.perf_counter()
            if self._first_step_end is None:
                self._first_step_end = now
            self.timed_batches = self.batches - 1
            self.timed_seconds = now - self._first_step_end
            loss = (logs or {}).get("loss")
            if loss is not None:
                loss = float(np.asarray(loss).reshape(-1)[0])
            if loss is not None and not math.isfinite(loss):
                self.bad_loss = (batch + 1, loss)
                self.model.stop_training = True

        def on_test_begin(self, logs=None):
            if self._start is not None and not self.train_seconds:
                self.train_seconds = time.perf_counter() - self._start

        def on_epoch_end(self, epoch, logs=None):
            if not self.train_seconds:
                self.train_seconds = time.perf_counter() - self._start
            self.model.stop_training = True

        def images_per_second(self, batch_size):
            """Training images per second (the last batch counted as full)."""
            if self.timed_batches > 0 and self.timed_seconds > 0:
                return self.timed_batches * batch_size / self.timed_seconds
            return self.batches * batch_size / max(self.train_seconds, 1e-9)

    return OneEpoch


# -- the loop -----------------------------------------------------------------------------


@dataclasses.dataclass
class RunState:
    """What a checkpoint remembers of the run besides the weights and optimizer."""

    epoch: int = 0  # completed epochs
    best_score: float = -math.inf
    best_epoch: int = 0
    history: list = dataclasses.field(default_factory=list)
    seed_generators: list = dataclasses.field(default_factory=list)


def _epoch_seed(seed, epoch):
    return int(seed) * 100003 + int(epoch)


def _with_length(dataset, batches):
    import tensorflow as tf

    return dataset.apply(tf.data.experimental.assert_cardinality(batches))


def _distribute(dataset, multiworker):
    if multiworker:
        import tensorflow as tf

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = dataset.with_options(options)
    return dataset


def train(config, resume=False, verbose=1, callbacks=(), unsafe=False):
    """Trains the model the config describes; returns the run directory.

    Args:
        config: TrainConfig. What to train on what (see `kseg.config.TrainConfig`).
        resume: bool. Continue the run in `config.run_dir` from its checkpoints/last.keras.
        verbose: int. Keras progress output: 0 silent, 1 progress bar, 2 one line per epoch.
        callbacks: sequence of keras.callbacks.Callback. Extra callbacks for every epoch's
            `fit` (epoch numbers are those of the whole run).
        unsafe: bool. Allow an `init_from` model file containing code (Lambda layers);
            trusted files only. (--resume reads weights only, never code.)

    Returns:
        str. The run directory (config.yaml, classes.json, checkpoints/, log.csv,
        tensorboard/, training_curves.png).

    Raises:
        KsegError: bad data or options, missing weights, a NaN loss.
    """
    from kseg.data import get_dataset_spec

    if not isinstance(config, TrainConfig):
        raise KsegError(f"train expects a TrainConfig. Received: {type(config).__name__}")
    if resume:
        if not config.run_dir:
            raise KsegError("--resume needs --run-dir, the run directory to continue")
        last_path = runs.checkpoint_path(config.run_dir, runs.LAST)
        if not os.path.isfile(last_path):
            raise KsegError(f"{config.run_dir}: nothing to resume (no {runs.CHECKPOINTS}/{runs.LAST})")

    # The strategy comes first: MultiWorkerMirroredStrategy must exist before other TF work.
    strategy = make_strategy(config.strategy)
    multiworker = config.strategy == "multiworker"
    chief = is_chief()
    spec = get_dataset_spec(config.data, config.data_dir, config.classes_file)
    skipped = 0 if resume else check_dataset(config, spec)
    if config.val_split.lower() != "none":
        spec.pairs(config.val_split)  # a missing validation split is reported before any work

    policy = resolve_precision(config.mixed_precision)
    # The config written into the run holds what was actually used, so a resumed run (on
    # this or another machine) trains the same way.
    resolved = {"mixed_precision": {value: key for key, value in PRECISION_POLICIES.items()}[policy]}
    if config.crop is None and config.data in DEFAULT_CROPS:
        resolved["crop"] = list(DEFAULT_CROPS[config.data])
    class_weights = compute_class_weights(config, spec)  # also checks a given list's length
    if class_weights is not None:
        resolved["class_weights"] = class_weights
    run_dir = config.run_dir or default_run_dir(config)
    resolved["run_dir"] = run_dir
    config = config.replace(**resolved)

    # Only the chief writes into the run directory; other workers write to a scratch copy
    # (saving must still happen on every worker under a multi-worker strategy).
    write_dir = run_dir if chief else tempfile.mkdtemp(prefix="kseg-worker-")
    try:
        with dtype_policy(policy):
            return _run(config, spec, strategy, multiworker, write_dir, run_dir, class_weights,
                        resume, verbose, policy, skipped, list(callbacks), unsafe)  # fmt: skip
    finally:
        if not chief:
            shutil.rmtree(write_dir, ignore_errors=True)


def _run(config, spec, strategy, multiworker, write_dir, run_dir, class_weights, resume,
         verbose, policy, skipped, extra_callbacks, unsafe=False):  # fmt: skip
    import keras

    from kseg.data.pipeline import data_errors
    from kseg.losses import MaskedSparseCrossEntropy
    from kseg.metrics import ConfusionMatrixMetric
    from kseg.data import make_dataset

    keras.utils.set_random_seed(config.seed)
    num_pairs = len(spec.pairs(config.train_split))
    steps = math.ceil(num_pairs / config.batch_size)
    if config.steps_per_epoch:
        steps = min(steps, config.steps_per_epoch)
    last_path = runs.checkpoint_path(write_dir if not resume else run_dir, runs.LAST)
    best_path = runs.checkpoint_path(write_dir, runs.BEST)

    with strategy.scope():
        network = build_model(config, spec.num_classes, initialise=not resume, unsafe=unsafe)
    # The model trained is the same graph of layers (and variables, created above under
    # the strategy) wrapped again outside the strategy scope, and fit() runs inside the
    # scope. Keras then distributes each step as usual but does not start a pass of its
    # own over the data before training (what it does for models created under a
    # strategy): that pass would shift kseg's per-pass shuffling, so one device and
    # several replicas would see different data, and under MultiWorkerMirroredStrategy
    # keras 3.15 fails in it (it all-reduces the nested uint8 batch).
    model_class = _multi_worker_model_class() if multiworker else keras.Model
    model = model_class(inputs=network.input, outputs=network.output, name=network.name)
    with strategy.scope():
        metric = ConfusionMatrixMetric(spec.num_classes, spec.ignore_index, name="mean_iou")
        model.compile(
            optimizer=build_optimizer(config, steps * config.epochs),
            loss=MaskedSparseCrossEntropy(spec.num_classes, spec.ignore_index, class_weights),
            metrics=[metric],
        )
        # Optimizer variables are made here, under the strategy, not while tracing a step.
        model.optimizer.build(model.trainable_variables)
        state = RunState()
        if resume:
            state = RunState(**read_checkpoint_state(last_path))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    model.load_weights(last_path)
                except Exception as error:
                    raise KsegError(f"{last_path}: cannot resume from this checkpoint ({error})") from None
            skipped_loading = [
                str(w.message) for w in caught if "Skipping variable loading" in str(w.message)
            ]
            if skipped_loading:  # keras only warns when optimizer or layer state does not fit
                raise KsegError(f"{last_path}: the checkpoint does not fit this run ({skipped_loading[0]})")
            for variable, value in zip(seed_generator_variables(model), state.seed_generators):
                variable.assign(np.asarray(value, dtype=variable.dtype))
            logger.info("resuming %s after epoch %d (best mIoU %.4f at epoch %d)",
                        run_dir, state.epoch, state.best_score, state.best_epoch)  # fmt: skip
    # The run directory is written once the model exists (so a missing-weights error
    # leaves no empty run behind).
    os.makedirs(os.path.join(write_dir, runs.CHECKPOINTS), exist_ok=True)
    remove_stale_temporaries(os.path.join(write_dir, runs.CHECKPOINTS))
    config.to_yaml(os.path.join(write_dir, "config.yaml"))
    runs.write_classes(write_dir, spec.name, spec.class_names, spec.palette, spec.ignore_index)
    logger.info(
        "training %s on %s (%d classes, %d training pairs, %d steps/epoch) with policy %s "
        "on %d replica(s); writing %s",
        config.model, spec.name, spec.num_classes, num_pairs, steps, policy,
        strategy.num_replicas_in_sync, run_dir,
    )  # fmt: skip
    if state.epoch >= config.epochs:
        logger.info(
            "%s: already trained for %d of %d epochs; nothing to do", run_dir, state.epoch, config.epochs
        )
        return run_dir

    inference_model = None  # a copy without optimizer state, for best.keras
    writers = {}
    if is_chief():
        writers = {
            "train": ScalarWriter(os.path.join(write_dir, TENSORBOARD_DIR, "train")),
            "validation": ScalarWriter(os.path.join(write_dir, TENSORBOARD_DIR, "validation")),
        }
    one_epoch = _keras_callbacks()
    validate = config.val_split.lower() != "none"
    try:
        for epoch in range(state.epoch, config.epochs):
            train_data = make_dataset(
                spec, config.train_split, training=True, batch_size=config.batch_size,
                crop=None if config.crop == WHOLE_IMAGES else config.crop,
                seed=_epoch_seed(config.seed, epoch), skip_bad=config.skip_bad,
            )  # fmt: skip
            skipped_pairs = getattr(train_data, "skipped", None)
            if config.steps_per_epoch:
                train_data = train_data.take(config.steps_per_epoch)
            if not config.skip_bad:  # a known length gives keras' progress bar its total
                train_data = _with_length(train_data, steps)
            val_data = None
            if validate:
                val_data = make_dataset(
                    spec, config.val_split, training=False,
                    batch_size=config.val_batch_size or config.batch_size, skip_bad=config.skip_bad,
                )  # fmt: skip
                val_batches = math.ceil(val_data.num_pairs / (config.val_batch_size or config.batch_size))
                if config.val_steps:
                    val_data = val_data.take(config.val_steps)
                    val_batches = min(val_batches, config.val_steps)
                if not config.skip_bad:
                    val_data = _with_length(val_data, val_batches)
                val_data = _distribute(val_data, multiworker)
            watcher = one_epoch()
            with data_errors(), warnings.catch_warnings(), strategy.scope():
                # Skipped bad pairs make an epoch shorter than announced; that is expected.
                warnings.filterwarnings("ignore", message="Your input ran out of data")
                fitted = model.fit(
                    _distribute(train_data, multiworker), validation_data=val_data,
                    epochs=config.epochs, initial_epoch=epoch, callbacks=[watcher, *extra_callbacks],
                    verbose=verbose, shuffle=False,
                )  # fmt: skip
            if watcher.bad_loss is not None:
                step, value = watcher.bad_loss
                kept = (
                    f"the checkpoints of epoch {state.epoch} are kept in {run_dir}"
                    if state.epoch else "no checkpoint was written yet"
                )
                raise KsegError(
                    f"training stopped: the loss became {value} at epoch {epoch + 1}, step {step} "
                    f"(try a lower --lr, or --mixed-precision off); {kept}"
                )
            logs = {key: values[-1] for key, values in fitted.history.items()}
            row = {
                "epoch": epoch + 1,
                "loss": float(logs["loss"]),
                "val_loss": float(logs["val_loss"]) if "val_loss" in logs else None,
                "lr": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
                "seconds": round(watcher.train_seconds, 3),
                "images_per_second": round(watcher.images_per_second(config.batch_size), 3),
            }
            if validate:
                scores = metric.scores()
                for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou"):
                    row[key] = scores[key]
                score = scores["mean_iou"] if math.isfinite(scores["mean_iou"]) else -math.inf
            else:
                score = -row["loss"]
            state.epoch = epoch + 1
            state.history = [*state.history, row]
            if score > state.best_score or state.best_epoch == 0:
                state.best_score, state.best_epoch = score, epoch + 1
                if inference_model is None:
                    inference_model = keras.Model.from_config(model.get_config())
                inference_model.set_weights(model.get_weights())
                save_checkpoint(inference_model, best_path)
            state.seed_generators = [
                np.asarray(keras.ops.convert_to_numpy(v)).tolist() for v in seed_generator_variables(model)
            ]
            save_checkpoint(model, runs.checkpoint_path(write_dir, runs.LAST), dataclasses.asdict(state))
            if is_chief():
                write_log_csv(os.path.join(write_dir, LOG_FILE), state.history)
                plot_training_curves(os.path.join(write_dir, CURVES_FILE), state.history)
                training_scalars = {
                    "loss": row["loss"], "learning_rate": row["lr"],
                    "images_per_second": row["images_per_second"],
                }  # fmt: skip
                writers["train"].write(training_scalars, epoch + 1)
                writers["validation"].write(
                    {key: row.get(key) for key in ("val_loss", "pixel_accuracy", "mean_accuracy",
                                                   "mean_iou", "frequency_weighted_iou")}, epoch + 1,
                )  # fmt: skip
            logger.info(
                "epoch %d/%d: loss %.4f, val mIoU %s, %.1f images/s%s",
                epoch + 1, config.epochs, row["loss"], _format(row.get("mean_iou")),
                row["images_per_second"], " (best)" if state.best_epoch == epoch + 1 else "",
            )  # fmt: skip
        if config.skip_bad:
            seen = skipped_pairs.count if skipped_pairs is not None else 0
            logger.warning(
                "--skip-bad: verification found %d problem(s); the last epoch skipped %d bad pair(s)",
                skipped, seen,
            )  # fmt: skip
    finally:
        for writer in writers.values():
            writer.close()
    return run_dir


def _format(value):
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"
