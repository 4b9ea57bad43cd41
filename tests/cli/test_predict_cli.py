"""`kseg predict` end to end on a tiny model and images in every format kseg reads."""

import json
import os

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import randomize_weights, tiny_run_dir
from kseg.cli.main import cli

from kseg.images import read_image, read_mask

PALETTE = [[255, 0, 0], [0, 255, 0], [0, 0, 255]]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_run_dir(tmp_path_factory.mktemp("runs"), "fcn8s", ("toy", ["a", "b", "c"], PALETTE))


def write_odd_images(folder):
    """Writes one image per odd case; returns {stem: expected (height, width)}."""
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "gray.png"), rgb[:, :, 0])
    cv2.imwrite(str(folder / "rgba.png"), np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)]))
    cv2.imwrite(str(folder / "deep.png"), rgb.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "bitmap.bmp"), rgb)
    cv2.imwrite(str(folder / "web.webp"), rgb)
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    Image.fromarray(rgb).save(folder / "rotated.jpg", exif=exif)
    return {"gray": (37, 53), "rgba": (37, 53), "deep": (37, 53), "bitmap": (37, 53),
            "web": (37, 53), "rotated": (53, 37)}


def test_predict_odd_formats_writes_all_outputs(run_dir, tmp_path):
    expected = write_odd_images(tmp_path / "images")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["predict", str(tmp_path / "images"), "--model", str(run_dir), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    for stem, size in expected.items():
        labels = read_mask(out / f"{stem}.png")
        assert labels.shape == size and labels.max() < 3, stem
        color = read_image(out / f"{stem}_color.png")
        overlay = read_image(out / f"{stem}_overlay.png")
        assert color.shape == overlay.shape == size + (3,)
        # The colour map uses classes.json's palette.
        np.testing.assert_array_equal(color, np.array(PALETTE, np.uint8)[labels])
    assert not [name for name in os.listdir(out) if ".tmp" in name]
    # a second run into its own folder overwrites its own files
    result = CliRunner().invoke(
        cli, ["predict", str(tmp_path / "images"), "--model", str(run_dir), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output


def test_predict_reports_bad_files_and_writes_the_rest(run_dir, tmp_path):
    write_odd_images(tmp_path / "images")
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["predict", str(tmp_path / "images" / "*.png"), str(tmp_path / "missing.jpg"),
              "--model", str(run_dir / "checkpoints" / "best.keras"), "--out", str(out),
              "--format", "labels"],
    )
    assert result.exit_code == 1
    assert "broken.png" in result.output and "missing.jpg" in result.output
    assert "2 input(s) failed" in result.output
    assert sorted(os.listdir(out)) == [".kseg-outputs.json", "deep.png", "gray.png", "rgba.png"]
    # the manifest lists what was written (broken.png's planned output is dropped)
    manifest = json.loads((out / ".kseg-outputs.json").read_text())
    assert manifest["files"] == {name: "predictions" for name in ("deep.png", "gray.png", "rgba.png")}


def test_predict_tiled_tta_and_latest_run(run_dir, tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    cv2.imwrite(str(tmp_path / "big.png"), rng.integers(0, 256, (70, 90, 3), dtype=np.uint8))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    os.symlink(run_dir, tmp_path / "runs" / "tiny")
    result = CliRunner().invoke(
        cli, ["predict", "big.png", "--tile", "48x64", "--overlap", "16", "--tta", "flip",
              "--format", "labels,overlay"],
    )
    assert result.exit_code == 0, result.output
    assert "using the latest run" in result.output
    assert read_mask(tmp_path / "predictions" / "big.png").shape == (70, 90)
    assert os.path.isfile(tmp_path / "predictions" / "big_overlay.png")
    assert not os.path.exists(tmp_path / "predictions" / "big_color.png")


def test_predict_without_runs_or_with_bad_options(tmp_path, monkeypatch, run_dir):
    from kseg.models import manifest

    monkeypatch.chdir(tmp_path)
    # no run, and an install without the shipped model: one line saying how to train one
    monkeypatch.setattr(manifest, "MANIFEST_PATH", str(tmp_path / "no-weights" / "manifest.yaml"))
    cv2.imwrite("x.png", np.zeros((8, 8, 3), np.uint8))
    result = CliRunner().invoke(cli, ["predict", "x.png"])
    assert result.exit_code == 1 and "no trained model found" in result.output
    assert "--recipe camvid-scratch" in result.output
    result = CliRunner().invoke(cli, ["predict", "x.png", "--model", str(run_dir),
                                      "--format", "labels,cityscapes-ids"])
    assert result.exit_code == 1 and "choose one" in result.output
    result = CliRunner().invoke(cli, ["predict", "x.png", "--model", str(run_dir),
                                      "--format", "cityscapes-ids"])
    assert result.exit_code == 1 and "19 classes" in result.output
    result = CliRunner().invoke(cli, ["predict", "x.png", "--model", str(run_dir),
                                      "--tile", "32x32", "--overlap", "40"])
    assert result.exit_code == 1 and "--overlap 40" in result.output


def test_predict_cityscapes_label_ids(tmp_path):
    from kseg.models import create_model

    model = randomize_weights(create_model("fcn32s", num_classes=19, weights=None, width=0.0625), seed=5)
    rng = np.random.default_rng(5)
    model.save(tmp_path / "city.keras")
    cv2.imwrite(str(tmp_path / "frankfurt_000000_000294_leftImg8bit.png"),
                rng.integers(0, 256, (40, 80, 3), dtype=np.uint8))
    result = CliRunner().invoke(
        cli, ["predict", str(tmp_path / "frankfurt_000000_000294_leftImg8bit.png"),
              "--model", str(tmp_path / "city.keras"), "--out", str(tmp_path / "results"),
              "--format", "cityscapes-ids"],
    )
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / "results")) == [
        ".kseg-outputs.json", "frankfurt_000000_000294_leftImg8bit.png"]
    ids = read_mask(tmp_path / "results" / "frankfurt_000000_000294_leftImg8bit.png")
    train_ids = np.asarray(model(cv2.imread(str(tmp_path / "frankfurt_000000_000294_leftImg8bit.png"))
                                 [None, :, :, ::-1].copy())).argmax(-1)[0]
    from cityscapesscripts.helpers.labels import trainId2label

    expected = np.vectorize(lambda t: trainId2label[int(t)].id)(train_ids)
    np.testing.assert_array_equal(ids, expected)
    assert set(np.unique(ids)) <= {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33}


def test_predict_bf16_agrees_with_fp32(run_dir, tmp_path, monkeypatch):
    import kseg.models.inference
    import kseg.prediction

    used = []
    build = kseg.models.inference.inference_model
    monkeypatch.setattr(kseg.prediction, "inference_model", lambda model, precision: used.append(
        {weight.dtype for weight in build(model, precision).weights}) or build(model, precision))
    rng = np.random.default_rng(7)
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "scene.png"), rng.integers(0, 256, (64, 80, 3), dtype=np.uint8))
    labels = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        result = CliRunner().invoke(
            cli, ["predict", str(tmp_path / "images"), "--model", str(run_dir), "--out", str(out),
                  "--format", "labels", "--precision", precision],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        labels[precision] = read_mask(out / "scene.png")
    assert used == [{"float32"}, {"bfloat16"}]
    assert labels["bf16"].shape == (64, 80)
    # a tiny random model has near-tied logits; most pixels still keep their class
    assert (labels["bf16"] == labels["fp32"]).mean() > 0.8
    result = CliRunner().invoke(cli, ["predict", "x.png", "--precision", "fp8"])
    assert result.exit_code == 2 and "fp8" in result.output


def test_predict_writes_a_class_legend_beside_the_colour_maps(run_dir, tmp_path):
    rng = np.random.default_rng(4)
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "street.png"), rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    out = tmp_path / "out"
    command = ["predict", str(tmp_path / "images"), "--model", str(run_dir), "--out", str(out)]
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 0, result.output
    assert f"class colours: {out / 'legend.png'}" in result.output
    legend = read_image(out / "legend.png")
    colours = {tuple(c) for c in legend.reshape(-1, 3)}
    assert {tuple(c) for c in PALETTE} <= colours  # classes.json's colours
    assert "legend.png" in json.loads((out / ".kseg-outputs.json").read_text())["files"]
    # labels only: no legend
    plain = tmp_path / "plain"
    result = CliRunner().invoke(cli, [*command[:-1], str(plain), "--format", "labels"])
    assert result.exit_code == 0 and not (plain / "legend.png").exists()
    # a legend.png kseg did not write is kept: the run is refused
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "legend.png").write_bytes(b"my drawing")
    result = CliRunner().invoke(cli, [*command[:-1], str(mine)])
    assert result.exit_code == 1 and "legend.png" in result.output
    assert (mine / "legend.png").read_bytes() == b"my drawing"
    # an image named legend gets its label map there, and no legend is written over it
    cv2.imwrite(str(tmp_path / "images" / "legend.jpg"), np.zeros((20, 30, 3), np.uint8))
    other = tmp_path / "other"
    result = CliRunner().invoke(cli, [*command[:-1], str(other)])
    assert result.exit_code == 0, result.output
    assert read_mask(other / "legend.png").shape == (20, 30)


def test_a_legend_that_cannot_be_written_stops_predict_naming_the_legend(run_dir, tmp_path, monkeypatch):
    import kseg.prediction

    def unwritable(path, class_names, palette):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(kseg.prediction, "write_legend", unwritable)
    rng = np.random.default_rng(5)
    (tmp_path / "images").mkdir()
    for name in ("a", "b"):
        cv2.imwrite(str(tmp_path / "images" / f"{name}.png"), rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["predict", str(tmp_path / "images"), "--model", str(run_dir), "--out", str(out)])
    assert result.exit_code == 1
    assert "legend.png: cannot write the class legend: Permission denied" in result.output
    assert result.output.count("error: ") == 1  # the legend's, not a failed image's
    files = json.loads((out / ".kseg-outputs.json").read_text())["files"]
    assert "legend.png" not in files and not (out / "legend.png").exists()
    assert any(name.startswith("a") for name in files)  # the image written first is listed


def test_a_model_without_classes_json_says_its_classes_get_default_names(tmp_path):
    from PIL import Image

    bare = tiny_run_dir(tmp_path / "bare", "fcn8s")  # no classes.json
    named = tiny_run_dir(tmp_path / "named", "fcn8s", ("toy", ["a", "b", "c"], PALETTE))
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "img.png")
    for run, warned in ((bare, True), (named, False)):
        result = CliRunner().invoke(cli, ["predict", str(tmp_path / "img.png"), "--model", str(run),
                                          "--out", str(tmp_path / f"out-{run.parent.name}")])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert ("no classes.json beside it" in result.output) == warned, result.output
        if warned:
            assert "named class 0 .. class 2" in result.output
