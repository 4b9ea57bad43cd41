"""Every network wait ends: downloads have a stall timeout and an overall deadline, say what
they wait for, and end with one `error:` line naming the address and the way out.

Local servers stand in for the internet: one accepts connections and never answers, one
answers with a large file and then sends a byte every fifth of a second, one refuses
connections. Each verb runs in a real subprocess (download_driver.py sends every download
to the server) with KERAS_HOME in the test's folder and a timeout, so a hang fails the test.
"""

import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import robustness_corpus as corpus

from kseg.download import STALL_VARIABLE, TIMEOUT_VARIABLE, download_timeouts, keras_models_folder, network_deadline
from kseg.errors import KsegError

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "download_driver.py")
TIMEOUT = 240  # seconds; far above every deadline set here, a hang fails the test


class LocalServer:
    """A TCP server on 127.0.0.1 that accepts connections and, with `trickle`, answers with
    the headers of a 100 MB file and then one byte every 0.2 s; else it never answers."""

    def __init__(self, trickle=False):
        self.trickle = trickle
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.stopped = threading.Event()
        self.connections = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/weights.h5"

    def _serve(self):
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            self.connections.append(connection)
            if self.trickle:
                threading.Thread(target=self._trickle, args=(connection,), daemon=True).start()

    def _trickle(self, connection):
        try:
            connection.settimeout(10)
            connection.recv(65536)  # the request
            connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n"
                               b"Content-Length: 100000000\r\n\r\n")
            while not self.stopped.is_set():
                connection.sendall(b"x")
                time.sleep(0.2)
        except OSError:
            pass

    def close(self):
        self.stopped.set()
        self.thread.join()
        self.listener.close()
        for connection in self.connections:
            connection.close()


@pytest.fixture
def silent_server():
    server = LocalServer()
    yield server
    server.close()


@pytest.fixture
def trickling_server():
    server = LocalServer(trickle=True)
    yield server
    server.close()


@pytest.fixture
def refusing_url():
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    return f"http://127.0.0.1:{port}/weights.h5"


def run_kseg(url, arguments, tmp_path, **environment):
    """Runs `kseg ARGUMENTS` with every download sent to `url`; returns (status, output)."""
    home = tmp_path / "keras_home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ, KERAS_HOME=str(home), **environment)
    for name in (STALL_VARIABLE, TIMEOUT_VARIABLE):
        if name not in environment:
            env.pop(name, None)
    process = subprocess.run(
        [sys.executable, DRIVER, url, "--", *arguments], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env=env, timeout=TIMEOUT, cwd=tmp_path,
    )
    return process.returncode, process.stdout


def error_lines(output):
    return [line for line in output.splitlines() if line.startswith("error:")]


def cached_files(tmp_path):
    """What keras' cache under the test's KERAS_HOME holds (a failed download leaves nothing)."""
    folder = tmp_path / "keras_home" / "models"
    return sorted(os.listdir(folder)) if folder.is_dir() else []


def test_a_server_that_never_answers_ends_after_the_stall_timeout(silent_server, tmp_path):
    status, output = run_kseg(silent_server.url, ["weights", "download", "voc-fcn8s"], tmp_path,
                              **{STALL_VARIABLE: "8"})
    assert status == 1, output[-3000:]
    errors = error_lines(output)
    assert len(errors) == 1 and "Traceback" not in output, output[-3000:]
    assert silent_server.url in errors[0] and "no answer for 8 s" in errors[0]
    assert STALL_VARIABLE in errors[0] and "kseg weights convert" in errors[0]
    # said what it waited for, before giving up
    waiting = [line for line in output.splitlines() if line.startswith("waiting for the weights voc-fcn8s")]
    assert len(waiting) == 1 and silent_server.url in waiting[0] and TIMEOUT_VARIABLE in waiting[0]
    assert cached_files(tmp_path) == []


def test_a_trickling_download_ends_at_the_overall_deadline(trickling_server, tmp_path):
    status, output = run_kseg(trickling_server.url, ["weights", "download", "vgg16_imagenet"], tmp_path,
                              **{STALL_VARIABLE: "30", TIMEOUT_VARIABLE: "3"})
    assert status == 1, output[-3000:]
    errors = error_lines(output)
    assert len(errors) == 1 and "Traceback" not in output, output[-3000:]
    assert "did not finish within 3 s" in errors[0] and TIMEOUT_VARIABLE in errors[0]
    keras_models = os.path.join(str(tmp_path / "keras_home"), "models") + os.sep
    assert f"put kseg-test-vgg16_imagenet.bin in {keras_models}" in errors[0]
    assert cached_files(tmp_path) == []  # the partial file is gone


def test_a_refused_connection_is_one_error_at_once(refusing_url, tmp_path):
    status, output = run_kseg(refusing_url, ["weights", "download", "voc-fcn32s"], tmp_path)
    assert status == 1, output[-3000:]
    errors = error_lines(output)
    assert len(errors) == 1 and refusing_url in errors[0] and "Traceback" not in output


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan", "inf"])
def test_a_bad_deadline_setting_is_named(value, monkeypatch):
    monkeypatch.setenv(TIMEOUT_VARIABLE, value)
    with pytest.raises(KsegError, match=f"{TIMEOUT_VARIABLE}=.*number of seconds above 0"):
        download_timeouts()
    monkeypatch.delenv(TIMEOUT_VARIABLE)
    monkeypatch.setenv(STALL_VARIABLE, value)
    with pytest.raises(KsegError, match=STALL_VARIABLE), network_deadline("x"):
        pass


def test_the_default_deadlines_keep_an_offline_machine_waiting_briefly(monkeypatch):
    monkeypatch.delenv(TIMEOUT_VARIABLE, raising=False)
    monkeypatch.delenv(STALL_VARIABLE, raising=False)
    total, stall = download_timeouts()
    assert stall <= 30 and stall < total  # a dead network is given up within half a minute


def test_the_deadline_restores_what_it_changed(monkeypatch):
    import signal

    monkeypatch.setenv(TIMEOUT_VARIABLE, "50")
    before = (socket.getdefaulttimeout(), signal.getsignal(signal.SIGALRM))
    with network_deadline("x", notify=False):
        assert socket.getdefaulttimeout() is not None and signal.getitimer(signal.ITIMER_REAL)[0] > 0
    assert (socket.getdefaulttimeout(), signal.getsignal(signal.SIGALRM)) == before
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0


@pytest.mark.slow
def test_training_never_falls_back_to_random_weights_when_the_download_stalls(silent_server, tmp_path):
    data = corpus.write_dataset(tmp_path / "data", "one_pixel")
    run = tmp_path / "run"
    status, output = run_kseg(silent_server.url, [
        "train", "--data", "folder", "--data-dir", data.root, "--model", "lraspp_mobilenetv3small",
        "--weights", "imagenet", "--batch-size", "2", "--crop", "32x32", "--val-split", "none",
        "--epochs", "1", "--quiet", "--run-dir", str(run),
    ], tmp_path, **{STALL_VARIABLE: "3"})
    assert status == 1, output[-3000:]
    errors = error_lines(output)
    assert len(errors) == 1 and "Traceback" not in output, output[-3000:]
    assert "ImageNet MobileNetV3Small weights" in errors[0] and "no answer for 3 s" in errors[0]
    assert "--weights none" in errors[0]
    assert not (run / "checkpoints").exists() and not (run / "config.yaml").exists()
    assert cached_files(tmp_path) == []


# -- reader threads ----------------------------------------------------------------------


@pytest.fixture
def released():
    """An event the stuck readers wait on; set at the end so their threads end too."""
    event = threading.Event()
    yield event
    event.set()


def test_a_stuck_reader_is_named_when_the_read_timeout_passes(released, monkeypatch):
    from kseg import parallel

    monkeypatch.setenv(parallel.READ_TIMEOUT_VARIABLE, "1")

    def read(path):
        if path.endswith("b.png"):
            released.wait()
        return path

    results = parallel.ordered_map(read, ["/data/a.png", "/data/b.png", "/data/c.png"], workers=2)
    assert next(results) == "/data/a.png"
    with pytest.raises(parallel.ReadTimeout, match=r"^/data/b.png: not read within 1 s.*KSEG_READ_TIMEOUT"):
        next(results)


def test_a_long_read_says_what_it_waits_for(released, monkeypatch, capsys):
    from kseg import parallel

    monkeypatch.setattr(parallel, "NOTICE_AFTER", 0.2)
    pool = parallel.ReaderPool(1)
    future = pool.submit(released.wait)
    with pytest.raises(parallel.ReadTimeout, match="^/data/slow.png, /data/slow_mask.png: not read"):
        parallel.wait_for(future, parallel.describe_item(("/data/slow.png", "/data/slow_mask.png")), timeout=1.5)
    pool.shutdown()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("waiting for")]
    assert len(lines) == 1 and "/data/slow.png" in lines[0] and "KSEG_READ_TIMEOUT" in lines[0]


def test_a_reader_error_is_its_own_not_a_timeout():
    from kseg import parallel

    def fails(item):
        raise TimeoutError(f"socket of {item} timed out")

    with pytest.raises(TimeoutError, match="socket of x"):
        list(parallel.ordered_map(fails, ["x"], workers=1))


def test_a_stuck_reader_does_not_keep_the_process_alive(tmp_path):
    script = (
        "import time, kseg.parallel as p\n"
        "try:\n"
        "    list(p.ordered_map(lambda item: time.sleep(3600), ['stuck.png'], workers=1))\n"
        "except p.ReadTimeout as error:\n"
        "    print('error:', error)\n"
    )
    process = subprocess.run([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, timeout=120, env=dict(os.environ, KSEG_READ_TIMEOUT="1"))
    assert process.returncode == 0 and process.stdout.startswith("error: stuck.png: not read"), process.stdout


@pytest.mark.parametrize("verb", ["verify", "stats"])
def test_data_verbs_end_a_stuck_read_with_one_error_line(verb, released, tmp_path, monkeypatch):
    from click.testing import CliRunner
    from kseg.cli.main import cli

    import kseg.images

    data = corpus.write_dataset(tmp_path / "data", "one_pixel")
    stuck = os.path.join(data.root, "masks", "good1.png")
    real_read_bytes = kseg.images.read_bytes

    def read_bytes(path, *args, **kwargs):
        if os.fspath(path) == stuck:
            released.wait()  # as a file on a network file system that stopped answering
        return real_read_bytes(path, *args, **kwargs)

    monkeypatch.setattr(kseg.images, "read_bytes", read_bytes)
    monkeypatch.setenv("KSEG_READ_TIMEOUT", "2")
    result = CliRunner().invoke(cli, ["data", verb, "--data", "folder", "--data-dir", data.root, "--no-progress"])
    errors = error_lines(result.output)
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert stuck in errors[0] and "not read within 2 s" in errors[0] and "KSEG_READ_TIMEOUT" in errors[0]


# -- the run lock --------------------------------------------------------------------------


def test_the_run_lock_is_refused_at_once_never_waited_for(tmp_path):
    from kseg.training.lock import RunLock, RunLockedError

    with RunLock(tmp_path / "run", create=True), pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
        RunLock(tmp_path / "run").acquire()


def test_a_lock_file_replaced_on_every_try_ends_the_attempt(tmp_path, monkeypatch):
    from kseg.training import lock

    monkeypatch.setattr(lock.os.path, "samestat", lambda first, second: False)  # replaced each time
    with pytest.raises(KsegError, match="lock file was replaced 100 times"):
        lock.RunLock(tmp_path / "run", create=True).acquire()


def test_a_deadline_longer_than_the_system_can_wait_means_no_deadline(monkeypatch):
    import concurrent.futures

    from kseg import parallel

    for variable in (TIMEOUT_VARIABLE, STALL_VARIABLE, parallel.READ_TIMEOUT_VARIABLE):
        monkeypatch.setenv(variable, "1e12")
    assert download_timeouts() == (threading.TIMEOUT_MAX, threading.TIMEOUT_MAX)
    soon = concurrent.futures.Future()
    threading.Timer(0.2, soon.set_result, ["read"]).start()
    assert parallel.wait_for(soon, "a.png", parallel.read_timeout()) == "read"
    with network_deadline("x"):  # the socket timeout and the timer take it
        pass


def test_the_keras_cache_folder_named_is_the_one_keras_uses(tmp_path, monkeypatch):
    # keras (its config and get_file) uses /tmp/.keras when the home folder, or the
    # KERAS_HOME given, cannot be written to (an empty KERAS_HOME never can)
    home = str(tmp_path / "home")
    os.mkdir(home)
    monkeypatch.setenv("HOME", home)
    monkeypatch.delenv("KERAS_HOME", raising=False)
    assert keras_models_folder() == os.path.join(home, ".keras", "models")
    writable = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: path != home and writable(path, mode))
    assert keras_models_folder() == os.path.join("/tmp", ".keras", "models")
    monkeypatch.setenv("KERAS_HOME", "")
    assert keras_models_folder() == os.path.join("/tmp", ".keras", "models")
    monkeypatch.setenv("KERAS_HOME", "~/cache")
    assert keras_models_folder() == os.path.join(home, "cache", "models")


def test_a_timer_handler_not_set_from_python_leaves_the_default_after_a_download(monkeypatch):
    import signal

    set_handler = signal.signal
    handlers = []

    def as_for_a_handler_set_in_c(number, handler):
        previous = set_handler(number, handler)
        handlers.append(handler)
        return None if len(handlers) == 1 else previous  # what Python says of a handler it did not set

    monkeypatch.setattr(signal, "signal", as_for_a_handler_set_in_c)
    with network_deadline("x", notify=False):
        pass
    assert handlers[-1] is signal.SIG_DFL
