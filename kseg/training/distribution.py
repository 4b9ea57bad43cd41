"""Where and how training runs: dtype policy, tf.distribute strategy, multi-worker setup.

Under the JAX and PyTorch backends the strategy is keras.distribution's data parallelism
(`KerasDistribution`); multi-worker training stays TensorFlow-only. `--mixed-precision
auto` is `choose_auto_precision`: float16 on a CUDA GPU, bfloat16 on a CPU with native
bfloat16, float32 otherwise.

Under `--strategy multiworker` TF_CONFIG is checked first (`read_tf_config`), the other
workers are waited for (`wait_for_workers`: at most `worker_timeout` seconds, naming the
missing one; Ctrl-C and SIGTERM stop the wait), and only the chief (`is_chief`) writes and
locks the run folder. Other strategies ignore TF_CONFIG.
"""

import contextlib
import json
import logging
import os
import select
import signal
import socket
import sys
import threading
import time

import keras

from kseg.cpu import native_bf16_flags, read_cpuinfo
from kseg.errors import KsegError
from kseg.files import brief

logger = logging.getLogger("kseg")

PRECISION_POLICIES = {"off": "float32", "fp16": "mixed_float16", "bf16": "mixed_bfloat16"}
PRECISION_MODES = {policy: mode for mode, policy in PRECISION_POLICIES.items()}  # policy -> --mixed-precision


# The keras backend in use: "tensorflow", "jax", "torch" or "numpy".
keras_backend = keras.backend.backend


def choose_auto_precision(cuda_gpu, cpuinfo):
    """What `--mixed-precision auto` picks, and why: (policy name, reason).

    mixed_float16 on a CUDA GPU (tensor cores; keras scales the loss), mixed_bfloat16 on a
    CPU that computes bfloat16 natively (AVX512-BF16 or AMX), float32 otherwise.

    Args:
        cuda_gpu: bool. Whether the backend sees a CUDA GPU.
        cpuinfo: str. The text of /proc/cpuinfo ("" when unknown).
    """
    if cuda_gpu:
        return "mixed_float16", "a CUDA GPU is visible"
    flags = native_bf16_flags(cpuinfo)
    if flags:
        return "mixed_bfloat16", f"no CUDA GPU; the CPU computes bfloat16 natively ({', '.join(flags)})"
    return "float32", "no CUDA GPU, and the CPU has no native bfloat16 (no avx512_bf16 or amx_bf16 flag)"


def cuda_gpu_visible(backend=None):
    """Whether the keras backend (default: the one in use) sees a CUDA GPU."""
    backend = backend or keras_backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        try:
            return any(device.platform in ("gpu", "cuda") for device in jax.devices("gpu"))
        except RuntimeError:  # no GPU backend
            return False
    if backend == "torch":
        import torch

        return bool(torch.cuda.is_available())
    return False


_AUTO_CHOICE = {}


def auto_precision():
    """(policy, reason) of `--mixed-precision auto` on this machine and backend (cached)."""
    backend = keras_backend()
    if backend not in _AUTO_CHOICE:
        _AUTO_CHOICE[backend] = choose_auto_precision(cuda_gpu_visible(backend), read_cpuinfo())
    return _AUTO_CHOICE[backend]


def resolve_precision(mode, warn=False):
    """Returns the keras dtype policy name for a `--mixed-precision` mode.

    Args:
        mode: str. "auto" (see `choose_auto_precision`), "off", "fp16" or "bf16".
        warn: bool. Log `precision_warning`'s line when the mode is a slow choice here.
    """
    if mode == "auto":
        return auto_precision()[0]
    if not isinstance(mode, str) or mode not in PRECISION_POLICIES:  # e.g. a checkpoint's trained_with
        raise KsegError(f"--mixed-precision: expected auto, off, fp16 or bf16. Received: {brief(mode)}")
    if warn and mode == "fp16" and (message := precision_warning(mode, cuda_gpu_visible())):
        logger.warning("%s", message)
    return PRECISION_POLICIES[mode]


def precision_warning(mode, cuda_gpu):
    """One line when `--mixed-precision mode` is a slow choice on this machine, else None.

    float16 is fast on CUDA GPUs (tensor cores); x86 CPUs have no float16 arithmetic that
    TensorFlow uses, so it is emulated, converting every operand, and training crawls.

    Args:
        mode: str. The --mixed-precision mode asked for.
        cuda_gpu: bool. Whether the backend sees a CUDA GPU.
    """
    if mode != "fp16" or cuda_gpu:
        return None
    return ("--mixed-precision fp16 without a CUDA GPU: a CPU emulates float16, which makes training very "
            "slow; use --mixed-precision auto (bf16 where the CPU computes it natively, else float32), bf16 "
            "or off")  # fmt: skip


@contextlib.contextmanager
def dtype_policy(name):
    """Sets keras' global dtype policy `name` (e.g. "mixed_bfloat16") for the block, then
    restores the previous one."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


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
    if not host or any(character.isspace() for character in host) or not (port.isascii() and port.isdigit()):
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
    _check_cluster(cluster)
    return {"cluster": cluster, "task": _check_task(value.get("task"), cluster)}


def _check_cluster(cluster):
    """Refuses a TF_CONFIG "cluster" that is not task type -> distinct "host:port" list."""
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
    # Host names are compared without case, ports as numbers: "H:01" is "h:1".
    addresses = [parse_address(address) for kind in cluster for address in cluster[kind]]
    if len({(host.lower(), port) for host, port in addresses}) != len(addresses):
        raise _tf_config_error("two tasks of the cluster have the same host:port")


def _check_task(task, cluster):
    """{"type": str, "index": int} of a TF_CONFIG "task", which must be one of the cluster's."""
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
    return {"type": kind, "index": index}


def _listen(port):
    """A listening socket on `port` of every interface (None where it cannot be had)."""
    for family in (socket.AF_INET6, socket.AF_INET):
        try:
            listener = socket.create_server(
                ("", port), family=family, backlog=64, dualstack_ipv6=family == socket.AF_INET6
            )
        except (OSError, ValueError):  # ValueError: no dual-stack IPv6 here
            continue
        listener.setblocking(False)
        return listener
    return None


def _answers(host, port, timeout):
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


class Watchdog:
    """Ends the process if a blocking TensorFlow call outlives `timeout` seconds, or a
    SIGTERM/SIGINT arrives while the main thread is stuck in it (Python's own handler runs
    only once the main thread returns from C++)."""

    def __init__(self, timeout, what):
        self.timeout = timeout
        self.what = what
        self._done = None
        self._pipe = None
        self._previous_fd = None
        self._thread = None

    def __enter__(self):
        self._done = threading.Event()
        self._pipe = os.pipe()
        try:
            os.set_blocking(self._pipe[1], False)
            self._previous_fd = signal.set_wakeup_fd(self._pipe[1], warn_on_full_buffer=False)
        except (ValueError, OSError):  # not the main thread: only the timeout is watched
            for descriptor in self._pipe:
                os.close(descriptor)
            self._pipe = None
        self._thread = threading.Thread(target=self._watch, name="kseg-watchdog", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._done.set()
        if self._pipe is not None:
            signal.set_wakeup_fd(self._previous_fd)  # -1 where there was none
            with contextlib.suppress(OSError):  # a full pipe: select returns at once anyway
                os.write(self._pipe[1], b"\0")  # wakes the thread's select at once
        # The pipe is closed only once the thread is gone: a descriptor closed under its
        # select would be reused by the next file opened, and the thread would read from it.
        self._thread.join()
        if self._pipe is not None:
            for descriptor in self._pipe:
                os.close(descriptor)
            self._pipe = None

    def _watch(self):
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


def check_strategy_backend(name):
    """Refuses `--strategy multiworker` under a keras backend other than TensorFlow."""
    if name == "multiworker" and keras_backend() != "tensorflow":
        raise KsegError(
            f"--strategy multiworker needs KERAS_BACKEND=tensorflow (TF_CONFIG, tf.distribute); under "
            f"{keras_backend()} use --strategy mirrored (all local devices) or auto"
        )


class KerasDistribution:
    """Stands in for a tf.distribute strategy under the JAX and PyTorch backends.

    Args:
        distribution: keras.distribution.Distribution or None (one device).
        devices: int. Devices a step's batch is split over.
    """

    def __init__(self, distribution=None, devices=1):
        self.distribution = distribution
        self.num_replicas_in_sync = int(devices)

    def scope(self):
        return self.distribution.scope() if self.distribution is not None else contextlib.nullcontext()


def _keras_distribution(name):
    """The data parallelism of a --strategy choice ("auto", "none" or "mirrored") under
    keras.distribution (JAX)."""
    backend = keras_backend()
    if name == "mirrored" and backend == "torch":
        import torch

        if torch.cuda.device_count() > 1:
            raise KsegError("--strategy mirrored: several GPUs need KERAS_BACKEND=jax or tensorflow; "
                            "under torch kseg trains on one device (--strategy none)")  # fmt: skip
    if name == "none" or backend != "jax":
        return KerasDistribution()
    devices = keras.distribution.list_devices()
    accelerators = [device for device in devices if not device.lower().startswith("cpu")]
    # "auto" spreads over several accelerators only; "mirrored" over the CPU devices too
    devices = accelerators or (devices if name == "mirrored" else [])
    if len(devices) < 2:
        return KerasDistribution()
    distribution = keras.distribution.DataParallel(devices=devices)
    return KerasDistribution(distribution, len(devices))


def make_strategy(name, worker_timeout=300.0):
    """Returns a tf.distribute strategy for a `--strategy` choice.

    Under the JAX and PyTorch backends it is a `KerasDistribution` instead: "mirrored" is
    keras.distribution's DataParallel over all local devices (JAX; the GPUs, or the CPU
    devices when there is none), "auto" the same when there are several GPUs, otherwise
    one device; "multiworker" is refused.

    Args:
        name: str. "auto" (MirroredStrategy over the local GPUs when there are several, else
            the default strategy), "none", "mirrored" (all local GPUs, or all logical CPU
            devices when there is no GPU) or "multiworker" (MultiWorkerMirroredStrategy;
            the cluster comes from the TF_CONFIG environment variable).
        worker_timeout: float. Under "multiworker", seconds to wait for the other workers.
    """
    check_strategy_backend(name)
    if name not in ("auto", "none", "mirrored", "multiworker"):
        raise KsegError(f"--strategy: expected auto, none, mirrored or multiworker. Received: {brief(name)}")
    if keras_backend() != "tensorflow":
        return _keras_distribution(name)
    import tensorflow as tf

    if name == "multiworker":
        # Must come before anything initialises TensorFlow's runtime (even listing
        # logical devices does).
        tf_config = read_tf_config()
        wait_for_workers(tf_config, worker_timeout)
        with Watchdog(worker_timeout, "connecting to the other workers of TF_CONFIG"):
            try:
                return tf.distribute.MultiWorkerMirroredStrategy()
            except (RuntimeError, ValueError) as error:
                raise KsegError(f"--strategy multiworker: {str(error).splitlines()[0][:300]}") from None
    gpus = tf.config.list_physical_devices("GPU")
    if name == "none" or (name == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy(devices=[device.name for device in devices])


def is_chief(strategy="multiworker"):
    """Whether this process writes the run directory.

    Always, except for the non-chief workers of a multi-worker run: TF_CONFIG is read only
    for `strategy` "multiworker" (other strategies ignore it, malformed or not).
    """
    if strategy != "multiworker":
        return True
    tf_config = read_tf_config()
    task = tf_config["task"]
    first_worker = task == {"type": "worker", "index": 0}
    return task["type"] == "chief" or (first_worker and "chief" not in tf_config["cluster"])


class MultiWorkerModel(keras.Model):
    """A functional model whose step logs have shape (1,) instead of ().

    Under MultiWorkerMirroredStrategy keras 3.15 combines each step's logs across workers
    with a mean over axis 0, which fails for scalars (every loss and metric). Epoch-end
    results are read from the metrics themselves and come out as scalars as usual.
    """

    def train_step(self, data):
        return _as_vectors(super().train_step(data))

    def test_step(self, data):
        return _as_vectors(super().test_step(data))


def _as_vectors(logs):
    return {key: keras.ops.reshape(value, (1,)) for key, value in logs.items()}


