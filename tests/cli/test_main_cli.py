import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from kseg.cli.main import cli

from kseg import __version__


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_help_lists_the_verbs():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for verb in ("models", "train", "predict", "export", "evaluate", "data"):
        assert verb in result.output


def test_models_lists_names_parameters_and_strides():
    from kseg.models import parameter_count

    result = CliRunner().invoke(cli, ["models", "--num-classes", "19"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split() for line in result.output.splitlines()[1:]}
    assert set(lines) >= {"fcn32s", "fcn16s", "fcn8s"}
    assert lines["fcn8s"][1] == f"{parameter_count('fcn8s', 19):,}" and lines["fcn8s"][2] == "8"
    assert lines["fcn32s"][2] == "32"


def test_unknown_option_exits_non_zero_with_one_message():
    result = CliRunner().invoke(cli, ["models", "--bogus"])
    assert result.exit_code == 2 and "No such option" in result.output


def test_installed_entry_point_runs_without_tensorflow_chatter():
    result = subprocess.run(
        [sys.executable, "-m", "kseg.cli", "models"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "fcn8s" in result.stdout
    assert "oneDNN" not in result.stderr


def test_a_tensorflow_verb_runs_with_standard_error_closed():
    result = subprocess.run(["sh", "-c", 'exec "$0" -m kseg.cli models 2>&-', sys.executable],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0 and "fcn8s" in result.stdout


def test_tensorflow_is_imported_plainly_where_no_temporary_file_can_be_made(monkeypatch):
    import tempfile

    from kseg.cli import main

    def fail():
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", fail)
    before = sorted(os.listdir("/proc/self/fd"))
    main.import_tensorflow_quietly()
    assert sorted(os.listdir("/proc/self/fd")) == before and "tensorflow" in sys.modules


def test_help_of_a_verb_and_data_verbs_do_not_import_tensorflow(tmp_path):
    script = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from kseg.cli.main import cli\n"
        "for args in (['train', '--help'], ['predict', '--help'], ['data', 'synth', sys.argv[1],"
        " '--num-train', '2', '--num-val', '1']):\n"
        "    result = CliRunner().invoke(cli, args)\n"
        "    assert result.exit_code == 0, result.output\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "synth")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_bad_option_value_is_one_line_with_the_way_to_help():
    result = CliRunner().invoke(cli, ["train", "--lr", "inf"], prog_name="kseg")
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and "--lr" in lines[0] and "kseg train --help" in lines[0]


class ResourceExhaustedError(Exception):
    """Named like TensorFlow's: kseg tells it by name, without importing TensorFlow."""



@pytest.mark.parametrize("error, words", [
    (MemoryError(), "out of memory"),
    (ResourceExhaustedError("OOM when allocating tensor with shape[8,4096,64,128]"), "out of memory"),
    (RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 3.2GiB"), "out of memory"),
    (OSError(28, "No space left on device"), "no space left on device"),
    (RuntimeError("h5py: Can't write data (file write failed: No space left on device)"), "no space left"),
])
def test_running_out_of_a_resource_is_named_in_one_line(monkeypatch, tmp_path, error, words):
    import kseg.cli.data

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(kseg.cli.data, "write_synthetic_dataset", fail)  # the name the verb calls
    result = CliRunner().invoke(cli, ["data", "synth", str(tmp_path / "out"), "--num-train", "1", "--num-val", "1"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], result.output
    assert "--debug" not in lines[0]
