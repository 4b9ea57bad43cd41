"""Training against hostile conditions: a second process on the same run folder, a folder
that is not kseg's, temporaries of killed runs, numbers that are not numbers, a NaN
validation loss, masks with nothing labelled, a bad or unreachable TF_CONFIG cluster, a
config.yaml edited under a checkpoint, and a full disk.

Locks and signals are tested with real subprocesses; everything else in-process.
"""

import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zipfile

import cv2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from kseg.cli.main import cli

from kseg import runs
from kseg.config import TrainConfig, resolve
from kseg.errors import KsegError
from kseg.models.saving import load_model
from kseg.training.lock import LOCK_NAME, RunLock, RunLockedError, is_temporary_name, sweep_temporaries

DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "signal_driver.py")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from kseg.data.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(
        str(tmp_path_factory.mktemp("hostile") / "synthetic"), num_train=4, num_val=2, size=(32, 32), seed=5
    )


def tiny(data, run_dir, **changes):
    values = dict(model="fcn8s", data="synthetic", data_dir=data, weights="none", width=0.0625, epochs=1,
                  batch_size=4, crop=[32, 32], optimizer="adam", lr=1e-3, dropout=0.0,
                  mixed_precision="off", run_dir=None if run_dir is None else str(run_dir))  # fmt: skip
    values.update(changes)
    return TrainConfig(**values)


def tiny_options(data):
    return ["--data", "synthetic", "--data-dir", data, "--weights", "none", "--width", "0.0625",
            "--batch-size", "4", "--crop", "32x32", "--optimizer", "adam", "--mixed-precision", "off",
            "--quiet"]  # fmt: skip


def digest(folder):
    """SHA-256 over every file and folder name below `folder` and every file's content."""
    hasher = hashlib.sha256()
    for parent, folders, files in sorted(os.walk(folder)):
        for name in sorted(folders) + sorted(files):
            path = os.path.join(parent, name)
            hasher.update(os.path.relpath(path, folder).encode())
            if os.path.isfile(path):
                with open(path, "rb") as handle:
                    hasher.update(handle.read())
    return hasher.hexdigest()


def error_line(result):
    """The one `error: ...` line of a failed command (and that it is the only one)."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert result.exit_code != 0, result.output
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert len(errors[0]) < 600, errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def finished_run(data, tmp_path_factory):
    from kseg.training import train

    return train(tiny(data, tmp_path_factory.mktemp("finished") / "run"), verbose=0)


# -- the run folder: refused, never overwritten ------------------------------------------


def test_a_users_folder_is_refused_and_left_byte_identical(data, tmp_path):
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    (folder / ".hidden").write_bytes(b"\x00\x01")
    (folder / "sub" / "config.yaml").write_text("not kseg's")
    before = digest(folder)
    result = CliRunner().invoke(cli, ["train", *tiny_options(data), "--run-dir", str(folder)])
    line = error_line(result)
    assert "not empty" in line and "another --run-dir" in line and str(folder) in line
    assert digest(folder) == before  # no lock file left, nothing changed


def test_a_finished_run_is_refused_without_resume(finished_run):
    before = digest(finished_run)
    result = CliRunner().invoke(cli, ["train", "--data", "synthetic", "--run-dir", finished_run])
    line = error_line(result)
    assert "--resume" in line and "already holds a kseg run" in line
    assert digest(finished_run) == before


def test_run_dir_that_is_a_file_is_refused(data, tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    result = CliRunner().invoke(cli, ["train", *tiny_options(data), "--run-dir", str(path)])
    assert "not a folder" in error_line(result)
    assert path.read_text() == "x"


def test_an_empty_folder_is_accepted_and_default_names_never_collide(data, tmp_path, monkeypatch):
    from kseg.training import lock as training_lock

    empty = tmp_path / "empty"
    empty.mkdir()
    lock = training_lock.lock_run_dir(tiny(data, empty), resume=False)
    assert os.listdir(empty) == [LOCK_NAME]
    lock.release(remove_created=True)
    assert os.path.isdir(empty) and os.listdir(empty) == []  # not ours to remove

    monkeypatch.setattr(runs, "DEFAULT_RUNS_ROOT", str(tmp_path / "runs"))
    monkeypatch.setattr(training_lock.time, "strftime", lambda pattern: "20240101-000000")
    taken = tmp_path / "runs" / "fcn8s-synthetic-20240101-000000"
    taken.mkdir(parents=True)
    (tmp_path / "runs" / "fcn8s-synthetic-20240101-000000-2").write_text("a file of that name")
    lock = training_lock.lock_run_dir(tiny(data, None), resume=False)
    try:
        assert lock.run_dir.endswith("fcn8s-synthetic-20240101-000000-3")
    finally:
        lock.release(remove_created=True)
    assert not os.path.exists(lock.run_dir)


def test_a_failed_fresh_run_leaves_nothing_behind(data, tmp_path):
    from kseg.training import train

    run_dir = tmp_path / "deep" / "run"
    with pytest.raises(KsegError, match="no such model file or run directory"):
        train(tiny(data, run_dir, init_from=str(tmp_path / "missing")), verbose=0)
    assert not os.path.exists(tmp_path / "deep")


def test_a_failed_fresh_run_that_cannot_clean_up_still_frees_the_lock(data, tmp_path, monkeypatch, caplog):
    from kseg.training import train

    def cannot_remove(self):
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(self.run_dir, "config.yaml"))

    monkeypatch.setattr(RunLock, "remove_run_files", cannot_remove)
    run_dir = tmp_path / "run"
    with pytest.raises(KsegError, match="no such model file or run directory"):  # the error that stopped it
        train(tiny(data, run_dir, init_from=str(tmp_path / "missing")), verbose=0)
    assert "cannot remove what this failed run wrote" in caplog.text
    assert not os.path.exists(run_dir / LOCK_NAME)
    RunLock(run_dir, create=True).acquire().release(remove_created=True)  # not held any more


def test_a_run_file_that_cannot_be_removed_does_not_keep_the_others(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    lock = RunLock(run_dir, create=True).acquire()
    for name in ("config.yaml", "classes.json", "log.csv", ".log.csv.abcd1234.tmp.csv"):
        (run_dir / name).write_text("x")
    (run_dir / "checkpoints").mkdir()
    real_remove = os.remove

    def cannot_remove_config(path, *args, **kwargs):
        if os.fspath(path).endswith("config.yaml"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_remove(path, *args, **kwargs)

    monkeypatch.setattr(os, "remove", cannot_remove_config)
    try:
        with pytest.raises(PermissionError, match="config.yaml"):
            lock.remove_run_files()
        assert sorted(os.listdir(run_dir)) == [LOCK_NAME, "config.yaml"]
    finally:
        lock.release()


def test_lock_is_exclusive_and_released(tmp_path):
    first = RunLock(tmp_path / "run", create=True).acquire()
    with pytest.raises(RunLockedError, match=rf"another kseg process \(pid {os.getpid()}\); wait for it"):
        RunLock(tmp_path / "run").acquire()
    first.release()
    with RunLock(tmp_path / "run"):
        pass
    assert os.listdir(tmp_path / "run") == []
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / LOCK_NAME).write_text("a user's file")
    with pytest.raises(KsegError, match="kseg did not write"):
        RunLock(tmp_path / "other").acquire()
    assert (tmp_path / "other" / LOCK_NAME).read_text() == "a user's file"


def test_a_lock_file_that_cannot_be_made_leaves_no_folder_kseg_made(tmp_path, monkeypatch):
    from kseg.errors import DiskFullError

    real_open = os.open

    def no_space(path, *args, **kwargs):
        if os.fspath(path).endswith(LOCK_NAME):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_space)
    (tmp_path / "mine").mkdir()
    for run_dir in (tmp_path / "deep" / "run", tmp_path / "mine" / "run"):
        with pytest.raises(DiskFullError, match="cannot create its lock file: no space left on device"):
            RunLock(run_dir, create=True).acquire()
    assert sorted(os.listdir(tmp_path)) == ["mine"]  # a folder kseg did not make is kept
    assert os.listdir(tmp_path / "mine") == []


def test_a_lock_that_cannot_be_taken_leaves_no_lock_file_or_folder_kseg_made(tmp_path, monkeypatch):
    import fcntl

    def no_locks(descriptor, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(KsegError, match="cannot lock it"):
        RunLock(tmp_path / "deep" / "run", create=True).acquire()
    assert os.listdir(tmp_path) == []


def test_sweep_removes_only_kseg_temporaries_everywhere(tmp_path):
    run = tmp_path / "run"
    stale = [
        "checkpoints/.last.keras.abcd1234.tmp.keras", ".config.yaml.k2_9zzzz.tmp.yaml",
        ".log.csv.q1w2e3r4.tmp.csv", ".training_curves.png.aaaaaaaa.tmp.png",
        "tensorboard/train/.events.x.bbbbbbbb.tmp", "checkpoints/.best.keras.cccccccc.old",
    ]  # fmt: skip
    kept = [
        LOCK_NAME, ".notes.tmp", ".last.keras.abcd1234.tmp.csv", ".x.ABCDEFGH.tmp", ".x.abc.tmp",
        "checkpoints/last.keras", "tensorboard/train/events.out", "plain.tmp", ".a.abcdefgh.tmpx",
    ]  # fmt: skip
    for name in stale + kept:
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".old"):
            (run / name).mkdir()
            (run / name / "inside").write_text("x")
        else:
            (run / name).write_text("x")
    removed = sweep_temporaries(str(run))
    assert sorted(os.path.relpath(path, run) for path in removed) == sorted(stale)
    for name in kept:
        assert (run / name).exists(), name
    assert is_temporary_name(".last.keras.abcd1234.tmp.keras")
    assert not is_temporary_name(".last.keras.abcd1234.tmp.yaml")


def test_a_temporary_that_cannot_be_removed_neither_stops_the_run_nor_keeps_it_locked(data, tmp_path, monkeypatch):
    from kseg.training import lock as training_lock

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    stuck, gone = run_dir / ".log.csv.q1w2e3r4.tmp.csv", run_dir / "checkpoints" / ".last.keras.abcd1234.tmp.keras"
    for path in (stuck, gone):
        path.write_text("x")
    real_remove = os.remove

    def read_only(path, *args, **kwargs):
        if os.fspath(path) == str(stuck):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_remove(path, *args, **kwargs)

    monkeypatch.setattr(os, "remove", read_only)
    assert sweep_temporaries(str(run_dir)) == [str(gone)]  # only what was removed is counted
    lock = training_lock.lock_run_dir(tiny(data, run_dir), resume=False)
    lock.release()
    RunLock(run_dir).acquire().release()  # not held any more
    assert stuck.exists()


@pytest.mark.slow
def test_second_train_refused_while_first_runs_and_sigkill_frees_the_lock(data, tmp_path):
    """The first run stops inside its write of log.csv (epoch 1 checkpointed) and is
    SIGKILLed there; meanwhile a second run (fresh or --resume) is refused."""
    from kseg.training import read_checkpoint_state, train

    run_dir = str(tmp_path / "run")
    process = subprocess.Popen(
        [sys.executable, DRIVER, "write", "log.csv", "--", "train", *tiny_options(data), "--epochs", "2",
         "--run-dir", run_dir],  # fmt: skip
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
    )  # fmt: skip
    output = []
    try:
        for line in process.stdout:
            output.append(line)
            if "PAUSED " in line:
                break
        else:
            raise AssertionError("the first run ended early:\n" + "".join(output)[-3000:])
        started = time.monotonic()
        with pytest.raises(RunLockedError, match=rf"is being trained by another kseg process \(pid {process.pid}\)"):
            train(tiny(data, run_dir, epochs=2), verbose=0)
        result = CliRunner().invoke(cli, ["train", "--run-dir", run_dir, "--resume", "--quiet"])
        assert "being trained by another kseg process" in error_line(result)
        assert time.monotonic() - started < 30  # refused at once, not after training
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    temporaries = [name for name in os.listdir(run_dir) if is_temporary_name(name)]
    assert temporaries and LOCK_NAME in os.listdir(run_dir)  # what the kill left
    (tmp_path / "run" / ".my-notes").write_text("mine")

    train(resolve(resume_dir=run_dir), resume=True, verbose=0)
    assert read_checkpoint_state(runs.checkpoint_path(run_dir, runs.LAST))["epoch"] == 2
    left = os.listdir(run_dir)
    assert not [name for name in left if is_temporary_name(name)] and LOCK_NAME not in left
    assert ".my-notes" in left


# -- numbers -------------------------------------------------------------------------------

BAD_NUMBERS = [
    ("--lr", "inf"), ("--lr", "nan"), ("--lr", "-1"), ("--lr", "11"), ("--lr", "1e400"),
    ("--momentum", "nan"), ("--momentum", "1"), ("--weight-decay", "inf"), ("--weight-decay", "-0.1"),
    ("--width", "nan"), ("--width", "0"), ("--dropout", "1"), ("--dropout", "nan"), ("--epochs", "0"),
    ("--epochs", "100001"), ("--epochs", "2.5"), ("--batch-size", "5000"), ("--batch-size", "nan"),
    ("--seed", "-1"), ("--seed", "99999999999"), ("--val-steps", "0"), ("--steps-per-epoch", "inf"),
    ("--class-weights", "1,inf,nan"), ("--class-weights", "1,-2"), ("--class-weights", "0,0"),
    ("--crop", "20000x20000"), ("--crop", "0x5"), ("--worker-timeout", "0"), ("--worker-timeout", "nan"),
]  # fmt: skip


@pytest.mark.parametrize("option, value", BAD_NUMBERS)
def test_bad_numbers_on_the_command_line(option, value, data, tmp_path):
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", *tiny_options(data), "--run-dir", str(run_dir), option, value])
    assert option in error_line(result)
    assert not run_dir.exists()


YAML_BAD = [
    ("lr", ".inf"), ("lr", ".nan"), ("lr", "-.inf"), ("momentum", ".nan"), ("weight_decay", ".inf"),
    ("width", ".nan"), ("dropout", "1.5"), ("epochs", ".inf"), ("epochs", "0"), ("batch_size", "100000"),
    ("seed", "-1"), ("class_weights", "[1, .inf, .nan]"), ("class_weights", "[1, -1]"), ("crop", "[99999, 3]"),
    ("val_batch_size", "0"), ("lr", "true"), ("worker_timeout", "-5"),
]  # fmt: skip


@pytest.mark.parametrize("key, value", YAML_BAD)
def test_bad_numbers_in_a_yaml_config(key, value, data, tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(f"data: synthetic\n{key}: {value}\n")
    result = CliRunner().invoke(cli, ["train", "--config", str(path), "--run-dir", str(tmp_path / "run")])
    line = error_line(result)
    assert str(path) in line and key in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("key, value", [
    ("lr", float("inf")), ("lr", float("nan")), ("momentum", float("nan")), ("weight_decay", float("inf")),
    ("width", float("nan")), ("dropout", -0.1), ("seed", -1), ("epochs", 10**9), ("batch_size", 0),
    ("class_weights", [1.0, float("nan")]), ("crop", [32, 10**6]),
])  # fmt: skip
def test_bad_numbers_from_python(key, value, data, tmp_path):
    with pytest.raises(KsegError, match=key):
        TrainConfig(**{key: value})
    config = tiny(data, tmp_path / "run")
    with pytest.raises(KsegError, match=key):
        setattr(config, key, value)  # a change after it was made is checked at once
    assert getattr(config, key) == getattr(tiny(data, tmp_path / "run"), key)  # and not kept
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content", [
    b"a: &a [1, 2]\nb: *a\n",  # an alias (the seed of an alias bomb)
    b"[" * 200 + b"]" * 200,  # deeply nested
    b"\xff\xfe\x00\x01 binary",
    b"- 1\n- 2\n",  # a list
    b"'" + b"x" * (10 << 20) + b"'\n",  # a 10 MB string
    b"epochs: 1\n" + b"x" * 5000 + b": 1\n",  # a long unknown key
    b"model: !!python/object/apply:os.system ['true']\n",
])  # fmt: skip
def test_hostile_yaml_configs_are_one_bounded_line(content, tmp_path):
    path = tmp_path / "train.yaml"
    path.write_bytes(content)
    result = CliRunner().invoke(cli, ["train", "--config", str(path)])
    assert str(path) in error_line(result)


def test_a_fifo_config_is_refused_without_blocking(tmp_path):
    path = tmp_path / "config.yaml"
    os.mkfifo(path)
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["train", "--config", str(path)])
    assert "FIFO" in error_line(result) and time.monotonic() - started < 20


# -- the loss and the data -----------------------------------------------------------------


def poison_validation(at_epoch):
    """A callback that sets a weight to NaN when epoch `at_epoch` (0-based) validates."""
    import keras

    class Poison(keras.callbacks.Callback):
        epoch = None

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_test_begin(self, logs=None):
            if self.epoch == at_epoch:
                variable = self.model.trainable_variables[0]
                variable.assign(np.full(variable.shape, np.nan, variable.dtype))

    return Poison()


def test_nan_validation_loss_never_makes_a_best_checkpoint(data, tmp_path):
    from kseg.training import read_checkpoint_state, train

    run_dir = tmp_path / "first"
    with pytest.raises(KsegError, match=r"(validation loss|weight \S+) became (nan|inf|NaN) at epoch 1") as error:
        train(tiny(data, run_dir), verbose=0, callbacks=[poison_validation(0)])
    assert "\n" not in str(error.value)
    assert not os.path.exists(runs.checkpoint_path(run_dir, runs.BEST))

    run_dir = tmp_path / "second"
    diverged = r"(validation loss|weight \S+) became (nan|inf|NaN)"
    with pytest.raises(KsegError, match=diverged + " at epoch 2.*epoch 1 are kept"):
        train(tiny(data, run_dir, epochs=2), verbose=0, callbacks=[poison_validation(1)])
    state = read_checkpoint_state(runs.checkpoint_path(run_dir, runs.LAST))
    assert state["epoch"] == 1 and state["best_epoch"] == 1
    best = load_model(runs.checkpoint_path(run_dir, runs.BEST))
    assert all(np.isfinite(weight).all() for weight in best.get_weights())


def all_ignore_copy(data, tmp_path, split):
    root = str(tmp_path / f"ignored-{split}")
    shutil.copytree(data, root)
    folder = os.path.join(root, "masks", split)
    for name in os.listdir(folder):
        cv2.imwrite(os.path.join(folder, name), np.full((32, 32), 255, np.uint8))
    return root


@pytest.mark.parametrize("split, advice", [("train", "nothing to learn"), ("val", "--val-split none")])
def test_a_split_with_no_labelled_pixel_is_refused(split, advice, data, tmp_path):
    from kseg.training import train

    root = all_ignore_copy(data, tmp_path, split)
    with pytest.raises(KsegError, match=f"the {split} split has no labelled pixel") as error:
        train(tiny(root, tmp_path / "run"), verbose=0)
    assert advice in str(error.value) and "ignore label 255" in str(error.value)
    assert not (tmp_path / "run").exists()


# -- TF_CONFIG and the multi-worker wait ----------------------------------------------------

BAD_TF_CONFIGS = [
    "not json", "[]", '"worker"', "{}", '{"cluster": []}', '{"cluster": {}}',
    '{"cluster": {"worker": "127.0.0.1:1"}, "task": {"type": "worker", "index": 0}}',
    '{"cluster": {"worker": ["127.0.0.1"]}, "task": {"type": "worker", "index": 0}}',
    '{"cluster": {"worker": ["127.0.0.1:0"]}, "task": {"type": "worker", "index": 0}}',
    '{"cluster": {"worker": ["127.0.0.1:70000"]}, "task": {"type": "worker", "index": 0}}',
    '{"cluster": {"worker": ["127.0.0.1:\u00b2"]}, "task": {"type": "worker", "index": 0}}',  # a digit int() refuses
    '{"cluster": {"worker": ["127.0.0.1:\uff11"]}, "task": {"type": "worker", "index": 0}}',  # a non-ASCII digit
    '{"cluster": {"worker": [5]}, "task": {"type": "worker", "index": 0}}',
    '{"cluster": {"ps": ["h:1"]}, "task": {"type": "ps", "index": 0}}',
    '{"cluster": {"worker": ["h:1", "h:1"]}, "task": {"type": "worker", "index": 0}}',
    '{"cluster": {"chief": ["a:1", "b:1"]}, "task": {"type": "chief", "index": 0}}',
    '{"cluster": {"worker": ["h:1"]}}',
    '{"cluster": {"worker": ["h:1"]}, "task": {"type": "chief", "index": 0}}',
    '{"cluster": {"worker": ["h:1", "h:2"]}, "task": {"type": "worker", "index": 2}}',
    '{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": "0"}}',
    '{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": true}}',
    "[" * 100000 + "]" * 100000,
    '{"cluster": {"worker": ["' + "h" * 5000 + ':1"]}, "task": {"type": "worker", "index": 0}}',
]  # fmt: skip


@pytest.mark.parametrize("value", BAD_TF_CONFIGS)
def test_malformed_tf_config_is_one_line_naming_it(value, monkeypatch):
    from kseg.training.distribution import is_chief, make_strategy, read_tf_config

    monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(KsegError) as error:
        read_tf_config()
    message = str(error.value)
    assert message.startswith("TF_CONFIG: ") and "\n" not in message and len(message) < 400, message
    with pytest.raises(KsegError, match="TF_CONFIG"):
        is_chief("multiworker")
    # Other strategies do not use TF_CONFIG: a malformed one is ignored.
    assert is_chief("none") and is_chief("mirrored")
    make_strategy("none")


@pytest.mark.parametrize("addresses", [["h:1", "H:1"], ["h:1", "h:01"], ["[::1]:5", "::1:5"]])
def test_one_host_port_written_two_ways_is_refused(addresses, monkeypatch):
    from kseg.training.distribution import read_tf_config

    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": addresses},
                                                "task": {"type": "worker", "index": 0}}))  # fmt: skip
    with pytest.raises(KsegError, match="two tasks of the cluster have the same host:port"):
        read_tf_config()


def free_port():
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def start_lonely_worker(data, run_dir, timeout):
    """`kseg train --strategy multiworker` as worker 0 of two, whose peer never starts."""
    own, peer = free_port(), free_port()
    tf_config = {"cluster": {"worker": [f"127.0.0.1:{own}", f"127.0.0.1:{peer}"]},
                 "task": {"type": "worker", "index": 0}}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "kseg.cli", "train", *tiny_options(data), "--strategy", "multiworker",
         "--worker-timeout", str(timeout), "--run-dir", str(run_dir)],  # fmt: skip
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(ENV, TF_CONFIG=json.dumps(tf_config)),
    )  # fmt: skip
    return process, f"127.0.0.1:{peer}"


def test_multiworker_wait_for_a_missing_peer_is_bounded(data, tmp_path):
    process, peer = start_lonely_worker(data, tmp_path / "run", timeout=3)
    try:
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1, output
    assert f"waiting for worker 1 at {peer}" in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"worker 1 at {peer}" in errors[0] and "within 3 s" in errors[0], output
    assert "Traceback" not in output
    assert not (tmp_path / "run").exists()  # the chief's run folder was taken away again


def test_sigterm_stops_the_wait_for_workers(data, tmp_path):
    process, peer = start_lonely_worker(data, tmp_path / "run", timeout=300)
    output = []
    try:
        deadline = time.monotonic() + 120
        for line in process.stdout:
            output.append(line)
            if "waiting for worker 1" in line or time.monotonic() > deadline:
                break
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
        output.append(rest)
        assert time.monotonic() - sent < 15
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 143, "".join(output)
    assert "interrupted (SIGTERM)" in "".join(output)
    assert not (tmp_path / "run").exists()


# -- resume: what the checkpoint was trained with, and a full disk ---------------------------


def test_resume_after_config_yaml_was_edited_says_what_differs(finished_run, tmp_path):
    from kseg.training import train

    run_dir = str(tmp_path / "edited")
    shutil.copytree(finished_run, run_dir)
    path = os.path.join(run_dir, "config.yaml")
    values = yaml.safe_load(open(path))
    values.update(width=0.125, epochs=2)
    with open(path, "w") as handle:
        yaml.safe_dump(values, handle)
    with pytest.raises(KsegError, match=r"config.yaml says width 0.125, the checkpoint .* with 0.0625") as error:
        train(resolve(resume_dir=run_dir), resume=True, verbose=0)
    assert "\n" not in str(error.value) and len(str(error.value)) < 400


def test_resume_of_an_older_checkpoint_that_does_not_fit_is_one_short_line(finished_run, tmp_path):
    from kseg.training import train
    from kseg.training.checkpoints import STATE_MEMBER

    run_dir = str(tmp_path / "old")
    shutil.copytree(finished_run, run_dir)
    last = runs.checkpoint_path(run_dir, runs.LAST)
    rebuilt = last + ".rebuilt"
    with zipfile.ZipFile(last) as source, zipfile.ZipFile(rebuilt, "w") as target:
        for item in source.infolist():
            content = source.read(item)
            if item.filename == STATE_MEMBER:
                state = json.loads(content)
                del state["trained_with"]  # as kseg wrote it before it stored this
                content = json.dumps(state).encode()
            target.writestr(item, content)
    os.replace(rebuilt, last)
    path = os.path.join(run_dir, "config.yaml")
    values = yaml.safe_load(open(path))
    values.update(width=0.125, epochs=2)
    with open(path, "w") as handle:
        yaml.safe_dump(values, handle)
    with pytest.raises(KsegError, match="cannot resume from this checkpoint") as error:
        train(resolve(resume_dir=run_dir), resume=True, verbose=0)
    assert "\n" not in str(error.value) and len(str(error.value)) < 500, str(error.value)


def edit_state(checkpoint, **values):
    """Rewrites the checkpoint with `values` set in its kseg_state.json."""
    from kseg.training.checkpoints import STATE_MEMBER

    rebuilt = checkpoint + ".rebuilt"
    with zipfile.ZipFile(checkpoint) as source, zipfile.ZipFile(rebuilt, "w") as target:
        for item in source.infolist():
            content = source.read(item)
            if item.filename == STATE_MEMBER:
                content = json.dumps(dict(json.loads(content), **values)).encode()
            target.writestr(item, content)
    os.replace(rebuilt, checkpoint)


@pytest.mark.parametrize(
    "history", [[1], [{}], [{"epoch": 1, "loss": "low"}], [{"epoch": 1, "loss": 0.5, "val_loss": "x"}]]
)
def test_resume_from_a_checkpoint_whose_history_is_not_log_rows_is_one_short_line(finished_run, tmp_path, history):
    from kseg.training import train

    run_dir = str(tmp_path / "edited")
    shutil.copytree(finished_run, run_dir)
    edit_state(runs.checkpoint_path(run_dir, runs.LAST), history=history)
    with pytest.raises(KsegError, match="unreadable training state \\(history is") as error:
        train(resolve({"epochs": 2}, resume_dir=run_dir), resume=True, verbose=0)
    assert "\n" not in str(error.value) and len(str(error.value)) < 400, str(error.value)


def test_resume_from_a_checkpoint_with_a_negative_epoch_is_one_short_line(finished_run, tmp_path):
    from kseg.training import train

    run_dir = str(tmp_path / "edited")
    shutil.copytree(finished_run, run_dir)
    edit_state(runs.checkpoint_path(run_dir, runs.LAST), epoch=-2)
    with pytest.raises(KsegError, match="unreadable training state \\(epoch is -2\\)") as error:
        train(resolve({"epochs": 2}, resume_dir=run_dir), resume=True, verbose=0)
    assert "\n" not in str(error.value) and len(str(error.value)) < 400, str(error.value)


@pytest.mark.parametrize("precision", [[1], {"mode": "bf16"}, "banana"])
def test_resume_from_a_checkpoint_trained_with_no_precision_mode_is_one_short_line(finished_run, tmp_path, precision):
    from kseg.training import train

    run_dir = str(tmp_path / "edited")
    shutil.copytree(finished_run, run_dir)
    edit_state(runs.checkpoint_path(run_dir, runs.LAST), trained_with={"mixed_precision": precision})
    with pytest.raises(KsegError, match="--mixed-precision: expected auto, off, fp16 or bf16") as error:
        train(resolve({"epochs": 2}, resume_dir=run_dir), resume=True, verbose=0)
    assert "\n" not in str(error.value) and len(str(error.value)) < 400, str(error.value)


@pytest.mark.parametrize("field, value", [(8, 0x1), (10, 99)])  # encrypted; an unknown compression method
def test_resume_from_a_checkpoint_whose_state_cannot_be_extracted_is_one_line(finished_run, tmp_path, field, value):
    from kseg.training import train

    run_dir = str(tmp_path / "edited")
    shutil.copytree(finished_run, run_dir)
    last = runs.checkpoint_path(run_dir, runs.LAST)
    with open(last, "rb") as handle:
        content = bytearray(handle.read())
    entry = content.rindex(b"PK\x01\x02")  # the central directory entry of kseg_state.json, written last
    assert content[entry + 46 : entry + 61] == b"kseg_state.json"
    struct.pack_into("<H", content, entry + field, value)
    with open(last, "wb") as handle:
        handle.write(content)
    with pytest.raises(KsegError, match="unreadable checkpoint") as error:
        train(resolve({"epochs": 2}, resume_dir=run_dir), resume=True, verbose=0)
    assert "\n" not in str(error.value) and len(str(error.value)) < 400, str(error.value)


def test_resume_from_a_checkpoint_whose_dropout_states_do_not_fit_is_one_short_line(data, tmp_path):
    from kseg.training import train

    finished = train(tiny(data, tmp_path / "run", dropout=0.5), verbose=0)
    for index, states in enumerate([[["a"]], [[1, 2, 3]], [[1e30, 1]], [None]]):
        run_dir = str(tmp_path / f"edited{index}")
        shutil.copytree(finished, run_dir)
        edit_state(runs.checkpoint_path(run_dir, runs.LAST), seed_generators=states)
        with pytest.raises(KsegError, match="unreadable training state \\(seed_generators is") as error:
            train(resolve({"epochs": 2}, resume_dir=run_dir), resume=True, verbose=0)
        assert "\n" not in str(error.value) and len(str(error.value)) < 400, str(error.value)


def test_dropout_states_of_another_count_than_the_models_are_refused():
    import keras

    from kseg.training.checkpoints import restore_seed_generators, seed_generator_states

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dropout(0.5)(keras.layers.Dropout(0.5)(inputs)))
    states = seed_generator_states(model)
    assert len(states) == 2
    restore_seed_generators(model, states, "last.keras")
    restore_seed_generators(model, [], "last.keras")  # a checkpoint of a kseg that did not store them
    for edited in (states[:1], [*states, states[0]]):
        with pytest.raises(KsegError, match=r"last.keras: unreadable training state \(seed_generators is"):
            restore_seed_generators(model, edited, "last.keras")


def test_disk_full_while_writing_the_logs_names_the_checkpoint_just_written(data, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from kseg.training import read_checkpoint_state, train

    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", no_space)  # training_curves.png, after last.keras
    run_dir = tmp_path / "run"
    with pytest.raises(KsegError) as error:
        train(tiny(data, run_dir), verbose=0)
    message = str(error.value)
    assert "no space left on device" in message and "training_curves.png" in message, message
    assert f"the checkpoints of epoch 1 are kept in {run_dir} (free some space, then continue" in message, message
    assert read_checkpoint_state(runs.checkpoint_path(str(run_dir), runs.LAST))["epoch"] == 1


def tensorboard_writers_open():
    return [thread for thread in threading.enumerate() if type(thread).__name__ == "_AsyncWriterThread"]


def test_a_callback_failing_in_set_model_leaves_no_tensorboard_writer_open(data, tmp_path):
    import keras

    from kseg.training import train

    class Broken(keras.callbacks.Callback):
        def set_model(self, model):
            raise RuntimeError("a user's callback failed")

    before = tensorboard_writers_open()
    with pytest.raises(RuntimeError, match="a user's callback failed"):
        train(tiny(data, tmp_path / "run"), verbose=0, callbacks=[Broken()])
    assert tensorboard_writers_open() == before


def test_disk_full_making_the_second_tensorboard_writer_closes_the_first(tmp_path, monkeypatch):
    from kseg.errors import DiskFullError
    from kseg.training import logs

    def no_space_for_validation(log_dir, *args, **kwargs):
        if log_dir.endswith("validation"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return event_file_writer(log_dir, *args, **kwargs)

    event_file_writer = logs.EventFileWriter
    monkeypatch.setattr(logs, "EventFileWriter", no_space_for_validation)
    before = tensorboard_writers_open()
    with pytest.raises(DiskFullError, match="validation: no space left on device"):
        logs.RunLogs(runs.RunDir(str(tmp_path / "run")))
    assert tensorboard_writers_open() == before


def test_a_tensorboard_writer_that_fails_to_close_leaves_no_other_open(tmp_path, monkeypatch):
    from kseg.training import logs

    before = tensorboard_writers_open()
    run_logs = logs.RunLogs(runs.RunDir(str(tmp_path / "run")))
    first = run_logs._writers["train"]
    close = first.close

    def close_then_fail():
        close()
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(first, "close", close_then_fail)
    with pytest.raises(OSError, match="Input/output error"):
        run_logs.close()
    assert tensorboard_writers_open() == before


def test_disk_full_while_checkpointing_stops_with_one_line(finished_run, tmp_path, monkeypatch):
    import keras

    from kseg.training import read_checkpoint_state, train

    run_dir = str(tmp_path / "full")
    shutil.copytree(finished_run, run_dir)
    last = runs.checkpoint_path(run_dir, runs.LAST)
    with open(last, "rb") as handle:
        before = handle.read()

    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", no_space)
    with pytest.raises(KsegError) as error:
        train(resolve({"epochs": 2}, resume_dir=run_dir), resume=True, verbose=0)
    message = str(error.value)
    assert "no space left on device" in message and ".keras" in message and "epoch 1 are kept" in message
    assert "\n" not in message
    with open(last, "rb") as handle:
        assert handle.read() == before
    assert read_checkpoint_state(last)["epoch"] == 1
    assert not [name for name in os.listdir(os.path.dirname(last)) if is_temporary_name(name)]


WATCHED_BLOCK = """
import ctypes, sys
from kseg import signals
from kseg.training.distribution import Watchdog as _Watchdog
signals.install()
libc = ctypes.CDLL(None)
mutex = ctypes.create_string_buffer(64)
libc.pthread_mutex_init(mutex, None)
libc.pthread_mutex_lock(mutex)
print("READY", flush=True)
with _Watchdog(float(sys.argv[1]), "connecting to the other workers"):
    libc.pthread_mutex_lock(mutex)  # a C call that blocks for ever and does not return on signals
"""


@pytest.mark.parametrize("timeout, signum, status, message", [
    (1, None, 1, "did not finish within 1 s"),
    (100, signal.SIGTERM, 143, "interrupted (SIGTERM) during connecting"),
])  # fmt: skip
def test_watchdog_ends_a_blocked_native_call(timeout, signum, status, message):
    process = subprocess.Popen(
        [sys.executable, "-c", WATCHED_BLOCK, str(timeout)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=ENV,
    )  # fmt: skip
    try:
        # TensorFlow may print a line of its own (absl's logging notice) before the script's.
        lines = []
        while "READY" not in lines and len(lines) < 5:
            lines.append(process.stdout.readline().strip())
        assert lines[-1] == "READY", lines
        if signum:
            time.sleep(0.5)
            process.send_signal(signum)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == status and message in output, output


def test_the_watchdog_is_gone_before_its_pipe_is_closed(tmp_path):
    """Its thread reads the signal pipe; were the pipe closed under it, the next file
    opened would get the descriptor's number and the thread would read that file's first
    bytes (a multi-worker run once read its classes.yaml without them)."""
    import threading

    from kseg.files import read_bytes
    from kseg.training.distribution import Watchdog

    content = bytes(range(256)) * 4
    path = tmp_path / "data.bin"
    path.write_bytes(content)
    for _ in range(20):
        with Watchdog(60, "a step"):
            pass
        assert not [thread for thread in threading.enumerate() if thread.name == "kseg-watchdog"]
        assert read_bytes(path) == content


def test_a_watchdog_off_the_main_thread_leaves_no_descriptor_open(monkeypatch):
    """Off the main thread no signal can be watched (`signal.set_wakeup_fd` refuses): the
    pipe made for it is closed at once, and only the timeout is watched."""
    import threading

    from kseg.training.distribution import Watchdog

    opened, closed = [], []
    real_pipe, real_close = os.pipe, os.close

    def pipe():
        ends = real_pipe()
        opened.extend(ends)
        return ends

    def close(descriptor):
        closed.append(descriptor)
        real_close(descriptor)

    monkeypatch.setattr(os, "pipe", pipe)
    monkeypatch.setattr(os, "close", close)

    def enter_and_leave():
        with Watchdog(60, "a step"):
            pass

    thread = threading.Thread(target=enter_and_leave)
    thread.start()
    thread.join()
    assert len(opened) == 2 and set(opened) <= set(closed)


@pytest.mark.parametrize("weights", [[1.0, float("nan"), 1.0], [1.0, float("inf"), 1.0], [1.0, -1.0, 1.0], [0, 0, 0]])
def test_loss_refuses_weights_that_would_poison_it(weights):
    from kseg.losses import MaskedSparseCrossEntropy
    from kseg.metrics import ConfusionMatrixMetric

    with pytest.raises(ValueError, match="class_weights"):
        MaskedSparseCrossEntropy(3, class_weights=weights)
    for bad in (0, -2, 2.5):
        with pytest.raises(ValueError, match="num_classes"):
            MaskedSparseCrossEntropy(bad)
        with pytest.raises(ValueError, match="num_classes"):
            ConfusionMatrixMetric(bad)
