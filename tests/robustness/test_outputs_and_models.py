"""Outputs that must not destroy anything, and models that must be refused at load.

Classes of failure covered, several cases each:

- predict writing over its inputs or over files it did not write, or two outputs on one
  path (refused before any model is loaded, nothing written);
- export onto an existing path (only --force, and only onto kseg's own export of the
  same format), onto the model, its run or an input;
- models with NaN/inf weights, finite weights whose logits overflow, and keras models
  that are no image -> per-pixel-logits model;
- malformed classes.json;
- numeric options that are inf, nan or absurd (usage errors, exit 2);
- a full disk (a real tmpfs in a private mount namespace).

After every refusal the user's files are byte-identical and nothing else appeared.
"""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import robustness_corpus as corpus
from click.testing import CliRunner
from conftest import tiny_run_dir
from kseg.cli.main import cli

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


# -- helpers ------------------------------------------------------------------------------


def snapshot(root):
    """{relative path: bytes, or ("link", target), or "dir"} of everything under `root`."""
    found = {}
    for parent, folders, files in os.walk(root):
        for name in folders + files:
            path = os.path.join(parent, name)
            key = os.path.relpath(path, root)
            if os.path.islink(path):
                found[key] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                found[key] = "dir"
            else:
                with open(path, "rb") as handle:
                    found[key] = handle.read()
    return found


def error_lines(output):
    return [line for line in output.splitlines() if line.startswith("error:")]


def run(arguments):
    return CliRunner().invoke(cli, [str(argument) for argument in arguments])


def assert_refused(result, *words, code=1):
    """Exit `code`, exactly one `error:` line holding every word, no traceback."""
    assert result.exit_code == code, result.output
    lines = error_lines(result.output)
    assert len(lines) == 1, result.output
    for word in words:
        assert str(word) in lines[0], (word, lines[0])
    assert "Traceback" not in result.output
    return lines[0]


def write_image(path, height=24, width=32, seed=0):
    corpus.write_bytes(str(path), corpus.encode(".png", corpus.random_rgb(height, width, seed)))
    return str(path)


def save(model, path):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    model.save(str(path))
    return str(path)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_run_dir(tmp_path_factory.mktemp("model"), "fcn32s",
                        ("toy", ["a", "b", "c"], [[255, 0, 0], [0, 255, 0], [0, 0, 255]]))


@pytest.fixture
def no_model_load(monkeypatch):
    """Planning refusals happen before the model is loaded: loading fails the test."""
    import kseg.evaluation
    import kseg.exporting
    import kseg.models.saving
    import kseg.prediction

    def fail(*args, **kwargs):
        raise AssertionError("the model was loaded before the outputs were checked")

    for module in (kseg.models.saving, kseg.prediction, kseg.evaluation, kseg.exporting):
        monkeypatch.setattr(module, "load_segmentation_model", fail)


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    for number in range(2):
        write_image(folder / f"p{number}.png", seed=number)
    return folder


# -- 1. predict never destroys its inputs or files it did not write ------------------------


@pytest.mark.parametrize("layout", ["out_is_input_dir", "out_inside_input_dir",
                                    "out_holds_input_dir", "out_holds_input_file",
                                    "out_is_input_file"])
def test_predict_out_among_the_inputs_is_refused(tmp_path, photos, run_dir, no_model_load, layout):
    inputs, out = {
        "out_is_input_dir": ([photos], photos),
        "out_inside_input_dir": ([photos], photos / "predictions"),
        "out_holds_input_dir": ([photos], tmp_path),
        "out_holds_input_file": ([photos / "p0.png"], tmp_path),
        "out_is_input_file": ([photos / "p0.png"], photos / "p0.png"),
    }[layout]
    before = snapshot(tmp_path)
    result = run(["predict", *inputs, "--model", run_dir, "--out", out])
    assert_refused(result, "--out", str(out))
    assert snapshot(tmp_path) == before


def test_predict_through_a_symlinked_input_folder_is_refused(tmp_path, photos, run_dir,
                                                               no_model_load):
    os.symlink(photos, tmp_path / "alias")
    before = snapshot(tmp_path)
    result = run(["predict", tmp_path / "alias", "--model", run_dir, "--out", photos / "out"])
    assert_refused(result, "inside the input folder")
    assert snapshot(tmp_path) == before


def test_an_input_named_like_another_inputs_output_is_refused(tmp_path, run_dir, no_model_load):
    first = write_image(tmp_path / "in" / "photo.png")
    second = write_image(tmp_path / "in" / "photo_color.png", seed=1)
    before = snapshot(tmp_path)
    result = run(["predict", first, second, "--model", run_dir, "--out", tmp_path / "out"])
    assert result.exit_code == 1, result.output
    lines = error_lines(result.output)
    clash = os.path.join(str(tmp_path / "out"), "photo_color.png")
    assert [line.split(":")[1].strip() for line in lines[:2]] == [first, second]  # each named, both left out
    assert all("skipped" in line and clash in line for line in lines[:2])
    assert lines[2] == "error: no images to predict"
    assert snapshot(tmp_path) == before


def test_only_the_images_whose_outputs_collide_are_left_out(tmp_path, run_dir):
    write_image(tmp_path / "in" / "a.png")
    write_image(tmp_path / "in" / "a.jpg", seed=1)
    write_image(tmp_path / "in" / "b.png", seed=2)
    result = run(["predict", tmp_path / "in", "--model", run_dir, "--out", tmp_path / "out", "--format", "labels"])
    assert result.exit_code == 1, result.output
    assert sum("skipped" in line for line in error_lines(result.output)) == 2
    assert sorted(os.listdir(tmp_path / "out")) == [".kseg-outputs.json", "b.png"]


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_a_link_in_out_to_an_input_is_refused(tmp_path, photos, run_dir, no_model_load, link):
    out = tmp_path / "out"
    out.mkdir()
    # kseg's manifest even lists the name: the link must still not be written through
    (out / ".kseg-outputs.json").write_text(json.dumps(
        {"written_by": "kseg", "files": {"p0.png": "predictions", "p0_color.png": "predictions"}}))
    (os.symlink if link == "symlink" else os.link)(photos / "p0.png", out / "p0_color.png")
    before = snapshot(tmp_path)
    result = run(["predict", photos / "p0.png", "--model", run_dir, "--out", out])
    assert_refused(result, "p0_color.png", str(photos / "p0.png"))
    assert snapshot(tmp_path) == before


def test_a_symlinked_subfolder_leading_out_of_out_is_refused(tmp_path, run_dir, no_model_load):
    write_image(tmp_path / "in" / "sub" / "x.png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    os.symlink(elsewhere, tmp_path / "out" / "sub")
    before = snapshot(tmp_path)
    result = run(["predict", tmp_path / "in", "--model", run_dir, "--out", tmp_path / "out"])
    assert_refused(result, "leads out of", str(tmp_path / "out"))
    assert snapshot(tmp_path) == before


def test_files_in_out_that_kseg_did_not_write_are_kept(tmp_path, photos, run_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "p1_overlay.png").write_bytes(b"my own drawing")
    (out / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    result = run(["predict", photos, "--model", run_dir, "--out", out])
    assert_refused(result, str(out / "p1_overlay.png"), "not written by kseg", "another --out")
    assert snapshot(tmp_path) == before

    # kseg's own outputs are written again on a second run; the user's files stay
    (out / "p1_overlay.png").unlink()
    assert run(["predict", photos, "--model", run_dir, "--out", out]).exit_code == 0
    first = snapshot(out)
    result = run(["predict", photos, "--model", run_dir, "--out", out, "--alpha", "0.9"])
    assert result.exit_code == 0, result.output
    second = snapshot(out)
    assert second["notes.txt"] == b"mine" and set(second) == set(first)
    assert second["p0_overlay.png"] != first["p0_overlay.png"]  # overwritten, with alpha 0.9
    listed = json.loads(second[".kseg-outputs.json"])["files"]
    assert "notes.txt" not in listed and "p0.png" in listed


def test_a_forged_manifest_is_refused(tmp_path, photos, run_dir, no_model_load):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".kseg-outputs.json").write_text("{not json")
    before = snapshot(tmp_path)
    assert_refused(run(["predict", photos, "--model", run_dir, "--out", out]),
                   ".kseg-outputs.json", "not valid JSON")
    assert snapshot(tmp_path) == before


# -- 2. export onto existing paths ---------------------------------------------------------


@pytest.fixture(scope="module")
def exports(run_dir, tmp_path_factory):
    """A kseg SavedModel and TFLite export of the tiny model."""
    folder = tmp_path_factory.mktemp("exports")
    for arguments in (["--format", "savedmodel", "--out", folder / "saved"],
                      ["--format", "tflite", "--out", folder / "model.tflite"]):
        result = run(["export", run_dir, *arguments])
        assert result.exit_code == 0, result.output
    return folder


def test_export_onto_a_user_folder_is_refused_even_with_force(tmp_path, run_dir, no_model_load):
    user = tmp_path / "thesis"
    (user / "variables").mkdir(parents=True)
    (user / "saved_model.pb").write_bytes(b"my file")  # looks like a SavedModel
    (user / "chapter1.tex").write_text("mine")
    before = snapshot(tmp_path)
    assert_refused(run(["export", run_dir, "--format", "savedmodel", "--out", user]),
                   str(user), "not written by kseg")
    assert_refused(run(["export", run_dir, "--format", "savedmodel", "--out", user, "--force"]),
                   str(user), "not written by kseg")
    assert snapshot(tmp_path) == before
    (user / "chapter1.tex").unlink()
    before = snapshot(tmp_path)
    assert_refused(run(["export", run_dir, "--format", "savedmodel", "--out", user, "--force"]),
                   str(user), "not written by kseg")
    assert snapshot(tmp_path) == before
    assert (user / "saved_model.pb").read_bytes() == b"my file"


@pytest.mark.parametrize("target", ["model_file", "run_dir", "checkpoints", "classes_json"])
def test_export_onto_the_model_or_its_run_is_refused(run_dir, no_model_load, target):
    out = {"model_file": run_dir / "checkpoints" / "best.keras", "run_dir": run_dir,
           "checkpoints": run_dir / "checkpoints", "classes_json": run_dir / "classes.json"}[target]
    before = snapshot(run_dir)
    for export_format in ("savedmodel", "onnx"):
        result = run(["export", run_dir, "--format", export_format, "--out", out, "--force"])
        assert_refused(result, str(out))
    assert snapshot(run_dir) == before


def test_export_among_its_inputs_is_refused(tmp_path, run_dir, photos, no_model_load):
    before = snapshot(tmp_path)
    for out in (photos, photos / "model.tflite", photos / "p0.png", tmp_path):
        result = run(["export", run_dir, "--format", "tflite", "--quantize", "int8",
                      "--calibration-data", photos, "--out", out, "--force"])
        assert_refused(result, str(out))
        result = run(["export", run_dir, "--format", "tflite", "--check-images", photos,
                      "--out", out, "--force"])
        assert_refused(result, str(out))
    assert snapshot(tmp_path) == before


def test_force_replaces_only_kseg_exports_of_the_same_format(exports, run_dir):
    saved, tflite = exports / "saved", exports / "model.tflite"
    before = snapshot(exports)
    assert_refused(run(["export", run_dir, "--format", "tflite", "--out", tflite]), "--force")
    # a kseg export of another format
    assert_refused(run(["export", run_dir, "--format", "onnx", "--out", tflite, "--force"]),
                   "as tflite export", "not as onnx export")
    assert_refused(run(["export", run_dir, "--format", "tflite", "--out", saved, "--force"]),
                   "as savedmodel export")
    # a TFLite file of someone else: the identifier alone does not make it kseg's
    forged = exports / "forged.tflite"
    forged.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    assert_refused(run(["export", run_dir, "--format", "tflite", "--out", forged, "--force"]),
                   str(forged))
    forged.unlink()
    assert snapshot(exports) == before
    # the same format: replaced
    result = run(["export", run_dir, "--format", "tflite", "--out", tflite, "--force"])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(exports)) == [".kseg-outputs.json", "model.tflite", "saved"]  # no temporary


def test_the_tflite_temporary_savedmodel_is_hidden_beside_the_output_and_removed(
        tmp_path, monkeypatch):
    import tensorflow as tf

    from kseg.exporting import tflite_bytes
    from kseg.models import create_model

    model = create_model("fcn32s", num_classes=3, weights=None, width=0.0625)
    seen = []

    def interrupted(path, **kwargs):
        seen.append(os.listdir(tmp_path))
        raise KeyboardInterrupt

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_saved_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tflite_bytes(model, workdir=str(tmp_path), name="m.tflite")
    assert len(seen[0]) == 1 and seen[0][0].startswith(".m.tflite.") and seen[0][0].endswith(".tmp")
    assert os.listdir(tmp_path) == []


# -- 3. non-finite models ------------------------------------------------------------------


@pytest.fixture(scope="module")
def damaged(tmp_path_factory, run_dir):
    """Copies of the tiny run with NaN and with inf in the score layer's kernel, and a model
    whose weights are finite but whose logits overflow on real images."""
    from kseg.models.saving import load_model

    folder = tmp_path_factory.mktemp("damaged")
    paths = {}
    for kind, value in (("nan", np.nan), ("inf", np.inf)):
        run = folder / kind
        shutil.copytree(run_dir, run)
        model = load_model(str(run / "checkpoints" / "best.keras"))
        variable = next(v for v in model.weights if v.path == "score_fr/kernel")
        array = variable.numpy()
        array.flat[3] = value
        variable.assign(array)
        save(model, run / "checkpoints" / "best.keras")
        paths[kind] = run
    # zero images give zero logits (the load-time probe passes); any bright pixel overflows
    overflow = keras.Sequential([keras.Input((None, None, 3)),
                                 keras.layers.Conv2D(corpus.NUM_CLASSES, 1, name="score")])
    overflow.get_layer("score").set_weights([np.full((1, 1, 3, 3), 1e37, np.float32),
                                             np.zeros(3, np.float32)])
    paths["overflow"] = save(overflow, folder / "overflow.keras")
    return paths


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return corpus.write_dataset(tmp_path_factory.mktemp("data"), "one_pixel")


@pytest.mark.parametrize("kind", ["nan", "inf"])
def test_nonfinite_weights_are_refused_at_load_by_every_verb(damaged, data, tmp_path, kind):
    run_path = damaged[kind]
    holds = "NaN" if kind == "nan" else "inf"
    words = ("best.keras", "weight 'score_fr/kernel'", f"holds {holds}")
    before = snapshot(data.root)
    assert_refused(run(["predict", data.images, "--model", run_path, "--out", tmp_path / "p"]),
                   *words)
    result = run(["evaluate", run_path, "--data", "folder", "--data-dir", data.root, "--split",
                  "all", "--out", tmp_path / "m.json"])
    assert_refused(result, *words)
    assert "mean IoU" not in result.output
    assert_refused(run(["export", run_path, "--format", "onnx", "--out", tmp_path / "m.onnx"]),
                   *words)
    from kseg.errors import KsegError
    from kseg.models.saving import load_model
    from kseg.training.build import resolve_init_from

    with pytest.raises(KsegError, match="score_fr/kernel"):  # what train --init-from calls
        load_model(resolve_init_from(str(run_path)))
    assert os.listdir(tmp_path) == [] and snapshot(data.root) == before


def test_overflowing_logits_stop_predict_once_and_evaluate_and_export_check(damaged, data,
                                                                            tmp_path):
    images = tmp_path / "images"
    for number in range(3):
        write_image(images / f"i{number}.png", seed=number)
    result = run(["predict", images, "--model", damaged["overflow"], "--out", tmp_path / "out"])
    assert_refused(result, "overflow.keras", "NaN or inf", "i0.png")
    assert "wrote predictions of 0 image(s)" in result.output
    assert not os.path.exists(tmp_path / "out")  # not even an empty folder
    result = run(["evaluate", damaged["overflow"], "--data", "folder", "--data-dir", data.root,
                  "--split", "all", "--out", tmp_path / "m.json"])
    assert_refused(result, "overflow.keras", "NaN or inf", "no metrics")
    assert "mean IoU" not in result.output and not os.path.exists(tmp_path / "m.json")
    result = run(["export", damaged["overflow"], "--format", "onnx", "--out", tmp_path / "m.onnx",
                  "--check"])
    assert_refused(result, "NaN or inf", "nothing was written")
    assert sorted(os.listdir(tmp_path)) == ["images"]


def test_export_check_fails_when_the_export_returns_nan(run_dir, tmp_path, monkeypatch):
    from kseg.exporting import ExportedModel, Parity, check_export, parity_problem

    class Broken:
        input_size, name = None, "broken.tflite"

        def __call__(self, image):
            logits = np.zeros(image.shape[:2] + (3,), np.float32)
            logits[0, 0, 1] = np.nan
            return logits

    model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(3, 1)])
    parity = check_export(model, Broken(), [np.zeros((8, 8, 3), np.uint8)])
    assert parity.export_nonfinite == 1 and parity.max_logit_diff == np.inf
    assert parity.pixel_agreement < 1
    assert "NaN or inf" in parity_problem(parity, "broken.tflite")
    assert parity_problem(Parity(float("nan"), 1.0, 1, 1.0), "x") is not None  # NaN is no pass

    # end to end: the export is complete, its logits NaN: nothing is written
    monkeypatch.setattr(ExportedModel, "__call__", lambda self, image: np.full(
        image.shape[:2] + (3,), np.nan, np.float32))
    out = tmp_path / "m.tflite"
    result = run(["export", run_dir, "--format", "tflite", "--out", out, "--check"])
    assert_refused(result, str(out), "the export's logits hold NaN", "nothing was written")
    assert os.listdir(tmp_path) == []


def test_heatmap_refuses_nonfinite_weights_and_probabilities(tmp_path, monkeypatch):
    import kseg.models
    import kseg.models.pretrained
    from kseg.errors import KsegError
    from kseg.heatmap import class_scores
    from kseg.models.saving import check_finite_weights

    model = keras.Sequential([keras.Input((None, None, 3)),
                              keras.layers.Conv2D(1000, 1, name="predictions")])
    kernel = np.zeros((1, 1, 3, 1000), np.float32)
    kernel[0, 0, 0, 5] = np.nan
    model.get_layer("predictions").set_weights([kernel, np.zeros(1000, np.float32)])
    with pytest.raises(KsegError, match="weights.h5: weight '.*predictions/kernel' holds NaN"):
        check_finite_weights(model, "weights.h5")
    with pytest.raises(KsegError, match="NaN or inf"):
        class_scores(model, np.full((8, 8, 3), 9, np.uint8), 5, "weights.h5")

    class Opened:  # the weights file itself is not what this test is about
        def __init__(self, path):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    monkeypatch.setattr(kseg.models.pretrained, "VGG16WeightsFile", Opened)
    monkeypatch.setattr(kseg.models, "imagenet_heatmap_model", lambda weights: model)
    image = write_image(tmp_path / "cat.png")
    result = run(["heatmap", image, "--class", "5", "--weights", tmp_path / "w.h5",
                  "--out", tmp_path / "heat.png"])
    assert_refused(result, "w.h5", "predictions/kernel", "NaN")
    assert sorted(os.listdir(tmp_path)) == ["cat.png"]
    before = snapshot(tmp_path)
    assert_refused(run(["heatmap", image, "--class", "5", "--out", image]), "is the input")
    assert snapshot(tmp_path) == before


# -- 4. keras models that are not segmentation models --------------------------------------


def _classifier():
    return keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(4, 3),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(1000)])


def _fixed_input():
    return keras.Sequential([keras.Input((224, 224, 3)), keras.layers.Conv2D(3, 1)])


def _two_inputs():
    first, second = keras.Input((None, None, 3)), keras.Input((None, None, 3))
    return keras.Model([first, second], keras.layers.Conv2D(3, 1)(keras.layers.Add()([first, second])))


def _gray_input():
    return keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(3, 1)])


def _half_size():
    return keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(3, 2, strides=2)])


@pytest.mark.parametrize("build,words", [
    (_classifier, ("(None, 1000)", "per-pixel")), (_fixed_input, ("224x224",)),
    (_two_inputs, ("2 inputs",)), (_gray_input, ("RGB",)), (_half_size, ("(1, 18, 22, 3)",)),
], ids=["classifier", "fixed_224", "two_inputs", "gray", "half_size"])
def test_non_segmentation_models_are_refused_once(tmp_path, build, words):
    path = save(build(), tmp_path / "models" / "other.keras")
    for number in range(3):
        write_image(tmp_path / "images" / f"i{number}.png", seed=number)
    before = snapshot(tmp_path)
    result = run(["predict", tmp_path / "images", "--model", path, "--out", tmp_path / "out"])
    assert_refused(result, "other.keras", "not a segmentation model", *words)
    result = run(["export", path, "--format", "onnx", "--out", tmp_path / "m.onnx"])
    assert_refused(result, "other.keras", "not a segmentation model")
    assert snapshot(tmp_path) == before


def test_evaluate_refuses_a_classifier(tmp_path, data):
    path = save(_classifier(), tmp_path / "c.keras")
    result = run(["evaluate", path, "--data", "folder", "--data-dir", data.root, "--split", "all",
                  "--out", tmp_path / "m.json"])
    assert_refused(result, "c.keras", "not a segmentation model")
    assert os.listdir(tmp_path) == ["c.keras"]


# -- 5. classes.json -----------------------------------------------------------------------


@pytest.mark.parametrize("content,words", [
    ("{not json", ("not valid JSON",)),
    ("[1, 2]", ("JSON object",)),
    ('{"class_names": "abc"}', ("class_names", "list of strings")),
    ('{"class_names": ["a", 2, "c"]}', ("class_names",)),
    ('{"palette": [[1, 2], [3, 4, 5], [6, 7, 8]]}', ("palette entry 0",)),
    ('{"palette": [[0, 0, 300], [0, 0, 0], [1, 1, 1]]}', ("0..255",)),
    ('{"palette": [[true, 0, 0], [0, 0, 0], [1, 1, 1]]}', ("palette entry 0",)),
    ('{"palette": "red"}', ("palette",)),
    ('{"class_names": ["a", "b"]}', ("lists 2 classes", "predicts 3")),
    ('{"class_names": ["a", "b", "c"], "palette": [[0, 0, 0]]}', ("1 colours for 3",)),
    ('{"ignore_index": "void"}', ("ignore_index",)),
], ids=lambda value: value if isinstance(value, str) and len(value) < 12 else None)
def test_malformed_classes_json_is_one_line_naming_it(tmp_path, run_dir, content, words):
    run_copy = tmp_path / "run"
    shutil.copytree(run_dir, run_copy)
    (run_copy / "classes.json").write_text(content)
    image = write_image(tmp_path / "x.png")
    result = run(["predict", image, "--model", run_copy, "--out", tmp_path / "out"])
    assert_refused(result, "classes.json", *words)
    assert not os.path.exists(tmp_path / "out")


# -- 6. numeric options --------------------------------------------------------------------


@pytest.mark.parametrize("arguments", [
    ["predict", "x.png", "--tta", "scales=inf"], ["predict", "x.png", "--tta", "scales=nan"],
    ["predict", "x.png", "--tta", "scales=1e9"], ["predict", "x.png", "--tta", "scales=0,1"],
    ["predict", "x.png", "--tile", "0x5"], ["predict", "x.png", "--tile", "99999999x2"],
    ["predict", "x.png", "--tile", "nan"], ["predict", "x.png", "--overlap", "inf"],
    ["predict", "x.png", "--overlap", "-1"], ["predict", "x.png", "--alpha", "nan"],
    ["predict", "x.png", "--alpha", "1.5"],
    ["export", "m.keras", "--format", "tflite", "--input-size", "99999999x2"],
    ["export", "m.keras", "--format", "tflite", "--calibration-images", "inf"],
    ["export", "m.keras", "--format", "tflite", "--calibration-images", "0"],
    ["evaluate", "m.keras", "--data", "folder", "--batch-size", "nan"],
    ["evaluate", "m.keras", "--data", "folder", "--batch-size", "1e9"],
    ["evaluate", "m.keras", "--data", "folder", "--max-images", "inf"],
    ["heatmap", "x.png", "--class", "1", "--alpha", "inf"],
], ids=lambda arguments: "_".join(arguments[:1] + arguments[-2:]))
def test_absurd_numbers_are_usage_errors(tmp_path, monkeypatch, arguments):
    monkeypatch.chdir(tmp_path)
    result = run(arguments)
    assert_refused(result, arguments[-2], code=2)
    assert os.listdir(tmp_path) == []


# -- 7. a full disk ------------------------------------------------------------------------


KSEG = os.path.join(os.path.dirname(sys.executable), "kseg")
LIST_FOLDER = ("import json, os, sys; root = sys.argv[1]; "
               "print('LISTING', json.dumps(sorted(os.path.relpath(os.path.join(p, n), root) "
               "for p, _, ns in os.walk(root) for n in ns)))")


def run_on_small_disk(tmp_path, arguments, size="300k"):
    """Runs `kseg ARGUMENTS` with DISK (in them) a tmpfs of `size` in a private mount
    namespace; returns (output, exit status, the files left on the disk)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    disk = tmp_path / "disk"
    disk.mkdir()
    arguments = [str(a).replace("DISK", str(disk)) for a in arguments]
    script = (f"mount -t tmpfs -o size={size} tmpfs {disk} || exit 99; "
              f"{KSEG} \"$@\"; status=$?; {sys.executable} -c \"{LIST_FOLDER}\" {disk}; "
              "echo STATUS $status")
    try:
        process = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *arguments],
                                 capture_output=True, text=True, timeout=300)
    except OSError as error:
        pytest.skip(f"unshare cannot run here ({error})")
    if process.returncode == 99 or "STATUS" not in process.stdout:
        pytest.skip("a private tmpfs cannot be mounted here (needs root): "
                    f"{(process.stdout + process.stderr)[-300:]}")
    status = int(process.stdout.split("STATUS ")[1].split()[0])
    kseg_output, listing = process.stdout.split("LISTING ", 1)
    return kseg_output + process.stderr, status, json.loads(listing.splitlines()[0])


def test_a_full_disk_stops_predict_at_once_with_a_true_count(tmp_path, run_dir):
    for number in range(6):  # noise: each overlay is about 100 KB, incompressible
        write_image(tmp_path / "images" / f"i{number}.png", 180, 190, seed=number)
    output, status, listing = run_on_small_disk(
        tmp_path, ["predict", tmp_path / "images", "--model", run_dir, "--out", "DISK/out"])
    assert status == 1, output
    lines = error_lines(output)
    assert len(lines) == 1 and "no space left on device" in lines[0], output
    assert "DISK" not in lines[0] and str(tmp_path / "disk" / "out") in lines[0]
    complete = [stem for stem in (f"i{n}" for n in range(6))
                if {f"out/{stem}.png", f"out/{stem}_color.png", f"out/{stem}_overlay.png"}
                <= set(listing)]
    assert 0 < len(complete) < 6, listing
    assert f"wrote predictions of {len(complete)} image(s)" in output
    assert not [name for name in listing if ".tmp" in name]  # no temporaries left


def test_a_full_disk_fails_export_with_one_line_and_no_leftovers(tmp_path, run_dir):
    output, status, listing = run_on_small_disk(
        tmp_path, ["export", run_dir, "--format", "tflite", "--out", "DISK/m.tflite"])
    assert status == 1, output
    lines = error_lines(output)
    assert len(lines) == 1 and "no space left on device" in lines[0], output
    assert "m.tflite" in lines[0]
    assert listing == [], listing


def test_evaluate_never_writes_its_metrics_over_an_input(tmp_path, run_dir, data):
    dataset = ["--data", "folder", "--data-dir", data.root, "--split", "all"]
    mask = os.path.join(data.root, "masks", "good0.png")
    user = tmp_path / "mine.json"
    user.write_text('{"my": "notes"}')
    model = run_dir / "checkpoints" / "best.keras"
    before, data_before = snapshot(run_dir), snapshot(data.root)
    for arguments, words in (
            (["--out", model], ("--out", "is the input")),
            (["--out", tmp_path / "m.json", "--confusion-png", mask], ("--confusion-png", "good0.png",
                                                                        "inside the input folder")),
            (["--out", user], ("mine.json", "not written by kseg")),
            (["--out", tmp_path / "same.png", "--confusion-png", tmp_path / "same.png"], ("also given",)),
            (["--out", tmp_path / "m.json", "--sheet", mask], ("--sheet", "good0.png", "inside the input")),
            (["--out", tmp_path / "m.json", "--sheet", user], ("--sheet", "mine.json", "not written by kseg")),
            (["--confusion-png", tmp_path / "c.png", "--sheet", tmp_path / "c.png"], ("also given",)),
            (["--out", data.root + "/notes.json"], ("--out", "inside the input folder")),
    ):
        assert_refused(run(["evaluate", run_dir, *dataset, *arguments]), *words)
    assert snapshot(run_dir) == before and snapshot(data.root) == data_before
    assert sorted(os.listdir(tmp_path)) == ["mine.json"]
