"""The model kseg ships: found through weights/manifest.yaml when no model is given and no
run is under ./runs, checked by its SHA-256, used by predict, evaluate and export.

Every test builds its own tiny model and manifest in tmp_path and points the lookup at them
(`kseg.models.manifest.MANIFEST_PATH`); none reads the real shipped file.
"""

import os

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import randomize_weights, tiny_run_dir
from kseg.cli.main import cli

from kseg import runs
from kseg.errors import KsegError, WeightsError
from kseg.images import read_mask, write_png
from kseg.models import manifest

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

SYNTHETIC_CLASSES = ("background", "circle", "rectangle", "triangle", "ring", "cross")
PALETTE = [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48]]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny fcn8s_vgg16bn (width 0.0625, random weights) for the 6 synthetic classes,
    saved with its classes.json in a folder laid out like weights/camvid-fcn8s/."""
    from kseg.models import create_model

    folder = tmp_path_factory.mktemp("weights") / "tiny-shipped"
    folder.mkdir()
    model = randomize_weights(create_model("fcn8s_vgg16bn", num_classes=6, weights=None, width=0.0625))
    model.save(folder / "model.keras")
    runs.write_classes(str(folder), "synthetic", SYNTHETIC_CLASSES, PALETTE)
    return folder


def write_manifest(folder, model_folder, **fields):
    """Writes a manifest at folder/manifest.yaml with one model entry named SHIPPED_MODEL
    pointing at `model_folder` (paths relative to the manifest), plus a download entry."""
    relative = os.path.relpath(model_folder, folder)
    entry = {"name": runs.SHIPPED_MODEL, "kind": "model", "path": f"{relative}/model.keras",
             "classes": f"{relative}/classes.json", "sha256": None, "model": "fcn8s_vgg16bn",
             "recipe": "camvid-scratch", "dataset": "tiny shapes", "val_miou": 0.612, "licence": "test"}
    entry.update(fields)
    download = {"name": "x", "file": "x.h5", "url": "https://example.org/x.h5", "md5": "ab"}
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump([download, entry]))
    return str(path)


@pytest.fixture
def shipped(tiny_model, tmp_path, monkeypatch):
    """Points the lookup at a manifest describing `tiny_model`; runs from an empty folder."""
    monkeypatch.setattr(manifest, "MANIFEST_PATH", write_manifest(tmp_path, tiny_model))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tiny_model


def test_without_runs_the_shipped_model_is_chosen_and_named(shipped):
    chosen = runs.choose_model()
    assert chosen.shipped and chosen.origin == runs.SHIPPED
    assert chosen.path == str(shipped / "model.keras") and chosen.run_dir == str(shipped)
    assert chosen.output_dir is None  # nothing is written into the weights folder by default
    note = chosen.note
    assert "\n" not in note and str(shipped / "model.keras") in note
    assert "fcn8s_vgg16bn trained on tiny shapes" in note and "val mIoU 0.612" in note
    assert "kseg train --recipe camvid-scratch" in note


def test_a_run_under_runs_wins_over_the_shipped_model(shipped, tmp_path):
    run = tiny_run_dir(tmp_path / "work" / "runs")
    chosen = runs.choose_model()
    assert chosen.origin == runs.LATEST_RUN and not chosen.shipped
    assert chosen.run_dir == str(os.path.join("runs", run.name)) and chosen.output_dir == chosen.run_dir
    assert "using the latest run" in chosen.note
    given = runs.choose_model(str(shipped / "model.keras"))  # named by the user: no note
    assert given.origin == runs.GIVEN and given.note is None and given.run_dir == str(shipped)


def test_the_verbs_choice_says_once_which_model_kseg_chose(shipped, capsys):
    from kseg.exported import choose_model

    chosen, exported = choose_model()
    assert exported is None and chosen.shipped
    assert capsys.readouterr().err == chosen.note + "\n"
    choose_model(str(shipped / "model.keras"))  # named by the user: nothing to say
    assert capsys.readouterr().err == ""


def test_an_unmeasured_model_says_so(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(manifest, "MANIFEST_PATH", write_manifest(tmp_path, tiny_model, val_miou=None))
    monkeypatch.chdir(tmp_path)
    assert "val mIoU not measured yet" in runs.choose_model().note


def test_a_missing_shipped_file_says_how_to_train_one(tmp_path, monkeypatch):
    (tmp_path / "absent").mkdir()
    monkeypatch.setattr(manifest, "MANIFEST_PATH", write_manifest(tmp_path, tmp_path / "absent"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KsegError) as error:
        runs.choose_model(option="RUN_DIR|MODEL.keras")
    message = str(error.value)
    assert "\n" not in message and "no trained model found under ./runs" in message
    assert str(tmp_path / "absent" / "model.keras") in message and "not installed" in message
    assert "kseg train --recipe camvid-scratch" in message and "pass RUN_DIR|MODEL.keras" in message
    # an install without the manifest at all says the same
    monkeypatch.setattr(manifest, "MANIFEST_PATH", str(tmp_path / "nowhere" / "manifest.yaml"))
    with pytest.raises(KsegError, match="shipped model cannot be used .*kseg train --recipe camvid-scratch"):
        runs.choose_model()


def test_the_hash_is_checked_when_the_manifest_gives_one(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = manifest.file_sha256(tiny_model / "model.keras")
    monkeypatch.setattr(manifest, "MANIFEST_PATH", write_manifest(tmp_path, tiny_model, sha256=good.upper()))
    assert runs.choose_model().shipped
    wrong = "0" * 64
    monkeypatch.setattr(manifest, "MANIFEST_PATH", write_manifest(tmp_path, tiny_model, sha256=wrong))
    with pytest.raises(WeightsError) as error:
        runs.choose_model()
    message = str(error.value)
    assert "\n" not in message and message.startswith(str(tiny_model / "model.keras"))
    assert "damaged or replaced" in message and good in message and wrong in message
    assert "kseg train --recipe camvid-scratch" in message


@pytest.mark.parametrize("fields, problem", [
    ({"val_miou": 58.6}, "'val_miou' must be a number from 0 to 1"),
    ({"val_miou": True}, "'val_miou' must be a number from 0 to 1"),
    ({"classes": "tiny/names.json"}, "'classes' must name a classes.json"),
    ({"path": None}, "'path' must be a non-empty string"),
    ({"kind": "checkpoint"}, "has kind 'checkpoint'"),
])  # fmt: skip
def test_bad_model_entries_are_one_line_naming_the_manifest(fields, problem, tmp_path):
    path = write_manifest(tmp_path, tmp_path / "tiny", **fields)
    with pytest.raises(WeightsError) as error:
        manifest.read_shipped_models(path)
    assert str(error.value).startswith(path) and problem in str(error.value)


def test_model_entries_leave_the_download_entries_as_they_were(tmp_path):
    path = write_manifest(tmp_path, tmp_path / "tiny")
    assert list(manifest.read_manifest(path)) == ["x"]  # downloads only
    assert manifest.manifest_entry("x", path).file_hash == "ab"
    assert list(manifest.read_shipped_models(path)) == [runs.SHIPPED_MODEL]
    with pytest.raises(WeightsError, match="no model entry named 'other'"):
        manifest.shipped_model("other", path)


def test_the_repository_manifest_describes_the_shipped_model_and_its_recipe():
    from kseg.recipes import recipe_names

    entry = manifest.shipped_model(runs.SHIPPED_MODEL)
    weights = os.path.dirname(manifest.MANIFEST_PATH)
    assert entry.path == os.path.join(weights, "camvid-fcn8s", "model.keras")
    assert entry.folder == os.path.join(weights, "camvid-fcn8s")
    assert entry.recipe == runs.SHIPPED_RECIPE and entry.recipe in recipe_names()
    assert entry.model == "fcn8s_vgg16bn" and entry.licence and entry.dataset
    assert "vgg16_imagenet" in manifest.read_manifest()  # the download entries still parse


def test_predict_without_model_or_runs_uses_the_shipped_model(shipped, tmp_path):
    rng = np.random.default_rng(0)
    write_png("street.png", rng.integers(0, 256, (40, 52, 3), dtype=np.uint8))
    result = CliRunner().invoke(cli, ["predict", "street.png", "--out", "out"])
    assert result.exit_code == 0, result.output
    assert f"using kseg's shipped model {shipped / 'model.keras'}" in result.output
    assert "val mIoU 0.612" in result.output and "kseg train --recipe camvid-scratch" in result.output
    labels = read_mask(tmp_path / "work" / "out" / "street.png")
    assert labels.shape == (40, 52) and labels.max() < 6
    colours = np.asarray(PALETTE, np.uint8)[labels]  # the shipped classes.json's colours
    from kseg.images import read_image

    np.testing.assert_array_equal(read_image(tmp_path / "work" / "out" / "street_color.png"), colours)
    assert sorted(os.listdir(shipped)) == ["classes.json", "model.keras"]


def test_export_without_model_writes_the_shipped_model_into_the_current_folder(shipped, tmp_path):
    result = CliRunner().invoke(cli, ["export", "--format", "tflite"])
    assert result.exit_code == 0, result.output
    assert "using kseg's shipped model" in result.output
    out = tmp_path / "work" / f"{runs.SHIPPED_MODEL}.tflite"
    assert out.is_file() and out.stat().st_size > 0
    assert f"wrote tflite: {runs.SHIPPED_MODEL}.tflite" in result.output
    assert sorted(os.listdir(shipped)) == ["classes.json", "model.keras"]  # never into weights/


def test_export_with_an_empty_out_writes_the_shipped_model_into_the_current_folder_too(shipped, tmp_path):
    result = CliRunner().invoke(cli, ["export", "--format", "savedmodel", "--out", ""])  # e.g. --out "$UNSET"
    assert result.exit_code == 0, result.output
    assert (tmp_path / "work" / f"{runs.SHIPPED_MODEL}_savedmodel" / "saved_model.pb").is_file()
    assert sorted(os.listdir(shipped)) == ["classes.json", "model.keras"]  # never into weights/


def test_evaluate_without_model_scores_the_shipped_model_and_writes_nothing_beside_it(shipped, tmp_path):
    from kseg.data.synthetic import write_synthetic_dataset

    data = write_synthetic_dataset(str(tmp_path / "data"), num_train=1, num_val=2, size=(32, 40), seed=1)
    result = CliRunner().invoke(cli, ["evaluate", "--data", "synthetic", "--data-dir", data])
    assert result.exit_code == 0, result.output
    assert "using kseg's shipped model" in result.output and "mean IoU" in result.output
    assert sorted(os.listdir(shipped)) == ["classes.json", "model.keras"]
    assert not os.listdir(tmp_path / "work")


def test_the_offline_imagenet_error_names_the_recipe_without_imagenet(monkeypatch):
    import keras

    from kseg.models import pretrained

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(WeightsError) as error:
        pretrained.imagenet_weights_path()
    message = str(error.value)
    assert "\n" not in message and "--weights none" in message and "--recipe camvid-scratch" in message
