"""The library's four calls (`kseg.train`, `kseg.evaluate`, `kseg.predict`, `kseg.export`),
used from Python the way the CLI verbs use them."""

import json
import os
import subprocess
import sys

import pytest

import kseg
from kseg.config import resolve
from kseg.errors import KsegError
from kseg.evaluation import EvaluateOptions
from kseg.exporting import ExportOptions
from kseg.images import read_mask
from kseg.prediction import PredictOptions


def test_import_kseg_loads_neither_keras_nor_tensorflow():
    code = ("import sys, kseg\n"
            "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules, 'loaded'\n"
            "assert sorted(kseg.__all__) == ['__version__', 'evaluate', 'export', 'predict', 'train']\n")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(AttributeError, match="no attribute 'fit'"):
        kseg.fit  # noqa: B018


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from kseg.data.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("api")
    data = write_synthetic_dataset(str(root / "data"), num_train=8, num_val=3, size=(32, 48), seed=0)
    options = {"model": "fcn8s", "data": "synthetic", "data_dir": data, "weights": "none", "width": 0.0625,
               "epochs": 1, "batch_size": 4, "optimizer": "adam", "run_dir": str(root / "run")}  # fmt: skip
    return kseg.train(resolve(options), verbose=0), data, root


def test_train_evaluate_predict_export_from_python(run, capsys):
    run_dir, data, root = run
    assert os.path.isfile(os.path.join(run_dir, "checkpoints", "best.keras"))

    result = kseg.evaluate(run_dir, data="synthetic", data_dir=data, split="val",
                           options=EvaluateOptions(out=str(root / "metrics.json")))  # fmt: skip
    assert result.num_images == 3 and 0 <= result.scores["mean_iou"] <= 1
    assert dict(result.written)["metrics"] == str(root / "metrics.json")
    assert json.loads((root / "metrics.json").read_text())["num_images"] == 3

    images = sorted(os.listdir(os.path.join(data, "images", "val")))
    counts = kseg.predict(os.path.join(data, "images", "val"), model=run_dir, out=str(root / "predicted"),
                          options=PredictOptions(formats=("labels",)))  # fmt: skip
    assert (counts.written, counts.failed) == (3, 0)
    stem = os.path.splitext(images[0])[0]
    assert read_mask(str(root / "predicted" / f"{stem}.png")).shape == (32, 48)
    assert "wrote predictions of 3 image(s)" in capsys.readouterr().err

    out = kseg.export(run_dir, format="tflite", out=str(root / "model.tflite"),
                      options=ExportOptions(input_size=(32, 48), check=True))  # fmt: skip
    assert out == str(root / "model.tflite") and os.path.getsize(out) > 0
    assert "check: " in capsys.readouterr().err


def test_options_that_do_not_fit_are_refused_before_any_work(run, tmp_path):
    run_dir, data, _ = run
    with pytest.raises(KsegError, match="--quantize int8 needs --calibration-data"):
        kseg.export(run_dir, format="tflite", out=str(tmp_path / "m.tflite"), options=ExportOptions(quantize="int8"))
    with pytest.raises(KsegError, match="choose one of savedmodel, tflite, onnx"):
        kseg.export(run_dir, format="tflit")
    with pytest.raises(KsegError, match="applies to --format tflite only"):
        kseg.export(run_dir, format="onnx", options=ExportOptions(quantize="fp16"))
    with pytest.raises(KsegError, match="--overlap"):
        PredictOptions(tile=(16, 16), overlap=16)
    with pytest.raises(KsegError, match="unknown output"):
        PredictOptions(formats=("labels", "depth"))
    with pytest.raises(KsegError, match="both written as"):  # one file each: refused, never overwritten
        PredictOptions(formats=("labels", "cityscapes-ids"))
    with pytest.raises(KsegError, match="not both"):
        kseg.evaluate(run_dir, data="synthetic", data_dir=data, options=EvaluateOptions(predictions=str(tmp_path)))
    assert not os.listdir(tmp_path)
