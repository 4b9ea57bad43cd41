"""Ctrl-C and SIGTERM stop `kseg export` in every phase, converters' own code included.

keras' SavedModel writer, the TFLite converter and tf2onnx run Python inside C++ calls and
catch exceptions broadly in places; an interruption may land there and be swallowed, or
come back as the converter's own error. Each test runs a real `kseg export` subprocess
through phase_driver.py, which interrupts it inside one third-party step, and checks: the
exit status is that of the signal, one `interrupted` line and no traceback, the
destination absent (or, when replaced with --force, byte for byte what it was), and no
temporary left beside it or in $TMPDIR.
"""

import hashlib
import os
import signal
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "phase_driver.py")
TIMEOUT = 300  # seconds for one export on two busy cores; a hang fails the test

SAVEDMODEL_WRITER = "keras.src.export.saved_model_export_archive:SavedModelExportArchive.write_out"
TFLITE_CONVERTER = "tensorflow.lite.python.lite:TFLiteSavedModelConverterV2.convert"
ONNX_CONVERTER = "tf2onnx.convert:from_function"
OUT_NAMES = {"savedmodel": "model_savedmodel", "tflite": "model.tflite", "onnx": "model.onnx"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from conftest import tiny_run_dir

    return str(tiny_run_dir(tmp_path_factory.mktemp("model")))


def run_export(how, target, signum, run_dir, export_format, out, tmp_path, extra=()):
    """Runs `kseg export` under the phase driver, with $TMPDIR in `tmp_path`; returns
    (status, output)."""
    scratch = tmp_path / "tmpdir"
    scratch.mkdir(exist_ok=True)
    environment = dict(os.environ, TMPDIR=str(scratch))
    arguments = ["export", run_dir, "--format", export_format, "--out", str(out), *extra]
    process = subprocess.run(
        [sys.executable, DRIVER, how, target, signal.Signals(signum).name, "--", *arguments],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment, timeout=TIMEOUT,
        # A job started in the background (`make test &`, some CI runners) inherits SIGINT
        # ignored, and Python keeps it so; the export under test must receive Ctrl-C as a
        # terminal would send it.
        preexec_fn=_default_interrupt,
    )
    return process.returncode, process.stdout


def _default_interrupt():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def assert_interrupted(status, output, signum, how, target):
    assert f"PHASE {how} {target}" in output, output[-3000:]  # the signal came inside the step
    assert status == 128 + signum, output[-3000:]
    assert "Traceback" not in output and "Exception ignored" not in output, output[-3000:]
    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    assert [line for line in output.splitlines() if line.startswith(("interrupted", "error:"))] == [
        f"interrupted ({name}); unfinished outputs were removed"
    ], output[-3000:]


def temporaries(*folders):
    """Everything under `folders` named like a temporary (kseg's `.NAME.XXXXXXXX.tmp`,
    `.old` folders, `tmp*` of tempfile)."""
    found = []
    for folder in folders:
        for parent, directories, names in os.walk(folder):
            found += [os.path.join(parent, name) for name in directories + names
                      if ".tmp" in name or name.endswith(".old") or name.startswith(("tmp", "kseg-"))]
    return found


def fingerprint(path):
    """{relative path: SHA-256} of a file or of every file of a folder."""
    if os.path.isfile(path):
        with open(path, "rb") as handle:
            return {"": hashlib.sha256(handle.read()).hexdigest()}
    result = {}
    for parent, _, names in os.walk(path):
        for name in names:
            full = os.path.join(parent, name)
            with open(full, "rb") as handle:
                result[os.path.relpath(full, path)] = hashlib.sha256(handle.read()).hexdigest()
    return result


CASES = [
    # (way, step, signal, format)
    ("swallow", SAVEDMODEL_WRITER, signal.SIGTERM, "tflite"),
    ("wrap", SAVEDMODEL_WRITER, signal.SIGINT, "savedmodel"),
    ("during", SAVEDMODEL_WRITER, signal.SIGTERM, "savedmodel"),
    ("swallow", TFLITE_CONVERTER, signal.SIGINT, "tflite"),
    ("wrap", TFLITE_CONVERTER, signal.SIGTERM, "tflite"),
    ("during", TFLITE_CONVERTER, signal.SIGINT, "tflite"),
    ("swallow", ONNX_CONVERTER, signal.SIGTERM, "onnx"),
    ("wrap", ONNX_CONVERTER, signal.SIGINT, "onnx"),
    ("during", ONNX_CONVERTER, signal.SIGTERM, "onnx"),
]


@pytest.mark.parametrize("how, target, signum, export_format", CASES,
                         ids=[f"{c[0]}-{c[1].split(':')[1]}-{c[2].name}-{c[3]}" for c in CASES])
def test_an_interrupted_export_writes_nothing(how, target, signum, export_format, run_dir, tmp_path):
    out = tmp_path / "exports" / OUT_NAMES[export_format]
    status, output = run_export(how, target, signum, run_dir, export_format, out, tmp_path)
    assert_interrupted(status, output, signum, how, target)
    assert not out.exists()
    assert temporaries(tmp_path / "exports", tmp_path / "tmpdir") == []
    assert os.listdir(tmp_path / "tmpdir") == []


@pytest.mark.slow
@pytest.mark.parametrize("export_format, target", [("savedmodel", SAVEDMODEL_WRITER),
                                                   ("tflite", TFLITE_CONVERTER),
                                                   ("onnx", ONNX_CONVERTER)])
def test_an_interrupted_replacement_keeps_the_earlier_export(export_format, target, run_dir, tmp_path):
    out = tmp_path / "exports" / OUT_NAMES[export_format]
    from click.testing import CliRunner
    from kseg.cli.main import cli

    first = CliRunner().invoke(cli, ["export", run_dir, "--format", export_format, "--out", str(out)])
    assert first.exit_code == 0, first.output[-3000:]
    before = fingerprint(out)
    status, output = run_export("swallow", target, signal.SIGTERM, run_dir, export_format, out,
                                tmp_path, extra=["--force"])
    assert_interrupted(status, output, signal.SIGTERM, "swallow", target)
    assert fingerprint(out) == before
    assert temporaries(tmp_path / "exports", tmp_path / "tmpdir") == []
    assert os.listdir(tmp_path / "tmpdir") == []
