"""SIGTERM behaves like Ctrl-C in every verb: it stops, removes what was being written, and
exits non-zero with one line; an interruption that a library swallows still stops kseg.

Each test runs a real `kseg` subprocess through signal_driver.py, which stops it at a
chosen point (inside a write, or after a step), sends the signal there, and then checks:
exit status 143 (128 + SIGTERM), one `interrupted` line and no traceback, no temporary
left anywhere in the output folder or in $TMPDIR, and no half result in place.
"""

import os
import signal
import subprocess
import sys

import pytest
import robustness_corpus as corpus

DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "signal_driver.py")
TIMEOUT = 240  # seconds for a whole run on two busy cores; a hang fails the test


def run_until_paused(mode, target, arguments, tmp_path, send=signal.SIGTERM, pause="600"):
    """Runs `kseg ARGUMENTS` under the driver, signals it once it pauses; returns
    (exit status, output, the temporary path being written or None)."""
    scratch = tmp_path / "tmpdir"
    scratch.mkdir(exist_ok=True)
    environment = dict(os.environ, TMPDIR=str(scratch), SIGNAL_DRIVER_PAUSE=pause)
    process = subprocess.Popen(
        [sys.executable, DRIVER, mode, target, "--", *arguments],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment,
    )
    lines, detail = [], None
    try:
        for line in process.stdout:
            lines.append(line)
            if "PAUSED " in line and send is not None:
                detail = line.split("PAUSED ", 1)[1].strip()
                process.send_signal(send)
        status = process.wait(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return status, "".join(lines), detail


def assert_interrupted(status, output):
    assert status == 128 + signal.SIGTERM, output[-3000:]
    assert "Traceback" not in output and "Exception ignored" not in output, output[-3000:]
    assert [line for line in output.splitlines() if line.startswith("interrupted")] == [
        "interrupted (SIGTERM); unfinished outputs were removed"
    ], output[-3000:]


def leftovers(*folders):
    """Every file or folder under `folders` whose name marks it as a temporary."""
    found = []
    for folder in folders:
        for parent, directories, names in os.walk(folder):
            found += [os.path.join(parent, name) for name in directories + names
                      if ".tmp" in name or name.endswith(".old") or name.startswith("kseg-")]
    return found


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from conftest import tiny_run_dir

    return str(tiny_run_dir(tmp_path_factory.mktemp("model")))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return corpus.write_dataset(tmp_path_factory.mktemp("signals"), "one_pixel")


def write_images(folder, count=3):
    for number in range(count):
        corpus.write_bytes(str(folder / f"img{number}.png"),
                           corpus.encode(".png", corpus.random_rgb(40, 56, seed=number)))


def test_sigterm_while_predict_writes(run_dir, tmp_path):
    images, out = tmp_path / "images", tmp_path / "out"
    write_images(images)
    status, output, temporary = run_until_paused(
        "write", "img1.png",
        ["predict", str(images), "--model", run_dir, "--out", str(out), "--format", "labels"], tmp_path)
    assert_interrupted(status, output)
    assert temporary and not os.path.exists(temporary)
    assert not (out / "img1.png").exists() and not (out / "img2.png").exists()
    assert leftovers(out, tmp_path / "tmpdir") == []


def test_sigterm_during_tflite_conversion_removes_the_temporary_savedmodel(run_dir, tmp_path):
    out = tmp_path / "exports" / "model.tflite"
    status, output, _ = run_until_paused(
        "after", "kseg.exporting:write_savedmodel",
        ["export", run_dir, "--format", "tflite", "--out", str(out)], tmp_path)
    assert_interrupted(status, output)
    assert not out.exists()
    assert leftovers(tmp_path / "exports", tmp_path / "tmpdir") == []
    assert os.listdir(tmp_path / "tmpdir") == []


def test_sigterm_while_training_writes_a_checkpoint(data, tmp_path):
    run = tmp_path / "run"
    status, output, temporary = run_until_paused("write", "last.keras", [
        "train", "--data", "folder", "--data-dir", data.root, "--weights", "none", "--width", "0.0625",
        "--batch-size", "3", "--crop", "32x32", "--val-split", "none", "--epochs", "1", "--quiet",
        "--run-dir", str(run),
    ], tmp_path)
    assert_interrupted(status, output)
    assert temporary and not os.path.exists(temporary)
    assert not (run / "checkpoints" / "last.keras").exists()
    assert leftovers(run, tmp_path / "tmpdir") == []


def test_sigterm_while_evaluate_writes_its_report(run_dir, data, tmp_path):
    report = tmp_path / "metrics.json"
    status, output, _ = run_until_paused("write", "metrics.json", [
        "evaluate", run_dir, "--data", "folder", "--data-dir", data.root, "--split", "all",
        "--out", str(report),
    ], tmp_path)
    assert_interrupted(status, output)
    assert not report.exists() and leftovers(tmp_path) == []


def test_sigterm_while_synth_writes_removes_the_partial_dataset(tmp_path):
    out = tmp_path / "synthetic"
    status, output, _ = run_until_paused("write", "synthetic", [
        "data", "synth", str(out), "--num-train", "4", "--num-val", "2",
    ], tmp_path)
    assert_interrupted(status, output)
    assert not out.exists() and leftovers(tmp_path) == []


def test_sigterm_in_data_verify_stops_it(data, tmp_path):
    status, output, _ = run_until_paused(
        "after", "kseg.data.spec:DatasetSpec.pairs",
        ["data", "verify", "--data", "folder", "--data-dir", data.root], tmp_path)
    assert_interrupted(status, output)


@pytest.mark.parametrize("verb", ["predict", "export"])
def test_a_swallowed_sigterm_still_stops_the_write(verb, run_dir, tmp_path):
    """The signal's exception is dropped inside a __del__ method (as when a library's
    garbage-collector callback is running): kseg must not finish and exit 0 anyway."""
    images = tmp_path / "images"
    write_images(images, count=1)
    if verb == "predict":
        target, destination = "img0.png", tmp_path / "out" / "img0.png"
        arguments = ["predict", str(images), "--model", run_dir, "--out", str(tmp_path / "out"),
                     "--format", "labels"]
    else:
        target, destination = "model_savedmodel", tmp_path / "model_savedmodel"
        arguments = ["export", run_dir, "--format", "savedmodel", "--out", str(destination)]
    status, output, _ = run_until_paused("swallow", target, arguments, tmp_path, send=None)
    assert "SWALLOWING" in output, output[-3000:]
    assert_interrupted(status, output)
    assert not destination.exists()
    assert leftovers(tmp_path) == []
