"""U-Net, SegNet and DeepLab v3+ through kseg's verbs end to end: train one tiny epoch on
synthetic data, evaluate, predict, export to TFLite with --check (Keras parity)."""

import os

import numpy as np
import pytest
from click.testing import CliRunner
from kseg.cli.main import cli

# (preset, --width): narrow models from random weights.
MODELS = (
    ("unet", "0.0625"),
    ("unet_bn", "0.0625"),
    ("segnet", "0.0625"),
    ("unet_mobilenetv3large", "0.35"),
    ("deeplabv3plus_mobilenetv3large", "0.35"),
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from kseg.data.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(
        str(tmp_path_factory.mktemp("data") / "synthetic"), num_train=4, num_val=2, size=(48, 64), seed=2
    )


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from kseg.images import write_png

    folder = tmp_path_factory.mktemp("images")
    write_png(str(folder / "a.png"), np.random.default_rng(9).integers(0, 256, (45, 70, 3), dtype=np.uint8))
    return str(folder)


def invoke(*args):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
@pytest.mark.parametrize("model,width", MODELS)
def test_new_models_train_evaluate_predict_and_export(model, width, data, images, tmp_path):
    run = str(tmp_path / "run")
    invoke("train", "--model", model, "--weights", "none", "--width", width, "--data", "synthetic",
           "--data-dir", data, "--epochs", "1", "--batch-size", "2", "--crop", "48x48",
           "--optimizer", "adam", "--mixed-precision", "off", "--run-dir", run, "--quiet")  # fmt: skip
    assert os.path.isfile(os.path.join(run, "checkpoints", "best.keras"))
    assert "mean IoU" in invoke("evaluate", run, "--data", "synthetic", "--data-dir", data)
    out = str(tmp_path / "predictions")
    invoke("predict", images, "--model", run, "--out", out)
    assert any(name.endswith(".png") for name in os.listdir(out))
    exported = str(tmp_path / "model.tflite")
    # MediaPipe's default 512x512: there a trained SegNet's TFLite logits can differ from
    # keras' at a few pixels (XNNPack's rounding moves an arg-max within its pooling
    # window; docs/models.md), which --check allows up to 0.1% of the pixels.
    invoke("export", run, "--format", "tflite", "--out", exported, "--check")
    assert os.path.getsize(exported) > 0


@pytest.mark.slow  # counts the parameters of every preset at full size
def test_models_lists_the_new_presets():
    output = invoke("models")
    for model, _ in MODELS + (("deeplabv3plus_resnet50", ""), ("deeplabv3plus_resnet50_os8", ""),
                              ("unet_resnet50", "")):  # fmt: skip
        assert model in output


def test_pretrained_weights_are_refused_for_models_without_them(data, tmp_path):
    result = CliRunner().invoke(cli, ["train", "--model", "segnet", "--data", "synthetic", "--data-dir", data,
                                      "--epochs", "1", "--run-dir", str(tmp_path / "run"), "--mixed-precision", "off",
                                      "--quiet"])  # fmt: skip
    assert result.exit_code != 0
    assert "error:" in result.output and "--weights none" in result.output
