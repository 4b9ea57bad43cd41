"""kseg.runs: the run-folder layout, apart from model loading."""

import subprocess
import sys

from kseg.runs import RunDir, is_run_dir


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
