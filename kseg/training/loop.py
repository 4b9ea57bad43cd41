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

Training stops with a `KsegError` when the training or the validation loss becomes NaN or
infinite; the checkpoints of the last good epoch are kept, and a score that is not finite
never makes a best.keras. A full disk stops it the same way, naming the file.

The run folder is locked (`kseg.runlock`) from before its content is checked until
training ends, so a second `train` on it is refused at once; a fresh run needs a new or
empty folder (a run or a user's files there are refused, never overwritten), and one that
fails before its first checkpoint takes away what it wrote. Temporaries that killed writes
left anywhere in the folder are swept under the lock.

Under `--strategy multiworker` TF_CONFIG is checked first, the other workers are waited
for (at most `worker_timeout` seconds, naming the missing one; Ctrl-C and SIGTERM stop the
wait), and only the chief writes and locks the run folder. Other strategies ignore
TF_CONFIG.
"""

import csv
import dataclasses
import io
import json
import logging
import math
import os
import shutil
import signal
import sys
import tempfile
import time
import warnings
import zipfile

import numpy as np

from kseg import runs
from kseg.atomic import atomic_path, write_bytes_atomic
from kseg.config import DEFAULT_CROPS, WHOLE_IMAGES, TrainConfig
from kseg.errors import DiskFullError, KsegError, is_disk_full
from kseg.files import brief
from kseg.models.saving import load_model
from kseg.runlock import RunLock, sweep_temporaries

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


TF_CONFIG_TASK_TYPES = ("chief", "worker", "evaluator")
TF_CONFIG_LIMIT = 1 << 20


def _tf_config_error(problem):
    return KsegError(
        f"TF_CONFIG: {problem}; it should look like "
        '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}'
    )


def parse_address(address):
    """"host:port" -> (host, port), or None when it is not such an address."""
    if not isinstance(address, str) or len(address) > 1000:
        return None
    host, _, port = address.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [IPv6]
    if not host or any(character.isspace() for character in host) or not port.isdigit():
        return None
    port = int(port)
    return (host, port) if 1 <= port <= 65535 else None


def read_tf_config():
    """The cluster and task of the TF_CONFIG environment variable, checked.

    Returns:
        dict with "cluster" (task type -> list of "host:port") and "task" ({"type": str,
        "index": int}), both valid: the task is one of the cluster's.

    Raises:
        KsegError: one line naming TF_CONFIG and what is wrong.
    """
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        raise KsegError(
            "--strategy multiworker needs the TF_CONFIG environment variable describing the cluster "
            'and this worker\'s task, e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
            '"task": {"type": "worker", "index": 0}}'
        )
    if len(raw) > TF_CONFIG_LIMIT:
        raise _tf_config_error(f"{len(raw)} characters is too long")
    try:
        value = json.loads(raw)
    except ValueError as error:
        raise _tf_config_error(f"not valid JSON ({error})") from None
    except RecursionError:
        raise _tf_config_error("JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise _tf_config_error(f"expected a JSON object, found {brief(value, 40)}")
    cluster = value.get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise _tf_config_error(
            f'"cluster" must be an object of task type -> list of "host:port", found {brief(cluster, 40)}'
        )
    for kind, addresses in cluster.items():
        if kind not in TF_CONFIG_TASK_TYPES:
            raise _tf_config_error(
                f"cluster task type {brief(kind, 40)} is not one of {', '.join(TF_CONFIG_TASK_TYPES)}"
            )
        if not isinstance(addresses, list) or not addresses:
            raise _tf_config_error(
                f'cluster "{kind}" must be a non-empty list of "host:port", found {brief(addresses, 40)}'
            )
        for index, address in enumerate(addresses):
            if parse_address(address) is None:
                raise _tf_config_error(
                    f'cluster "{kind}"[{index}] is {brief(address, 60)}, not "host:port" with a port from 1 to 65535'
                )
    if "worker" not in cluster and "chief" not in cluster:
        raise _tf_config_error('the cluster has neither "chief" nor "worker" tasks')
    if len(cluster.get("chief", [])) > 1:
        raise _tf_config_error(f'a cluster has at most one chief, found {len(cluster["chief"])}')
    addresses = [address.strip() for kind in cluster for address in cluster[kind]]
    if len(set(addresses)) != len(addresses):
        raise _tf_config_error("two tasks of the cluster have the same host:port")
    task = value.get("task")
    if not isinstance(task, dict):
        raise _tf_config_error(f'"task" must be an object with "type" and "index", found {brief(task, 40)}')
    kind, index = task.get("type"), task.get("index", 0)
    if not isinstance(kind, str) or kind not in cluster:
        raise _tf_config_error(f'task type {brief(kind, 40)} is not a task type of the cluster ({", ".join(cluster)})')
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
        raise _tf_config_error(
            f'task index {brief(index, 40)} is not one of the {len(cluster[kind])} "{kind}" task(s) '
            f"(0 to {len(cluster[kind]) - 1})"
        )
    return {"cluster": cluster, "task": {"type": kind, "index": index}}


def _listen(port):
    """A listening socket on `port` of every interface (None where it cannot be had)."""
    import socket

    for family, address in ((socket.AF_INET6, "::"), (socket.AF_INET, "")):
        try:
            listener = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            listener.bind((address, port))
            listener.listen(64)
            listener.setblocking(False)
            return listener
        except OSError:
            listener.close()
    return None


def _answers(host, port, timeout):
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_workers(tf_config, timeout):
    """Waits until every other task of the cluster accepts a TCP connection.

    Meanwhile this task's own port answers the others' probes (a listening socket, closed
    before TensorFlow's server takes the port). The wait is a Python loop, so Ctrl-C and
    SIGTERM stop it.

    Raises:
        KsegError: a task did not answer within `timeout` seconds; the message names it.
    """
    own_kind, own_index = tf_config["task"]["type"], tf_config["task"]["index"]
    if own_kind == "evaluator":  # not part of the collective
        return
    cluster = tf_config["cluster"]
    peers = [
        (kind, index, address.strip())
        for kind in cluster if kind != "evaluator"
        for index, address in enumerate(cluster[kind])
        if (kind, index) != (own_kind, own_index)
    ]  # fmt: skip
    if not peers:
        return
    _, own_port = parse_address(cluster[own_kind][own_index])
    listener = _listen(own_port)
    deadline = time.monotonic() + timeout
    announced = set()
    try:
        while peers:
            for peer in list(peers):
                _drain(listener)
                host, port = parse_address(peer[2])
                if _answers(host, port, timeout=max(0.05, min(1.0, deadline - time.monotonic()))):
                    peers.remove(peer)
                elif peer not in announced:
                    announced.add(peer)
                    logger.warning(
                        "waiting for %s %d at %s (TF_CONFIG), for up to %g s (--worker-timeout)",
                        peer[0], peer[1], peer[2], timeout,
                    )  # fmt: skip
            if not peers:
                break
            if time.monotonic() >= deadline:
                kind, index, address = peers[0]
                others = f" (and {len(peers) - 1} other task(s))" if len(peers) > 1 else ""
                raise KsegError(
                    f"--strategy multiworker: {kind} {index} at {address}{others} of TF_CONFIG did not "
                    f"answer within {timeout:g} s; start it, fix its address in TF_CONFIG, or wait longer "
                    "with --worker-timeout"
                )
            time.sleep(0.2)
        # The others may still be probing this task: answer them a little longer.
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            _drain(listener)
            time.sleep(0.1)
    finally:
        if listener is not None:
            listener.close()


def _drain(listener):
    if listener is None:
        return
    while True:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        connection.close()


class _Watchdog:
    """Ends the process if a blocking TensorFlow call outlives `timeout` seconds, or a
    SIGTERM/SIGINT arrives while the main thread is stuck in it (Python's own handler runs
    only once the main thread returns from C++)."""

    def __init__(self, timeout, what):
        self.timeout = timeout
        self.what = what
        self._done = None
        self._pipe = None
        self._previous_fd = None

    def __enter__(self):
        import threading

        self._done = threading.Event()
        try:
            read_end, write_end = os.pipe()
            os.set_blocking(write_end, False)
            self._previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
            self._pipe = (read_end, write_end)
        except (ValueError, OSError):  # not the main thread: only the timeout is watched
            self._pipe = None
        threading.Thread(target=self._watch, name="kseg-watchdog", daemon=True).start()
        return self

    def __exit__(self, *exc_info):
        self._done.set()
        if self._pipe is not None:
            signal.set_wakeup_fd(self._previous_fd if self._previous_fd is not None else -1)
            for descriptor in self._pipe:
                os.close(descriptor)
            self._pipe = None

    def _watch(self):
        import select

        deadline = time.monotonic() + self.timeout
        while not self._done.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._exit(f"error: {self.what} did not finish within {self.timeout:g} s (--worker-timeout); "
                           "check that every worker of TF_CONFIG runs and can reach the others", 1)
            pipe = self._pipe
            if pipe is None:
                self._done.wait(min(remaining, 0.5))
                continue
            try:
                ready, _, _ = select.select([pipe[0]], [], [], min(remaining, 0.5))
                received = os.read(pipe[0], 64) if ready else b""
            except OSError:
                return
            for signum in received:
                if signum in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", -1)):
                    # Python's handler gets a moment to stop the command the usual way.
                    if self._done.wait(2.0):
                        return
                    name = signal.Signals(signum).name
                    self._exit(f"interrupted ({name}) during {self.what}", 128 + signum)

    @staticmethod
    def _exit(message, status):
        try:
            sys.stderr.write(message + "\n")
            sys.stderr.flush()
        finally:
            os._exit(status)


def make_strategy(name, worker_timeout=300.0):
    """Returns a tf.distribute strategy for a `--strategy` choice.

    Args:
        name: str. "auto" (MirroredStrategy over the local GPUs when there are several, else
            the default strategy), "none", "mirrored" (all local GPUs, or all logical CPU
            devices when there is no GPU) or "multiworker" (MultiWorkerMirroredStrategy;
            the cluster comes from the TF_CONFIG environment variable).
        worker_timeout: float. Under "multiworker", seconds to wait for the other workers.
    """
    if name == "multiworker":
        # Must come before anything initialises TensorFlow's runtime (even listing
        # logical devices does).
        tf_config = read_tf_config()
        wait_for_workers(tf_config, worker_timeout)
        import tensorflow as tf

        with _Watchdog(worker_timeout, "connecting to the other workers of TF_CONFIG"):
            try:
                return tf.distribute.MultiWorkerMirroredStrategy()
            except (RuntimeError, ValueError) as error:
                raise KsegError(f"--strategy multiworker: {str(error).splitlines()[0][:300]}") from None
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if name == "none" or (name == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    if name in ("auto", "mirrored"):
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy(devices=[device.name for device in devices])
    raise KsegError(f"--strategy: expected auto, none, mirrored or multiworker. Received: {brief(name)}")


def is_chief(strategy="multiworker"):
    """Whether this process writes the run directory.

    Always, except for the non-chief workers of a multi-worker run: TF_CONFIG is read only
    for `strategy` "multiworker" (other strategies ignore it, malformed or not).
    """
    if strategy != "multiworker":
        return True
    tf_config = read_tf_config()
    task, cluster = tf_config["task"], tf_config["cluster"]
    if task["type"] == "chief":
        return True
    return task["type"] == "worker" and task["index"] == 0 and "chief" not in cluster


# -- configuration helpers ----------------------------------------------------------------


def default_run_dir(config):
    """runs/MODEL-DATA-YYYYmmdd-HHMMSS (`lock_run_dir` adds -2, -3, ... when it is taken)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join(runs.DEFAULT_RUNS_ROOT, f"{config.model}-{config.data}-{stamp}")


def lock_run_dir(config, resume):
    """Locks the run folder of `config` (made first if needed) and returns the `RunLock`.

    A fresh run needs a new or empty folder: one holding a run or anything else is refused
    (nothing in it is touched). Without --run-dir a new name is chosen, never one in use.
    Temporaries of killed writes are swept from the whole folder, under the lock.
    """
    if resume:
        lock = RunLock(config.run_dir).acquire()
    elif config.run_dir:
        lock = RunLock(config.run_dir, create=True).acquire()
        try:
            lock.check_fresh()
        except BaseException:
            lock.release(remove_created=True)
            raise
    else:
        base = default_run_dir(config)
        for number in range(1, 10000):
            try:
                lock = RunLock(base if number == 1 else f"{base}-{number}", exclusive_create=True).acquire()
                break
            except FileExistsError:
                continue
        else:
            raise KsegError(f"{base}: no free run folder name; give one with --run-dir")
    removed = sweep_temporaries(lock.run_dir)
    if removed:
        logger.info("%s: removed %d temporary file(s) left by a killed run", lock.run_dir, len(removed))
    return lock


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
    """Verifies the training split; refuses bad data unless `skip_bad` (then warns).

    A split in which no pixel is labelled (every mask value is the ignore label) is
    refused too: there would be nothing to learn.

    Returns:
        int. The number of problems skipped under `skip_bad`.
    """
    report = _verify(spec, config.train_split)
    # verify counts a split without any labelled pixel as a problem of its own: not one that
    # --skip-bad could leave out, so it is refused below with its own message.
    problems = [problem for problem in _dataset_problems(report) if "has no labelled pixel" not in problem]
    shown = "; ".join(str(problem) for problem in problems[:3])
    if problems and not config.skip_bad:
        raise KsegError(
            f"{spec.root}: the {config.train_split} split has {len(problems)} problem(s): {shown}"
            f"{' ...' if len(problems) > 3 else ''}; fix them (see `kseg data verify`) or pass "
            "--skip-bad to leave the bad pairs out"
        )
    labelled = getattr(report, "labelled_pixels", None)
    if labelled is None:
        labelled = count_labelled_pixels(spec, config.train_split)
    if labelled == 0 and getattr(report, "masks_read", None) == 0:
        raise KsegError(
            f"{spec.root}: the {config.train_split} split has no mask that can be read; fix them "
            "(see `kseg data verify`)"
        )
    if labelled == 0:
        raise KsegError(
            f"{spec.root}: the {config.train_split} split has no labelled pixel: every mask value is the "
            f"ignore label {spec.ignore_index} (or maps to it), so there is nothing to learn; check the "
            "masks and the classes file (`kseg data stats` counts the pixels of each class)"
        )
    if problems:
        logger.warning(
            "%d bad pair(s) in %s will be skipped (--skip-bad): %s", len(problems), config.train_split, shown
        )
    return len(problems)


def check_validation_split(config, spec):
    """Refuses a validation split that is missing or in which no pixel is labelled."""
    if config.val_split.lower() == "none":
        return
    spec.pairs(config.val_split)  # a missing validation split is reported before any work
    if count_labelled_pixels(spec, config.val_split) == 0:
        raise KsegError(
            f"{spec.root}: the {config.val_split} split has no labelled pixel: every mask value is the "
            f"ignore label {spec.ignore_index} (or maps to it), so no validation score can be computed; "
            "fix its masks, or train without validation: --val-split none"
        )


def count_labelled_pixels(spec, split, stop_at_first=True):
    """Pixels of a split's masks that hold a class (not the ignore label).

    With `stop_at_first`, reading stops at the first mask holding one (the count is then
    that mask's). Masks that cannot be read are passed over (verification reports them);
    None when none could be read.
    """
    total, readable = 0, 0
    for _, mask_path in spec.pairs(split):
        try:
            mask = spec.to_train_ids(spec.read_raw_mask(mask_path), mask_path)
        except KsegError:
            continue
        readable += 1
        mask = np.asarray(mask)
        total += int(np.count_nonzero((mask != spec.ignore_index) & (mask < spec.num_classes)))
        if total and stop_at_first:
            break
    return total if readable else None


def _verify(spec, split):
    from kseg.data.verify import verify_dataset

    logger.info("verifying the %s split of %s (every pair is read once)", split, spec.name)
    return verify_dataset(spec, split, progress=True)


def _dataset_problems(report):
    """Every problem of a `kseg data verify` report, as one message each."""
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
        source_model = load_model(source, unsafe=unsafe)
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
            if archive.getinfo(STATE_MEMBER).file_size > 64 << 20:
                raise ValueError(f"{STATE_MEMBER} is too large")
            state = json.loads(archive.read(STATE_MEMBER))
        if not isinstance(state, dict):
            raise ValueError(f"{STATE_MEMBER} is not a JSON object")
        return state
    except KeyError:
        raise KsegError(f"{path}: no training state inside; it cannot be resumed from") from None
    except (OSError, zipfile.BadZipFile, ValueError, RecursionError) as error:
        raise KsegError(f"{path}: unreadable checkpoint ({brief(str(error), 200)[1:-1]})") from None


def remove_stale_temporaries(folder):
    """Deletes temporary files and folders killed writes left in `folder` and below it
    (only names `kseg.atomic` gives them; see `kseg.runlock.sweep_temporaries`)."""
    return sweep_temporaries(folder)


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
    # What the weights and optimizer state were made with (FIXED_ON_RESUME, num_classes);
    # empty in checkpoints of kseg versions before it was stored.
    trained_with: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_checkpoint(cls, path):
        """The state stored in a checkpoint, checked (a bad one is a one-line KsegError)."""
        values = read_checkpoint_state(path)
        known = {field.name: field for field in dataclasses.fields(cls)}
        kinds = {"epoch": int, "best_epoch": int, "best_score": (int, float), "history": list,
                 "seed_generators": list, "trained_with": dict}  # fmt: skip
        state = {}
        for key, value in values.items():
            if key not in known:
                continue
            if isinstance(value, bool) or not isinstance(value, kinds[key]):
                raise KsegError(f"{path}: unreadable training state ({key} is {brief(value, 40)})")
            state[key] = value
        return cls(**state)


def trained_with(config, num_classes):
    """What a checkpoint's weights and optimizer state depend on, as stored inside it."""
    return dict({key: getattr(config, key) for key in FIXED_ON_RESUME}, num_classes=int(num_classes))


def check_trained_with(config, state, num_classes, checkpoint, run_dir):
    """Refuses to resume when config.yaml (or the dataset) no longer matches the checkpoint."""
    current = trained_with(config, num_classes)
    for key, saved in state.trained_with.items():
        if key not in current or current[key] == saved:
            continue
        if key != "num_classes" and _same_setting(key, current[key], saved):
            continue  # e.g. "auto" precision, which resolves to the mode the run used
        if key == "num_classes":
            raise KsegError(
                f"{checkpoint}: the checkpoint was trained for {brief(saved)} classes, but the dataset of "
                f"{run_dir}/config.yaml has {current[key]}; use the dataset the run was trained on, or "
                "start a new run (--init-from keeps the matching layers)"
            )
        raise KsegError(
            f"{run_dir}/config.yaml says {key} {brief(current[key], 60)}, the checkpoint {checkpoint} "
            f"was trained with {brief(saved, 60)}; put {key} back in config.yaml, or start a new run "
            f"(e.g. --init-from {run_dir})"
        )


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

    The run folder is locked while training (a second `train` on it is refused). A fresh
    run needs a new or empty folder; if it fails before its first checkpoint, what it
    wrote is removed again (and the folder, if it made it).

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
        KsegError: bad data or options, missing weights, a NaN loss, a locked or used
            run folder, a full disk.
    """
    if not isinstance(config, TrainConfig):
        raise KsegError(f"train expects a TrainConfig. Received: {type(config).__name__}")
    config = config.replace()  # checks every value again: fields may have been set since
    multiworker = config.strategy == "multiworker"
    if multiworker:
        read_tf_config()  # a malformed TF_CONFIG is refused before any work
    chief = is_chief(config.strategy)
    if resume and not config.run_dir:
        raise KsegError("--resume needs --run-dir, the run directory to continue")
    # Only the chief writes into (and locks) the run directory; other workers write to a
    # scratch folder (saving must still happen on every worker under a multi-worker strategy).
    lock = lock_run_dir(config, resume) if chief else None
    run_dir = lock.run_dir if lock else (config.run_dir or default_run_dir(config))
    if resume and not os.path.isfile(runs.checkpoint_path(run_dir, runs.LAST)):
        if lock is not None:
            lock.release()
        raise KsegError(
            f"{run_dir}: nothing to resume (no {runs.CHECKPOINTS}/{runs.LAST}); start a new run in "
            "another --run-dir"
        )
    write_dir = run_dir if chief else tempfile.mkdtemp(prefix="kseg-worker-")
    failed = True
    try:
        result = _prepare_and_run(config.replace(run_dir=run_dir), resume, verbose, callbacks, unsafe,
                                  chief, write_dir)  # fmt: skip
        failed = False
        return result
    finally:
        if not chief:
            shutil.rmtree(write_dir, ignore_errors=True)
        if lock is not None:
            # A fresh run that stopped before its first checkpoint leaves nothing behind.
            clean = failed and not resume and not os.path.isfile(runs.checkpoint_path(run_dir, runs.LAST))
            if clean:
                lock.remove_run_files()
            lock.release(remove_created=clean)


def _prepare_and_run(config, resume, verbose, callbacks, unsafe, chief, write_dir):
    from kseg.data import get_dataset_spec

    run_dir = config.run_dir
    multiworker = config.strategy == "multiworker"
    state = None
    if resume:
        last_path = runs.checkpoint_path(run_dir, runs.LAST)
        state = RunState.from_checkpoint(last_path)  # read before the model is built
    # The strategy comes first: MultiWorkerMirroredStrategy must exist before other TF work.
    strategy = make_strategy(config.strategy, config.worker_timeout)
    spec = get_dataset_spec(config.data, config.data_dir, config.classes_file)
    if resume:
        check_trained_with(config, state, spec.num_classes, last_path, run_dir)
    skipped = 0 if resume else check_dataset(config, spec)
    check_validation_split(config, spec)

    policy = resolve_precision(config.mixed_precision)
    # The config written into the run holds what was actually used, so a resumed run (on
    # this or another machine) trains the same way.
    resolved = {"mixed_precision": {value: key for key, value in PRECISION_POLICIES.items()}[policy]}
    if config.crop is None and config.data in DEFAULT_CROPS:
        resolved["crop"] = list(DEFAULT_CROPS[config.data])
    class_weights = compute_class_weights(config, spec)  # also checks a given list's length
    if class_weights is not None:
        resolved["class_weights"] = class_weights
    config = config.replace(**resolved)
    with dtype_policy(policy):
        return _run(config, spec, strategy, multiworker, write_dir, run_dir, class_weights,
                    resume, verbose, policy, skipped, list(callbacks), unsafe, chief, state)  # fmt: skip


def _kept(run_dir, epoch):
    if not epoch:
        return "no checkpoint was written yet, so nothing of this run was kept"
    return f"the checkpoints of epoch {epoch} are kept in {run_dir} (continue with --resume)"


def _run(config, spec, strategy, multiworker, write_dir, run_dir, class_weights, resume,
         verbose, policy, skipped, extra_callbacks, unsafe=False, chief=True, resumed_state=None):  # fmt: skip
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
            state = resumed_state or RunState.from_checkpoint(last_path)
            _load_checkpoint_weights(model, last_path, run_dir)
            for variable, value in zip(seed_generator_variables(model), state.seed_generators):
                variable.assign(np.asarray(value, dtype=variable.dtype))
            logger.info("resuming %s after epoch %d (best mIoU %.4f at epoch %d)",
                        run_dir, state.epoch, state.best_score, state.best_epoch)  # fmt: skip
    state.trained_with = trained_with(config, spec.num_classes)
    # The run directory is written once the model exists (so a missing-weights error
    # leaves no empty run behind).
    os.makedirs(os.path.join(write_dir, runs.CHECKPOINTS), exist_ok=True)
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
    if chief:
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
                raise KsegError(
                    f"training stopped: the loss became {value} at epoch {epoch + 1}, step {step} "
                    f"(try a lower --lr, or --mixed-precision off); {_kept(run_dir, state.epoch)}"
                )
            logs = {key: values[-1] for key, values in fitted.history.items()}
            row = {
                "epoch": epoch + 1,
                "loss": _as_float(logs["loss"]),
                "val_loss": _as_float(logs["val_loss"]) if "val_loss" in logs else None,
                "lr": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
                "seconds": round(watcher.train_seconds, 3),
                "images_per_second": round(watcher.images_per_second(config.batch_size), 3),
            }
            for key, what in (("loss", "loss"), ("val_loss", "validation loss")):
                if row[key] is not None and not math.isfinite(row[key]):
                    raise KsegError(
                        f"training stopped: the {what} became {row[key]} at epoch {epoch + 1} (try a lower "
                        f"--lr, or --mixed-precision off); {_kept(run_dir, state.epoch)}"
                    )
            if validate:
                scores = metric.scores()
                for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou"):
                    row[key] = scores[key]
                score = scores["mean_iou"]
            else:
                score = -row["loss"]
            previous_epoch = state.epoch
            state.epoch = epoch + 1
            state.history = [*state.history, row]
            try:
                # A score that is not finite (nothing labelled was validated) never makes a best.
                if math.isfinite(score) and (score > state.best_score or state.best_epoch == 0):
                    state.best_score, state.best_epoch = score, epoch + 1
                    if inference_model is None:
                        inference_model = keras.Model.from_config(model.get_config())
                    inference_model.set_weights(model.get_weights())
                    save_checkpoint(inference_model, best_path)
                state.seed_generators = [
                    np.asarray(keras.ops.convert_to_numpy(v)).tolist() for v in seed_generator_variables(model)
                ]
                save_checkpoint(model, runs.checkpoint_path(write_dir, runs.LAST), dataclasses.asdict(state))
                if chief:
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
            except DiskFullError as error:
                kept = _kept(run_dir, previous_epoch).replace("(continue", "(free some space, then continue")
                raise DiskFullError(f"training stopped at epoch {epoch + 1}: {error}; {kept}") from None
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


def _as_float(value):
    return float(np.asarray(value).reshape(-1)[0])


def _load_checkpoint_weights(model, path, run_dir):
    """Loads a checkpoint's weights and optimizer state; any mismatch is one short line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except Exception as error:
            if is_disk_full(error) or isinstance(error, (KeyboardInterrupt, MemoryError)):
                raise
            first = " ".join(str(error).strip().splitlines()[0].split()) if str(error).strip() else ""
            raise KsegError(
                f"{path}: cannot resume from this checkpoint: it does not fit the model {run_dir}/config.yaml "
                f"describes ({first[:160] or type(error).__name__}); restore config.yaml as it was, or start "
                "a new run"
            ) from None
    skipped_loading = [str(w.message) for w in caught if "Skipping variable loading" in str(w.message)]
    if skipped_loading:  # keras only warns when optimizer or layer state does not fit
        first = " ".join(skipped_loading[0].split())
        raise KsegError(
            f"{path}: the checkpoint does not fit this run ({first[:160]}); restore {run_dir}/config.yaml "
            "as it was, or start a new run"
        )


def _format(value):
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"
