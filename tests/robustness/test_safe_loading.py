"""Model files load in keras' safe mode: a Lambda layer (code in the file) is refused with a
clear message unless --unsafe is given, by every verb that loads a model; configs and class
lists are read with YAML's safe loader."""

import os

import pytest
import robustness_corpus as corpus
import yaml
from click.testing import CliRunner
from kseg.cli.main import cli

from kseg.errors import KsegError


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return corpus.write_dataset(tmp_path_factory.mktemp("safe"), "odd_path")


MARKER_VARIABLE = "KSEG_TEST_LAMBDA_MARKER"


def write_marking_lambda_model(path, marker):
    """A model whose Lambda layer (a lambda: its bytecode goes into the file) creates the
    file named by $KSEG_TEST_LAMBDA_MARKER whenever it runs. (keras 3.15 cannot reload a
    lambda with default arguments, hence the variable.)"""
    import keras

    scale = lambda x: (  # noqa: E731
        __import__("pathlib").Path(__import__("os").environ["KSEG_TEST_LAMBDA_MARKER"]).touch(),
        __import__("keras").ops.cast(x, "float32") / 255.0,
    )[1]
    os.environ[MARKER_VARIABLE] = marker
    inputs = keras.Input((None, None, 3), dtype="uint8")
    logits = keras.layers.Conv2D(corpus.NUM_CLASSES, 1, name="score")(
        keras.layers.Lambda(scale, name="scale", output_shape=(None, None, 3))(inputs))
    keras.Model(inputs, logits).save(path)
    if os.path.exists(marker):
        os.remove(marker)  # building the model ran the layer once
    return str(path)


def test_lambda_of_a_named_function_is_refused_clearly(tmp_path):
    """keras stores a named function by name only; safe mode alone gives a long,
    unclear error for it, kseg names the layer."""
    import keras

    from kseg.models.saving import load_model

    def halve(x):
        return x / 2

    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Lambda(halve, name="halve")(inputs)).save(tmp_path / "named.keras")
    with pytest.raises(KsegError) as caught:
        load_model(tmp_path / "named.keras")
    message = str(caught.value)
    assert "Lambda layer 'halve'" in message and "--unsafe" in message and "\n" not in message


@pytest.fixture(scope="module")
def lambda_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lambda")
    marker = str(folder / "ran")
    yield write_marking_lambda_model(folder / "lambda.keras", marker), marker
    os.environ.pop(MARKER_VARIABLE, None)


def verb_arguments(verb, model, data, out):
    dataset = ["--data", "folder", "--data-dir", data.root]
    return {
        "predict": ["predict", data.images, "--model", model, "--out", str(out), "--format", "labels"],
        "evaluate": ["evaluate", model, *dataset, "--split", "all", "--out", str(out / "m.json")],
        "export": ["export", model, "--format", "savedmodel", "--out", str(out / "saved")],
        "train --init-from": ["train", *dataset, "--init-from", model, "--weights", "none", "--width",
                              "0.0625", "--epochs", "1", "--batch-size", "3", "--crop", "32x32",
                              "--val-split", "none", "--run-dir", str(out / "run"), "--quiet"],
    }[verb]


VERBS = ("predict", "evaluate", "export", "train --init-from")


@pytest.mark.parametrize("verb", VERBS)
def test_lambda_model_refused_without_unsafe(verb, lambda_model, dataset, tmp_path):
    model, marker = lambda_model
    if os.path.exists(marker):
        os.remove(marker)
    result = CliRunner().invoke(cli, verb_arguments(verb, model, dataset, tmp_path / "out"))
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and model in errors[0] and "--unsafe" in errors[0], result.output
    assert not os.path.exists(marker), "code from the model file ran"
    assert not os.path.exists(tmp_path / "out" / "run"), "a run directory was started"


@pytest.mark.parametrize("verb", VERBS)
def test_lambda_model_loads_with_unsafe(verb, lambda_model, dataset, tmp_path):
    model, _ = lambda_model
    result = CliRunner().invoke(cli, [*verb_arguments(verb, model, dataset, tmp_path / "out"), "--unsafe"])
    assert result.exit_code == 0, result.output
    assert "error:" not in result.output


def test_load_model_safe_mode_refuses_and_unsafe_runs_the_code(lambda_model):
    import numpy as np

    from kseg.models.saving import load_model

    model, marker = lambda_model
    if os.path.exists(marker):
        os.remove(marker)
    with pytest.raises(KsegError, match="--unsafe"):
        load_model(model)
    assert not os.path.exists(marker)
    loaded = load_model(model, unsafe=True)
    loaded(np.zeros((1, 8, 8, 3), np.uint8))
    assert os.path.exists(marker)  # the same file's code does run once trusted
    os.remove(marker)


def test_yaml_files_are_read_with_the_safe_loader(tmp_path):
    from kseg.config import TrainConfig
    from kseg.data.folder import load_classes_file

    marker = tmp_path / "owned"
    tag = f"!!python/object/apply:os.system ['touch {marker}']"
    (tmp_path / "config.yaml").write_text(f"model: {tag}\n")
    with pytest.raises(KsegError, match="not valid YAML"):
        TrainConfig.from_yaml(tmp_path / "config.yaml")
    (tmp_path / "classes.yaml").write_text(f"classes: [{tag}, b]\n")
    with pytest.raises(KsegError, match="YAML"):
        load_classes_file(str(tmp_path / "classes.yaml"))
    assert not marker.exists()
    with pytest.raises(yaml.constructor.ConstructorError):  # what the safe loader says
        yaml.safe_load(f"a: {tag}")
