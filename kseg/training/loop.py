"""Training an FCN: `train(config) -> run_dir`, used by `kseg train` and from Python.

One `model.fit` over all epochs, with kseg's callbacks around the user's:

    training dataset: one pass per epoch, its order and augmentation chosen by the seed
      and the epoch number (so a resumed run sees what an uninterrupted one does)
      -> the epoch's steps (keras progress bar, or a line a minute without a terminal)
      -> validation pass -> confusion matrix -> the four FCN metrics (kseg.metrics)
      -> checkpoints/best.keras if val mIoU improved, checkpoints/last.keras (always)
      -> log.csv, TensorBoard scalars, training_curves.png (kseg.training.logs)

Before the first epoch, a reduced precision (bf16, fp16) is checked against float32 on this
machine (`kseg.training.precision_check`): `auto` falls back to float32 when they disagree,
an explicit choice stops. After each epoch, and at the end, a run that is not learning (a
loss far above its first step's, a validation mIoU at chance level) says so.

What one run needs travels in a `TrainingRun`. Checkpoints and exact resume are
`kseg.training.checkpoints`; the strategy, precision and multi-worker setup
`kseg.training.distribution`; the data checks `kseg.training.data_checks`; the run-folder
lock `kseg.training.lock`.

Training stops with a `KsegError` when the training or the validation loss becomes NaN or
infinite; the checkpoints of the last good epoch are kept, and a score that is not finite
never makes a best.keras. A full disk stops it the same way, naming the file.

The run folder is locked from before its content is checked until training ends, so a
second `train` on it is refused at once; a fresh run needs a new or empty folder (a run or
a user's files there are refused, never overwritten), and one that fails before its first
checkpoint takes away what it wrote. Temporaries that killed writes left anywhere in the
folder are swept under the lock. Under `--strategy multiworker` only the chief writes and
locks the run folder.
"""

import contextlib
import dataclasses
import logging
import math
import os
import shutil
import tempfile
import time
import warnings

import keras
import numpy as np

import kseg.data
from kseg import runs
from kseg.config import TrainConfig
from kseg.data import get_dataset_spec
from kseg.data.pipeline import data_errors, default_engine
from kseg.errors import DiskFullError, KsegError
from kseg.losses import make_loss
from kseg.metrics import ConfusionMatrixMetric, at_chance_level, chance_mean_iou
from kseg.models.registry import check_weights, get_model_entry
from kseg.models.saving import first_nonfinite_weight
from kseg.training import checkpoints
from kseg.training.build import build_model, build_optimizer, dataset_options, with_float32_biases
from kseg.training.checkpoints import RunState
from kseg.training.data_checks import check_dataset, check_validation_split, compute_class_weights
from kseg.training.distribution import (
    PRECISION_MODES,
    MultiWorkerModel,
    auto_precision,
    check_strategy_backend,
    dtype_policy,
    is_chief,
    keras_backend,
    make_strategy,
    resolve_precision,
)
from kseg.training.lock import default_run_dir, lock_run_dir
from kseg.training.logs import RunLogs
from kseg.training.precision_check import blame_layers, check_precision, with_float32_layers

logger = logging.getLogger("kseg")


@dataclasses.dataclass
class TrainingRun:
    """What one training run works with, from the checks before it to its last epoch."""

    config: TrainConfig  # resolved: the values actually used (as config.yaml holds them)
    spec: object  # the kseg.data.DatasetSpec
    strategy: object  # a tf.distribute.Strategy, or under JAX and PyTorch a distribution.KerasDistribution
    policy: str  # the keras dtype policy name
    run_dir: runs.RunDir  # the run folder (a resumed run's checkpoint is read there)
    write_dir: runs.RunDir  # where this process writes: run_dir, or a multi-worker run's other workers' scratch
    chief: bool = True  # whether this process writes the logs
    resume: bool = False  # continue from run_dir's last checkpoint
    state: RunState = dataclasses.field(default_factory=RunState)  # read from the checkpoint on resume
    class_weights: list = None  # list of float or None
    skipped: int = 0  # problems verification found that `skip_bad` leaves out
    verbose: int = 1  # keras progress output
    callbacks: list = dataclasses.field(default_factory=list)  # given to the fit, between kseg's own
    unsafe: bool = False  # allow an init_from model containing code
    requested_precision: str = "auto"  # --mixed-precision as given, before auto was resolved
    float32_layers: tuple = ()  # layers computed in float32 under a mixed policy (the precision check)
    model: object = None  # the keras model trained, once built
    metric: object = None  # its validation confusion matrix
    steps: int = 0  # training steps per epoch

    @property
    def multiworker(self):
        return self.config.strategy == "multiworker"

    @property
    def validate(self):
        return self.config.val_split.lower() != "none"

    def kept(self, epoch=None):
        """What of the run is kept when it stops after `epoch` completed epochs."""
        epoch = self.state.epoch if epoch is None else epoch
        if not epoch:
            return "no checkpoint was written yet, so nothing of this run was kept"
        return f"the checkpoints of epoch {epoch} are kept in {self.run_dir} (continue with --resume)"


def train(config, resume=False, verbose=1, callbacks=(), unsafe=False):
    """Trains the model the config describes; returns the run directory.

    The run folder is locked while training (a second `train` on it is refused). A fresh
    run needs a new or empty folder; if it fails before its first checkpoint, what it
    wrote is removed again (and the folder, if it made it).

    Args:
        config: TrainConfig. What to train on what (see `kseg.config.TrainConfig`).
        resume: bool. Continue the run in `config.run_dir` from its checkpoints/last.keras.
        verbose: int. Keras progress output: 0 silent, 1 progress bar, 2 one line per epoch.
        callbacks: sequence of keras.callbacks.Callback. Extra callbacks for the `fit` of
            the run (a resumed run's fit starts at the epoch it stopped after).
        unsafe: bool. Allow an `init_from` model file containing code (Lambda layers);
            trusted files only. (--resume reads weights only, never code.)

    Returns:
        str. The run directory (config.yaml, classes.json, checkpoints/, log.csv,
        tensorboard/, training_curves.png).

    Raises:
        KsegError: bad data or options, missing weights, a NaN loss, a locked or used
            run folder, a full disk.
    """
    config = _checked_config(config, resume)
    chief = is_chief(config.strategy)
    # Only the chief writes into (and locks) the run directory; other workers write to a
    # scratch folder (saving must still happen on every worker under a multi-worker strategy).
    lock = lock_run_dir(config, resume) if chief else None
    run_dir = runs.RunDir(lock.run_dir if lock else (config.run_dir or default_run_dir(config)))
    write_dir = run_dir if chief else runs.RunDir(tempfile.mkdtemp(prefix="kseg-worker-"))
    failed = True
    try:
        if resume and not os.path.isfile(run_dir.last):
            raise KsegError(
                f"{run_dir}: nothing to resume (no {runs.CHECKPOINTS}/{runs.LAST}); start a new run in "
                "another --run-dir"
            )
        run = _prepare(config.replace(run_dir=run_dir.path), run_dir, write_dir, chief, resume)
        run = dataclasses.replace(run, verbose=verbose, callbacks=list(callbacks), unsafe=unsafe)
        run = _checked_precision(run)
        with dtype_policy(run.policy):
            _run(run)
        failed = False
        return run_dir.path
    finally:
        if not chief:
            shutil.rmtree(write_dir.path, ignore_errors=True)
        if lock is not None:
            # A fresh run that stopped before its first checkpoint leaves nothing behind.
            clean = failed and not resume and not os.path.isfile(run_dir.last)
            try:
                if clean:
                    lock.remove_run_files()
            except OSError as error:  # the error that stopped the run is the one to see
                logger.warning("%s: cannot remove what this failed run wrote (%s); remove the folder by hand "
                               "to start again", run_dir, error)  # fmt: skip
            finally:
                lock.release(remove_created=clean)


def _checked_config(config, resume):
    """The config checked again (fields may have been set since it was made), and what can
    be refused at once: a misspelt model, weights it cannot take, a strategy the backend
    lacks, --resume without a run folder. (`is_chief`, next, refuses a malformed TF_CONFIG.)"""
    if not isinstance(config, TrainConfig):
        raise KsegError(f"train expects a TrainConfig. Received: {type(config).__name__}")
    config = config.replace()
    get_model_entry(config.model)  # before minutes of data checks
    if not resume:  # a resumed run reads its checkpoint
        check_weights(config.model, config.model_weights)
    check_strategy_backend(config.strategy)  # multiworker is TensorFlow-only
    if resume and not config.run_dir:
        raise KsegError("--resume needs --run-dir, the run directory to continue")
    return config


def _prepare(config, run_dir, write_dir, chief, resume):
    """Checks the checkpoint, the data and the options; returns the run, config resolved."""
    state = RunState.from_checkpoint(run_dir.last) if resume else RunState()  # before the model is built
    # The strategy comes first: MultiWorkerMirroredStrategy must exist before other TF work.
    strategy = make_strategy(config.strategy, config.worker_timeout)
    spec = get_dataset_spec(config.data, config.data_dir, config.classes_file)
    if resume:
        checkpoints.check_trained_with(config, state, spec.num_classes, run_dir.last, run_dir)
    skipped = 0 if resume else check_dataset(config, spec)
    check_validation_split(config, spec)

    policy = resolve_precision(config.mixed_precision, warn=True)
    if config.mixed_precision == "auto":
        logger.info("--mixed-precision auto: %s under %s (%s)", policy, keras_backend(), auto_precision()[1])
    # The config written into the run holds what was actually used, so a resumed run (on
    # this or another machine) trains the same way.
    resolved = {"mixed_precision": PRECISION_MODES[policy]}
    class_weights = compute_class_weights(config, spec)  # also checks a given list's length
    if class_weights is not None:
        resolved["class_weights"] = class_weights
    return TrainingRun(
        config=config.replace(**resolved), spec=spec, strategy=strategy, policy=policy, run_dir=run_dir,
        write_dir=write_dir, chief=chief, resume=resume, state=state, class_weights=class_weights,
        skipped=skipped, requested_precision=config.mixed_precision,
    )  # fmt: skip


def _steps_per_epoch(config, spec):
    steps = math.ceil(len(spec.pairs(config.train_split)) / config.batch_size)
    return min(steps, config.steps_per_epoch) if config.steps_per_epoch else steps


def _checked_precision(run):
    """The run, its policy checked on this machine (`kseg.training.precision_check`).

    A reduced policy that does not train like float32 is replaced by float32 (with one
    line) when `auto` chose it, and stops the run when it was asked for by name.
    """
    config = run.config
    if run.policy == "float32" or not config.precision_check or run.state.epoch >= config.epochs:
        return run
    total_steps = _steps_per_epoch(config, run.spec) * config.epochs
    check = check_precision(config, run.spec, run.policy, run.class_weights, total_steps)
    mode = PRECISION_MODES[run.policy]
    if check.agrees:
        logger.info("precision check: %s trains like float32 here (%s)", run.policy, check.describe())
        return run
    blamed = blame_layers(config, run.spec, run.policy)
    if blamed:
        again = check_precision(config, run.spec, run.policy, run.class_weights, total_steps, blamed)
        if again.agrees:
            logger.warning(
                "precision check: %s does not train like float32 on this machine (%s; %s); the output or "
                "gradients of %s disagree with float32's, so %s in float32 and the rest in %s (%s)",
                run.policy, check.problem, check.describe(), ", ".join(blamed),
                "it computes" if len(blamed) == 1 else "they compute", run.policy, again.describe(),
            )  # fmt: skip
            return dataclasses.replace(run, float32_layers=tuple(blamed))
    if run.requested_precision == "auto":
        logger.warning(
            "precision check: %s does not train like float32 on this machine (%s; %s); training in float32 "
            "instead", run.policy, check.problem, check.describe(),
        )  # fmt: skip
        return dataclasses.replace(run, policy="float32", config=config.replace(mixed_precision="off"))
    way_out = (f"resume with --no-precision-check to go on in {mode} anyway, or start a new run with "
               "--mixed-precision off") if run.resume else (
               f"train with --mixed-precision off, or with --no-precision-check to use {mode} anyway")
    raise KsegError(
        f"--mixed-precision {mode}: {run.policy} does not train like float32 on this machine ({check.problem}; "
        f"{check.describe()}); {way_out}"
    )


def _run(run):
    config, spec = run.config, run.spec
    keras.utils.set_random_seed(config.seed)
    num_pairs = len(spec.pairs(config.train_split))
    run.steps = _steps_per_epoch(config, spec)
    _build(run)
    run.state.trained_with = checkpoints.trained_with(config, spec.num_classes)
    # The run directory is written once the model exists (so a missing-weights error
    # leaves no empty run behind).
    os.makedirs(run.write_dir.checkpoints, exist_ok=True)
    config.to_yaml(run.write_dir.config)
    runs.write_classes(run.write_dir.path, spec.name, spec.class_names, spec.palette, spec.ignore_index)
    logger.info(
        "training %s on %s (%d classes, %d training pairs, %d steps/epoch) with policy %s "
        "on %d replica(s), loss %s; writing %s",
        config.model, spec.name, spec.num_classes, num_pairs, run.steps, run.policy,
        run.strategy.num_replicas_in_sync, config.loss, run.run_dir,
    )  # fmt: skip
    if run.state.epoch >= config.epochs:
        logger.info("%s: already trained for %d of %d epochs; nothing to do", run.run_dir, run.state.epoch,
                    config.epochs)  # fmt: skip
        return
    train_data, validation = _run_data(run)
    progress = _EpochProgress(run, train_data.set_epoch, validation)
    fit_data = _fit_data(run, train_data)
    with contextlib.ExitStack() as closing:  # each closed, even when another fails to close
        if not _tf_data():  # the python engine's reader threads, left running by a fit stopped mid-epoch
            closing.push(_closer(fit_data.close))
        ends = _EpochEnd(run, progress)  # opens the TensorBoard writers
        closing.push(_closer(ends.close))
        # keras' progress bar ends an epoch's line before kseg's own line about it.
        bar = [keras.callbacks.ProgbarLogger()] if run.verbose else []
        callbacks = keras.callbacks.CallbackList(  # a user's callback may fail in its set_model
            [progress, *run.callbacks, *bar, ends], add_history=True, verbose=run.verbose, epochs=config.epochs,
            steps=None if config.skip_bad and _tf_data() else run.steps,  # unknown when bad pairs may be skipped
            model=run.model,
        )  # fmt: skip
        progress.callbacks = callbacks  # validation reports to the callbacks of the fit, as keras' own does
        with data_errors(), warnings.catch_warnings(), run.strategy.scope():
            # Skipped bad pairs make an epoch shorter than announced; that is expected.
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            run.model.fit(
                fit_data, epochs=config.epochs, initial_epoch=run.state.epoch,
                callbacks=callbacks, verbose=run.verbose, shuffle=False,
            )  # fmt: skip
        _summarise(run)
        if config.skip_bad:
            logger.warning("--skip-bad: verification found %d problem(s); training skipped %d bad pair(s)",
                           run.skipped, train_data.skipped.count)  # fmt: skip


def _summarise(run):
    """The end-of-run lines: what the best and last epochs scored, and whether it learned."""
    state = run.state
    last = state.history[-1]
    if run.validate:
        logger.info("finished at epoch %d: val mIoU %s; best %s, at epoch %d", state.epoch,
                    _format(last.get("mean_iou")), _format(state.best_score), state.best_epoch)  # fmt: skip
    problem = learning_problem(state.history, run.spec.class_names)
    if problem:
        logger.warning(
            "this run did not learn: %s. Its checkpoints are not a useful model; try a lower --lr, "
            "--mixed-precision off, or more epochs", problem,
        )  # fmt: skip


def _build(run):
    """Builds and compiles `run.model` (restored from the checkpoint on resume)."""
    config, spec = run.config, run.spec
    with run.strategy.scope():
        network = build_model(config, spec.num_classes, initialise=not run.resume, unsafe=run.unsafe)
        if run.float32_layers:
            network = with_float32_biases(with_float32_layers(network, run.float32_layers))
    # The model trained is the same graph of layers (and variables, created above under
    # the strategy) wrapped again outside the strategy scope, and fit() runs inside the
    # scope. Keras then distributes each step as usual but does not start a pass of its
    # own over the data before training (what it does for models created under a
    # strategy): that pass would shift kseg's per-pass shuffling, so one device and
    # several replicas would see different data, and under MultiWorkerMirroredStrategy
    # keras 3.15 fails in it (it all-reduces the nested uint8 batch).
    model_class = MultiWorkerModel if run.multiworker else keras.Model
    model = model_class(inputs=network.input, outputs=network.output, name=network.name)
    with run.strategy.scope():
        run.metric = ConfusionMatrixMetric(spec.num_classes, spec.ignore_index, name="mean_iou")
        model.compile(
            optimizer=build_optimizer(config, run.steps * config.epochs),
            loss=make_loss(config.loss, spec.num_classes, spec.ignore_index, run.class_weights),
            metrics=[run.metric],
        )
        # Optimizer variables are made here, under the strategy, not while tracing a step.
        model.optimizer.build(model.trainable_variables)
        if run.resume:
            checkpoints.load_checkpoint_weights(model, run.run_dir.last, run.run_dir)
            checkpoints.restore_seed_generators(model, run.state.seed_generators, run.run_dir.last)
            logger.info("resuming %s after epoch %d (best mIoU %.4f at epoch %d)",
                        run.run_dir, run.state.epoch, run.state.best_score, run.state.best_epoch)  # fmt: skip
    run.model = model


def _run_data(run):
    """The training dataset of the run, every epoch one pass over it, and a function giving
    what `evaluate` takes for one validation pass (None without validation)."""
    config = run.config
    # Without tf.data (JAX, PyTorch) every batch is rounded up to a multiple of the devices
    # it is split over, with blank samples that change neither the loss nor the scores.
    options = dataset_options(config, pad_to=1 if _tf_data() else run.strategy.num_replicas_in_sync)
    train_data = kseg.data.make_dataset(
        run.spec, config.train_split, training=True, batch_size=config.batch_size, options=options
    )
    if not run.validate:
        return train_data, None
    batch_size = config.val_batch_size or config.batch_size
    val_data = kseg.data.make_dataset(run.spec, config.val_split, training=False, batch_size=batch_size,
                                      options=options)
    val_batches = math.ceil(val_data.num_pairs / batch_size)
    if config.val_steps:
        val_data = val_data.take(config.val_steps)
        val_batches = min(val_batches, config.val_steps)
    if not _tf_data():  # keras takes an iterable of batches as a generator, good for one pass
        return train_data, val_data.generator
    val_data = _for_fit(run, val_data, val_batches)
    return train_data, lambda: val_data


def _fit_data(run, train_data):
    """The training dataset as fit takes it: `steps_per_epoch` batches of each pass."""
    if run.config.steps_per_epoch:
        train_data = train_data.take(run.config.steps_per_epoch)
    return _for_fit(run, train_data, run.steps) if _tf_data() else train_data


def _closer(close):
    """An exit callback for an ExitStack that calls `close`: its error is raised when
    training ended well, and only logged when training already stops with an error, so
    the user sees why training stopped rather than a failure to close after it."""

    def exit_callback(exc_type, exc, traceback):
        try:
            close()
        except Exception as error:
            if exc is None:
                raise
            logger.warning("while stopping: %s", error)
        return False

    return exit_callback


def _tf_data():
    return default_engine() == "tf.data"


def _nonfinite_stop(run, what, value, when):
    """The error that ends training when `what` (the loss, a weight) became NaN or inf."""
    return KsegError(f"training stopped: the {what} became {value} at {when} (try a lower --lr, or "
                     f"--mixed-precision off); {run.kept()}")


class _EpochProgress(keras.callbacks.Callback):
    """The first of the run's callbacks: chooses each epoch's pass over the data, times the
    training steps, and validates at the end of the epoch (before the other callbacks run,
    so they see the `val_` logs, as when keras validates).

    The speed is measured from the end of the first step to the end of the last, so
    the first step's tracing and graph building (seconds) do not count; with a single
    step the whole step is timed.

    Args:
        run: TrainingRun.
        set_epoch: callable. Makes every later pass over the training data that of an epoch.
        validation: callable or None. What `evaluate` takes for one validation pass.
    """

    def __init__(self, run, set_epoch, validation):
        super().__init__()
        self.run, self.set_epoch, self.validation = run, set_epoch, validation
        self.callbacks = None  # the fit's CallbackList, which validation reports to

    def on_epoch_begin(self, epoch, logs=None):
        # Each epoch's order and augmentation follow from the seed and its number alone,
        # so a resumed run sees the data an uninterrupted one does.
        self.set_epoch(epoch)
        self.first_loss = None  # the loss of the epoch's first step
        self.batches = 0
        self._start = time.perf_counter()
        self._first_step_end = self._last_step_end = None

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        self._last_step_end = time.perf_counter()
        if self.batches == 1:
            self._first_step_end = self._last_step_end
            loss = (logs or {}).get("loss")
            self.first_loss = None if loss is None else _as_float(loss)

    def on_epoch_end(self, epoch, logs=None):
        self.train_seconds = time.perf_counter() - self._start
        if self.validation is not None:
            scores = self.model.evaluate(self.validation(), callbacks=self.callbacks, verbose=0, return_dict=True)
            logs.update({f"val_{name}": value for name, value in scores.items()})

    def images_per_second(self, batch_size):
        """Training images per second (the last batch counted as full)."""
        if self.batches > 1 and self._last_step_end > self._first_step_end:
            return (self.batches - 1) * batch_size / (self._last_step_end - self._first_step_end)
        return self.batches * batch_size / max(self.train_seconds, 1e-9)


class _EpochEnd(keras.callbacks.Callback):
    """The last of the run's callbacks: stops at a loss that is not finite, and at the end
    of each epoch checks the weights, scores the validation and writes what the epoch
    leaves (best.keras when the score improved, last.keras with the run state, and on the
    chief the logs).

    Not keras' TerminateOnNaN and ModelCheckpoint: kseg's error names the epoch, the step
    and the value, and a checkpoint holds the run state a resume needs (`RunState`).
    """

    def __init__(self, run, progress):
        super().__init__()
        self.run, self.progress = run, progress
        self.epoch = 0
        self.inference_model = None  # a copy without optimizer state, for best.keras
        self.logs = RunLogs(run.write_dir) if run.chief else None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(_as_float(loss)):
            raise _nonfinite_stop(self.run, "loss", _as_float(loss), f"epoch {self.epoch + 1}, step {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        self.record(*self.row(epoch, logs))

    def row(self, epoch, logs):
        """The epoch's log row and its score (val mIoU, or -loss without validation)."""
        run, progress = self.run, self.progress
        row = {
            "epoch": epoch + 1,
            "loss": _as_float(logs["loss"]),
            "val_loss": _as_float(logs["val_loss"]) if "val_loss" in logs else None,
            "lr": float(keras.ops.convert_to_numpy(run.model.optimizer.learning_rate)),
            "seconds": round(progress.train_seconds, 3),
            "images_per_second": round(progress.images_per_second(run.config.batch_size), 3),
            "first_step_loss": progress.first_loss,
        }
        for key, what in (("loss", "loss"), ("val_loss", "validation loss")):
            if row[key] is not None and not math.isfinite(row[key]):
                raise _nonfinite_stop(run, what, row[key], f"epoch {epoch + 1}")
        # A finite loss does not prove finite weights: some CPU kernels (oneDNN's max pooling)
        # drop NaN, so a model whose weights hold NaN can still give finite logits and losses.
        bad = first_nonfinite_weight(run.model)
        if bad is not None:
            raise _nonfinite_stop(run, f"weight {bad[0]}", bad[1], f"epoch {epoch + 1}")
        if not run.validate:
            return row, -row["loss"]
        scores = run.metric.scores()
        for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou"):
            row[key] = scores[key]
        confusion = keras.ops.convert_to_numpy(run.metric.confusion)
        row["chance_class"], row["chance_mean_iou"] = chance_mean_iou(confusion)
        return row, scores["mean_iou"]

    def record(self, row, score):
        """Keeps the epoch: its row in the run state, best.keras when `score` improved,
        last.keras and the logs (each written through `kseg.outputs.writing`)."""
        run, state = self.run, self.run.state
        kept_epoch = state.epoch  # the epoch of the last last.keras written
        state.epoch = row["epoch"]
        state.history = [*state.history, row]
        try:
            # A score that is not finite (nothing labelled was validated) never makes a best.
            if math.isfinite(score) and (score > state.best_score or state.best_epoch == 0):
                state.best_score, state.best_epoch = score, row["epoch"]
                if self.inference_model is None:
                    self.inference_model = keras.Model.from_config(run.model.get_config())
                self.inference_model.set_weights(run.model.get_weights())
                checkpoints.save_checkpoint(self.inference_model, run.write_dir.best)
            state.seed_generators = checkpoints.seed_generator_states(run.model)
            checkpoints.save_checkpoint(run.model, run.write_dir.last, dataclasses.asdict(state))
            kept_epoch = state.epoch
            if self.logs is not None:
                self.logs.write(state.history)
        except DiskFullError as error:
            kept = run.kept(kept_epoch).replace("(continue", "(free some space, then continue")
            raise DiskFullError(f"training stopped at epoch {row['epoch']}: {error}; {kept}") from None
        problem = learning_problem(state.history, run.spec.class_names)
        note = ""
        if state.best_epoch == row["epoch"] and not problem:
            note = " (best)" if run.validate else " (lowest training loss: best.keras)"
        logger.info("epoch %d/%d: loss %.4f, val mIoU %s, %.1f images/s%s", row["epoch"], run.config.epochs,
                    row["loss"], _format(row.get("mean_iou")), row["images_per_second"], note)  # fmt: skip
        if problem:
            logger.warning("epoch %d: not learning: %s", row["epoch"], problem)

    def close(self):
        if self.logs is not None:
            self.logs.close()


# A training loss this many times its first step's, and at least DIVERGENCE_RISE above it,
# is diverging (the rise keeps a fine-tuned run whose loss starts near zero from counting).
DIVERGENCE_FACTOR = 2.0
DIVERGENCE_RISE = 0.5


def learning_problem(history, class_names):
    """Why a run whose log rows are `history` is not learning, as of its last epoch ("" when
    nothing says so): a training loss far above where it started, or a validation mIoU no
    better than predicting the most frequent class everywhere."""
    row = history[-1]
    start = history[0].get("first_step_loss")
    start = history[0]["loss"] if start is None else start
    if math.isfinite(start) and row["loss"] > max(DIVERGENCE_FACTOR * start, start + DIVERGENCE_RISE):
        return (f"its training loss rose from {start:.4g} at the first step to {row['loss']:.4g} in epoch "
                f"{row['epoch']}: it is diverging")  # fmt: skip
    mean_iou, chance = row.get("mean_iou"), row.get("chance_mean_iou")
    if mean_iou is not None and chance is not None and at_chance_level(mean_iou, chance):
        index = row.get("chance_class")
        name = class_names[index] if isinstance(index, int) and 0 <= index < len(class_names) else "one class"
        return (f"its validation mIoU {mean_iou:.4f} is chance level (predicting {name} everywhere scores "
                f"{chance:.4f})")  # fmt: skip
    return ""


def _for_fit(run, dataset, batches):
    """A tf.data dataset of `batches` batches as keras takes it: with its length when it is
    known (a known length gives keras' progress bar its total), sharded by data (not by
    file) across the workers of a multi-worker run."""
    import tensorflow as tf

    if not run.config.skip_bad:
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(batches))
    if run.multiworker:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = dataset.with_options(options)
    return dataset


def _as_float(value):
    return float(np.asarray(value).reshape(-1)[0])


def _format(value):
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"
