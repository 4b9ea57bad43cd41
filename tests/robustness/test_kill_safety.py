"""SIGKILL in the middle of a write leaves every file written before it whole and loadable.

Each test first writes a result the ordinary way, then runs the same verb in a real
subprocess (signal_driver.py, mode write) that stops inside the write of that file, after its new
content has been completely written under the temporary name, and kills it there with
SIGKILL. The previous file must be byte for byte what it was, still load, and nothing
but hidden temporaries may be left beside it.
"""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import zipfile

import pytest
import robustness_corpus as corpus
from click.testing import CliRunner
from kseg.cli.main import cli

DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "signal_driver.py")


def kill_inside_write(name, arguments):
    """Runs `kseg ARGUMENTS` until it is inside the write of NAME, then SIGKILLs it.

    Returns the temporary path it was writing.
    """
    process = subprocess.Popen(
        [sys.executable, DRIVER, "write", name, "--", *arguments],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if "PAUSED " in line:  # a progress bar may precede it on the line
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=60)
                return line.split("PAUSED ", 1)[1].strip()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    raise AssertionError("the command ended without reaching the write:\n" + "".join(lines)[-3000:])


def digest(path):
    """SHA-256 of a file, or of every file of a folder (names and contents)."""
    hasher = hashlib.sha256()
    paths = [path] if os.path.isfile(path) else sorted(
        os.path.join(parent, name) for parent, _, names in os.walk(path) for name in names)
    for item in paths:
        hasher.update(os.path.relpath(item, path).encode())
        with open(item, "rb") as handle:
            hasher.update(handle.read())
    return hasher.hexdigest()


def visible(folder):
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return corpus.write_dataset(tmp_path_factory.mktemp("kill"), "one_pixel")


def test_sigkill_while_writing_a_checkpoint(data, tmp_path):
    from kseg.models.saving import load_model
    from kseg.runs import checkpoint_path
    from kseg.training import read_checkpoint_state
    from kseg.training.lock import sweep_temporaries

    run = str(tmp_path / "run")
    common = ["--data", "folder", "--data-dir", data.root, "--weights", "none", "--width", "0.0625",
              "--batch-size", "3", "--crop", "32x32", "--val-split", "none", "--quiet"]
    result = CliRunner().invoke(cli, ["train", *common, "--epochs", "1", "--run-dir", run])
    assert result.exit_code == 0, result.output
    last, best = checkpoint_path(run, "last.keras"), checkpoint_path(run, "best.keras")
    before = {path: digest(path) for path in (last, best, os.path.join(run, "log.csv"))}

    temporary = kill_inside_write("last.keras", ["train", "--run-dir", run, "--resume", "--epochs", "2",
                                                 "--quiet"])
    assert os.path.dirname(temporary) == os.path.dirname(last)
    assert digest(last) == before[last] and digest(os.path.join(run, "log.csv")) == before[
        os.path.join(run, "log.csv")]
    assert read_checkpoint_state(last)["epoch"] == 1
    with zipfile.ZipFile(last) as archive:
        assert archive.testzip() is None  # every member's checksum holds
    assert load_model(best).output_shape[-1] == corpus.NUM_CLASSES
    assert visible(os.path.dirname(last)) == ["best.keras", "last.keras"]
    assert os.path.isfile(temporary)  # killed inside the write: its new content was there
    sweep_temporaries(os.path.dirname(last))  # what the next run does first
    assert sorted(os.listdir(os.path.dirname(last))) == ["best.keras", "last.keras"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from conftest import tiny_run_dir

    return str(tiny_run_dir(tmp_path_factory.mktemp("model")))


def test_sigkill_while_exporting_keeps_the_previous_export(run_dir, tmp_path):
    import tensorflow as tf

    out = str(tmp_path / "exports" / "model_savedmodel")
    result = CliRunner().invoke(cli, ["export", run_dir, "--format", "savedmodel", "--out", out])
    assert result.exit_code == 0, result.output
    before = digest(out)

    temporary = kill_inside_write("model_savedmodel", ["export", run_dir, "--format", "savedmodel",
                                                       "--out", out, "--force"])
    assert os.path.isdir(temporary) and os.path.dirname(temporary) == os.path.dirname(out)
    assert digest(out) == before
    loaded = tf.saved_model.load(out).signatures["serving_default"]
    logits = loaded(images=tf.zeros([1, 40, 56, 3], tf.uint8))["logits"]
    assert logits.shape == (1, 40, 56, corpus.NUM_CLASSES)
    assert visible(os.path.dirname(out)) == ["model_savedmodel"]


def test_sigkill_while_predicting_keeps_the_earlier_outputs(run_dir, tmp_path):
    from kseg.images import list_image_files, read_mask

    images = tmp_path / "images"
    for number in range(2):
        corpus.write_bytes(str(images / f"img{number}.png"),
                           corpus.encode(".png", corpus.random_rgb(40, 56, seed=number)))
    out = tmp_path / "predictions"
    result = CliRunner().invoke(cli, ["predict", str(images), "--model", run_dir, "--out", str(out),
                                      "--format", "labels"])
    assert result.exit_code == 0, result.output
    earlier = digest(str(out / "img1.png"))
    # A different model, so the interrupted run would have written other labels.
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    from conftest import randomize_weights

    from kseg.models.saving import load_model

    model = randomize_weights(load_model(os.path.join(run_dir, "checkpoints", "best.keras")), seed=9)
    model.save(other / "checkpoints" / "best.keras")

    kill_inside_write("img1.png", ["predict", str(images), "--model", str(other), "--out", str(out),
                                   "--format", "labels"])
    assert digest(str(out / "img1.png")) == earlier
    for number in range(2):
        labels = read_mask(out / f"img{number}.png")
        assert labels.shape == (40, 56) and labels.max() < corpus.NUM_CLASSES
    assert visible(out) == ["img0.png", "img1.png"]
    # the hidden temporary of img1.png and predict's manifest
    assert len(os.listdir(out)) == 4 and ".kseg-outputs.json" in os.listdir(out)
    # Listing the folder as input (e.g. to predict it again) does not pick the temporary up.
    assert [os.path.basename(path) for path in list_image_files(str(out))] == ["img0.png", "img1.png"]
