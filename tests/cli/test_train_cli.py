import json
import logging
import os
import zipfile

import pytest
import yaml
from click.testing import CliRunner
from kseg.cli.main import cli

from kseg.errors import KsegError

TINY = ["--weights", "none", "--width", "0.0625", "--batch-size", "4", "--crop", "32x32",
        "--optimizer", "adam", "--lr", "0.001", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from kseg.data.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(
        str(tmp_path_factory.mktemp("data") / "synthetic"), num_train=4, num_val=2, size=(32, 40), seed=2
    )


@pytest.fixture(scope="module")
def cli_run(tiny_data, tmp_path_factory):
    """A run made by `kseg train --config FILE` with options overriding the file."""
    folder = tmp_path_factory.mktemp("cli")
    config_file = folder / "train.yaml"
    config_file.write_text(yaml.safe_dump({"model": "fcn16s", "epochs": 5, "seed": 3, "dropout": 0.2}))
    run_dir = str(folder / "run")
    result = CliRunner().invoke(
        cli,
        ["train", "--config", str(config_file), "--data", "synthetic", "--data-dir", tiny_data,
         "--epochs", "1", "--run-dir", run_dir, *TINY],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return run_dir, result.output


def test_train_writes_a_run_and_options_override_the_file(cli_run):
    run_dir, output = cli_run
    assert f"run directory: {run_dir}" in output
    saved = yaml.safe_load(open(os.path.join(run_dir, "config.yaml")))
    assert saved["model"] == "fcn16s" and saved["seed"] == 3 and saved["dropout"] == 0.2  # from the file
    assert saved["epochs"] == 1 and saved["crop"] == [32, 32]  # from the options
    names = ("classes.json", "log.csv", "training_curves.png", "checkpoints/best.keras",
             "checkpoints/last.keras")  # fmt: skip
    for name in names:
        assert os.path.isfile(os.path.join(run_dir, name)), name


def test_resume_continues_with_more_epochs(cli_run):
    run_dir, _ = cli_run
    result = CliRunner().invoke(cli, ["train", "--run-dir", run_dir, "--resume", "--epochs", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    with open(os.path.join(run_dir, "log.csv")) as handle:
        assert len(handle.read().strip().splitlines()) == 3  # header + 2 epochs


def test_evaluate_a_run_writes_metrics(cli_run, tiny_data, tmp_path):
    run_dir, _ = cli_run
    out = tmp_path / "metrics.json"
    result = CliRunner().invoke(
        cli, ["evaluate", run_dir, "--data", "synthetic", "--data-dir", tiny_data, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "mean IoU" in result.output and "frequency weighted IoU" in result.output
    payload = json.loads(out.read_text())
    assert payload["num_images"] == 2 and len(payload["classes"]) == 6 and payload["precision"] == "fp32"
    assert (tmp_path / "metrics-confusion.png").is_file()
    result = CliRunner().invoke(
        cli, ["evaluate", run_dir, "--data", "synthetic", "--data-dir", tiny_data, "--out", str(out),
              "--precision", "bf16"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["precision"] == "bf16"


def test_evaluate_predictions_folder(tiny_data, tmp_path):
    from kseg.data import get_dataset_spec
    from kseg.images import write_png

    spec = get_dataset_spec("synthetic", tiny_data)
    for image_path, mask_path in spec.pairs("val"):
        stem = os.path.splitext(os.path.basename(image_path))[0]
        write_png(tmp_path / "labels" / f"{stem}.png", spec.read_pair(image_path, mask_path)[1])
    result = CliRunner().invoke(
        cli,
        ["evaluate", "--predictions", str(tmp_path / "labels"), "--data", "synthetic",
         "--data-dir", tiny_data],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    assert "mean IoU                100.00" in result.output


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--epochs", "0"], "--epochs"),
        (["--crop", "big"], "--crop"),
        (["--class-weights", "1,x"], "--class-weights"),
        (["--class-weights", " , "], "--class-weights: expected none, median-frequency"),
        (["--width", "0.5", "--weights", "imagenet"], "weights"),
        (["--resume"], "--resume needs --run-dir"),
    ],
)
def test_bad_options_give_one_line_errors(arguments, message, tiny_data):
    result = CliRunner().invoke(cli, ["train", "--data", "synthetic", "--data-dir", tiny_data, *arguments])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_bad_class_weight_is_named_once():
    from kseg.cli.train import parse_class_weights

    with pytest.raises(KsegError) as caught:
        parse_class_weights("1,inf")
    assert str(caught.value).startswith("--class-weights: weight 2 ('inf'): inf is not a finite number;")
    assert str(caught.value).count("weight 2") == 1


def test_unknown_key_in_config_file(tmp_path):
    config_file = tmp_path / "bad.yaml"
    config_file.write_text("model: fcn8s\nlearning_rate: 0.1\n")
    result = CliRunner().invoke(cli, ["train", "--config", str(config_file)])
    assert result.exit_code == 1
    assert "unknown key 'learning_rate'" in result.output


def test_resume_refuses_a_changed_optimizer(cli_run):
    run_dir, _ = cli_run
    result = CliRunner().invoke(cli, ["train", "--run-dir", run_dir, "--resume", "--optimizer", "sgd"])
    assert result.exit_code == 1 and "cannot change on --resume" in result.output


@pytest.fixture(scope="module")
def loss_run(tiny_data, tmp_path_factory):
    """A run trained with a weighted sum of losses, for one epoch."""
    run_dir = str(tmp_path_factory.mktemp("loss") / "run")
    result = CliRunner().invoke(
        cli,
        ["train", "--model", "fcn8s", "--data", "synthetic", "--data-dir", tiny_data, "--epochs", "1",
         "--run-dir", run_dir, "--loss", "0.50*ce + lovasz", "--mixed-precision", "off", *TINY],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return run_dir, result.output


def compiled_loss(run_dir):
    """The loss the checkpoint checkpoints/last.keras was compiled with (its class and config)."""
    with zipfile.ZipFile(os.path.join(run_dir, "checkpoints", "last.keras")) as archive:
        loss = json.loads(archive.read("config.json"))["compile_config"]["loss"]
    return loss["class_name"], loss["config"]


def test_the_loss_is_used_and_recorded_in_the_run_config(loss_run):
    run_dir, _ = loss_run
    class_name, config = compiled_loss(run_dir)
    assert class_name == "WeightedLossSum" and config["loss"] == "0.5*ce+lovasz"
    saved = yaml.safe_load(open(os.path.join(run_dir, "config.yaml")))
    assert saved["loss"] == "0.5*ce+lovasz"
    from kseg.training import read_checkpoint_state

    state = read_checkpoint_state(os.path.join(run_dir, "checkpoints", "last.keras"))
    assert state["trained_with"]["loss"] == "0.5*ce+lovasz"


def test_resume_keeps_the_loss_and_refuses_another(loss_run, caplog):
    caplog.set_level(logging.INFO, logger="kseg")
    run_dir, _ = loss_run
    result = CliRunner().invoke(cli, ["train", "--run-dir", run_dir, "--resume", "--loss", "dice", "--quiet"])
    assert result.exit_code == 1 and "--loss: cannot change on --resume" in result.output
    # The same loss written another way is the same loss.
    result = CliRunner().invoke(cli, ["train", "--run-dir", run_dir, "--resume", "--epochs", "2", "--quiet",
                                      "--loss", "lovasz + 0.5*ce"])  # fmt: skip
    assert result.exit_code == 1 and "--loss: cannot change on --resume" in result.output  # order matters: a new sum
    from kseg.config import parse_loss, resolve

    assert resolve({"loss": parse_loss("0.5 * ce + 1.0*lovasz")}, resume_dir=run_dir).loss == "0.5*ce+lovasz"
    result = CliRunner().invoke(cli, ["train", "--run-dir", run_dir, "--resume", "--epochs", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "replica(s), loss 0.5*ce+lovasz;" in caplog.text
    assert compiled_loss(run_dir)[1]["loss"] == "0.5*ce+lovasz"
    assert yaml.safe_load(open(os.path.join(run_dir, "config.yaml")))["loss"] == "0.5*ce+lovasz"
    with open(os.path.join(run_dir, "log.csv")) as handle:
        assert len(handle.read().strip().splitlines()) == 3  # header + 2 epochs
    # config.yaml edited to another loss no longer matches the checkpoint.
    config_path = os.path.join(run_dir, "config.yaml")
    with open(config_path) as handle:
        text = handle.read()
    with open(config_path, "w") as handle:
        handle.write(text.replace("loss: 0.5*ce+lovasz", "loss: dice"))
    result = CliRunner().invoke(cli, ["train", "--run-dir", run_dir, "--resume", "--epochs", "3", "--quiet"])
    assert result.exit_code == 1 and "config.yaml says loss 'dice'" in result.output


@pytest.mark.parametrize(
    "loss, message",
    [("bce", "--loss: unknown loss 'bce'"), ("ce+", "--loss: a '+' with no term"),
     ("ce+ce", "--loss: ce appears twice"), ("0*ce", "--loss: the weight of ce")],
)  # fmt: skip
def test_bad_loss_gives_one_line_error(loss, message, tiny_data, tmp_path):
    result = CliRunner().invoke(cli, ["train", "--data", "synthetic", "--data-dir", tiny_data, "--run-dir",
                                      str(tmp_path / "run"), "--loss", loss])  # fmt: skip
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1
    assert not os.path.exists(tmp_path / "run")


def test_weights_a_model_cannot_take_are_refused_before_any_work(tmp_path):
    """Presets without published weights refuse --weights imagenet (the default) at once:
    no precision check, no data read, no run folder."""
    from kseg.models.registry import RANDOM_ONLY_BACKBONES, create_model, get_model_entry, list_models

    random_only = [name for name in list_models() if get_model_entry(name).backbone in RANDOM_ONLY_BACKBONES]
    assert {"segnet", "unet", "unet_bn", "fcn8s_vgg16bn"} <= set(random_only)
    for name in random_only:  # the table and the builders agree
        with pytest.raises(KsegError, match="random weights"):
            create_model(name, num_classes=3, weights="imagenet")
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--model", "segnet", "--data", "synthetic",
                                      "--data-dir", str(tmp_path / "missing"), "--run-dir", str(run_dir)])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: segnet trains from random weights") and "--weights none" in lines[-1]
    assert "precision check" not in result.output
    assert not run_dir.exists() and not (tmp_path / "missing").exists()
