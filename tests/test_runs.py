"""kseg.runs: the run-folder layout, apart from model loading."""

import json
import subprocess
import sys

import pytest

from kseg.errors import KsegError
from kseg.runs import RunDir, check_classes, is_run_dir, read_classes


def test_run_dir_names_every_file_by_role(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.config == str(tmp_path / "r" / "config.yaml")
    assert run.best == str(tmp_path / "r" / "checkpoints" / "best.keras")
    assert run.last.endswith("checkpoints/last.keras") and run.log.endswith("log.csv")
    assert run.curves.endswith("training_curves.png") and run.tensorboard.endswith("tensorboard")
    assert not is_run_dir(str(run))
    (tmp_path / "r" / "checkpoints").mkdir(parents=True)
    (tmp_path / "r" / "checkpoints" / "last.keras").write_bytes(b"x")
    assert is_run_dir(str(run))


def test_the_layout_module_imports_no_model_code():
    script = "import sys, kseg.runs; assert 'kseg.models' not in sys.modules and 'keras' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", script]).returncode == 0


@pytest.mark.parametrize("name, words", [
    ("car\nbus", "holds a control character"), ("car\u2028bus", "holds a control character"),
    ("car\x85bus", "holds a control character"), (" ", "empty class name"),
    ("x" * 201, "class name of 201 characters, more than 200"),
])
def test_classes_json_names_follow_the_rule_of_classes_yaml(tmp_path, name, words):
    (tmp_path / "classes.json").write_text(json.dumps({"class_names": ["road", name]}))
    with pytest.raises(KsegError, match=words) as error:
        read_classes(str(tmp_path))
    assert str(error.value).startswith(f"{tmp_path / 'classes.json'}: ") and "\n" not in str(error.value)
    with pytest.raises(KsegError, match=words) as error:  # an export's description goes the same way
        check_classes({"class_names": ["road", name]}, "m.onnx (its class names)")
    assert str(error.value).startswith("m.onnx (its class names): ")
