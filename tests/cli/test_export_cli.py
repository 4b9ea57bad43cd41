"""`kseg export` from a run directory, with --check."""

import os
import re

import pytest
from click.testing import CliRunner
from conftest import tiny_run_dir
from kseg.cli.main import cli

from kseg.images import write_png

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_run_dir(tmp_path_factory.mktemp("runs"), "fcn16s")


def parity(output):
    match = re.search(r"max \|logit difference\| (\S+) .* agreement (\S+)%", output)
    assert match, output
    return float(match.group(1)), float(match.group(2)) / 100


def test_export_tflite_with_check_from_a_run(run_dir, tmp_path):
    from kseg.exporting import sample_images

    folder = tmp_path / "images"
    for index, image in enumerate(sample_images(3, seed=4)):
        write_png(folder / f"{index}.png", image)
    result = CliRunner().invoke(
        cli, ["export", str(run_dir), "--format", "tflite", "--check-images", str(folder)]
    )
    assert result.exit_code == 0, result.output
    out = run_dir / "export" / "best.tflite"
    assert os.path.isfile(out) and f"wrote tflite: {out}" in result.output
    difference, agreement = parity(result.output)
    assert difference < 1e-4 and agreement > 0.999
    assert "over 3 image(s)" in result.output


def test_export_int8_with_calibration_folder_and_fixed_size(run_dir, tmp_path):
    from kseg.exporting import sample_images

    folder = tmp_path / "calibration"
    for index, image in enumerate(sample_images(6, seed=5)):
        write_png(folder / f"{index}.png", image)
    out = tmp_path / "int8.tflite"
    result = CliRunner().invoke(
        cli, ["export", str(run_dir / "checkpoints" / "best.keras"), "--format", "tflite",
              "--quantize", "int8", "--calibration-data", str(folder), "--input-size", "64x96",
              "--out", str(out), "--check"],
    )
    assert result.exit_code == 0, result.output
    assert "calibrating int8 on 6 image(s)" in result.output
    _, agreement = parity(result.output)
    assert agreement > 0.8


def test_export_option_errors(run_dir, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["export", str(run_dir), "--format", "onnx", "--quantize", "fp16"])
    assert result.exit_code == 1 and "tflite only" in result.output
    result = runner.invoke(cli, ["export", str(run_dir), "--format", "tflite", "--quantize", "int8"])
    assert result.exit_code == 1 and "--calibration-data" in result.output
    result = runner.invoke(cli, ["export", str(tmp_path / "none"), "--format", "onnx"])
    assert result.exit_code == 1 and "no such model file or run directory" in result.output
    for size in ("x", "0x5", "99999999x2", "infxinf"):
        result = runner.invoke(cli, ["export", str(run_dir), "--format", "tflite", "--input-size", size])
        assert result.exit_code == 2 and "--input-size" in result.output, size
    result = runner.invoke(cli, ["export", str(run_dir), "--format", "tflite", "--quantize", "int8",
                                 "--calibration-data", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "no such folder" in result.output
    assert "unknown dataset" not in result.output
    (tmp_path / "file.png").write_bytes(b"x")
    result = runner.invoke(cli, ["export", str(run_dir), "--format", "tflite", "--quantize", "int8",
                                 "--calibration-data", str(tmp_path / "file.png"),
                                 "--out", str(tmp_path / "m.tflite")])
    assert result.exit_code == 1 and "must be a folder" in result.output


def test_default_tflite_is_mediapipe_ready_with_the_run_classes(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from kseg.exporting import ExportedModel

    names, palette = ["road", "car", "sky"], [[128, 64, 128], [0, 0, 142], [70, 130, 180]]
    run = tiny_run_dir(tmp_path, "fcn8s", classes=("toy", names, palette))
    result = CliRunner().invoke(cli, ["export", str(run), "--format", "tflite", "--check"])
    assert result.exit_code == 0, result.output
    assert "MediaPipe-ready TFLite: fixed input 512x512" in result.output
    assert "no classes.json" not in result.output
    out = run / "export" / "best.tflite"
    interpreter = Interpreter(model_path=str(out))
    assert interpreter.get_input_details()[0]["shape"].tolist() == [1, 512, 512, 3]
    assert [o["name"] for o in interpreter.get_output_details()] == ["logits"]
    exported = ExportedModel(out, "tflite")
    assert exported.class_names == names and exported.palette == palette


def test_no_mediapipe_tflite_takes_any_size_and_names_classes_without_classes_json(run_dir, tmp_path):
    from kseg.exporting import ExportedModel

    out = tmp_path / "any.tflite"
    result = CliRunner().invoke(cli, ["export", str(run_dir), "--format", "tflite", "--no-mediapipe",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "no classes.json beside it" in result.output and "512x512" not in result.output
    exported = ExportedModel(out, "tflite")
    assert exported.input_size is None and exported.class_names == ["class 0", "class 1", "class 2"]
    result = CliRunner().invoke(cli, ["export", str(run_dir), "--format", "onnx", "--no-mediapipe"])
    assert result.exit_code == 1 and "--no-mediapipe applies to --format tflite only" in result.output
