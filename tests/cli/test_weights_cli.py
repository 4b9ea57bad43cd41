"""`kseg weights`: list, download (offline), convert, then predict and export the result."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from kseg.cli.main import cli

pytest.importorskip("yaml")
from models.test_caffe_fcn import caffe_blobs, caffemodel_bytes  # noqa: E402


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    source = folder / "fcn8s.caffemodel"
    source.write_bytes(caffemodel_bytes(caffe_blobs("fcn8s")))
    out = folder / "model" / "fcn8s-voc.keras"
    result = CliRunner().invoke(cli, ["weights", "convert", str(source), "--out", str(out),
                                      "--model", "fcn8s_caffe"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    return source, out


def test_list_prints_the_manifest_rows():
    result = CliRunner().invoke(cli, ["weights", "list"])
    assert result.exit_code == 0, result.output
    for name, miu in (("voc-fcn32s", "63.6"), ("voc-fcn16s", "65.0"), ("voc-fcn8s", "65.5"),
                      ("voc-fcn8s-atonce", "65.4")):
        assert name in result.output and f"reported mIU: {miu}" in result.output
    assert "http://dl.caffe.berkeleyvision.org/fcn8s-atonce-pascal.caffemodel" in result.output
    assert "vgg16_imagenet" in result.output and "hash:    unknown" in result.output


def test_download_offline_is_one_line_with_the_way_out(monkeypatch):
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    result = CliRunner().invoke(cli, ["weights", "download", "voc-fcn8s"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "fcn8s-heavy-pascal.caffemodel in ~/.keras/models/" in lines[0]
    assert "kseg weights convert" in lines[0]
    result = CliRunner().invoke(cli, ["weights", "download", "voc-fcn99s"])
    assert result.exit_code == 1 and "no weights entry named 'voc-fcn99s'" in result.output


def test_download_passes_the_manifest_file_and_hash(monkeypatch, tmp_path):
    import keras

    calls = []
    monkeypatch.setattr(keras.utils, "get_file",
                        lambda *args, **kwargs: calls.append((args, kwargs)) or str(tmp_path / "f"))
    result = CliRunner().invoke(cli, ["weights", "download", "vgg16_imagenet"])
    assert result.exit_code == 0, result.output
    assert calls[0][1]["file_hash"] == "64373286793e3c8b2b4e3219cbf3544b"


def test_convert_writes_voc_classes_and_refuses_bad_outputs(converted, tmp_path):
    source, out = converted
    classes = json.loads((out.parent / "classes.json").read_text())
    assert classes["class_names"][0] == "background" and len(classes["palette"]) == 21
    runner = CliRunner()
    result = runner.invoke(cli, ["weights", "convert", str(source), "--out", str(out)])
    assert result.exit_code == 1 and "exists; pass --force" in result.output
    result = runner.invoke(cli, ["weights", "convert", str(source), "--out", str(source)])
    assert result.exit_code == 1 and "--out" in result.output
    other = tmp_path / "notes.keras"
    other.write_text("mine")
    result = runner.invoke(cli, ["weights", "convert", str(source), "--out", str(other), "--force"])
    assert result.exit_code == 1 and "not written by kseg" in result.output
    assert other.read_text() == "mine"
    result = runner.invoke(cli, ["weights", "convert", str(source), "--out", str(out), "--force"])
    assert result.exit_code == 0, result.output
    names = tmp_path / "names.txt"
    names.write_text("a\nb\nc\n")
    result = runner.invoke(cli, ["weights", "convert", str(source), "--out",
                                 str(tmp_path / "x.keras"), "--classes", str(names)])
    assert result.exit_code == 1
    assert "'score_fr' scores 21 classes, the model 3" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "x.keras")


def test_predict_with_the_converted_model_uses_voc_colours(converted, tmp_path):
    from kseg.data.voc import VOC_CLASSES
    from kseg.images import read_image, read_mask, write_png
    from kseg.runs import read_classes, resolve_model_path

    _, out = converted
    path, run_dir = resolve_model_path(str(out))
    assert read_classes(run_dir, 21)["class_names"] == list(VOC_CLASSES)
    image = np.random.default_rng(0).integers(0, 256, (45, 61, 3), dtype=np.uint8)
    write_png(tmp_path / "img.png", image)
    result = CliRunner().invoke(cli, ["predict", str(tmp_path / "img.png"), "--model", str(out),
                                      "--out", str(tmp_path / "pred")])
    assert result.exit_code == 0, result.output
    labels = read_mask(tmp_path / "pred" / "img.png")
    assert labels.shape == (45, 61) and labels.max() < 21
    palette = np.array(read_classes(run_dir, 21)["palette"], np.uint8)
    np.testing.assert_array_equal(read_image(tmp_path / "pred" / "img_color.png"), palette[labels])


def test_export_tflite_check_of_the_converted_model(converted, tmp_path):
    _, out = converted
    target = tmp_path / "model.tflite"
    result = CliRunner().invoke(cli, ["export", str(out), "--format", "tflite", "--out",
                                      str(target), "--check"])
    assert result.exit_code == 0, result.output
    assert os.path.isfile(target) and "agreement" in result.output
